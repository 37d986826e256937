// A failing token endpoint is an upstream failure like any other: a real Distribution requiring
// bearer tokens from the Keycloak docker-v2 emulator; once the mirror's token has expired and the
// tag's tagTtl has passed, an emulator answering 503 or resetting connections leaves the cached
// tag served stale, and an uncached one answered 503 — never a 500.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildImage, pushImage, fetchManifest, fetchBlob, digestOf,
  type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import { startKeycloakEmulator, type KeycloakEmulator } from '../helpers/keycloak.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';

const STALE = '110 - "Response is Stale"';
const TTL = 60_000;
/** Longer than the mirror keeps a token (expires_in 60 s, renewed 10 s early) and than tagTtl. */
const STEP = 2 * TTL;

let kc: KeycloakEmulator;
let rig: Rig;
let proxy: FaultProxy;
let berth: BerthHandle;
let img: BuiltImage;
let skew = 0;
const now = (): number => Date.now() + skew;

before(async () => {
  kc = await startKeycloakEmulator({ users: { mirror: 'mirror-password' }, lifespanSeconds: 60 });
  img = buildImage({ seed: 'token-endpoint', layers: 1 });
  rig = await startRig({
    distribution: { auth: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: kc.trustBundlePath } },
    // The emulator's realm is another origin: credentials go there only because it is listed.
    seed: async (registry) => {
      const pushToken = kc.mintToken({ subject: 'mirror', scope: 'repository:library/guarded:pull,push' });
      await pushImage(registry.url, 'library/guarded', 'v1', img, { headers: { authorization: `Bearer ${pushToken}` } });
    },
    upstreams: { 'docker.io': { tagTtl: '60s', username: 'mirror', password: 'mirror-password', maxFails: 1000, realmHosts: [new URL(kc.tokenUrl).host] } },
    berthOptions: { now },
  });
  ({ proxy, berth } = rig);
});

after(async () => {
  await rig?.stop();
  await kc?.stop();
});

beforeEach(() => {
  kc.setFailure(null);
  kc.reset();
  proxy.reset();
});

async function staleCount(): Promise<number> {
  const m = (await berth.services.metrics.registry.getSingleMetric('berth_cache_requests_total')?.get())?.values ?? [];
  return m.find((v) => v.labels['kind'] === 'manifest' && v.labels['result'] === 'stale')?.value ?? 0;
}

test('pulls through an upstream that requires Keycloak-issued tokens', async () => {
  const m = await fetchManifest(berth.url, 'library/guarded', 'v1');
  assert.equal(m.status, 200, m.body.toString());
  assert.equal(m.digest, img.manifestDigest);
  for (const l of img.layers) assert.equal(digestOf((await fetchBlob(berth.url, 'library/guarded', l.digest)).body), l.digest);
  assert.ok(kc.count({ endpoint: 'token', status: 200 }) >= 1, 'the mirror fetched a token');
});

for (const failure of [503, 'reset'] as const) {
  test(`serves a stale tag when the token endpoint ${failure === 'reset' ? 'resets the connection' : `answers ${failure}`}`, async () => {
    kc.setFailure(failure, 'token');
    skew += STEP;
    const before = await staleCount();
    const m = await fetchManifest(berth.url, 'library/guarded', 'v1');
    assert.equal(m.status, 200, m.body.toString());
    assert.equal(m.digest, img.manifestDigest);
    assert.equal(m.headers['warning'], STALE);
    assert.equal(await staleCount(), before + 1);
    assert.ok(kc.count({ endpoint: 'token' }) >= 1, 'the mirror asked the token endpoint for a fresh token');
    assert.equal(kc.count({ endpoint: 'token', status: 200 }), 0, 'and got none');

    const uncached = await fetchManifest(berth.url, 'library/other', 'v1');
    assert.equal(uncached.status, 503, 'an uncached tag behind a dead token endpoint is unavailable, not a 500');
  });
}

test('takes a fresh token and revalidates once the token endpoint recovers', async () => {
  skew += STEP;
  const m = await fetchManifest(berth.url, 'library/guarded', 'v1');
  assert.equal(m.status, 200);
  assert.equal(m.headers['warning'], undefined);
  assert.equal(kc.count({ endpoint: 'token', status: 200 }), 1);
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 0, 'unchanged: revalidated by HEAD alone');
});
