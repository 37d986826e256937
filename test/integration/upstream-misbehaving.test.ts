// The misbehaving-upstream suite: Berth runs as a child process (so its RSS can be measured) in
// front of a raw HTTP server that speaks the registry wire format and misbehaves on purpose —
// endless tag lists, manifests, tokens and error bodies, dripping bodies, lying Content-Length,
// gzip bombs, huge tokens, redirect tricks. Every pull must end in a clear OCI error (502, or 503
// with Retry-After), the process's RSS must stay within 64 MiB of its baseline, and nothing may
// be stored. Before the caps, the endless tag list alone grew RSS by ~45 MiB/s until V8 died.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { request } from 'undici';
import { startBerthProcess, type BerthProcess } from '../helpers/berth.js';
import { streamRepeated } from '../helpers/hostile-body.js';

/** An endless body is cut off here on the hostile side, so a Berth without caps fails by RSS, not by hanging. */
const ENDLESS_LIMIT = 384 * 1024 * 1024;
const RSS_BUDGET = 64 * 1024 * 1024;
const DEADLINE_MS = 4000;

let hostile: Server;
let origin = '';
let berth: BerthProcess;

/** Writes `chunk` until the peer goes away or ENDLESS_LIMIT bytes (test/helpers/hostile-body.ts). */
const stream = (res: ServerResponse, chunk: Buffer | string, everyMs = 0, limit = ENDLESS_LIMIT): void =>
  streamRepeated(res, chunk, everyMs, limit);

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const BODY_CASES = new Set(['endless-manifest', 'endless-error', 'drip', 'short-length', 'huge-length', 'gzip']);
const gzipBomb = gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20));

/** The hostile registry: the repository name picks the misbehaviour. */
function handle(req: IncomingMessage, res: ServerResponse): void {
  res.on('error', () => undefined);
  const url = new URL(req.url ?? '/', origin);
  const path = url.pathname;
  if (path === '/v2/' || path === '/v2') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  if (path.startsWith('/token')) {
    // One realm for the whole registry, as real ones have; the scope's repository picks the misbehaviour.
    const kind = /^repository:hostile\/token-([^:]+):/.exec(url.searchParams.get('scope') ?? '')?.[1];
    res.writeHead(200, { 'content-type': 'application/json' });
    if (kind === 'endless') {
      res.write('{"token":"');
      return stream(res, 'A'.repeat(64 * 1024));
    }
    if (kind === 'huge') return void res.end(JSON.stringify({ token: 'A'.repeat(8 * 1024 * 1024) }));
    if (kind === 'drip') return stream(res, ' ', 300);
    return void res.end('{"token":"ok"}');
  }
  const m = /^\/v2\/hostile\/([^/]+)\/(manifests|tags)\//.exec(path);
  const name = m?.[1] ?? '';
  if (name.startsWith('token-')) {
    if (req.headers.authorization === undefined || req.headers.authorization === 'Bearer ok') {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${origin}/token",service="hostile"` });
      return void res.end();
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    return void res.end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}');
  }
  // A HEAD gets a bare 200 without a digest, so the mirror must GET the body to learn it.
  if (req.method === 'HEAD' && BODY_CASES.has(name)) return void res.writeHead(200, { 'content-type': MANIFEST }).end();
  switch (name) {
    case 'endless-tags':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"name":"hostile/endless-tags","tags":[');
      return stream(res, '"0123456789abcdef0123456789abcdef",'.repeat(1024));
    case 'endless-manifest':
      res.writeHead(200, { 'content-type': MANIFEST });
      return stream(res, '{"schemaVersion":2,"layers":['.padEnd(64 * 1024, ' '));
    case 'endless-error':
      res.writeHead(500, { 'content-type': 'application/json' });
      return stream(res, '{"errors":[{"code":"UNKNOWN","message":"'.padEnd(64 * 1024, 'x'));
    case 'drip':
      res.writeHead(200, { 'content-type': MANIFEST });
      return stream(res, ' ', 300);
    case 'short-length':
      res.writeHead(200, { 'content-type': MANIFEST, 'content-length': '100000' });
      return void res.write('{"schemaVersion":2');
    case 'huge-length':
      res.writeHead(200, { 'content-type': MANIFEST, 'content-length': String(2 * 1024 * 1024 * 1024) });
      return stream(res, ' '.repeat(64 * 1024));
    case 'gzip':
      res.writeHead(200, { 'content-type': MANIFEST, 'content-encoding': 'gzip', 'content-length': String(gzipBomb.length) });
      return void res.end(gzipBomb);
    case 'redirect-file':
      res.writeHead(302, { location: 'file:///etc/passwd' });
      return void res.end();
    case 'redirect-loop':
      res.writeHead(302, { location: req.url ?? '/' });
      return void res.end();
    case 'stall':
      return; // headers never come
    default:
      res.writeHead(404, { 'content-type': 'application/json' });
      return void res.end('{"errors":[{"code":"NAME_UNKNOWN"}]}');
  }
}

async function rss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1];
  assert.ok(kb, 'VmRSS readable');
  return Number(kb) * 1024;
}

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) n += e.isDirectory() ? await countFiles(join(dir, e.name)) : 1;
  return n;
}

before(async () => {
  hostile = createServer(handle);
  await new Promise<void>((r) => hostile.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(hostile.address() as AddressInfo).port}`;
  berth = await startBerthProcess({
    log: { level: 'warn' },
    upstreams: [{
      name: 'docker.io', url: origin, aliases: ['index.docker.io'], maxFails: 1000, failTimeout: '9s',
      requestDeadline: `${DEADLINE_MS}ms`, headersTimeout: '30s', bodyTimeout: '30s', maxBodySize: '1MiB',
    }],
  });
});

after(async () => {
  await berth?.stop();
  hostile?.closeAllConnections();
  await new Promise<void>((r) => hostile?.close(() => r()));
});

interface Answer {
  status: number;
  retryAfter: string | undefined;
  code: string | undefined;
  message: string;
  ms: number;
}

async function pull(path: string): Promise<Answer> {
  const t0 = Date.now();
  const res = await request(`${berth.url}${path}`, { headersTimeout: 60_000, bodyTimeout: 60_000 });
  const text = await res.body.text();
  let code: string | undefined;
  let message = text.slice(0, 300);
  try {
    const first = (JSON.parse(text) as { errors?: { code?: string; message?: string }[] }).errors?.[0];
    code = first?.code;
    message = first?.message ?? message;
  } catch {
    code = undefined;
  }
  const ra = res.headers['retry-after'];
  return { status: res.statusCode, retryAfter: Array.isArray(ra) ? ra[0] : ra, code, message, ms: Date.now() - t0 };
}

// A 502 carries the OCI code UNKNOWN (the catalogue's BAD_GATEWAY); a 503 carries UNAVAILABLE.
const CASES: { path: string; status: number; code: string; retryAfter?: boolean; slow?: boolean }[] = [
  { path: '/v2/hostile/endless-tags/tags/list', status: 502, code: 'UNKNOWN' },
  { path: '/v2/hostile/endless-manifest/manifests/v1', status: 502, code: 'UNKNOWN' },
  { path: '/v2/hostile/endless-error/manifests/v1', status: 503, code: 'UNAVAILABLE' },
  { path: '/v2/hostile/drip/manifests/v1', status: 503, code: 'UNAVAILABLE', retryAfter: true, slow: true },
  { path: '/v2/hostile/stall/manifests/v1', status: 503, code: 'UNAVAILABLE', retryAfter: true, slow: true },
  { path: '/v2/hostile/short-length/manifests/v1', status: 503, code: 'UNAVAILABLE', retryAfter: true, slow: true },
  { path: '/v2/hostile/huge-length/manifests/v1', status: 502, code: 'UNKNOWN' },
  { path: '/v2/hostile/gzip/manifests/v1', status: 502, code: 'UNKNOWN' },
  { path: '/v2/hostile/token-endless/manifests/v1', status: 502, code: 'UNKNOWN' },
  { path: '/v2/hostile/token-huge/manifests/v1', status: 502, code: 'UNKNOWN' },
  { path: '/v2/hostile/token-drip/manifests/v1', status: 503, code: 'UNAVAILABLE', retryAfter: true, slow: true },
  { path: '/v2/hostile/redirect-file/manifests/v1', status: 502, code: 'UNKNOWN' },
  { path: '/v2/hostile/redirect-loop/manifests/v1', status: 502, code: 'UNKNOWN' },
];

test('every misbehaviour ends in a clear OCI error, RSS stays within 64 MiB of baseline, nothing is stored', async (t) => {
  // Baseline: a served process that has answered a few requests (JIT and pools warmed up).
  for (let i = 0; i < 5; i++) await pull('/v2/hostile/nothing/manifests/v1');
  const baseline = await rss(berth.proc.pid);
  let peak = baseline;
  const sampler = setInterval(() => {
    void rss(berth.proc.pid).then((v) => (peak = Math.max(peak, v)), () => undefined);
  }, 50);
  try {
    // Three rounds, each case three times at once: growth that is not released shows up as a trend.
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(CASES.flatMap((c) => Array.from({ length: 3 }, async () => ({ c, a: await pull(c.path) }))));
      for (const { c, a } of answers) {
        assert.equal(a.status, c.status, `${c.path}: status ${a.status} (${a.code ?? 'no OCI code'}: ${a.message})`);
        assert.equal(a.code, c.code, c.path);
        if (c.retryAfter) assert.match(a.retryAfter ?? '', /^\d+$/, `${c.path}: Retry-After`);
        // Nothing is waited on for ever: the slow ones end at the deadline (plus a token's own).
        assert.ok(a.ms < (c.slow ? 3 : 2) * DEADLINE_MS + 5000, `${c.path} took ${a.ms} ms`);
      }
    }
  } finally {
    clearInterval(sampler);
  }
  peak = Math.max(peak, await rss(berth.proc.pid));
  const growth = peak - baseline;
  t.diagnostic(`RSS baseline ${(baseline / 1048576).toFixed(1)} MiB, peak ${(peak / 1048576).toFixed(1)} MiB`);
  assert.ok(growth < RSS_BUDGET, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB (baseline ${(baseline / 1048576).toFixed(1)} MiB)`);
  assert.equal(berth.proc.hasExited(), false, 'Berth is still running');

  // Nothing bad was stored: no blob, no manifest, no repository.
  assert.equal(await countFiles(join(berth.root, 'blobs')), 0, 'no blob or manifest stored');
  const catalog = await request(`${berth.url}/v2/_catalog`);
  assert.deepEqual(((await catalog.body.json()) as { repositories: string[] }).repositories, []);
});
