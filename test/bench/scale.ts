// `npm run bench -- --scale`: what Berth costs as its cache grows. For each size a store is
// written straight to disk (scale-store.ts: N blobs, N/10 tagged images), then `berth serve`
// starts on it and we measure, next to the same figures for a store of one image:
//   - start → /readyz answering 200, and start → the cache index built (GET /api/v1/cache says
//     `index.state: ready`; a server without that field counts as built once ready);
//   - warm manifests by tag for 2 s right after /readyz while the index still builds (req/s, p99);
//   - RSS once the index is built (and 1 s of quiet);
//   - one `POST /api/v1/cache/gc?dryRun=true`, timed by the client;
//   - warm manifests by tag (wrk, 64 connections, cycling over up to 1,000 images): req/s, p99 ms;
//   - the same load while a dry-run GC runs: p99 next to the idle p99 (GC must not stall serving).
// The upstream is a closed port: every figure here is the mirror answering from its own store.
//
//   node dist/test/bench/run.js --scale [--quick] [--sizes 10000,100000] [--seconds N] [--out FILE]
import { writeFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { freePort, makeTempDir, removeTempDir, startProcess, requireBinary, MANIFEST_ACCEPT, type ProcessHandle } from '../helpers/index.js';
import { generateStore } from './scale-store.js';
import { runWrk, currentRss, type WrkResult } from './servers.js';
import { wrkScript } from './soak.js';
import { MiB, fmt } from './stats.js';

interface ScaleOptions {
  sizes: number[];
  seconds: number;
  out: string;
}

const USAGE = `usage: npm run bench -- --scale [--quick] [--sizes N,N] [--seconds N] [--out FILE]
  --quick        sizes 10000 (default: 10000,100000), 2 s wrk runs
  --sizes LIST   blob counts to generate (a store of one image is always measured first)
  --seconds N    length of each manifest run (default 5; quick 2)
  --out FILE     report file (default dist/bench/scale.md)
`;

function parseScaleArgs(argv: string[]): ScaleOptions {
  const opts: ScaleOptions = { ...scaleDefaults(argv.includes('--quick')), out: 'dist/bench/scale.md' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--scale' || a === '--quick') continue;
    if (a === '--sizes' && v !== undefined) {
      opts.sizes = v.split(',').map(Number);
      if (opts.sizes.some((n) => !Number.isInteger(n) || n < 10)) throw new Error(`--sizes takes blob counts of at least 10\n${USAGE}`);
      i += 1;
    } else if (a === '--seconds' && v !== undefined) {
      opts.seconds = Number(v);
      if (!Number.isInteger(opts.seconds) || opts.seconds < 1) throw new Error(`--seconds takes a whole number\n${USAGE}`);
      i += 1;
    } else if (a === '--out' && v !== undefined) {
      opts.out = v;
      i += 1;
    } else {
      throw new Error(`unknown scale option ${a ?? ''}\n${USAGE}`);
    }
  }
  return opts;
}

const log = (m: string): void => { process.stderr.write(`[scale ${new Date().toISOString().slice(11, 19)}] ${m}\n`); };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface ScaleRow {
  blobs: number;
  images: number;
  generateMs: number;
  readyMs: number;
  indexMs: number;
  rssMiB: number;
  gcMs: number;
  manifest: WrkResult;
  /** Manifests by tag right after /readyz, while the index still builds (null: it was built already). */
  duringBuild: WrkResult | null;
  duringGc: WrkResult;
  gcUnderLoadMs: number;
}

async function status(url: string, init: { method?: 'GET' | 'POST'; body?: string } = {}): Promise<{ code: number; body: string }> {
  try {
    const res = await request(url, {
      method: init.method ?? 'GET',
      ...(init.body !== undefined ? { body: init.body, headers: { 'content-type': 'application/json' } } : {}),
      headersTimeout: 600_000,
      bodyTimeout: 600_000,
    });
    return { code: res.statusCode, body: await res.body.text() };
  } catch {
    return { code: 0, body: '' };
  }
}

async function until(what: string, ok: () => Promise<boolean>, budgetMs: number): Promise<void> {
  const end = Date.now() + budgetMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${budgetMs} ms`);
    await sleep(20);
  }
}

async function gcDryRun(url: string): Promise<number> {
  const t = performance.now();
  const r = await status(`${url}/api/v1/cache/gc?dryRun=true`, { method: 'POST', body: '{}' });
  if (r.code !== 200) throw new Error(`gc dry run: ${r.code} ${r.body.slice(0, 300)}`);
  return performance.now() - t;
}

async function measure(work: string, blobs: number, seconds: number): Promise<ScaleRow> {
  const root = join(work, `store-${blobs}`);
  const store = generateStore(root, { blobs });
  log(`${store.blobs} blobs, ${store.images.length} images written in ${store.ms} ms`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const configFile = join(work, `berth-${blobs}.yaml`);
  await writeFile(configFile, stringify({
    http: { host: '127.0.0.1', port },
    storage: { root, maxSize: '10GiB' },
    // Nothing listens there: every answer below comes from the store.
    upstreams: [{ name: 'docker.io', url: `http://127.0.0.1:${await freePort()}`, tagTtl: '24h' }],
    log: { level: 'warn' },
  }));
  const t0 = performance.now();
  let proc: ProcessHandle | null = null;
  try {
    proc = await startProcess(process.execPath, ['dist/src/cli.js', 'serve'], {
      env: { BERTH_CONFIG: configFile }, readyUrl: `${url}/healthz`, readyTimeoutMs: 600_000,
    });
    await until('/readyz', async () => (await status(`${url}/readyz`)).code === 200, 600_000);
    const readyMs = performance.now() - t0;
    const reqs = store.images.slice(0, 1000).map((im) => ({ method: 'GET', path: `/v2/${im.name}/manifests/${im.tag}`, accept: MANIFEST_ACCEPT }));
    const script = join(work, `manifests-${blobs}.lua`);
    await writeFile(script, wrkScript(reqs));
    const wrk = (s: number): Promise<WrkResult> => runWrk(`${url}/`, { threads: 2, connections: 64, durationS: s, headers: {}, script });
    const building = (JSON.parse((await status(`${url}/api/v1/cache`)).body || '{}') as { index?: { state?: string } }).index?.state === 'building';
    // Pulls never wait for the index: the same load while it builds (records read cold from disk).
    const duringBuild = building ? await wrk(2) : null;
    await until('index built', async () => {
      const r = await status(`${url}/api/v1/cache`);
      if (r.code !== 200) return false;
      const state = (JSON.parse(r.body) as { index?: { state?: string } }).index?.state;
      return state === undefined || state === 'ready';
    }, 600_000);
    const indexMs = performance.now() - t0;
    await sleep(1000);
    const rssMiB = (await currentRss([proc.pid])) / MiB;
    const gcMs = await gcDryRun(url);

    await wrk(1); // warm the records and the manifest cache
    const manifest = await wrk(seconds);
    // The same load with a collection running: wrk lasts at least as long as the last dry run did.
    const during = wrk(Math.max(seconds, Math.ceil(gcMs / 1000) + 1));
    await sleep(300);
    const gcUnderLoadMs = await gcDryRun(url);
    const duringGc = await during;
    for (const r of [manifest, duringGc, ...(duringBuild ? [duringBuild] : [])]) {
      if (r.non2xx + r.socketErrors > 0) throw new Error(`manifest run at ${blobs} blobs: ${r.non2xx} non-2xx, ${r.socketErrors} socket errors`);
    }
    return { blobs: store.blobs, images: store.images.length, generateMs: store.ms, readyMs, indexMs, rssMiB, gcMs, manifest, duringBuild, duringGc, gcUnderLoadMs };
  } finally {
    await proc?.stop();
    await removeTempDir(root).catch(() => undefined);
  }
}

export function renderScale(rows: ScaleRow[], seconds: number): string {
  const head = '| blobs | images | start → /readyz ms | start → index built ms | req/s, p99 ms while it builds | RSS MiB | GC dry run ms | manifest by tag req/s | p99 ms | p99 ms during GC | GC under load ms |';
  const building = (r: ScaleRow): string => (r.duringBuild ? `${fmt(r.duringBuild.requestsPerSec, 0)}, ${fmt(r.duringBuild.p99Ms)}` : '– (built)');
  const lines = rows.map((r) => `| ${r.blobs} | ${r.images} | ${fmt(r.readyMs, 0)} | ${fmt(r.indexMs, 0)} | ${building(r)} | ${fmt(r.rssMiB, 1)} | ${fmt(r.gcMs, 0)} | ${fmt(r.manifest.requestsPerSec, 0)} | ${fmt(r.manifest.p99Ms)} | ${fmt(r.duringGc.p99Ms)} | ${fmt(r.gcUnderLoadMs, 0)} |`);
  return [
    `## Scale (${new Date().toISOString()}; wrk 64 connections, ${seconds} s per manifest run)`,
    '',
    head,
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...lines,
    '',
  ].join('\n');
}

/** Measure the one-image store and then each size, one server at a time. */
export async function measureScale(sizes: readonly number[], seconds: number): Promise<ScaleRow[]> {
  requireBinary('wrk', 'wrk');
  const work = await makeTempDir('bench-scale');
  const rows: ScaleRow[] = [];
  try {
    for (const n of [10, ...sizes]) {
      const row = await measure(work, n, seconds);
      log(`${n} blobs: ready ${fmt(row.readyMs, 0)} ms, index ${fmt(row.indexMs, 0)} ms, RSS ${fmt(row.rssMiB, 1)} MiB, GC ${fmt(row.gcMs, 0)} ms, ${fmt(row.manifest.requestsPerSec, 0)} req/s p99 ${fmt(row.manifest.p99Ms)} ms (during GC ${fmt(row.duringGc.p99Ms)} ms)`);
      rows.push(row);
    }
  } finally {
    await removeTempDir(work).catch(() => undefined);
  }
  return rows;
}

/** The sizes and run length a full or quick `npm run bench` uses for its scale section. */
export function scaleDefaults(quick: boolean): { sizes: number[]; seconds: number } {
  return quick ? { sizes: [10_000], seconds: 2 } : { sizes: [10_000, 100_000], seconds: 5 };
}

/** `--scale`: the scale section alone. */
export async function runScale(argv: string[]): Promise<number> {
  const opts = parseScaleArgs(argv);
  const rows = await measureScale(opts.sizes, opts.seconds);
  const report = renderScale(rows, opts.seconds);
  await mkdir(dirname(opts.out), { recursive: true });
  await writeFile(opts.out, report);
  process.stdout.write(report);
  return 0;
}
