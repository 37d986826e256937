// Cache hits respect the repository (issue 18 item 3). The store is shared by digest; a digest
// cached through library/b is served through library/a only when library/a holds it upstream too
// (one HEAD, remembered), never because alice, who may pull only library/a, asked for it there.
// Token auth (Keycloak emulator) with a policy per user, a real Distribution behind a counting proxy.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import {
  startDistribution, startFaultProxy, removeTempDir, buildImage, pushImage, fetchManifest, fetchBlob, digestOf, refuse, latency,
  type Distribution, type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { startKeycloakEmulator, type KeycloakEmulator } from '../helpers/keycloak.js';

let kc: KeycloakEmulator;
let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;
/** Only in library/b upstream. */
let secret: BuiltImage;
/** In library/a and library/b upstream: the same manifest, config and layers. */
let common: BuiltImage;
let alice: Record<string, string>;
let bob: Record<string, string>;

async function bearer(user: string, repo: string): Promise<Record<string, string>> {
  const r = await kc.fetchToken(user, `repository:${repo}:pull`);
  assert.equal(r.status, 200, r.body);
  return { authorization: `Bearer ${r.token ?? ''}` };
}

let root = '';

function config(storage: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    storage,
    upstreams: [upstreamOverride(proxy.url, { tagTtl: '1h' })],
    auth: {
      mode: 'token',
      token: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: kc.trustBundlePath },
      policy: [
        { subjects: ['alice'], actions: ['pull'], repositories: ['docker.io/library/a'] },
        { subjects: ['bob'], actions: ['pull'], repositories: ['docker.io/library/b'] },
      ],
    },
  };
}

before(async () => {
  kc = await startKeycloakEmulator();
  upstream = await startDistribution();
  secret = buildImage({ seed: 'scope-secret', layers: 2 });
  common = buildImage({ seed: 'scope-common', layers: 1 });
  await pushImage(upstream.url, 'library/b', 'secret', secret);
  await pushImage(upstream.url, 'library/b', 'common', common);
  await pushImage(upstream.url, 'library/a', 'common', common);
  proxy = await startFaultProxy(upstream.url);
  berth = await startBerth(config(), { keepRoot: true });
  root = berth.root;
  alice = await bearer('alice', 'library/a');
  bob = await bearer('bob', 'library/b');
  // bob caches both of library/b's images: every blob and manifest is in the store.
  for (const [tag, img] of [['secret', secret], ['common', common]] as const) {
    const m = await fetchManifest(berth.url, 'library/b', tag, { headers: bob });
    assert.equal(m.status, 200, m.body.toString());
    for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) {
      const b = await fetchBlob(berth.url, 'library/b', d, { headers: bob });
      assert.equal(b.status, 200);
    }
  }
});

after(async () => {
  await berth?.stop();
  if (root) await removeTempDir(root);
  await proxy?.stop();
  await upstream?.stop();
  await kc?.stop();
});

beforeEach(() => {
  proxy.setRules([]);
  proxy.reset();
});

test("the policy keeps alice out of library/b itself", async () => {
  const m = await fetchManifest(berth.url, 'library/b', 'secret', { headers: alice });
  assert.ok(m.status === 401 || m.status === 403, `status ${m.status}`);
  assert.equal(proxy.count(), 0);
});

test("alice cannot read library/b's cached blobs or manifests by asking for their digests under library/a", async () => {
  const layer = secret.layers[0]?.digest;
  assert.ok(layer);
  const blob = await fetchBlob(berth.url, 'library/a', layer, { headers: alice });
  assert.equal(blob.status, 404, 'not served from the cache');
  assert.match(blob.body.toString(), /BLOB_UNKNOWN/);
  assert.notEqual(digestOf(blob.body), layer);
  assert.equal(proxy.count({ method: 'HEAD', kind: 'blob', pathIncludes: `/v2/library/a/blobs/${layer}` }), 1, 'asked library/a upstream once');
  assert.equal(proxy.count({ method: 'GET' }), 0);

  const head = await request(`${berth.url}/v2/library/a/blobs/${secret.configDigest}`, { method: 'HEAD', headers: alice });
  await head.body.dump();
  assert.equal(head.statusCode, 404, 'a HEAD does not reveal it either');

  const m = await fetchManifest(berth.url, 'library/a', secret.manifestDigest, { headers: alice });
  assert.equal(m.status, 404);
  assert.match(m.body.toString(), /MANIFEST_UNKNOWN/);
  assert.deepEqual(await berth.services.mirror.meta.linkedManifests('docker.io', 'library/a'), [], 'no link written into library/a');

  // The upstream's "no" is remembered: asking again costs the upstream nothing.
  proxy.reset();
  assert.equal((await fetchBlob(berth.url, 'library/a', layer, { headers: alice })).status, 404);
  assert.equal((await fetchManifest(berth.url, 'library/a', secret.manifestDigest, { headers: alice })).status, 404);
  assert.equal(proxy.count(), 0);
});

test('with the upstream unreachable, a digest library/a does not hold is not served from library/b', async () => {
  const layer = secret.layers[1]?.digest;
  assert.ok(layer);
  proxy.setRules([refuse()]);
  const blob = await fetchBlob(berth.url, 'library/a', layer, { headers: alice });
  assert.equal(blob.status, 503, blob.body.toString());
  assert.match(blob.body.toString(), /UNAVAILABLE/);
  // bob's own content still comes from the cache while the upstream is down.
  const own = await fetchBlob(berth.url, 'library/b', layer, { headers: bob });
  assert.equal(own.status, 200);
  assert.equal(digestOf(own.body), layer);
});

test('a layer both repositories really hold is served through library/a after one upstream HEAD, then from the cache', async () => {
  const layer = common.layers[0]?.digest;
  assert.ok(layer);
  const first = await fetchBlob(berth.url, 'library/a', layer, { headers: alice });
  assert.equal(first.status, 200);
  assert.equal(digestOf(first.body), layer);
  assert.equal(proxy.count({ method: 'HEAD', kind: 'blob', pathIncludes: `/v2/library/a/blobs/${layer}` }), 1, 'one HEAD confirmed it');
  assert.equal(proxy.count({ method: 'GET' }), 0, 'the bytes came from the cache');

  proxy.reset();
  const again = await fetchBlob(berth.url, 'library/a', layer, { headers: alice });
  assert.equal(again.status, 200);
  assert.equal(proxy.count(), 0, 'the confirmation is remembered');

  // The manifest by digest: one HEAD, then a link into library/a, and what it names is library/a's too.
  const m = await fetchManifest(berth.url, 'library/a', common.manifestDigest, { headers: alice });
  assert.equal(m.status, 200);
  assert.equal(m.digest, common.manifestDigest);
  assert.equal(proxy.count({ method: 'HEAD', kind: 'manifest' }), 1);
  // The link is written in the background, off the request path.
  const deadline = Date.now() + 5000;
  let links: string[] = [];
  while (links.length === 0 && Date.now() < deadline) {
    links = await berth.services.mirror.meta.linkedManifests('docker.io', 'library/a');
    if (links.length === 0) await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual(links, [common.manifestDigest]);
  proxy.reset();
  const config = await fetchBlob(berth.url, 'library/a', common.configDigest, { headers: alice });
  assert.equal(config.status, 200);
  assert.equal(digestOf(config.body), common.configDigest);
  assert.equal(proxy.count(), 0, 'the config its manifest names needs no confirmation');
});

test("alice cannot join a download of library/b's blob that bob's pull started", async () => {
  const img = buildImage({ seed: 'scope-inflight', layers: 1 });
  await pushImage(upstream.url, 'library/b', 'inflight', img);
  const layer = img.layers[0]?.digest;
  assert.ok(layer);
  proxy.setRules([latency(400, { match: { kind: 'blob', method: 'GET' } })]);
  const bobs = fetchBlob(berth.url, 'library/b', layer, { headers: bob });
  await proxy.waitForCount({ kind: 'blob', method: 'GET' }, 1);
  const alices = await fetchBlob(berth.url, 'library/a', layer, { headers: alice });
  assert.equal(alices.status, 404, 'not handed the download under way');
  const own = await bobs;
  assert.equal(own.status, 200);
  assert.equal(digestOf(own.body), layer);
  assert.equal(proxy.count({ kind: 'blob', method: 'GET' }), 1, "bob's download went on, once");
});

test('after a restart, with the upstream down, each repository is served what its link records hold and nothing else', async () => {
  await berth.stop();
  berth = await startBerth(config({ root }));
  proxy.setRules([refuse()]);
  const secretLayer = secret.layers[0]?.digest;
  const commonLayer = common.layers[0]?.digest;
  assert.ok(secretLayer && commonLayer);
  const own = await fetchBlob(berth.url, 'library/b', secretLayer, { headers: bob });
  assert.equal(own.status, 200, "library/b's manifests name it");
  assert.equal(digestOf(own.body), secretLayer);
  const shared = await fetchBlob(berth.url, 'library/a', commonLayer, { headers: alice });
  assert.equal(shared.status, 200, 'library/a linked the common manifest earlier');
  assert.equal(digestOf(shared.body), commonLayer);
  const other = await fetchBlob(berth.url, 'library/a', secretLayer, { headers: alice });
  assert.equal(other.status, 503, 'not held, and the upstream cannot confirm it');
  assert.equal(proxy.count({ pathIncludes: '/v2/library/b/' }), 0, "library/b's own content needed no upstream");
});
