// Connection exhaustion (issue 18.2): raw-socket clients that stall while sending are cut by the
// header / request / idle timeouts, connections beyond http.maxConnections are closed on arrival
// (counted and logged once, not once per socket), the mirror keeps answering through a flood,
// and a slow reader of a multi-MiB blob keeps its download for longer than any of the timeouts.
// The upstream is a real Distribution; the flood is plain TCP sockets.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client, request } from 'undici';
import { stringify } from 'yaml';
import {
  startDistribution, buildImage, pushImage, fetchManifest, fetchBlob, startProcess, freePort, makeTempDir, removeTempDir,
  type Distribution, type BuiltImage,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { connectionCap, fdSoftLimit } from '../../src/http/limits.js';

const CAP = 40;
const TIMEOUTS = { headersTimeout: '1s', requestTimeout: '2s', idleTimeout: '2s', keepAliveTimeout: '1s' };
const BLOB_SIZE = 12 * 1024 * 1024;

let upstream: Distribution;
let berth: BerthHandle;
let image: BuiltImage;

before(async () => {
  upstream = await startDistribution();
  image = buildImage({ seed: 'limits-big', layers: [BLOB_SIZE], compression: 'none' });
  await pushImage(upstream.url, 'library/big', '1', image);
  berth = await startBerth({ upstreams: [upstreamOverride(upstream.url)], http: { maxConnections: CAP, ...TIMEOUTS } });
  // Warm the cache, so the slow reader below reads from the store.
  assert.equal((await fetchManifest(berth.url, 'library/big', '1')).status, 200);
  const layer = image.layers[0];
  assert.ok(layer);
  assert.equal((await fetchBlob(berth.url, 'library/big', layer.digest)).status, 200);
});

after(async () => {
  await berth?.stop();
  await upstream?.stop();
});

interface Stalled {
  socket: Socket;
  /** Resolves with how long after opening the server closed it. */
  closed: Promise<number>;
}

/** Open a socket, send `text`, then never send anything again. */
function stall(port: number, text: string): Promise<Stalled> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = connect(port, '127.0.0.1');
    // Infinity when the server has not closed it within 15 s (no timeout would ever cut it).
    const closed = new Promise<number>((done) => {
      const give = setTimeout(() => {
        done(Infinity);
        socket.destroy();
      }, 15_000);
      socket.once('close', () => {
        clearTimeout(give);
        done(Date.now() - started);
      });
    });
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
    socket.once('connect', () => {
      socket.write(text);
      resolve({ socket, closed });
    });
    socket.once('error', reject);
  });
}

const PARTIAL_HEADERS = 'GET /v2/ HTTP/1.1\r\nHost: mirror\r\nX-Slow: ';
const ONE_BODY_BYTE = 'POST /api/v1/prewarm HTTP/1.1\r\nHost: mirror\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{';

async function scrape(name: string): Promise<number> {
  const res = await request(`${berth.url}/metrics`);
  const text = await res.body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

test('a client that sends headers and one body byte, or half its headers, and stalls is cut', async () => {
  const body = await stall(berth.port, ONE_BODY_BYTE);
  const headers = await stall(berth.port, PARTIAL_HEADERS);
  const idle = await stall(berth.port, '');
  const [b, h, i] = await Promise.all([body.closed, headers.closed, idle.closed]);
  // requestTimeout / idleTimeout are 2 s, headersTimeout 1 s; Node checks them about every 250 ms.
  assert.ok(b < 4_000, `the stalled body was cut after ${b} ms`);
  assert.ok(h < 3_000, `the stalled headers were cut after ${h} ms`);
  assert.ok(i < 4_000, `the silent connection was cut after ${i} ms`);
});

test('a flood of stalled connections past http.maxConnections is dropped, counted and logged once, and the mirror keeps answering', async () => {
  const before = await scrape('berth_http_connections_dropped_total');
  assert.equal(before, 0);
  await sleep(1_500); // the keep-alive connection of the scrape above has gone
  const flood: Stalled[] = [];
  for (let i = 0; i < 300; i++) flood.push(await stall(berth.port, i % 2 === 0 ? ONE_BODY_BYTE : PARTIAL_HEADERS));
  const started = Date.now();
  // The mirror answers again as soon as the timeouts have cut the stalled sockets it accepted,
  // while the flooding client still holds every one of its sockets open.
  let healthy = false;
  let v2 = false;
  while (Date.now() - started < 8_000 && !(healthy && v2)) {
    healthy ||= await request(`${berth.url}/healthz`, { reset: true }).then(async (r) => (await r.body.text(), r.statusCode === 200), () => false);
    v2 ||= await request(`${berth.url}/v2/`, { reset: true }).then(async (r) => (await r.body.text(), r.statusCode === 200), () => false);
    if (!(healthy && v2)) await sleep(200);
  }
  assert.ok(healthy && v2, `/healthz ${healthy}, /v2/ ${v2} within ${Date.now() - started} ms of the flood`);
  const times = await Promise.all(flood.map((f) => f.closed));
  assert.ok(Math.max(...times) < 6_000, `every flooding socket was closed by the server (slowest ${Math.max(...times)} ms)`);
  const dropped = await scrape('berth_http_connections_dropped_total');
  assert.ok(dropped >= 300 - CAP - 5, `connections past the cap are counted (${dropped})`);
  const lines = berth.logs().filter((l) => l.includes('connection cap reached'));
  assert.ok(lines.length >= 1 && lines.length <= 2, `the cap is logged, rate-limited (${lines.length} lines)`);
  assert.match(lines[0] ?? '', /"maxConnections":40/);
  assert.ok(Number.isFinite(await scrape('berth_http_connections')), 'open connections are exported');
});

test('a slow reader of a multi-MiB blob keeps reading for longer than every timeout', async () => {
  const layer = image.layers[0];
  assert.ok(layer);
  const res = await request(`${berth.url}/v2/library/big/blobs/${layer.digest}`, { highWaterMark: 64 * 1024 });
  assert.equal(res.statusCode, 200);
  const hash = createHash('sha256');
  let bytes = 0;
  const started = Date.now();
  // About 2 MiB/s: 12 MiB takes ~6 s, three times the 2 s idle and request timeouts.
  for await (const chunk of res.body) {
    const buf = chunk as Buffer;
    hash.update(buf);
    bytes += buf.length;
    const due = (bytes / (2 * 1024 * 1024)) * 1000;
    const ahead = due - (Date.now() - started);
    if (ahead > 0) await sleep(ahead);
  }
  const took = Date.now() - started;
  assert.equal(bytes, layer.size);
  assert.equal(`sha256:${hash.digest('hex')}`, layer.digest);
  assert.ok(took > 4_000, `the read took ${took} ms, longer than the timeouts`);
});

test('the default cap is derived from the file-descriptor soft limit, leaving a reserve', () => {
  assert.equal(fdSoftLimit('Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 4096                 files\n'), 1024);
  assert.equal(fdSoftLimit('Max open files            unlimited            unlimited            files\n'), Number.MAX_SAFE_INTEGER);
  assert.equal(connectionCap(null, 1024), 1024 - 205);
  assert.equal(connectionCap(null, 256), 256 - 128);
  assert.equal(connectionCap(500, 256), 500, 'a configured cap wins');
  const live = fdSoftLimit();
  if (live !== null) assert.ok(connectionCap(null) < live, 'below this process\'s own limit');
});

test('under a real fd limit (ulimit -n 256) the derived cap keeps descriptors for the process: a cached blob is served through a flood', async () => {
  const layer = image.layers[0];
  assert.ok(layer);
  const dir = await makeTempDir('berth-fdlimit');
  const port = await freePort();
  const cfg = { upstreams: [upstreamOverride(upstream.url)], http: { host: '127.0.0.1', port, idleTimeout: '60s', keepAliveTimeout: '60s' }, storage: { root: join(dir, 'data') }, log: { level: 'warn' } };
  await writeFile(join(dir, 'berth.yaml'), stringify(cfg));
  const proc = await startProcess('/bin/sh', ['-c', 'ulimit -n 256 && exec "$0" dist/src/cli.js serve', process.execPath], {
    env: { BERTH_CONFIG: join(dir, 'berth.yaml') },
    readyUrl: `http://127.0.0.1:${port}/healthz`,
    readyTimeoutMs: 15_000,
  });
  const flood: Stalled[] = [];
  const client = new Client(`http://127.0.0.1:${port}`, { keepAliveTimeout: 60_000 });
  try {
    const url = `http://127.0.0.1:${port}`;
    assert.equal((await fetchManifest(url, 'library/big', '1')).status, 200);
    assert.equal((await fetchBlob(url, 'library/big', layer.digest)).status, 200, 'cached once');
    // An established keep-alive connection, as a CI runner mid-pull holds one.
    const warm = await client.request({ path: '/v2/', method: 'GET' });
    await warm.body.dump();
    for (let i = 0; i < 400; i++) flood.push(await stall(port, PARTIAL_HEADERS));
    // Every blob read opens a file: without a cap below the limit this is EMFILE.
    const res = await client.request({ path: `/v2/library/big/blobs/${layer.digest}`, method: 'GET' }).catch((err: unknown) => {
      throw new Error(`blob read failed: ${String(err)}\n${proc.output().slice(-3000)}`);
    });
    const hash = createHash('sha256');
    for await (const chunk of res.body) hash.update(chunk as Buffer);
    assert.equal(res.statusCode, 200);
    assert.equal(`sha256:${hash.digest('hex')}`, layer.digest);
    assert.match(proc.output(), /connection cap reached/);
    assert.match(proc.output(), /"maxConnections":128/, 'the cap derived from a soft limit of 256: 256 less a reserve of 128');
  } finally {
    for (const f of flood) f.socket.destroy();
    await client.close();
    await proc.stop();
    await removeTempDir(dir);
  }
});
