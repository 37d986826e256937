// Who may push to a hosted repository (issue 14): the token must carry the push scope, and
// auth.policy decides on top of it (Keycloak's docker-v2 mapper grants whatever is asked), so a
// user whose rules allow only pull gets 403 DENIED on an upload POST even with a push token.
// Mount from a repository the caller may not pull uploads instead. With auth.mode none, a policy
// rule naming push closes pushing to everyone it does not name. Keycloak emulator; a real
// Distribution as the mirrored upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { buildImage, digestOf, pushImage, fetchManifest, fetchBlob, seededBytes, type BuiltImage } from '../helpers/index.js';
import { startRig, type Rig } from '../helpers/rig.js';
import { startBerth } from '../helpers/berth.js';
import { startKeycloakEmulator, type KeycloakEmulator } from '../helpers/keycloak.js';
import type { Digest } from '../../src/oci/reference.js';

let kc: KeycloakEmulator;
let rig: Rig;
let base: BuiltImage;

before(async () => {
  kc = await startKeycloakEmulator();
  base = buildImage({ seed: 'hosted-auth-base' });
  rig = await startRig({
    seed: async (up) => {
      await pushImage(up.url, 'library/base', 'latest', base);
    },
    auth: {
      mode: 'token',
      token: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: kc.trustBundlePath },
      policy: [
        { subjects: ['alice'], actions: ['pull', 'push'], repositories: ['ci/*'] },
        { subjects: ['bob'], actions: ['pull'], repositories: ['ci/*', 'docker.io/library/*'] },
      ],
    },
    berthConfig: { repositories: [{ match: 'ci/**', mode: 'hosted' }] },
  });
});

after(async () => {
  await rig?.stop();
  await kc?.stop();
});

async function bearer(user: string, scope: string): Promise<Record<string, string>> {
  const r = await kc.fetchToken(user, scope);
  assert.equal(r.status, 200, r.body);
  return { authorization: `Bearer ${r.token ?? ''}` };
}

/** A token with several scopes (the token endpoint takes one per request; mint one as Keycloak would). */
function multi(user: string, scopes: string[]): Record<string, string> {
  const access = scopes.map((sc) => {
    const [type, name, actions] = sc.split(':') as [string, string, string];
    return { type, name, actions: actions.split(',') };
  });
  return { authorization: `Bearer ${kc.mintToken({ subject: user, access })}` };
}

async function post(path: string, headers: Record<string, string>) {
  const res = await request(`${rig.url}${path}`, { method: 'POST', headers: { ...headers, 'content-length': '0' } });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

function code(text: string): string | undefined {
  return (JSON.parse(text) as { errors: { code: string }[] }).errors[0]?.code;
}

test('without a token an upload POST is 401 with a challenge for pull,push on the name as sent', async () => {
  const r = await post('/v2/ci/app/blobs/uploads/', {});
  assert.equal(r.status, 401);
  assert.equal(code(r.text), 'UNAUTHORIZED');
  assert.equal(r.headers['www-authenticate'], `Bearer realm="${kc.tokenUrl}",service="${kc.service}",scope="repository:ci/app:pull,push"`);
});

test('a token without the push scope cannot start an upload', async () => {
  const r = await post('/v2/ci/app/blobs/uploads/', await bearer('alice', 'repository:ci/app:pull'));
  assert.equal(r.status, 401);
  assert.match(String(r.headers['www-authenticate']), /insufficient_scope/);
});

test('a pull-only policy refuses an upload POST with 403 DENIED even when the token grants push', async () => {
  const r = await post('/v2/ci/app/blobs/uploads/', await bearer('bob', 'repository:ci/app:pull,push'));
  assert.equal(r.status, 403, r.text);
  assert.equal(code(r.text), 'DENIED');
  const m = await request(`${rig.url}/v2/ci/app/manifests/latest`, {
    method: 'PUT', headers: { ...(await bearer('bob', 'repository:ci/app:pull,push')), 'content-type': base.mediaType }, body: base.manifest,
  });
  assert.equal(m.statusCode, 403);
  await m.body.dump();
});

test('a user the policy lets push pushes, and pulls back byte-exact', async () => {
  const img = buildImage({ seed: 'hosted-auth-push', layers: 2 });
  const headers = await bearer('alice', 'repository:ci/app:pull,push');
  await pushImage(rig.url, 'ci/app', 'latest', img, { headers });
  const m = await fetchManifest(rig.url, 'ci/app', 'latest', { headers });
  assert.equal(m.status, 200);
  assert.ok(m.body.equals(img.manifest));
  // bob may pull it (his rules name ci/*), but not with alice's push.
  const bobPull = await bearer('bob', 'repository:ci/app:pull');
  assert.equal((await fetchManifest(rig.url, 'ci/app', 'latest', { headers: bobPull })).status, 200);
});

test('a mount from a repository the caller may not pull uploads instead (202), from one it may pull mounts (201)', async () => {
  // bob caches library/base, so the layer is in the store.
  const bob = await bearer('bob', 'repository:library/base:pull');
  for (const d of [base.configDigest, ...base.layers.map((l) => l.digest)]) assert.equal((await fetchBlob(rig.url, 'library/base', d, { headers: bob })).status, 200);
  const layer = base.layers[0]!.digest;
  // alice's rules do not name docker.io/library/*: no mount for her, even with a token that asks.
  const alice = multi('alice', ['repository:ci/dst:pull,push', 'repository:library/base:pull']);
  const refused = await post(`/v2/ci/dst/blobs/uploads/?mount=${layer}&from=library/base`, alice);
  assert.equal(refused.status, 202, refused.text);
  // From her own hosted repository she may.
  const img = buildImage({ seed: 'hosted-auth-mount' });
  await pushImage(rig.url, 'ci/src', 'latest', img, { headers: await bearer('alice', 'repository:ci/src:pull,push') });
  const ok = await post(`/v2/ci/dst/blobs/uploads/?mount=${img.layers[0]!.digest}&from=ci/src`, multi('alice', ['repository:ci/dst:pull,push', 'repository:ci/src:pull']));
  assert.equal(ok.status, 201, ok.text);
});

test('auth.mode none: a hosted rule opens pushing; a policy rule naming push closes it to everyone it does not name', async () => {
  const open = await startBerth({ repositories: [{ match: 'ci/**', mode: 'hosted' }], upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:9' }] });
  const closed = await startBerth({
    repositories: [{ match: 'ci/**', mode: 'hosted' }], upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:9' }],
    auth: { mode: 'none', policy: [{ subjects: ['nobody'], actions: ['push'], repositories: ['ci/*'] }] },
  });
  try {
    const data = seededBytes('open', 100);
    const d = digestOf(data) as Digest;
    const a = await request(`${open.url}/v2/ci/x/blobs/uploads/?digest=${d}`, { method: 'POST', body: data, headers: { 'content-type': 'application/octet-stream' } });
    await a.body.dump();
    assert.equal(a.statusCode, 201);
    const b = await request(`${closed.url}/v2/ci/x/blobs/uploads/?digest=${d}`, { method: 'POST', body: data, headers: { 'content-type': 'application/octet-stream' } });
    const text = await b.body.text();
    assert.equal(b.statusCode, 403, text);
    assert.equal(await closed.services.driver.statBlob(d), null);
  } finally {
    await open.stop();
    await closed.stop();
  }
});
