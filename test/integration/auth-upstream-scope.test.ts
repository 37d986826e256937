// Issue 18 item 7 (client side): a client token is tied to the upstream its repository routes to.
// Two upstreams (docker.io, the default, and ghcr.io) both reach the same real Distribution, so
// `library/small` exists on both: exactly the case where a token whose access claim names only
// `library/small` used to pull the ghcr.io copy too, through `?ns=ghcr.io` (containerd, BuildKit)
// or a path prefix (`/v2/ghcr.io/library/small/...`). Tokens come from the Keycloak docker-v2
// emulator's real endpoint with the scope the 401 challenge names, as containerd asks for them;
// upstream requests are counted, so a refused request is proven to have cost the upstream nothing.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { buildImage, pushImage, digestOf, type BuiltImage } from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';
import { startKeycloakEmulator, type KeycloakEmulator } from '../helpers/keycloak.js';

let kc: KeycloakEmulator;
let rig: Rig;
let berth: BerthHandle;
let small: BuiltImage;

before(async () => {
  kc = await startKeycloakEmulator();
  small = buildImage({ seed: 'scope-small', layers: [900] });
  rig = await startRig({
    seed: async (upstream) => {
      await pushImage(upstream.url, 'library/small', 'v1', small);
    },
    upstreams: { 'docker.io': { tagTtl: '1h' }, 'ghcr.io': { tagTtl: '1h' } },
    auth: { mode: 'token', token: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: kc.trustBundlePath } },
  });
  berth = rig.berth;
});

after(async () => {
  await rig?.stop();
  await kc?.stop();
});

beforeEach(() => {
  rig.resetProxy();
  kc.reset();
});

async function get(path: string, token?: string): Promise<{ status: number; challenge: string; body: Buffer }> {
  const res = await request(`${berth.url}${path}`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  const body = Buffer.from(await res.body.arrayBuffer());
  const h = res.headers['www-authenticate'];
  return { status: res.statusCode, challenge: Array.isArray(h) ? h.join(', ') : (h ?? ''), body };
}

async function tokenFor(scope: string): Promise<string> {
  const r = await kc.fetchToken('alice', scope);
  assert.equal(r.status, 200, r.body);
  return r.token ?? '';
}

const challenge = (scope: string, error?: string): string =>
  `Bearer realm="${kc.tokenUrl}",service="${kc.service}",scope="${scope}"${error ? `,error="${error}"` : ''}`;

/** The scope="…" of a challenge, as containerd reads it to ask for a token. */
function scopeOfChallenge(header: string): string {
  const m = /scope="([^"]*)"/.exec(header);
  assert.ok(m?.[1], `a scope in ${header}`);
  return m[1];
}

test('a token for library/small pulls it from the default upstream, bare or with ?ns=docker.io, as before', async () => {
  const t = await tokenFor('repository:library/small:pull');
  for (const q of ['', '?ns=docker.io']) {
    const m = await get(`/v2/library/small/manifests/v1${q}`, t);
    assert.equal(m.status, 200, m.body.toString());
    assert.equal(digestOf(m.body), small.manifestDigest);
    const b = await get(`/v2/library/small/blobs/${small.configDigest}${q}`, t);
    assert.equal(b.status, 200);
  }
});

test('the same token does not pull library/small from ghcr.io, neither via ?ns=ghcr.io nor via a path prefix', async () => {
  const t = await tokenFor('repository:library/small:pull');
  const paths = [
    '/v2/library/small/manifests/v1?ns=ghcr.io',
    `/v2/library/small/blobs/${small.configDigest}?ns=ghcr.io`,
    '/v2/ghcr.io/library/small/manifests/v1',
    `/v2/ghcr.io/library/small/blobs/${small.layers[0]?.digest ?? ''}`,
  ];
  for (const p of paths) {
    const r = await get(p, t);
    assert.equal(r.status, 401, `${p}: ${r.body.toString()}`);
    assert.equal(r.challenge, challenge('repository:ghcr.io/library/small:pull', 'insufficient_scope'), p);
  }
  assert.equal(rig.proxy.requests.length, 0, 'no refused request reached the upstream');
});

test('the challenge for a ?ns= request names the upstream; the token it leads to pulls from that upstream only', async () => {
  // What containerd does: no token → 401 → ask the realm for the challenge's scope → retry.
  const first = await get('/v2/library/small/manifests/v1?ns=ghcr.io');
  assert.equal(first.status, 401);
  assert.equal(first.challenge, challenge('repository:ghcr.io/library/small:pull'));
  const t = await tokenFor(scopeOfChallenge(first.challenge));
  const m = await get('/v2/library/small/manifests/v1?ns=ghcr.io', t);
  assert.equal(m.status, 200, m.body.toString());
  assert.equal(digestOf(m.body), small.manifestDigest);
  const viaPath = await get('/v2/ghcr.io/library/small/manifests/v1', t);
  assert.equal(viaPath.status, 200, 'the path-prefixed name is the same repository, the same scope');
  assert.ok(rig.proxy.requests.length > 0, 'the ghcr.io pull reached the upstream');

  // ... and that token is no key to docker.io's library/small.
  rig.resetProxy();
  for (const p of ['/v2/library/small/manifests/v1', '/v2/library/small/manifests/v1?ns=docker.io']) {
    const r = await get(p, t);
    assert.equal(r.status, 401, p);
    assert.equal(r.challenge, challenge('repository:library/small:pull', 'insufficient_scope'), p);
  }
  assert.equal(rig.proxy.requests.length, 0);
});

test('a path-prefixed name keeps the scope the client computed from it (docker pull mirror/ghcr.io/library/small)', async () => {
  const first = await get('/v2/ghcr.io/library/small/manifests/v1');
  assert.equal(first.status, 401);
  assert.equal(first.challenge, challenge('repository:ghcr.io/library/small:pull'));
  const t = await tokenFor('repository:ghcr.io/library/small:pull');
  const m = await get('/v2/ghcr.io/library/small/manifests/v1', t);
  assert.equal(m.status, 200, m.body.toString());
});
