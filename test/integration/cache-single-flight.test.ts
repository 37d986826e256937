// One upstream fetch per blob, manifest and tag however many clients ask, with clients that
// arrive mid-download streaming from the running fill; a failed fill fails every joined client
// and the next request starts afresh. Upstream requests are counted at the fault proxy.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { Agent, request } from 'undici';
import {
  buildImage, buildLargeBlobImage, pushImage, fetchManifest, fetchBlob, digestOf,
  cutAfter, flipByte, latency, type Distribution, type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import { startBerth, startBerthProcess, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';

const MiB = 1024 * 1024;

let rig: Rig;
let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;

before(async () => {
  rig = await startRig({ upstreams: { 'docker.io': { tagTtl: '1h' } } });
  ({ upstream, proxy, berth } = rig);
});

after(async () => {
  await rig?.stop();
});

beforeEach(() => {
  rig.resetProxy();
});

/**
 * A TCP relay that delivers the target's answers at `bytesPerSecond`: slows a loopback download
 * of 64 MiB to a second or two so that clients demonstrably join it while it runs. Records when
 * it last delivered a byte (the end of the download, as the mirror sees it).
 */
async function startThrottle(targetPort: number, bytesPerSecond: number): Promise<{ url: string; lastDataAt: () => number; stop(): Promise<void> }> {
  let lastDataAt = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const up = connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(up);
    const started = Date.now();
    let sent = 0;
    const pace = new Transform({
      transform(chunk: Buffer, _enc, cb: TransformCallback) {
        sent += chunk.length;
        this.push(chunk);
        lastDataAt = Date.now();
        const due = started + (sent / bytesPerSecond) * 1000;
        setTimeout(cb, Math.max(0, due - Date.now()));
      },
    });
    const end = (): void => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
      sockets.delete(up);
    };
    client.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
    client.pipe(up);
    up.pipe(pace).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    lastDataAt: () => lastDataAt,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Peak resident set size of a process (VmHWM), in bytes. */
async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
  assert.ok(m?.[1], 'VmHWM in /proc/<pid>/status');
  return Number(m[1]) * 1024;
}

function metricValue(text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const want = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (want) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

async function blobFileCount(root: string, digest: string): Promise<number> {
  const hex = digest.slice('sha256:'.length);
  try {
    return (await readdir(join(root, 'blobs', 'sha256', hex.slice(0, 2)))).filter((f) => f === hex).length;
  } catch {
    return 0;
  }
}

test('32 concurrent cold pulls of one 64 MiB blob: one upstream GET, every body verifies, joiners stream before the download ends, RSS stays flat', async () => {
  const img = buildLargeBlobImage({ seed: 'sf-64mib', size: 64 * MiB });
  const layer = img.layers[0];
  assert.ok(layer);
  await pushImage(upstream.url, 'library/big', 'v1', img);
  // ~45 MiB/s: the download takes about 1.5 s.
  const throttle = await startThrottle(proxy.port, 45 * MiB);
  const child = await startBerthProcess({ upstreams: [upstreamOverride(throttle.url, { tagTtl: '1h' })], log: { level: 'warn' } });
  const clients = new Agent({ connections: 64 });
  try {
    const baseline = await peakRss(child.proc.pid);
    proxy.reset();
    const t0 = Date.now();
    const pulls = Array.from({ length: 32 }, async () => {
      const res = await request(`${child.url}/v2/library/big/blobs/${layer.digest}`, { dispatcher: clients });
      assert.equal(res.statusCode, 200);
      const hash = createHash('sha256');
      let firstByteAt = 0;
      let bytes = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        if (firstByteAt === 0) firstByteAt = Date.now();
        bytes += chunk.length;
        hash.update(chunk);
      }
      return { firstByteAt, doneAt: Date.now(), bytes, digest: `sha256:${hash.digest('hex')}` };
    });
    const results = await Promise.all(pulls);
    const fillEnd = throttle.lastDataAt();

    assert.equal(proxy.count({ kind: 'blob', method: 'GET' }), 1, 'exactly one upstream blob GET');
    for (const r of results) {
      assert.equal(r.bytes, layer.size);
      assert.equal(r.digest, layer.digest, 'every body hashes to the digest');
    }
    const firstBytes = results.map((r) => r.firstByteAt - t0).sort((a, b) => a - b);
    const lastFirstByte = firstBytes[firstBytes.length - 1] ?? Infinity;
    const download = fillEnd - t0;
    assert.ok(download > 800, `the throttled download took ${download} ms`);
    assert.ok(lastFirstByte < download, `every client had its first byte (latest at ${lastFirstByte} ms) before the download ended (${download} ms)`);

    const hwm = await peakRss(child.proc.pid);
    assert.ok(hwm < 250 * MiB, `peak RSS ${(hwm / MiB).toFixed(1)} MiB stays well under 250 MiB (32 × 64 MiB were served)`);
    const metrics = await (await request(`${child.url}/metrics`)).body.text();
    assert.equal(metricValue(metrics, 'berth_cache_requests_total', { kind: 'blob', result: 'miss' }), 1);
    assert.equal(metricValue(metrics, 'berth_cache_requests_total', { kind: 'blob', result: 'coalesced' }), 31);
    console.log(`# 32 × 64 MiB: download ${download} ms, first bytes ${firstBytes[0]}–${lastFirstByte} ms, ` +
      `last client done ${Math.max(...results.map((r) => r.doneAt)) - t0} ms, ` +
      `Berth peak RSS ${(hwm / MiB).toFixed(1)} MiB (${(baseline / MiB).toFixed(1)} MiB before the pulls)`);
  } finally {
    await clients.close();
    await child.stop();
    await throttle.stop();
  }
});

test('a Range request that arrives during a fill is answered from that same download', async () => {
  const img = buildImage({ seed: 'sf-range', layers: [6 * MiB], compression: 'none' });
  const layer = img.layers[0];
  assert.ok(layer);
  await pushImage(upstream.url, 'library/ranged', 'v1', img);
  const throttle = await startThrottle(proxy.port, 6 * MiB);
  const b = await startBerth({ upstreams: [upstreamOverride(throttle.url)] });
  try {
    proxy.reset();
    const whole = fetchBlob(b.url, 'library/ranged', layer.digest);
    await proxy.waitForCount({ kind: 'blob', method: 'GET' }, 1);
    await new Promise((r) => setTimeout(r, 200));
    const start = 4 * MiB;
    const res = await request(`${b.url}/v2/library/ranged/blobs/${layer.digest}`, { headers: { range: `bytes=${start}-${start + 99_999}` } });
    const part = Buffer.from(await res.body.arrayBuffer());
    assert.equal(res.statusCode, 206);
    assert.equal(res.headers['content-range'], `bytes ${start}-${start + 99_999}/${layer.size}`);
    assert.ok(part.equals(layer.data.subarray(start, start + 100_000)), 'the range holds the right bytes');
    const w = await whole;
    assert.equal(digestOf(w.body), layer.digest);
    assert.equal(proxy.count({ kind: 'blob', method: 'GET' }), 1, 'no second upstream download for the range');
  } finally {
    await b.stop();
    await throttle.stop();
  }
});

async function outcome(url: string): Promise<'complete' | 'failed'> {
  try {
    const res = await request(url);
    if (res.statusCode !== 200) {
      await res.body.dump();
      return 'failed';
    }
    await res.body.arrayBuffer();
    return 'complete';
  } catch {
    return 'failed';
  }
}

test('a blob cut mid-download fails every joined client, leaves nothing behind, and the next request starts afresh', async () => {
  const img = buildImage({ seed: 'sf-cut', layers: [2 * MiB], compression: 'none' });
  const layer = img.layers[0];
  assert.ok(layer);
  await pushImage(upstream.url, 'library/cutjoin', 'v1', img);
  proxy.setRules([latency(300, { match: { kind: 'blob' }, times: 1 }), cutAfter(1 * MiB, { match: { kind: 'blob' }, times: 1 })]);
  const url = `${berth.url}/v2/library/cutjoin/blobs/${layer.digest}`;
  const first = outcome(url);
  await proxy.waitForCount({ kind: 'blob', method: 'GET' }, 1);
  const joiners = Array.from({ length: 7 }, () => outcome(url));
  const all = await Promise.all([first, ...joiners]);
  assert.deepEqual(all, Array(8).fill('failed'), 'no client got a complete body from the cut download');
  assert.equal(proxy.count({ kind: 'blob', method: 'GET' }), 1, 'the joiners shared the one download');
  assert.equal(await blobFileCount(berth.root, layer.digest), 0, 'nothing was committed');
  assert.deepEqual(await readdir(join(berth.root, 'spool')), [], 'no spool file left behind');
  const again = await fetchBlob(berth.url, 'library/cutjoin', layer.digest);
  assert.equal(again.status, 200);
  assert.equal(digestOf(again.body), layer.digest);
  assert.equal(proxy.count({ kind: 'blob', method: 'GET' }), 2, 'the next request started a fresh download');
});

test('a corrupt blob fails every joined client; none receives the last byte of wrong content', async () => {
  const img = buildImage({ seed: 'sf-flip', layers: [1 * MiB], compression: 'none' });
  const layer = img.layers[0];
  assert.ok(layer);
  await pushImage(upstream.url, 'library/flipjoin', 'v1', img);
  proxy.setRules([latency(200, { match: { kind: 'blob' }, times: 1 }), flipByte(10, { match: { kind: 'blob' }, times: 1 })]);
  const url = `${berth.url}/v2/library/flipjoin/blobs/${layer.digest}`;
  const all = await Promise.all(Array.from({ length: 6 }, () => outcome(url)));
  assert.deepEqual(all, Array(6).fill('failed'));
  assert.equal(proxy.count({ kind: 'blob', method: 'GET' }), 1);
  assert.equal(await blobFileCount(berth.root, layer.digest), 0);
  assert.equal((await outcome(url)), 'complete', 'the next request fetched afresh and verified');
  assert.equal(proxy.count({ kind: 'blob', method: 'GET' }), 2);
});

test('concurrent cold pulls of one tag cost one HEAD and one GET; a failed manifest fetch fails them all and is not remembered', async () => {
  const img: BuiltImage = buildImage({ seed: 'sf-tag', layers: 1 });
  await pushImage(upstream.url, 'library/tagflight', 'v1', img);
  proxy.setRules([latency(200, { match: { kind: 'manifest', method: 'GET' }, times: 1 }), flipByte(3, { match: { kind: 'manifest', method: 'GET' }, times: 1 })]);
  const bad = await Promise.all(Array.from({ length: 10 }, () => fetchManifest(berth.url, 'library/tagflight', 'v1')));
  for (const m of bad) assert.equal(m.status, 502, 'a manifest that fails verification is never served');
  assert.equal(proxy.count({ kind: 'manifest', method: 'HEAD' }), 1);
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 1);

  proxy.reset();
  proxy.setRules([latency(200, { match: { kind: 'manifest' } })]);
  const good = await Promise.all(Array.from({ length: 10 }, () => fetchManifest(berth.url, 'library/tagflight', 'v1')));
  for (const m of good) {
    assert.equal(m.status, 200);
    assert.equal(m.digest, img.manifestDigest);
  }
  assert.equal(proxy.count({ kind: 'manifest', method: 'HEAD' }), 1, 'one revalidation for ten clients');
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 1, 'one manifest GET for ten clients');
  const text = await berth.services.metrics.registry.metrics();
  assert.ok(metricValue(text, 'berth_cache_requests_total', { kind: 'manifest', result: 'coalesced' }) >= 18, 'joiners are counted as coalesced');
});
