// Failure isolation: after maxFails consecutive failures the upstream's breaker opens and, until
// failTimeout passes, the mirror makes zero upstream attempts (cached tags are served stale,
// uncached requests answered 503 at once); then one probe decides. maxConnections caps how many
// requests one upstream has in flight. Attempts are counted at the fault proxy.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import {
  buildImage, pushImage, fetchManifest, fetchBlob, digestOf, refuse, latency,
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
let cached: BuiltImage;

before(async () => {
  rig = await startRig({
    upstreams: {
      'docker.io': { tagTtl: '10s', maxFails: 3, failTimeout: '5m', maxConnections: 2 },
      // The same registry with the default connection cap, to show the cap is what limits.
      'wide.local': { tagTtl: '10s' },
    },
    berthOptions: { now },
  });
  ({ upstream, proxy, berth } = rig);
  cached = buildImage({ seed: 'iso-cached', layers: 1 });
  await pushImage(upstream.url, 'library/cached', 'v1', cached);
  assert.equal((await fetchManifest(berth.url, 'library/cached', 'v1')).status, 200);
});

after(async () => {
  await rig?.stop();
});

beforeEach(() => {
  rig.resetProxy();
});

async function breakerState(): Promise<{ state: string; failures: number; retryInSeconds: number }> {
  const res = await request(`${berth.url}/api/v1/upstreams`);
  const body = (await res.body.json()) as { upstreams: { name: string; breaker: { state: string; failures: number; retryInSeconds: number } }[] };
  const u = body.upstreams.find((x) => x.name === 'docker.io');
  assert.ok(u);
  return u.breaker;
}

async function upGauge(): Promise<number | undefined> {
  const m = (await berth.services.metrics.registry.getSingleMetric('berth_upstream_up')?.get())?.values ?? [];
  return m.find((v) => v.labels['upstream'] === 'docker.io')?.value;
}

test('after maxFails refused connections the breaker opens and further requests make zero upstream attempts until failTimeout', async () => {
  proxy.setRules([refuse()]);
  for (let i = 1; i <= 3; i++) {
    const r = await fetchManifest(berth.url, `library/cold${i}`, 'v1');
    assert.equal(r.status, 503);
  }
  assert.equal(proxy.count(), 3, 'one attempt per failing request until maxFails');
  assert.equal((await breakerState()).state, 'open');
  assert.equal(await upGauge(), 0);

  // Open: uncached manifests, blobs and tag lists fail fast; a cached tag past its TTL is served stale.
  skew += 11_000;
  const started = Date.now();
  for (let i = 0; i < 10; i++) {
    const r = await fetchManifest(berth.url, `library/cold${i}`, 'v1');
    assert.equal(r.status, 503);
    assert.ok(Number(r.headers['retry-after']) > 0, 'Retry-After says when the breaker lets a probe through');
  }
  assert.equal((await fetchBlob(berth.url, 'library/cold', `sha256:${'a'.repeat(64)}`)).status, 503);
  const stale = await fetchManifest(berth.url, 'library/cached', 'v1');
  assert.equal(stale.status, 200);
  assert.equal(stale.digest, cached.manifestDigest);
  assert.equal(stale.headers['warning'], '110 - "Response is Stale"');
  assert.ok(Date.now() - started < 1_000, 'no timeouts spent on a dead upstream');
  assert.equal(proxy.count(), 3, 'zero upstream attempts while the breaker is open');

  // failTimeout passes: one probe; it fails, the breaker re-opens at once.
  skew += 5 * 60_000;
  await Promise.all(Array.from({ length: 5 }, () => fetchManifest(berth.url, 'library/cold1', 'v1')));
  assert.equal(proxy.count(), 4, 'exactly one probe, however many requests arrive');
  assert.equal((await breakerState()).state, 'open');

  // Next window: the probe succeeds and the breaker closes.
  skew += 5 * 60_000;
  proxy.setRules([]);
  const ok = await fetchManifest(berth.url, 'library/cached', 'v1');
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['warning'], undefined);
  const b = await breakerState();
  assert.deepEqual([b.state, b.failures, b.retryInSeconds], ['closed', 0, 0]);
  assert.equal(await upGauge(), 1);
});

test('maxConnections caps the requests one upstream has in flight', async () => {
  // Blobs are cached by digest whatever the upstream, so each run gets layers of its own.
  const capped = buildImage({ seed: 'iso-capped', layers: 8 });
  const wide = buildImage({ seed: 'iso-wide', layers: 8 });
  await pushImage(upstream.url, 'library/many', 'capped', capped);
  await pushImage(upstream.url, 'library/many', 'wide', wide);
  proxy.setRules([latency(250, { match: { kind: 'blob' } })]);

  async function peakInFlight(repo: string, img: BuiltImage): Promise<number> {
    proxy.reset();
    let peak = 0;
    const timer = setInterval(() => {
      peak = Math.max(peak, proxy.requests.filter((r) => !r.done).length);
    }, 5);
    try {
      const bodies = await Promise.all(img.layers.map((l) => fetchBlob(berth.url, repo, l.digest)));
      bodies.forEach((b, i) => assert.equal(digestOf(b.body), img.layers[i]?.digest));
    } finally {
      clearInterval(timer);
    }
    assert.equal(proxy.count({ kind: 'blob' }), 8);
    return peak;
  }

  const withCap = await peakInFlight('library/many', capped);
  assert.ok(withCap <= 2, `at most maxConnections (2) upstream requests in flight, saw ${withCap}`);
  const withoutCap = await peakInFlight('wide.local/library/many', wide);
  assert.ok(withoutCap > 2, `the default cap lets more through (saw ${withoutCap}), so the cap above is what limited`);
});
