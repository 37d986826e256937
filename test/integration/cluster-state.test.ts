// What replicas share through Redis besides blob fills: tag freshness (one revalidation HEAD per
// tag across the cluster), an upstream's 429 (every replica holds back its GETs), and removals
// (a purge on one replica is seen by all within a second); what happens when Redis goes away
// and comes back (cached pulls never fail, nothing in the store is corrupt); and `berth cluster
// rebuild` seeding a flushed Redis from the bucket. Three Berth child processes on one bucket of a
// real Ceph RGW and one real Redis; upstream requests counted at the fault proxy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { buildImage, dockerHubRateLimit, fetchBlob, fetchManifest, makeTempDir, pushImage, removeTempDir, startProcess, type BuiltImage } from '../helpers/index.js';
import { metric, sharedRgw, startCluster, type ClusterRig, type Replica } from './cluster-support.js';

const TAG_TTL_MS = 8_000;
let cluster: ClusterRig;
let replicas: Replica[];

before(async () => {
  cluster = await startCluster({
    replicas: 3,
    storage: sharedRgw,
    upstream: { tagTtl: `${TAG_TTL_MS / 1000}s` },
    // The same registry under a second name whose tags stay fresh for the whole run.
    extraUpstreams: [{ name: 'ghcr.io', tagTtl: '1h' }],
  });
  replicas = cluster.replicas;
});

after(async () => {
  await cluster?.stop();
});

function manifestRequests(method: 'GET' | 'HEAD'): number {
  return cluster.rig.proxy.count({ kind: 'manifest', method });
}

async function push(repo: string, tag: string, seed: string): Promise<BuiltImage> {
  const img = buildImage({ seed, layers: 1 });
  await pushImage(cluster.rig.upstream.url, repo, tag, img);
  return img;
}

test('3 replicas, 300 round-robin GETs of a tag after tagTtl: one upstream HEAD, no manifest GET', async () => {
  const img = await push('library/shared-tag', 'v1', 'cluster-tag');
  // Cached through the first replica; the others find the record in the shared store.
  for (const r of replicas) {
    const m = await fetchManifest(r.url, 'library/shared-tag', 'v1');
    assert.equal(m.status, 200);
    assert.equal(m.digest, img.manifestDigest);
  }
  assert.equal(manifestRequests('GET'), 1, 'one manifest GET to cache it');
  await sleep(TAG_TTL_MS + 300);
  cluster.rig.resetProxy();
  const started = Date.now();
  for (let wave = 0; wave < 10; wave++) {
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => fetchManifest((replicas[i % 3] as Replica).url, 'library/shared-tag', 'v1')));
    for (const a of answers) {
      assert.equal(a.status, 200);
      assert.equal(a.digest, img.manifestDigest);
    }
  }
  const took = Date.now() - started;
  assert.ok(took < TAG_TTL_MS, `the 300 GETs ran within one tagTtl (${took} ms), so one check is all they need`);
  assert.equal(manifestRequests('HEAD'), 1, 'one revalidation HEAD across the three replicas');
  assert.equal(manifestRequests('GET'), 0, 'no manifest GET');
  console.log(`# 300 round-robin tag GETs over 3 replicas after tagTtl: ${took} ms, ${manifestRequests('HEAD')} upstream HEAD`);
});

test('a 429 on replica A: replica B sends no upstream manifest GET until Retry-After has passed; cached pulls go on on both', async () => {
  const [a, b] = replicas as [Replica, Replica];
  const cached = await push('org/limited', 'cached', 'cluster-429-cached');
  await push('org/limited', 'one', 'cluster-429-one');
  const two = await push('org/limited', 'two', 'cluster-429-two');
  const warm = await fetchManifest(a.url, 'ghcr.io/org/limited', 'cached');
  assert.equal(warm.status, 200);
  const layer = cached.layers[0];
  assert.ok(layer);
  assert.equal((await fetchBlob(a.url, 'ghcr.io/org/limited', layer.digest)).status, 200);
  cluster.rig.resetProxy();
  const retryAfter = 3;
  // Docker Hub's answer, once, to whichever replica asks first.
  cluster.rig.proxy.setRules([dockerHubRateLimit({ retryAfter }, { match: { kind: 'manifest' }, times: 1 })]);
  try {
    const limitedAt = Date.now();
    const onA = await fetchManifest(a.url, 'ghcr.io/org/limited', 'one');
    assert.equal(onA.status, 429, 'A passes the upstream 429 on');
    await sleep(400);
    const before = cluster.rig.proxy.count({ kind: 'manifest' });
    const onB = await fetchManifest(b.url, 'ghcr.io/org/limited', 'two');
    assert.equal(onB.status, 429, 'B answers 429 at once for an uncached tag');
    assert.ok(Number(onB.headers['retry-after']) >= 1, 'with a Retry-After');
    assert.equal(cluster.rig.proxy.count({ kind: 'manifest' }), before, 'B sent nothing upstream while the budget is spent');
    assert.equal(await metric(b.url, 'berth_upstream_ratelimit_remaining', { upstream: 'ghcr.io' }), 0, 'B\'s gauge shows the spent budget A saw');
    assert.equal(await metric(b.url, 'berth_upstream_ratelimit_limit', { upstream: 'ghcr.io' }), 100);
    for (const r of [a, b]) {
      const m = await fetchManifest(r.url, 'ghcr.io/org/limited', 'cached');
      assert.equal(m.status, 200, 'a cached tag is served');
      const blob = await fetchBlob(r.url, 'ghcr.io/org/limited', layer.digest);
      assert.equal(blob.status, 200, 'a cached blob is served');
    }
    assert.equal(cluster.rig.proxy.count({ kind: 'manifest', method: 'GET' }), 0, 'no manifest GET upstream from any replica during the block');
    await sleep(Math.max(0, limitedAt + retryAfter * 1000 + 300 - Date.now()));
    const later = await fetchManifest(b.url, 'ghcr.io/org/limited', 'two');
    assert.equal(later.status, 200, 'after Retry-After, B fetches again');
    assert.equal(later.digest, two.manifestDigest);
  } finally {
    cluster.rig.proxy.setRules([]);
  }
});

test('a purge on replica A: within 1 s replica B serves nothing stale', async () => {
  const [a, b] = replicas as [Replica, Replica];
  const first = await push('org/purged', 'v1', 'cluster-purge-1');
  for (const r of [a, b]) {
    const m = await fetchManifest(r.url, 'ghcr.io/org/purged', 'v1');
    assert.equal(m.digest, first.manifestDigest);
  }
  // The tag moves upstream; within tagTtl (1 h) both replicas would go on serving the first.
  const second = await push('org/purged', 'v1', 'cluster-purge-2');
  assert.equal((await fetchManifest(b.url, 'ghcr.io/org/purged', 'v1')).digest, first.manifestDigest, 'B serves its cached tag');
  const purge = await request(`${a.url}/api/v1/cache/ghcr.io/org/purged:v1`, { method: 'DELETE', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(purge.statusCode, 200, await purge.body.text());
  await sleep(1_000);
  for (const r of [b, a]) {
    const m = await fetchManifest(r.url, 'ghcr.io/org/purged', 'v1');
    assert.equal(m.status, 200);
    assert.equal(m.digest, second.manifestDigest, `replica ${r.id} serves the tag as upstream has it now`);
  }
});

/** `berth cluster rebuild` with the replicas' config; its JSON report. */
async function rebuild(dryRun: boolean): Promise<Record<string, unknown>> {
  const dir = await makeTempDir('cluster-rebuild');
  try {
    const file = join(dir, 'berth.yaml');
    await writeFile(file, stringify(cluster.config));
    const { stdout } = await promisify(execFile)(process.execPath, ['dist/src/cli.js', 'cluster', 'rebuild', '--json', ...(dryRun ? ['--dry-run'] : []), '--config', file]);
    return JSON.parse(stdout) as Record<string, unknown>;
  } finally {
    await removeTempDir(dir);
  }
}

test('Redis flushed, then `berth cluster rebuild`: the tag check one replica made is seeded from the bucket, and another replica answers the tag with no upstream HEAD', async () => {
  const [a, b] = replicas as [Replica, Replica];
  const seeded = await push('library/rebuilt', 'v1', 'cluster-rebuild-1');
  const control = await push('library/rebuilt', 'v2', 'cluster-rebuild-2');
  // Both tags cached, and remembered by both A and B.
  for (const r of [a, b]) {
    for (const [tag, img] of [['v1', seeded], ['v2', control]] as const) assert.equal((await fetchManifest(r.url, 'library/rebuilt', tag)).digest, img.manifestDigest);
  }
  await sleep(TAG_TTL_MS + 300);
  // A revalidates both (its HEADs); the checks go to the tag records in the bucket and to Redis.
  cluster.rig.resetProxy();
  for (const tag of ['v1', 'v2']) assert.equal((await fetchManifest(a.url, 'library/rebuilt', tag)).status, 200);
  assert.equal(manifestRequests('HEAD'), 2);
  const redis = new Redis(cluster.redis.url);
  try {
    assert.equal(await redis.flushall(), 'OK');
    // The control: without the rebuild, B's own copy of v2 is past tagTtl and nothing tells it A checked.
    cluster.rig.resetProxy();
    assert.equal((await fetchManifest(b.url, 'library/rebuilt', 'v2')).digest, control.manifestDigest);
    assert.equal(manifestRequests('HEAD'), 1, 'with Redis flushed, B revalidates the tag A checked');
    const dry = await rebuild(true);
    assert.equal(dry['dryRun'], true);
    assert.ok((dry['tagChecksSeeded'] as number) >= 1, `the dry run counts v1 (${JSON.stringify(dry)})`);
    assert.deepEqual(await redis.keys('*:cluster:tag:*rebuilt:v1'), [], 'the dry run wrote nothing');
    const report = await rebuild(false);
    assert.equal(report['dryRun'], false);
    assert.ok((report['tagChecksSeeded'] as number) >= 1, `v1 is seeded (${JSON.stringify(report)})`);
    assert.ok((report['tagChecksNewerInRedis'] as number) >= 1, 'v2, which B checked after the flush, is left as Redis has it');
    assert.ok((report['tagRecordsExpired'] as number) >= 1, 'tags last checked before tagTtl (by the earlier tests) are not seeded');
    assert.equal((await redis.keys('*:cluster:tag:*rebuilt:v1')).length, 1, 'the check of v1 is back in Redis');
    cluster.rig.resetProxy();
    for (const r of [b, a, replicas[2] as Replica]) {
      const m = await fetchManifest(r.url, 'library/rebuilt', 'v1');
      assert.equal(m.status, 200);
      assert.equal(m.digest, seeded.manifestDigest);
    }
    assert.equal(manifestRequests('HEAD'), 0, 'no upstream HEAD: B adopted the seeded check');
    assert.equal(manifestRequests('GET'), 0);
    console.log(`# cluster rebuild: ${report['tagRecords']} tag records read, ${report['tagChecksSeeded']} seeded in ${report['ms']} ms`);
  } finally {
    redis.disconnect();
  }
});

test('a Redis that hangs (SIGSTOP): a cold pull costs at most the command deadlines, never a stall', async () => {
  const [a] = replicas as [Replica];
  const img = await push('org/hung', 'v1', 'cluster-redis-hung');
  const layer = img.layers[0];
  assert.ok(layer);
  cluster.redis.process.kill('SIGSTOP');
  try {
    const t = Date.now();
    const m = await fetchManifest(a.url, 'ghcr.io/org/hung', 'v1');
    const blob = await fetchBlob(a.url, 'ghcr.io/org/hung', layer.digest);
    const took = Date.now() - t;
    assert.equal(m.status, 200);
    assert.equal(m.digest, img.manifestDigest);
    assert.equal(blob.status, 200);
    assert.equal(`sha256:${createHash('sha256').update(blob.body).digest('hex')}`, layer.digest);
    // Each Redis command gives up after 500 ms; a cold tag and a cold blob ask it a handful of times.
    assert.ok(took < 4_000, `a cold manifest and blob took ${took} ms with Redis hung`);
    console.log(`# Redis hung: cold manifest + blob in ${took} ms`);
  } finally {
    cluster.redis.process.kill('SIGCONT');
  }
});

/** Every blob in the shared store hashes to its name. */
async function storeIsSound(): Promise<number> {
  const blobs = await cluster.store.blobs();
  for (const b of blobs) assert.equal(b.hashesTo, b.digest, `stored blob ${b.digest} hashes to its name`);
  return blobs.length;
}

async function readyz(url: string): Promise<{ status: string; degraded: string[] }> {
  return (await (await request(`${url}/readyz`)).body.json()) as { status: string; degraded: string[] };
}

test('Redis stopped mid-run and restarted: no cached pull fails, cold pulls go on per replica, /readyz says degraded, nothing corrupt', async () => {
  const [a, b] = replicas as [Replica, Replica];
  const cached = await push('org/outage', 'v1', 'cluster-redis-cached');
  const cold = await push('org/outage', 'cold', 'cluster-redis-cold');
  const layer = cached.layers[0];
  const coldLayer = cold.layers[0];
  assert.ok(layer && coldLayer);
  for (const r of [a, b]) {
    assert.equal((await fetchManifest(r.url, 'ghcr.io/org/outage', 'v1')).status, 200);
    assert.equal((await fetchBlob(r.url, 'ghcr.io/org/outage', layer.digest)).status, 200);
  }
  const port = cluster.redis.port;
  // Pulls run all through the outage; none of cached content may fail.
  let stop = false;
  let pulls = 0;
  const failures: string[] = [];
  const loop = (async () => {
    while (!stop) {
      for (const r of [a, b]) {
        const m = await fetchManifest(r.url, 'ghcr.io/org/outage', 'v1').catch((e: Error) => ({ status: 0, digest: e.message }));
        const blob = await fetchBlob(r.url, 'ghcr.io/org/outage', layer.digest).catch(() => ({ status: 0, body: Buffer.alloc(0) }));
        pulls++;
        if (m.status !== 200 || m.digest !== cached.manifestDigest) failures.push(`manifest on ${r.id}: ${m.status}`);
        if (blob.status !== 200 || createHash('sha256').update(blob.body).digest('hex') !== layer.digest.slice(7)) failures.push(`blob on ${r.id}: ${blob.status}`);
      }
    }
  })();
  await sleep(300);
  cluster.redis.process.kill('SIGKILL');
  await cluster.redis.process.exited;
  await sleep(500);
  const down = await readyz(a.url);
  assert.equal(down.status, 'degraded');
  assert.ok(down.degraded.includes('redis') && down.degraded.includes('cluster'), `readyz names redis and replica coordination as degraded (${down.degraded.join(', ')})`);
  // A cold blob while Redis is down: each replica fetches on its own, and both answers verify.
  const coldPulls = await Promise.all([a, b].map((r) => fetchBlob(r.url, 'ghcr.io/org/outage', coldLayer.digest)));
  for (const p of coldPulls) {
    assert.equal(p.status, 200);
    assert.equal(`sha256:${createHash('sha256').update(p.body).digest('hex')}`, coldLayer.digest);
  }
  // Redis back on the same port, empty (no persistence): coordination resumes.
  const again = await startProcess('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'], {
    readyOutput: /Ready to accept connections/, readyTimeoutMs: 10_000, unref: true,
  });
  try {
    // Ready again once each replica's own coordination connection is back (it reconnects with back-off).
    for (const r of [a, b]) {
      const until = Date.now() + 10_000;
      while ((await readyz(r.url)).status !== 'ready' && Date.now() < until) await sleep(100);
      assert.equal((await readyz(r.url)).status, 'ready', `replica ${r.id} ready again once Redis is back`);
    }
    await sleep(300);
    stop = true;
    await loop;
    assert.deepEqual(failures, [], `no cached pull failed (${pulls} rounds)`);
    assert.ok(pulls > 5, `pulls ran through the outage (${pulls})`);
    // Coordination is back: a new cold blob asked on both replicas at once is downloaded once.
    const fresh = await push('org/outage', 'after', 'cluster-redis-after');
    const freshLayer = fresh.layers[0];
    assert.ok(freshLayer);
    cluster.rig.resetProxy();
    const both = await Promise.all([a, b].map((r) => fetchBlob(r.url, 'ghcr.io/org/outage', freshLayer.digest)));
    for (const p of both) assert.equal(p.status, 200);
    assert.equal(cluster.rig.proxy.count({ kind: 'blob', method: 'GET' }), 1, 'one upstream GET once Redis is back');
    const n = await storeIsSound();
    console.log(`# Redis outage: ${pulls} rounds of cached pulls on 2 replicas, 0 failed; ${n} stored blobs verified`);
  } finally {
    stop = true;
    await loop;
    await again.stop();
  }
});
