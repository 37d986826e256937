// Push throughput into a hosted repository (issue 14): Berth against a plain Distribution 2.8 on
// the same disk, rounds alternating between them. A section of `npm run bench` (run.ts: in the
// full run, and alone with `--push`):
//
//   node dist/test/bench/run.js --push [--rounds N] [--blob-mib N] [--layer-mib N]
//                                      [--concurrent N] [--conc-mib N] [--out FILE]
//
//  - one large layer pushed as the streaming PATCH dockerd and BuildKit send (POST, PATCH with a
//    chunked body, PUT ?digest=), MB/s;
//  - an 8-layer image (each layer the same way, then the manifest), MB/s;
//  - N concurrent pushes of distinct layers, with each server's peak RSS while they run (the
//    server freshly started, so earlier rounds' garbage is not counted).
// Everything runs on loopback, started and stopped here.
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { seededBytes, startDistribution, type Distribution } from '../helpers/index.js';
import { startBerthProcess, upstreamOverride, type BerthProcess } from '../helpers/berth.js';
import { currentRss, peakRss, processTree, resetPeakRss } from './servers.js';
import { MiB, fmt, fmtSummary, ratio, ratioValue, summarize, walkFlags, type Summary } from './stats.js';

export interface PushOptions {
  rounds: number;
  /** The single large layer. */
  blobBytes: number;
  /** Each of the 8 layers of the multi-layer image. */
  layerBytes: number;
  /** Concurrent pushes for the RSS measure, and the size of each. */
  concurrent: number;
  concBytes: number;
}

export type PushTarget = 'berth' | 'distribution';

export interface PushResults {
  /** MB/s per round. */
  big: Record<PushTarget, number[]>;
  multi: Record<PushTarget, number[]>;
  /** The concurrent pushes: aggregate MB/s, peak RSS during them and RSS just before (MiB). */
  conc: Record<PushTarget, { mbps: number; peakRssMiB: number; idleRssMiB: number }>;
}

/** The RSS target of issue 14 for N concurrent pushes. */
const RSS_TARGET_MIB = 150;
const CHUNK = 1024 * 1024;

const USAGE = `usage: npm run bench -- --push [--rounds N] [--blob-mib N] [--layer-mib N] [--concurrent N] [--conc-mib N] [--out FILE]
  --rounds N       rounds, targets alternating (default 3)
  --blob-mib N     the single large layer (default 256)
  --layer-mib N    each layer of the 8-layer image (default 16)
  --concurrent N   concurrent pushes for the peak-RSS measure (default 8)
  --conc-mib N     size of each concurrent push (default 64)
  --out FILE       report file (default dist/bench/push.md)
`;

function parseArgs(argv: string[]): PushOptions & { out: string } {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const o = { rounds: 3, blobBytes: 256 * MiB, layerBytes: 16 * MiB, concurrent: 8, concBytes: 64 * MiB, out: 'dist/bench/push.md' };
  walkFlags(argv, '--push', USAGE, (a, v) => {
    if (a === '--rounds') o.rounds = v.num();
    else if (a === '--blob-mib') o.blobBytes = v.num() * MiB;
    else if (a === '--layer-mib') o.layerBytes = v.num() * MiB;
    else if (a === '--concurrent') o.concurrent = v.num();
    else if (a === '--conc-mib') o.concBytes = v.num() * MiB;
    else if (a === '--out') o.out = v.text();
    else return false;
    return true;
  });
  return o;
}

const log = (msg: string): void => {
  process.stderr.write(`[bench push] ${msg}\n`);
};

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** POST, one streaming PATCH (chunked, no Content-Range), PUT ?digest=. */
async function pushBlobStreaming(base: string, repo: string, data: Buffer, digest: string): Promise<void> {
  try {
    await pushBlobSteps(base, repo, data, digest);
  } catch (err) {
    throw new Error(`push of ${data.length} bytes to ${base}/v2/${repo}: ${(err as Error).message}`, { cause: err });
  }
}

async function pushBlobSteps(base: string, repo: string, data: Buffer, digest: string): Promise<void> {
  const start = await request(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
  await start.body.dump();
  if (start.statusCode !== 202) throw new Error(`POST: ${start.statusCode}`);
  const step = (what: string) => (err: unknown): never => {
    throw new Error(`${what}: ${(err as Error).message}`);
  };
  const location = new URL(String(start.headers['location']), `${base}/`);
  const body = Readable.from((function* () {
    for (let i = 0; i < data.length; i += CHUNK) yield data.subarray(i, i + CHUNK);
  })());
  const patch = await request(location, { method: 'PATCH', headers: { 'content-type': 'application/octet-stream' }, body }).catch(step('PATCH'));
  await patch.body.dump();
  if (patch.statusCode !== 202) throw new Error(`PATCH: ${patch.statusCode}`);
  const next = new URL(String(patch.headers['location'] ?? location.toString()), `${base}/`);
  next.searchParams.set('digest', digest);
  const put = await request(next, { method: 'PUT', headers: { 'content-length': '0' } }).catch(step('PUT'));
  await put.body.dump();
  if (put.statusCode !== 201) throw new Error(`PUT: ${put.statusCode}`);
}

async function pushImage(base: string, repo: string, layers: { data: Buffer; digest: string }[]): Promise<void> {
  for (const l of layers) await pushBlobStreaming(base, repo, l.data, l.digest);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) } }));
  const cd = sha256(config);
  await pushBlobStreaming(base, repo, config, cd);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cd, size: config.length },
    layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: l.digest, size: l.data.length })),
  }));
  const r = await request(`${base}/v2/${repo}/manifests/latest`, { method: 'PUT', headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, body: manifest });
  await r.body.dump();
  if (r.statusCode !== 201) throw new Error(`manifest PUT: ${r.statusCode}`);
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Start a fresh Berth (one hosted namespace) and a fresh Distribution 2.8, measure, stop both. */
export async function measurePush(o: PushOptions): Promise<PushResults> {
  let dist: Distribution | null = null;
  let berth: BerthProcess | null = null;
  try {
    dist = await startDistribution();
    berth = await startBerthProcess({ upstreams: [upstreamOverride('http://127.0.0.1:9')], repositories: [{ match: 'bench/**', mode: 'hosted' }], log: { level: 'warn' } });
    const targets: { name: PushTarget; url: string; pid: number }[] = [
      { name: 'berth', url: berth.url, pid: berth.proc.pid },
      { name: 'distribution', url: dist.url, pid: dist.process.pid },
    ];
    const out: PushResults = {
      big: { berth: [], distribution: [] },
      multi: { berth: [], distribution: [] },
      conc: { berth: { mbps: NaN, peakRssMiB: NaN, idleRssMiB: NaN }, distribution: { mbps: NaN, peakRssMiB: NaN, idleRssMiB: NaN } },
    };
    // Peak RSS of each fresh server during N concurrent pushes of distinct layers (first, so
    // earlier rounds' garbage is not counted).
    const conc = Array.from({ length: o.concurrent }, (_, i) => {
      const data = seededBytes(`push-bench-conc-${i}`, o.concBytes);
      return { data, digest: sha256(data) };
    });
    for (const t of targets) {
      const pids = await processTree(t.pid);
      const idle = await currentRss(pids);
      await resetPeakRss(pids);
      const seconds = await timed(async () => {
        await Promise.all(conc.map((l, i) => pushBlobStreaming(t.url, `bench/conc${i}`, l.data, l.digest)));
      });
      out.conc[t.name] = { mbps: (o.concurrent * o.concBytes) / MiB / seconds, peakRssMiB: (await peakRss(pids)) / MiB, idleRssMiB: idle / MiB };
      log(`${t.name}: ${o.concurrent} concurrent pushes, peak RSS ${fmt(out.conc[t.name].peakRssMiB, 0)} MiB`);
    }
    conc.length = 0;
    for (let r = 0; r < o.rounds; r++) {
      // Fresh bytes each round (nothing is deduplicated); targets alternate who goes first.
      const blob = seededBytes(`push-bench-big-${r}`, o.blobBytes);
      const blobDigest = sha256(blob);
      const layers = Array.from({ length: 8 }, (_, i) => {
        const data = seededBytes(`push-bench-layer-${r}-${i}`, o.layerBytes);
        return { data, digest: sha256(data) };
      });
      const order = r % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) {
        const s = await timed(() => pushBlobStreaming(t.url, `bench/big${r}`, blob, blobDigest));
        out.big[t.name].push(o.blobBytes / MiB / s);
        const m = await timed(() => pushImage(t.url, `bench/multi${r}`, layers));
        out.multi[t.name].push((8 * o.layerBytes) / MiB / m);
        log(`round ${r + 1}: ${t.name} ${fmt(o.blobBytes / MiB / s, 0)} MB/s (one layer), ${fmt((8 * o.layerBytes) / MiB / m, 0)} MB/s (8 layers)`);
      }
    }
    return out;
  } finally {
    await berth?.stop();
    await dist?.stop();
  }
}

/** The rows (measure, Berth, Distribution, Berth ÷ Distribution) and the checks against issue 14's targets. */
export function renderPush(o: PushOptions, r: PushResults): { rows: string[][]; checks: string[][] } {
  const s = (v: number[]): Summary => summarize(v);
  const bigB = s(r.big.berth);
  const bigD = s(r.big.distribution);
  const multiB = s(r.multi.berth);
  const multiD = s(r.multi.distribution);
  const c = r.conc;
  const concLabel = `${o.concurrent} concurrent pushes of ${o.concBytes / MiB} MiB`;
  const rows = [
    [`push one ${o.blobBytes / MiB} MiB layer (streaming PATCH), MB/s`, fmtSummary(bigB, 0), fmtSummary(bigD, 0), ratio(bigB, bigD)],
    [`push an image of 8 × ${o.layerBytes / MiB} MiB layers + manifest, MB/s`, fmtSummary(multiB, 0), fmtSummary(multiD, 0), ratio(multiB, multiD)],
    [`${concLabel}: MB/s in total`, fmt(c.berth.mbps, 0), fmt(c.distribution.mbps, 0), `${fmt(c.berth.mbps / c.distribution.mbps)}×`],
    [`${concLabel}: peak RSS MiB (just before)`, `${fmt(c.berth.peakRssMiB, 0)} (${fmt(c.berth.idleRssMiB, 0)})`,
      `${fmt(c.distribution.peakRssMiB, 0)} (${fmt(c.distribution.idleRssMiB, 0)})`, `${fmt(c.berth.peakRssMiB / c.distribution.peakRssMiB)}×`],
  ];
  const verdict = (v: number, ok: boolean): string => (Number.isFinite(v) ? (ok ? 'met' : '**not met**') : 'n/a');
  const vb = ratioValue(bigB, bigD);
  const vm = ratioValue(multiB, multiD);
  const rss = c.berth.peakRssMiB;
  const checks = [
    [`push one ${o.blobBytes / MiB} MiB layer: ≥ 1.0× Distribution 2.8`, `${fmt(vb)}×`, verdict(vb, vb >= 1.0)],
    ['push an 8-layer image: ≥ 1.0× Distribution 2.8', `${fmt(vm)}×`, verdict(vm, vm >= 1.0)],
    [`peak RSS during ${concLabel} ≤ ${RSS_TARGET_MIB} MiB`, `${fmt(rss, 0)} MiB`, verdict(rss, rss <= RSS_TARGET_MIB)],
  ];
  return { rows, checks };
}

function md(rows: string[][]): string {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  return rows.map((row, ri) => {
    const line = `| ${row.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
    return ri === 0 ? `${line}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|` : line;
  }).join('\n');
}

/** The push section as Markdown: its table and its checks. */
export function pushTables(o: PushOptions, r: PushResults): { table: string; checks: string[][] } {
  const { rows, checks } = renderPush(o, r);
  return { table: md([['push into a hosted repository', 'Berth', 'Distribution 2.8', 'Berth / Distribution'], ...rows]), checks };
}

/** `npm run bench -- --push`: the push section alone. */
export async function runPushBench(argv: string[]): Promise<number> {
  const o = parseArgs(argv);
  log(`${o.rounds} rounds, ${o.blobBytes / MiB} MiB layer, 8 × ${o.layerBytes / MiB} MiB image, ${o.concurrent} × ${o.concBytes / MiB} MiB concurrent`);
  const r = await measurePush(o);
  const { table, checks } = pushTables(o, r);
  const report = [
    '## Push into a hosted repository: Berth vs Distribution 2.8 on the same disk',
    '',
    `${o.rounds} rounds, targets alternating; medians (min–max); MB/s = MiB of blob bytes per second.`,
    '',
    table,
    '',
    md([['target (issue 14)', 'measured', 'result'], ...checks]),
    '',
  ].join('\n');
  process.stdout.write(`${report}\n`);
  await mkdir(dirname(o.out), { recursive: true });
  await writeFile(o.out, report);
  return 0;
}
