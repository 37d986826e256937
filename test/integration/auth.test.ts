// Keycloak-authenticated pulls end to end: a token-protected Berth in front of a real Distribution,
// tokens from the Keycloak docker-v2 emulator. Upstream requests are counted, so a refused client
// is proven to have cost the upstream nothing.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import {
  startDistribution, buildImage, pushImage, fetchManifest, fetchBlob, digestOf,
  type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import { startBerthProcess, type BerthHandle, type Overrides } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';
import { startKeycloakEmulator, type KeycloakEmulator } from '../helpers/keycloak.js';

let kc: KeycloakEmulator;
let rig: Rig;
let proxy: FaultProxy;
let alpine: BuiltImage;
let app: BuiltImage;
/** Berth's upstreams with the default tagTtl, for the Berths that do not set one. */
const defaultTtl = (): Record<string, unknown>[] => rig.upstreamsConfig({ 'docker.io': {} });

before(async () => {
  kc = await startKeycloakEmulator();
  alpine = buildImage({ seed: 'auth-alpine', layers: [4096, 20_000] });
  app = buildImage({ seed: 'auth-app', layers: 1 });
  // Each test starts the Berths it needs with rig.addBerth; rig.stop() stops those left running.
  rig = await startRig({
    seed: async (upstream) => {
      await pushImage(upstream.url, 'library/alpine', '3.20', alpine);
      await pushImage(upstream.url, 'org/app', 'v1', app);
    },
    upstreams: { 'docker.io': { tagTtl: '1h' } },
    startBerth: false,
  });
  proxy = rig.proxy;
});

after(async () => {
  await rig?.stop();
  await kc?.stop();
});

beforeEach(() => {
  proxy.reset();
  kc.reset();
});

function tokenAuth(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: kc.trustBundlePath, ...extra };
}

/** A token-mode Berth: `token` is auth.token, `auth` the rest of the auth section, `more` other sections. */
async function berthWith(token: Record<string, unknown>, auth: Record<string, unknown> = {}, more: Overrides = {}): Promise<BerthHandle> {
  return rig.addBerth({ auth: { mode: 'token', token, ...auth }, ...more });
}

async function token(user: string, scope?: string): Promise<string> {
  const r = await kc.fetchToken(user, scope);
  assert.equal(r.status, 200, r.body);
  return r.token ?? '';
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

async function call(b: BerthHandle, method: string, path: string, headers: Record<string, string> = {}) {
  const res = await request(`${b.url}${path}`, { method: method as 'GET', headers });
  const body = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body };
}

async function pullWith(b: BerthHandle, repo: string, ref: string, img: BuiltImage, headers: Record<string, string>): Promise<void> {
  const m = await fetchManifest(b.url, repo, ref, { headers });
  assert.equal(m.status, 200, m.body.toString());
  assert.equal(digestOf(m.body), img.manifestDigest);
  for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) {
    const blob = await fetchBlob(b.url, repo, d, { headers });
    assert.equal(blob.status, 200);
    assert.equal(digestOf(blob.body), d);
  }
}

test('the emulator is faithful where it counts: registry:2 (Distribution 2.8) accepts its tokens with the same trust bundle', async () => {
  const registry = await startDistribution({ auth: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: kc.trustBundlePath } });
  try {
    const t = await token('alice', 'repository:library/alpine:pull,push');
    await pushImage(registry.url, 'library/alpine', '3.20', alpine, { headers: bearer(t) });
    const m = await fetchManifest(registry.url, 'library/alpine', '3.20', { headers: bearer(t) });
    assert.equal(m.status, 200);
    const none = await fetchManifest(registry.url, 'library/alpine', '3.20');
    assert.equal(none.status, 401);
    assert.equal(
      none.headers['www-authenticate'],
      `Bearer realm="${kc.tokenUrl}",service="${kc.service}",scope="repository:library/alpine:pull"`,
      'Berth answers with the very challenge registry:2 sends',
    );
  } finally {
    await registry.stop();
  }
});

test('a pull with a Keycloak token works end to end, byte-exact', async () => {
  const b = await berthWith(tokenAuth());
  const t = await token('alice', 'repository:library/alpine:pull');
  await pullWith(b, 'library/alpine', '3.20', alpine, bearer(t));
  const ping = await call(b, 'GET', '/v2/', bearer(t));
  assert.equal(ping.status, 200);
});

test('no token: the exact challenge, the exact body, and zero upstream requests', async () => {
  const b = await berthWith(tokenAuth());
  const m = await call(b, 'GET', '/v2/library/alpine/manifests/3.20');
  assert.equal(m.status, 401);
  assert.equal(m.headers['www-authenticate'], `Bearer realm="${kc.tokenUrl}",service="${kc.service}",scope="repository:library/alpine:pull"`);
  assert.equal(m.headers['content-type'], 'application/json; charset=utf-8');
  assert.equal(
    m.body,
    '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Class":"","Name":"library/alpine","Action":"pull"}]}]}',
  );
  const ping = await call(b, 'GET', '/v2/');
  assert.equal(ping.status, 401);
  assert.equal(ping.headers['www-authenticate'], `Bearer realm="${kc.tokenUrl}",service="${kc.service}"`, 'dockerd learns auth from the /v2/ ping');
  const blob = await call(b, 'GET', `/v2/library/alpine/blobs/${alpine.configDigest}`);
  assert.equal(blob.status, 401);
  assert.equal(proxy.count(), 0, 'nothing reached the upstream');
});

test('a token for another repository: 401 insufficient_scope; an expired one: 401 invalid_token', async () => {
  const b = await berthWith(tokenAuth());
  const other = await token('alice', 'repository:org/app:pull');
  const m = await call(b, 'GET', '/v2/library/alpine/manifests/3.20', bearer(other));
  assert.equal(m.status, 401);
  assert.equal(
    m.headers['www-authenticate'],
    `Bearer realm="${kc.tokenUrl}",service="${kc.service}",scope="repository:library/alpine:pull",error="insufficient_scope"`,
  );
  const expired = kc.mintToken({ subject: 'alice', scope: 'repository:library/alpine:pull', issuedAt: Math.floor(Date.now() / 1000) - 1000 });
  const e = await call(b, 'GET', '/v2/library/alpine/manifests/3.20', bearer(expired));
  assert.equal(
    e.headers['www-authenticate'],
    `Bearer realm="${kc.tokenUrl}",service="${kc.service}",scope="repository:library/alpine:pull",error="invalid_token"`,
  );
  assert.equal(proxy.count(), 0);
});

/** A Keycloak of its own and a JWKS-only Berth, so key rotation and JWKS polling touch no other test. */
async function withJwksBerth(jwksRefresh: string, fn: (k: KeycloakEmulator, b: BerthHandle) => Promise<void>): Promise<void> {
  const k = await startKeycloakEmulator();
  const b = await rig.addBerth({
    auth: { mode: 'token', token: { realm: k.tokenUrl, service: k.service, issuer: k.issuer, jwks: k.jwksUrl, jwksRefresh } },
  });
  try {
    await fn(k, b);
  } finally {
    await b.stop();
    await k.stop();
  }
}

async function waitUntil(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

test('key rotation through the JWKS URL needs no restart: new keys are fetched, dropped keys stop working', async () => {
  await withJwksBerth('1s', async (k, b) => {
    const tokenOf = async (user: string) => (await k.fetchToken(user, 'repository:library/alpine:pull')).token ?? '';
    const old = await tokenOf('alice');
    assert.equal((await call(b, 'GET', '/v2/library/alpine/manifests/3.20', bearer(old))).status, 200);

    await k.rotateKey({ dropOld: true });
    const fresh = await tokenOf('alice');
    assert.equal((await call(b, 'GET', '/v2/library/alpine/manifests/3.20', bearer(fresh))).status, 200, 'a token signed by the new key');

    // The periodic refresh (every second here) notices the retired key is gone.
    const fetched = k.count({ endpoint: 'jwks', status: 200 });
    await waitUntil(() => k.count({ endpoint: 'jwks', status: 200 }) > fetched);
    assert.ok(k.count({ endpoint: 'jwks', status: 200 }) > fetched, 'the JWKS is fetched again on schedule');
    const stale = await call(b, 'GET', '/v2/library/alpine/manifests/3.20', bearer(old));
    assert.equal(stale.status, 401);
    assert.match(String(stale.headers['www-authenticate']), /error="invalid_token"$/);
    assert.ok(b.logs().some((l) => l.includes('trusted token signing keys changed')));
  });
});

test('an unknown kid fetches the JWKS at once (long refresh interval), at most once per cooldown', async () => {
  await withJwksBerth('1h', async (k, b) => {
    await k.rotateKey();
    k.reset();
    const fresh = (await k.fetchToken('bob', 'repository:library/alpine:pull')).token ?? '';
    assert.equal((await call(b, 'GET', '/v2/library/alpine/manifests/3.20', bearer(fresh))).status, 200);
    assert.equal(k.count({ endpoint: 'jwks' }), 1, 'one fetch for the new kid');
    const forged = k.mintToken({ subject: 'bob', header: { kid: 'AAAA:BBBB:CCCC:DDDD:EEEE:FFFF:GGGG:HHHH:IIII:JJJJ:KKKK:LLLL' } });
    for (let i = 0; i < 5; i++) assert.equal((await call(b, 'GET', '/v2/', bearer(forged))).status, 401);
    assert.equal(k.count({ endpoint: 'jwks' }), 1, 'unknown kids within the cooldown fetch nothing more');
  });
});

test('a failing JWKS refresh keeps the keys loaded before, and says so in the log', async () => {
  await withJwksBerth('300ms', async (k, b) => {
    const t = (await k.fetchToken('alice', 'repository:library/alpine:pull')).token ?? '';
    k.setFailure(503, 'jwks');
    await waitUntil(() => k.count({ endpoint: 'jwks', status: 503 }) >= 2);
    assert.ok(k.count({ endpoint: 'jwks', status: 503 }) >= 2, 'refresh attempts were made and failed');
    assert.equal((await call(b, 'GET', '/v2/library/alpine/manifests/3.20', bearer(t))).status, 200);
    assert.ok(b.logs().some((l) => l.includes('cannot fetch auth.token.jwks; keeping the keys loaded before') && l.includes('"level":40')));
    const ready = await call(b, 'GET', '/readyz');
    assert.equal(ready.status, 200, 'old keys still count as ready');
  });
});

test('a JWKS URL that never answered: the mirror starts, is not ready, and becomes ready once keys arrive', async () => {
  const k = await startKeycloakEmulator();
  k.setFailure(503, 'jwks');
  const b = await rig.addBerth({
    upstreams: defaultTtl(),
    auth: { mode: 'token', token: { realm: k.tokenUrl, service: k.service, issuer: k.issuer, jwks: k.jwksUrl, jwksRefresh: '300ms' } },
  });
  try {
    const notReady = await call(b, 'GET', '/readyz');
    assert.equal(notReady.status, 503);
    assert.match(notReady.body, /no trusted token signing key/);
    k.setFailure(null, 'jwks');
    let status = 0;
    const deadline = Date.now() + 5000;
    while (status !== 200 && Date.now() < deadline) {
      status = (await call(b, 'GET', '/readyz')).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(status, 200);
    assert.ok(k.count({ endpoint: 'jwks', status: 200 }) >= 1);
  } finally {
    await b.stop();
    await k.stop();
  }
});

test('policy: delete and admin need rules; a subject a rule does not name gets 403 DENIED', async () => {
  const b = await berthWith(tokenAuth(), {
    policy: [
      { subjects: ['carol'], actions: ['delete'], repositories: ['docker.io/library/*'] },
      { subjects: ['alice'], actions: ['admin'] },
      { subjects: ['alice', 'carol'], actions: ['pull'], repositories: ['docker.io/*'] },
    ],
  }, { storage: { deleteEnabled: true } });
  // pull: a rule names pull, so only alice and carol pull.
  assert.equal((await call(b, 'GET', '/v2/library/alpine/manifests/3.20', bearer(await token('carol', 'repository:library/alpine:pull')))).status, 200);
  const bobPull = await call(b, 'GET', '/v2/library/alpine/manifests/3.20', bearer(await token('bob', 'repository:library/alpine:pull')));
  assert.equal(bobPull.status, 403);
  assert.equal(JSON.parse(bobPull.body).errors[0].code, 'DENIED');
  assert.equal(bobPull.headers['www-authenticate'], undefined);

  // delete: Keycloak grants bob's delete scope; the policy does not.
  const bobDelete = await call(b, 'DELETE', `/v2/library/alpine/manifests/${alpine.manifestDigest}`, bearer(await token('bob', 'repository:library/alpine:delete')));
  assert.equal(bobDelete.status, 403);
  const aliceDelete = await call(b, 'DELETE', `/v2/library/alpine/manifests/${alpine.manifestDigest}`, bearer(await token('alice', 'repository:library/alpine:delete')));
  assert.equal(aliceDelete.status, 403, 'admin does not imply delete');
  const carolPullScope = await call(b, 'DELETE', `/v2/library/alpine/manifests/${alpine.manifestDigest}`, bearer(await token('carol', 'repository:library/alpine:pull')));
  assert.match(String(carolPullScope.headers['www-authenticate']), /scope="repository:library\/alpine:delete",error="insufficient_scope"$/);
  const carolDelete = await call(b, 'DELETE', `/v2/library/alpine/manifests/${alpine.manifestDigest}`, bearer(await token('carol', 'repository:library/alpine:delete')));
  assert.equal(carolDelete.status, 202, `carol's rule lets her purge: ${carolDelete.body}`);

  // admin API
  const anon = await call(b, 'GET', '/api/v1/upstreams');
  assert.equal(anon.status, 401);
  assert.equal(anon.headers['www-authenticate'], `Bearer realm="${kc.tokenUrl}",service="${kc.service}"`);
  assert.equal((await call(b, 'GET', '/api/v1/upstreams', bearer(await token('bob')))).status, 403);
  const admin = await call(b, 'GET', '/api/v1/upstreams', bearer(await token('alice')));
  assert.equal(admin.status, 200);
  assert.ok(Array.isArray(JSON.parse(admin.body).upstreams));
  assert.equal((await call(b, 'GET', '/api/v1/upstreams', { authorization: 'Bearer nonsense' })).status, 401);
});

test('auth.mode none: pulls open; deleteEnabled alone lets clients delete; a delete rule closes delete but not admin GETs', async () => {
  const fresh = await rig.addBerth({ upstreams: defaultTtl() });
  assert.equal((await call(fresh, 'GET', '/api/v1/upstreams')).status, 200, 'a fresh install keeps its admin API (from loopback)');
  assert.equal((await call(fresh, 'DELETE', `/v2/library/alpine/manifests/${alpine.manifestDigest}`)).status, 405, 'deletion not enabled: 405 for everyone');
  const open = await rig.addBerth({ upstreams: defaultTtl(), storage: { deleteEnabled: true } });
  assert.equal((await call(open, 'GET', '/v2/library/alpine/manifests/3.20')).status, 200);
  const openDelete = await call(open, 'DELETE', '/v2/library/alpine/manifests/3.20');
  assert.equal(openDelete.status, 202, `storage.deleteEnabled alone lets clients delete, as the README says: ${openDelete.body}`);
  const ruled = await rig.addBerth({
    upstreams: defaultTtl(),
    storage: { deleteEnabled: true },
    auth: { policy: [{ subjects: ['anonymous'], actions: ['delete'] }] },
  });
  assert.equal((await call(ruled, 'GET', '/api/v1/upstreams')).status, 200, 'a delete rule does not lock read-only admin GETs');
  assert.equal((await call(ruled, 'GET', '/v2/library/alpine/manifests/3.20')).status, 200);
  const del = await call(ruled, 'DELETE', '/v2/library/alpine/manifests/3.20');
  assert.equal(del.status, 202, `anonymous may delete by rule: ${del.body}`);
  const others = await rig.addBerth({
    upstreams: defaultTtl(),
    storage: { deleteEnabled: true },
    auth: { policy: [{ subjects: ['ci-*'], actions: ['delete'] }] },
  });
  assert.equal((await call(others, 'GET', '/v2/library/alpine/manifests/3.20')).status, 200);
  assert.equal((await call(others, 'DELETE', '/v2/library/alpine/manifests/3.20')).status, 403, 'a delete rule that does not name anonymous closes delete');
  const admins = await rig.addBerth({ upstreams: defaultTtl(), auth: { policy: [{ subjects: ['alice'], actions: ['admin'] }] } });
  assert.equal((await call(admins, 'GET', '/api/v1/upstreams')).status, 403, 'an admin rule that does not name anonymous closes the admin API');
});

test('anonymous pull only from a listed network; X-Forwarded-For believed only from a trusted proxy', async () => {
  const anonymous = { pull: true, networks: ['198.51.100.0/24', '2001:db8::/32'] };
  const behindProxy = await berthWith(tokenAuth(), { anonymous }, { http: { trustedProxies: ['127.0.0.1/32'] }, storage: { deleteEnabled: true } });
  const inside = { 'x-forwarded-for': '198.51.100.7' };
  await pullWith(behindProxy, 'library/alpine', '3.20', alpine, inside);
  assert.equal((await call(behindProxy, 'GET', '/v2/', inside)).status, 200, 'dockerd on a listed network: no challenge at all');
  assert.equal((await call(behindProxy, 'GET', '/v2/library/alpine/manifests/3.20', { 'x-forwarded-for': '2001:db8::5' })).status, 200);
  const outside = await call(behindProxy, 'GET', '/v2/library/alpine/manifests/3.20', { 'x-forwarded-for': '203.0.113.9' });
  assert.equal(outside.status, 401);
  assert.equal(outside.headers['www-authenticate'], `Bearer realm="${kc.tokenUrl}",service="${kc.service}",scope="repository:library/alpine:pull"`);
  // client, then a spoofed hop added by the client itself: the proxy appends the real peer last.
  const spoof = await call(behindProxy, 'GET', '/v2/library/alpine/manifests/3.20', { 'x-forwarded-for': '198.51.100.7, 203.0.113.9' });
  assert.equal(spoof.status, 401, 'the rightmost untrusted hop is the client');
  assert.equal((await call(behindProxy, 'DELETE', `/v2/library/alpine/manifests/${alpine.manifestDigest}`, inside)).status, 401, 'anonymous never deletes');
  assert.equal((await call(behindProxy, 'GET', '/v2/_catalog', inside)).status, 401, 'nor lists the catalog');
  assert.equal((await call(behindProxy, 'GET', '/api/v1/upstreams', inside)).status, 401, 'nor administers');
  const t = await token('alice', 'repository:org/app:pull');
  assert.equal((await call(behindProxy, 'GET', '/v2/org/app/manifests/v1', { ...inside, ...bearer(t) })).status, 200, 'a token still works inside');

  const direct = await berthWith(tokenAuth(), { anonymous });
  const forged = await call(direct, 'GET', '/v2/library/alpine/manifests/3.20', inside);
  assert.equal(forged.status, 401, 'X-Forwarded-For from a peer that is not a trusted proxy is ignored');
});

test('a registry:2 / Keycloak compose environment works unchanged (REGISTRY_AUTH_TOKEN_*, no YAML auth)', async () => {
  const proc = await startBerthProcess(
    { upstreams: defaultTtl(), log: { level: 'warn' } },
    {
      REGISTRY_AUTH_TOKEN_REALM: kc.tokenUrl,
      REGISTRY_AUTH_TOKEN_SERVICE: kc.service,
      REGISTRY_AUTH_TOKEN_ISSUER: kc.issuer,
      REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE: kc.trustBundlePath,
    },
  );
  try {
    const none = await request(`${proc.url}/v2/library/alpine/manifests/3.20`);
    await none.body.dump();
    assert.equal(none.statusCode, 401);
    assert.equal(none.headers['www-authenticate'], `Bearer realm="${kc.tokenUrl}",service="${kc.service}",scope="repository:library/alpine:pull"`);
    const t = await token('alice', 'repository:library/alpine:pull');
    const m = await fetchManifest(proc.url, 'library/alpine', '3.20', { headers: bearer(t) });
    assert.equal(m.status, 200);
    assert.equal(digestOf(m.body), alpine.manifestDigest);
    const ready = await request(`${proc.url}/readyz`);
    assert.equal(ready.statusCode, 200, await ready.body.text());
  } finally {
    await proc.stop();
  }
});
