// Pre-warm end to end, against a real upstream (Distribution) behind the counting, fault-injecting
// proxy, run once per transport: in-process (Berth alone) and BullMQ (Berth producing, a worker
// consuming, a real redis-server between them). What each test protects is in its name; the
// upstream request counts are the proxy's, never Berth's own logs.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import {
  startDistribution, startRedis, buildImage, buildIndex, pushImage, pushIndex, fetchManifest, fetchBlob, digestOf,
  rateLimitHeaders, makeTempDir, removeTempDir, type Distribution, type FaultProxy, type RedisServer, type BuiltImage, type BuiltIndex,
} from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig } from '../helpers/rig.js';
import { createLogger } from '../../src/log.js';
import type { Metrics } from '../../src/metrics/metrics.js';
import type { PrewarmListing, PrewarmView } from '../../src/queue/service.js';
import { startPrewarmWorker, type PrewarmWorker } from '../../workers/prewarm.js';

/** A schedule that will not fire during a test: runs come from boot and from POST. */
const NEVER = '0 0 1 1 *';

let upstream: Distribution;
let redis: RedisServer;

before(async () => {
  upstream = await startDistribution();
  redis = await startRedis();
});
after(async () => {
  await redis?.stop();
  await upstream?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface PrewarmRig {
  berth: BerthHandle;
  proxy: FaultProxy;
  worker: PrewarmWorker | null;
  /** Where the runs are counted: Berth itself in-process, the worker with BullMQ. */
  metrics: Metrics;
  stop(): Promise<void>;
}

type Transport = 'in-process' | 'bullmq';

/** A proxy of its own in front of the shared upstream, Berth, and with BullMQ a worker; stopped in reverse. */
async function startPrewarmRig(transport: Transport, prewarm: Record<string, unknown>, rules: Parameters<FaultProxy['setRules']>[0] = []): Promise<PrewarmRig> {
  const rig = await startRig({
    upstream,
    faults: rules,
    upstreams: { 'docker.io': { tagTtl: '1h' } },
    berthConfig: {
      prewarm: { retryDelay: '200ms', lockDuration: '2s', ...prewarm },
      ...(transport === 'bullmq' ? { redis: { url: redis.url, prefix: `it${randomBytes(4).toString('hex')}` } } : {}),
    },
  });
  const { berth, proxy } = rig;
  const worker = transport === 'bullmq' ? await startPrewarmWorker(berth.services.config, createLogger('silent')) : null;
  if (worker) rig.defer(() => worker.close());
  return {
    berth, proxy, worker,
    metrics: worker?.metrics ?? berth.services.metrics,
    stop: () => rig.stop(),
  };
}

async function api<T>(berth: BerthHandle, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const res = await request(`${berth.url}/api/v1${path}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  return { status: res.statusCode, json: (await res.body.json()) as T };
}

async function entry(berth: BerthHandle, ref: string): Promise<PrewarmView | undefined> {
  const { json } = await api<PrewarmListing>(berth, 'GET', '/prewarm');
  return json.entries.find((e) => e.ref === ref);
}

/** Poll GET /api/v1/prewarm until the entry satisfies `ok`. */
async function waitFor(berth: BerthHandle, ref: string, ok: (e: PrewarmView) => boolean, what: string, ms = 15_000): Promise<PrewarmView> {
  const deadline = Date.now() + ms;
  let last: PrewarmView | undefined;
  for (;;) {
    last = await entry(berth, ref);
    if (last && ok(last)) return last;
    if (Date.now() > deadline) throw new Error(`${ref}: timed out waiting for ${what}; last seen ${JSON.stringify(last)}`);
    await sleep(50);
  }
}

async function metricValue(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const m = metrics.registry.getSingleMetric(name);
  assert.ok(m, `metric ${name} exists`);
  const got = await m.get();
  const hit = got.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return hit?.value ?? 0;
}

function imageDigests(img: BuiltImage): string[] {
  return [img.manifestDigest, img.configDigest, ...img.layers.map((l) => l.digest)];
}

async function pullImage(berth: BerthHandle, repo: string, ref: string, img: BuiltImage): Promise<void> {
  const m = await fetchManifest(berth.url, repo, ref);
  assert.equal(m.status, 200, `manifest ${repo}:${ref}`);
  for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) {
    const b = await fetchBlob(berth.url, repo, d);
    assert.equal(b.status, 200);
    assert.equal(digestOf(b.body), d);
  }
}

async function stored(root: string, digest: string): Promise<Buffer | null> {
  const hex = digest.slice('sha256:'.length);
  return readFile(join(root, 'blobs', 'sha256', hex.slice(0, 2), hex)).catch(() => null);
}

for (const transport of ['in-process', 'bullmq'] as const) {
  describe(`pre-warm (${transport})`, () => {
    it('caches a pinned image and one platform of a pinned index before any client pull; the pull then sends nothing upstream', async () => {
      const t = `${transport}-${randomBytes(3).toString('hex')}`;
      const single: BuiltImage = buildImage({ seed: `pw-single-${t}`, layers: [3000, 40_000] });
      const multi: BuiltIndex = buildIndex({ seed: `pw-multi-${t}`, format: 'docker', layers: 2 });
      await pushImage(upstream.url, `library/single-${t}`, '1.0', single);
      await pushIndex(upstream.url, `library/multi-${t}`, '1', multi);
      const arm = multi.images.find((i) => i.platform.architecture === 'arm64');
      const amd = multi.images.find((i) => i.platform.architecture === 'amd64');
      assert.ok(arm && amd);
      const singleRef = `docker.io/library/single-${t}:1.0`;
      const multiRef = `docker.io/library/multi-${t}:1`;
      const rig = await startPrewarmRig(transport, {
        schedule: NEVER,
        images: [singleRef, { ref: multiRef, platforms: ['linux/arm64'] }],
      });
      try {
        // Nobody pulls: the entries never ran, so the boot run warms them.
        const s = await waitFor(rig.berth, singleRef, (e) => e.lastResult === 'success', 'the single image');
        const m = await waitFor(rig.berth, multiRef, (e) => e.lastResult === 'success', 'the index');
        assert.equal(s.digest, single.manifestDigest);
        assert.equal(s.pullsSpent, 1, 'one manifest GET for a single image');
        assert.equal(m.digest, multi.manifestDigest);
        assert.equal(m.pullsSpent, 2, 'the index and the one wanted child');
        assert.deepEqual(m.platforms, ['linux/arm64']);
        assert.ok(s.nextRunAt !== null && m.configured && s.configured);

        const p = rig.proxy;
        assert.equal(p.count({ method: 'GET', kind: 'manifest' }), 3);
        assert.equal(p.count({ pathIncludes: amd.manifestDigest }), 0, 'the unwanted platform is never fetched');
        for (const d of [amd.configDigest, ...amd.layers.map((l) => l.digest)]) assert.equal(p.count({ pathIncludes: d }), 0);
        for (const d of [...imageDigests(single), ...imageDigests(arm), multi.manifestDigest]) {
          const bytes = await stored(rig.berth.root, d);
          assert.ok(bytes && digestOf(bytes) === d, `${d} is in the cache`);
        }

        const pins = await rig.berth.services.mirror.meta.listPins();
        const pinOf = (ref: string) => pins.find((x) => x.pin.ref === ref)?.pin;
        assert.deepEqual(new Set(pinOf(singleRef)?.digests), new Set(imageDigests(single)));
        assert.deepEqual(new Set(pinOf(multiRef)?.digests), new Set([multi.manifestDigest, ...imageDigests(arm)]));

        assert.equal(await metricValue(rig.metrics, 'berth_prewarm_runs_total', { result: 'success' }), 2);
        assert.equal(await metricValue(rig.metrics, 'berth_prewarm_pulls_spent_total', { upstream: 'docker.io' }), 3);
        assert.ok((await metricValue(rig.metrics, 'berth_prewarm_last_success_timestamp_seconds', { image: multiRef })) > 0);

        // The client pull now: by tag (confirmed by pre-warm, within tagTtl), children, blobs.
        p.reset();
        await pullImage(rig.berth, `library/single-${t}`, '1.0', single);
        const idx = await fetchManifest(rig.berth.url, `library/multi-${t}`, '1');
        assert.equal(idx.status, 200);
        assert.ok(idx.body.equals(multi.manifest), 'the index is served byte-exact, untrimmed');
        await pullImage(rig.berth, `library/multi-${t}`, arm.manifestDigest, arm);
        assert.equal(p.count({ kind: 'blob' }), 0, 'zero upstream blob requests');
        assert.equal(p.count(), 0, 'zero upstream requests at all');
      } finally {
        await rig.stop();
      }
    });

    it('a scheduled re-run of an unchanged tag sends no GET and records unchanged; a moved tag is fetched and pinned', async () => {
      const t = `${transport}-${randomBytes(3).toString('hex')}`;
      const v1 = buildImage({ seed: `pw-move1-${t}`, layers: [2000] });
      const v2 = buildImage({ seed: `pw-move2-${t}`, layers: [2500, 9000] });
      const repo = `library/moving-${t}`;
      await pushImage(upstream.url, repo, 'stable', v1);
      const ref = `${repo}:stable`;
      const rig = await startPrewarmRig(transport, { images: [{ ref, schedule: '* * * * * *' }] });
      try {
        // Runs come every second: the first may already have been followed by an unchanged one.
        const first = await waitFor(rig.berth, ref, (e) => e.digest === v1.manifestDigest && e.lastSuccessAt !== null, 'the first run');
        assert.equal(first.pullsSpentTotal, 1);
        rig.proxy.reset();
        // A run that started after the reset: everything it sent upstream is in the counts.
        const since = Date.now();
        const again = await waitFor(rig.berth, ref, (e) => e.lastResult === 'unchanged' && Date.parse(e.lastRunAt ?? '') > since, 'a scheduled re-run');
        assert.equal(again.pullsSpent, 0);
        assert.equal(again.blobsFetched, 0);
        assert.ok(rig.proxy.count({ method: 'HEAD', kind: 'manifest' }) >= 1, 'the tag was resolved with HEAD');
        assert.equal(rig.proxy.count({ method: 'GET' }), 0, 'no GET at all while the tag is unchanged');
        assert.ok((await metricValue(rig.metrics, 'berth_prewarm_runs_total', { result: 'unchanged' })) >= 1);

        await pushImage(upstream.url, repo, 'stable', v2);
        const moved = await waitFor(rig.berth, ref, (e) => e.digest === v2.manifestDigest, 'the moved tag');
        assert.equal(moved.pullsSpentTotal, 2, 'the move cost exactly one pull');
        assert.ok(moved.lastResult === 'success' || moved.lastResult === 'unchanged');
        for (const d of imageDigests(v2)) {
          const bytes = await stored(rig.berth.root, d);
          assert.ok(bytes && digestOf(bytes) === d, `${d} of the new image is cached`);
        }
        const pin = (await rig.berth.services.mirror.meta.listPins()).find((x) => x.pin.ref === ref)?.pin;
        assert.deepEqual(new Set(pin?.digests), new Set(imageDigests(v2)), 'the pin now holds the new image only');
        rig.proxy.reset();
        await pullImage(rig.berth, repo, 'stable', v2);
        assert.equal(rig.proxy.count({ kind: 'blob' }), 0);
      } finally {
        await rig.stop();
      }
    });

    it('defers instead of spending the reserve: no GET while remaining <= reservePulls, completes after the window', async () => {
      const t = `${transport}-${randomBytes(3).toString('hex')}`;
      const img = buildImage({ seed: `pw-budget-${t}`, layers: [1500] });
      const repo = `library/budget-${t}`;
      await pushImage(upstream.url, repo, '1', img);
      const ref = `${repo}:1`;
      // The first answer reports 5 pulls left of a 2-second window (reserve: 10); once the window
      // has passed the upstream reports a full budget again.
      const rig = await startPrewarmRig(transport, { schedule: NEVER, reservePulls: 10, images: [ref] }, [
        rateLimitHeaders({ limit: 100, remaining: (n) => (n === 1 ? 5 : 95), window: 2 }, { match: { kind: 'manifest' } }),
      ]);
      try {
        const deferred = await waitFor(rig.berth, ref, (e) => e.lastResult === 'deferred', 'the deferral');
        const deferredAt = Date.now();
        assert.match(deferred.lastError ?? '', /5 pulls left \(reserve 10\)/);
        assert.ok(deferred.nextRunAt !== null && Date.parse(deferred.nextRunAt) > Date.now(), 'the next run is the window reset');
        assert.equal(rig.proxy.count({ method: 'GET' }), 0, 'no GET was sent');
        assert.equal(rig.proxy.count({ method: 'HEAD', kind: 'manifest' }), 1);
        assert.equal(await metricValue(rig.metrics, 'berth_prewarm_runs_total', { result: 'failed' }), 0, 'a deferral is not a failure');

        const done = await waitFor(rig.berth, ref, (e) => e.lastResult === 'success', 'the run after the window');
        assert.ok(Date.now() - deferredAt >= 1_000, 'it waited for the window');
        assert.equal(done.pullsSpent, 1);
        assert.equal(rig.proxy.count({ method: 'GET', kind: 'manifest' }), 1);
      } finally {
        await rig.stop();
      }
    });

    it('POST /api/v1/prewarm runs a configured ref now and a one-off unpinned; a bad ref is a 400', async () => {
      const t = `${transport}-${randomBytes(3).toString('hex')}`;
      const img = buildImage({ seed: `pw-api-${t}`, layers: [1200] });
      const once = buildImage({ seed: `pw-once-${t}`, layers: [1300] });
      await pushImage(upstream.url, `library/api-${t}`, '2', img);
      await pushImage(upstream.url, `team/once-${t}`, 'v1', once);
      const ref = `docker.io/library/api-${t}:2`;
      const rig = await startPrewarmRig(transport, { schedule: NEVER, images: [ref] });
      try {
        const first = await waitFor(rig.berth, ref, (e) => e.lastResult === 'success', 'the boot run');
        // Another spelling of the same configured ref. A request that arrives while the boot run
        // is still finishing joins it (queued: false, by design); ask again until a run is queued.
        type Posted = { jobId: string; queued: boolean; configured: boolean; ref: string };
        let post = await api<Posted>(rig.berth, 'POST', '/prewarm', { ref: `api-${t}:2` });
        for (let i = 0; i < 100 && post.status === 202 && !post.json.queued; i++) {
          await sleep(20);
          post = await api<Posted>(rig.berth, 'POST', '/prewarm', { ref: `api-${t}:2` });
        }
        assert.equal(post.status, 202);
        assert.equal(post.json.queued, true);
        assert.equal(post.json.configured, true);
        assert.equal(post.json.ref, ref);
        assert.ok(!post.json.jobId.includes(':'));
        const since = Date.parse(first.lastRunAt ?? '');
        const rerun = await waitFor(rig.berth, ref, (e) => Date.parse(e.lastRunAt ?? '') > since, 'the requested run');
        assert.equal(rerun.lastResult, 'unchanged');
        assert.equal(rerun.jobId, post.json.jobId);

        const one = await api<{ configured: boolean; jobId: string }>(rig.berth, 'POST', '/prewarm', { ref: `team/once-${t}:v1` });
        assert.equal(one.status, 202);
        assert.equal(one.json.configured, false);
        const oneOff = await waitFor(rig.berth, `team/once-${t}:v1`, (e) => e.lastResult === 'success', 'the one-off');
        assert.equal(oneOff.schedule, null);
        assert.equal(oneOff.digest, once.manifestDigest);
        const pins = await rig.berth.services.mirror.meta.listPins();
        assert.ok(!pins.some((x) => x.pin.ref.includes('once')), 'a one-off pins nothing');
        assert.ok(await stored(rig.berth.root, once.layers[0]?.digest ?? ''), 'but it is cached');

        const bad = await api<{ errors: { code: string; message: string }[] }>(rig.berth, 'POST', '/prewarm', { ref: 'quay.io/org/app:1' });
        assert.equal(bad.status, 400);
        assert.equal(bad.json.errors[0]?.code, 'NAME_INVALID');
        assert.match(bad.json.errors[0]?.message ?? '', /quay\.io.*not a configured upstream/);
        assert.equal((await api(rig.berth, 'POST', '/prewarm', {})).status, 400);

        const listing = await api<PrewarmListing>(rig.berth, 'GET', '/prewarm');
        assert.equal(listing.json.transport, transport);
        assert.equal(listing.json.workers, 1);
        assert.equal(listing.json.reservePulls, 10);
      } finally {
        await rig.stop();
      }
    });
  });
}

describe('pre-warm with Redis down', () => {
  it('the API answers 503 at once instead of hanging, and pulls keep working', async () => {
    const gone = await startRedis();
    const url = gone.url;
    await gone.stop();
    const t = randomBytes(3).toString('hex');
    const img = buildImage({ seed: `pw-down-${t}`, layers: [1000] });
    await pushImage(upstream.url, `library/down-${t}`, '1', img);
    const rig = await startRig({
      upstream,
      upstreams: { 'docker.io': {} },
      berthConfig: { redis: { url, prefix: `down${t}` }, prewarm: { images: [`library/down-${t}:1`] } },
    });
    const { berth } = rig;
    try {
      await sleep(300);
      let started = Date.now();
      const post = await api<{ errors: { code: string; message: string }[] }>(berth, 'POST', '/prewarm', { ref: `library/down-${t}:1` });
      assert.equal(post.status, 503);
      assert.equal(post.json.errors[0]?.code, 'UNAVAILABLE');
      assert.match(post.json.errors[0]?.message ?? '', /pre-warm queue unavailable/);
      assert.ok(Date.now() - started < 2_000, `POST failed fast (${Date.now() - started} ms)`);
      started = Date.now();
      assert.equal((await api(berth, 'GET', '/prewarm')).status, 503);
      assert.ok(Date.now() - started < 2_000, `GET failed fast (${Date.now() - started} ms)`);
      await pullImage(berth, `library/down-${t}`, '1', img);
    } finally {
      await rig.stop();
    }
  });
});

describe('pre-warm config changes', () => {
  it('an image dropped from the list is unpinned at the next start, and its run history forgotten', async () => {
    const t = randomBytes(3).toString('hex');
    const keep = buildImage({ seed: `pw-keep-${t}`, layers: [900] });
    const drop = buildImage({ seed: `pw-drop-${t}`, layers: [950] });
    await pushImage(upstream.url, `library/keep-${t}`, '1', keep);
    await pushImage(upstream.url, `library/drop-${t}`, '1', drop);
    const rig = await startRig({ upstream, upstreams: { 'docker.io': {} }, startBerth: false });
    const dir = await makeTempDir('pw-unpin');
    const start = (images: string[]) => rig.addBerth({ storage: { root: dir }, prewarm: { schedule: NEVER, images } });
    try {
      const first = await start([`library/keep-${t}:1`, `library/drop-${t}:1`]);
      try {
        await waitFor(first, `library/keep-${t}:1`, (e) => e.lastResult === 'success', 'keep');
        await waitFor(first, `library/drop-${t}:1`, (e) => e.lastResult === 'success', 'drop');
        assert.equal((await first.services.mirror.meta.listPins()).length, 2);
      } finally {
        await first.stop();
      }
      const second = await start([`library/keep-${t}:1`]);
      try {
        const pins = await second.services.mirror.meta.listPins();
        assert.deepEqual(pins.map((p) => p.pin.ref), [`library/keep-${t}:1`]);
        const { json } = await api<PrewarmListing>(second, 'GET', '/prewarm');
        assert.deepEqual(json.entries.map((e) => e.ref), [`library/keep-${t}:1`]);
        assert.equal(json.entries[0]?.lastResult, 'success', 'the kept entry remembers its last run across the restart');
        assert.ok(await stored(dir, drop.layers[0]?.digest ?? ''), 'unpinned content stays cached until eviction wants the room');
      } finally {
        await second.stop();
      }
    } finally {
      await rig.stop();
      await removeTempDir(dir);
    }
  });
});
