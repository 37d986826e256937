// Tag freshness: within tagTtl a cached tag costs the upstream nothing; after it, one HEAD
// revalidates it and only a changed digest costs a GET; staleWhileRevalidate answers at once and
// revalidates once in the background; upstream 404s are remembered for notFoundTtl. The clock is
// Berth's injected one, moved forward by the tests; upstream requests are counted at the proxy.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildImage, pushImage, fetchManifest, fetchBlob, digestOf, latency,
  type Distribution, type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';

let rig: Rig;
let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;
let skew = 0;
const now = (): number => Date.now() + skew;
const TTL = 60_000;

before(async () => {
  rig = await startRig({
    upstreams: {
      'docker.io': { tagTtl: '60s' },
      // The same registry under a second name, with the optional windows switched on.
      'swr.local': { tagTtl: '60s', staleWhileRevalidate: '1h', notFoundTtl: '30s' },
    },
    berthOptions: { now },
  });
  ({ upstream, proxy, berth } = rig);
});

after(async () => {
  await rig?.stop();
});

beforeEach(() => {
  rig.resetProxy();
});

async function cacheCount(result: string, kind = 'manifest'): Promise<number> {
  const m = (await berth.services.metrics.registry.getSingleMetric('berth_cache_requests_total')?.get())?.values ?? [];
  return m.find((v) => v.labels['kind'] === kind && v.labels['result'] === result)?.value ?? 0;
}

async function pull(repo: string, tag: string, img: BuiltImage): Promise<void> {
  const m = await fetchManifest(berth.url, repo, tag);
  assert.equal(m.status, 200, m.body.toString());
  assert.equal(m.digest, img.manifestDigest);
  assert.equal(m.headers['warning'], undefined, 'a fresh answer carries no Warning');
  for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) {
    const b = await fetchBlob(berth.url, repo, d);
    assert.equal(digestOf(b.body), d);
  }
}

test('many pulls of a cached tag within tagTtl make zero upstream requests', async () => {
  const img = buildImage({ seed: 'fresh-steady', layers: 2 });
  await pushImage(upstream.url, 'library/steady', 'v1', img);
  await pull('library/steady', 'v1', img);
  proxy.reset();
  const hits = await cacheCount('hit');
  for (let i = 0; i < 50; i++) await pull('library/steady', 'v1', img);
  skew += TTL - 5_000;
  await pull('library/steady', 'v1', img);
  assert.equal(proxy.count(), 0, 'no upstream request of any kind');
  assert.equal(await cacheCount('hit'), hits + 51, 'each manifest answer is one hit');
});

test('after tagTtl an unchanged tag costs exactly one HEAD and no GET, however many clients ask', async () => {
  const img = buildImage({ seed: 'fresh-unchanged', layers: 1 });
  await pushImage(upstream.url, 'library/unchanged', 'v1', img);
  await pull('library/unchanged', 'v1', img);
  skew += TTL + 1_000;
  proxy.reset();
  proxy.setRules([latency(150, { match: { kind: 'manifest' } })]);
  const revalidated = await cacheCount('revalidated');
  const answers = await Promise.all(Array.from({ length: 8 }, () => fetchManifest(berth.url, 'library/unchanged', 'v1')));
  for (const a of answers) assert.equal(a.digest, img.manifestDigest);
  for (let i = 0; i < 10; i++) await pull('library/unchanged', 'v1', img);
  assert.equal(proxy.count({ kind: 'manifest', method: 'HEAD' }), 1, 'one HEAD');
  assert.equal(proxy.count({ method: 'GET' }), 0, 'no GET of any kind');
  assert.equal(await cacheCount('revalidated'), revalidated + 1);
});

test('after tagTtl a changed tag costs one HEAD and one GET by the new digest', async () => {
  const v1 = buildImage({ seed: 'fresh-changed-1', layers: 1 });
  const v2 = buildImage({ seed: 'fresh-changed-2', layers: 1 });
  await pushImage(upstream.url, 'library/changed', 'latest', v1);
  await pull('library/changed', 'latest', v1);
  await pushImage(upstream.url, 'library/changed', 'latest', v2);
  skew += TTL + 1_000;
  proxy.reset();
  const m = await fetchManifest(berth.url, 'library/changed', 'latest');
  assert.equal(m.digest, v2.manifestDigest);
  assert.equal(proxy.count({ kind: 'manifest', method: 'HEAD' }), 1);
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 1);
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET', pathIncludes: `/manifests/${v2.manifestDigest}` }), 1, 'the GET is by digest, not by tag');
  proxy.reset();
  await pull('library/changed', 'latest', v2);
  assert.equal(proxy.count({ kind: 'manifest' }), 0, 'the new digest is fresh for another tagTtl');
});

test('staleWhileRevalidate answers at once from the cache and revalidates once in the background', async () => {
  const v1 = buildImage({ seed: 'fresh-swr-1', layers: 1 });
  const v2 = buildImage({ seed: 'fresh-swr-2', layers: 1 });
  await pushImage(upstream.url, 'org/swr', 'v', v1);
  await pull('swr.local/org/swr', 'v', v1);
  await pushImage(upstream.url, 'org/swr', 'v', v2);
  skew += TTL + 1_000;
  proxy.reset();
  proxy.setRules([latency(1_500, { match: { kind: 'manifest', method: 'HEAD' } })]);
  const started = Date.now();
  const answers = await Promise.all(Array.from({ length: 6 }, () => fetchManifest(berth.url, 'swr.local/org/swr', 'v')));
  const took = Date.now() - started;
  for (const a of answers) {
    assert.equal(a.status, 200);
    assert.equal(a.digest, v1.manifestDigest, 'the cached digest, at once');
    assert.equal(a.headers['warning'], undefined, 'within the window the answer is not stale');
  }
  assert.ok(took < 1_000, `answered in ${took} ms, without waiting for the 1.5 s HEAD`);
  await proxy.waitForCount({ kind: 'manifest', method: 'GET' }, 1, 5_000);
  // The revalidation ends after the GET: verify, store, write the tag record. Wait for it to leave
  // the fills in progress (a loaded machine can take a while to fsync), bounded.
  const revalidating = () => berth.services.mirror.status().fills.some((f) => f.kind === 'tag' || f.kind === 'manifest');
  for (let i = 0; i < 250 && (revalidating() || proxy.requests.some((r) => !r.done)); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(!revalidating(), 'the background revalidation ended within 5 s');
  assert.equal(proxy.count({ kind: 'manifest', method: 'HEAD' }), 1, 'one background revalidation for six clients');
  proxy.reset();
  const after = await fetchManifest(berth.url, 'swr.local/org/swr', 'v');
  assert.equal(after.digest, v2.manifestDigest, 'the background revalidation stored the new digest');
  assert.equal(proxy.count(), 0);
});

test('an upstream 404 is remembered for notFoundTtl, and not at all by default', async () => {
  for (let i = 0; i < 3; i++) assert.equal((await fetchManifest(berth.url, 'swr.local/org/missing', 'v')).status, 404);
  assert.equal(proxy.count({ kind: 'manifest' }), 1, 'two of three 404s answered from memory');
  skew += 31_000;
  assert.equal((await fetchManifest(berth.url, 'swr.local/org/missing', 'v')).status, 404);
  assert.equal(proxy.count({ kind: 'manifest' }), 2, 'asked again once notFoundTtl passed');

  proxy.reset();
  for (let i = 0; i < 3; i++) assert.equal((await fetchManifest(berth.url, 'library/missing', 'v')).status, 404);
  assert.equal(proxy.count({ kind: 'manifest' }), 3, 'notFoundTtl 0 (the default) remembers nothing');

  // A tag that appears upstream is found as soon as the remembered 404 expires.
  const img = buildImage({ seed: 'fresh-appears', layers: 1 });
  assert.equal((await fetchManifest(berth.url, 'swr.local/org/appears', 'v')).status, 404);
  await pushImage(upstream.url, 'org/appears', 'v', img);
  assert.equal((await fetchManifest(berth.url, 'swr.local/org/appears', 'v')).status, 404, 'still remembered');
  skew += 31_000;
  assert.equal((await fetchManifest(berth.url, 'swr.local/org/appears', 'v')).digest, img.manifestDigest);
});
