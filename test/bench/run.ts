// `npm run bench`: Berth against Distribution's pull-through proxy and nginx (the machine's limit)
// on loopback, in one run, targets alternating round by round. See docs/benchmarks.md.
//
//   node dist/test/bench/run.js [--quick] [--rounds N] [--blob-mib N] [--link-mib-s N]
//                               [--only cold,blob,manifest,scale,push] [--no-direct] [--out FILE]
//   node dist/test/bench/run.js --soak [--seconds N] [--connections N] [--cold N]   (soak.ts)
//   node dist/test/bench/run.js --s3 [--rounds N] [--blob-mib N] [--seconds N]     (s3.ts)
//   node dist/test/bench/run.js --scale [--quick] [--sizes N,N] [--seconds N]       (scale.ts)
//   node dist/test/bench/run.js --push [--rounds N] [--blob-mib N] [--concurrent N] (push.ts)
//   node dist/test/bench/run.js --replicas [--only cold,startup] [--objects N]      (replicas.ts)
//   node dist/test/bench/run.js --ui [--quick] [--repos N] [--tags N] [--samples N]  (ui-scale.ts)
//
// Everything it starts (Distribution ×2, Berth, nginx, load generators) runs on free loopback
// ports as child processes and is stopped at the end, on an error, and on Ctrl-C.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, totalmem, release, loadavg } from 'node:os';
import { dirname } from 'node:path';
import { request } from 'undici';
import {
  buildImage, buildLargeBlobImage, pushImage, startDistribution, makeTempDir, removeTempDir,
  MANIFEST_ACCEPT, requireBinary, type BuiltImage, type Distribution,
} from '../helpers/index.js';
import { startBerthProcess, upstreamOverride, type BerthProcess } from '../helpers/berth.js';
import {
  startNginx, startCeilingServer, publish, startCountingProxy, runClient, runWrk, processTree, resetPeakRss, peakRss, currentRss, cpuSeconds,
  type CountingProxy, type Nginx, type WrkResult,
} from './servers.js';
import type { OnceResult, PullResult, ThroughputResult } from './load-client.js';
import { runSoak } from './soak.js';
import { runS3Bench } from './s3.js';
import { measureScale, renderScale, runScale, scaleDefaults } from './scale.js';
import { measurePush, pushTables, runPushBench, type PushOptions, type PushResults } from './push.js';
import { runReplicaBench } from './replicas.js';
import { measureUiScale, renderUiScale, runUiScale, uiScaleDefaults, UI_SCALE_MARKERS } from './ui-scale.js';
import { MiB, summarize, fmt, fmtSummary, ratio, ratioValue, type Summary } from './stats.js';

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  quick: boolean;
  rounds: number;
  /** Size of the big single-layer blob. */
  blobBytes: number;
  /** Layer sizes of the multi-layer image. */
  multiLayers: number[];
  concurrencies: number[];
  blobSeconds: number;
  blobWarmupMs: number;
  manifestSeconds: number;
  manifestConnections: number;
  coldClients: number;
  pullParallel: number;
  out: string;
  /** Also measure Distribution serving its own storage (no proxy). */
  direct: boolean;
  /** The paced upstream link for the second cold fan-out (bytes/s). */
  linkBytesPerSecond: number;
  /** Sections to run (default all): cold, blob, manifest, scale, push, ui. */
  only: Set<string>;
}

const USAGE = `usage: npm run bench [-- options]
  --quick             fewer rounds, shorter runs, a 64 MiB blob (under two minutes)
  --rounds N          rounds per measurement (default 5; quick 2)
  --blob-mib N        size of the big blob (default 256; quick 64)
  --link-mib-s N      the paced upstream link for the cold fan-out (default 25 MiB/s)
  --only LIST         sections to run: cold,blob,manifest,scale,push,ui (default all)
  --no-direct         leave out Distribution serving its own storage
  --out FILE          where the report goes (default docs/benchmarks.md; quick: dist/bench/)
  --soak              the soak instead: mixed warm load, then a cold fan-out (see test/bench/soak.ts)
  --s3                Berth vs Distribution, both on S3 (a Ceph RGW), warm blob GB/s (see test/bench/s3.ts)
  --scale             the scale section alone: start-up, RSS, GC and manifests at 10k/100k blobs (scale.ts)
  --push              only the push section: pushes into a hosted repository vs Distribution 2.8 (see test/bench/push.ts)
  --replicas          2 Berth replicas vs 2 Distribution proxies on one RGW bucket: cold upstream bytes; start-up with 100,000 objects (test/bench/replicas.ts)
  --ui                only the UI section: catalog/repository pages over 10k repositories, 100k tags (ui-scale.ts)
`;

function parseArgs(argv: string[]): Options {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const known = new Set(['--quick', '--no-direct', '--rounds', '--blob-mib', '--link-mib-s', '--only', '--out']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (!known.has(a)) throw new Error(`unknown option ${a}\n${USAGE}`);
    if (!['--quick', '--no-direct'].includes(a)) i += 1;
  }
  const flag = (name: string): boolean => argv.includes(name);
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const quick = flag('--quick');
  const blobMiB = Number(value('--blob-mib') ?? (quick ? 64 : 256));
  const rounds = Number(value('--rounds') ?? (quick ? 2 : 5));
  const linkMiB = Number(value('--link-mib-s') ?? 25);
  if (!Number.isInteger(blobMiB) || blobMiB < 1 || !Number.isInteger(rounds) || rounds < 1 || !(linkMiB > 0)) {
    throw new Error('--blob-mib, --rounds and --link-mib-s take positive numbers');
  }
  const layerMiB = quick ? [2, 3, 4, 5, 6, 6, 3, 3] : [4, 6, 8, 10, 12, 10, 8, 6]; // 32 / 64 MiB
  return {
    quick,
    rounds,
    blobBytes: blobMiB * MiB,
    multiLayers: layerMiB.map((m) => m * MiB),
    concurrencies: [1, 8, 32],
    blobSeconds: quick ? 1 : 5,
    blobWarmupMs: quick ? 200 : 700,
    manifestSeconds: quick ? 2 : 5,
    manifestConnections: 64,
    coldClients: 32,
    pullParallel: 3,
    out: value('--out') ?? (quick ? 'dist/bench/benchmarks-quick.md' : 'docs/benchmarks.md'),
    direct: !quick && !flag('--no-direct'),
    linkBytesPerSecond: linkMiB * MiB,
    only: new Set((value('--only') ?? 'cold,blob,manifest,scale,push,ui').split(',')),
  };
}

// ---------------------------------------------------------------------------------------------
// Targets

type TargetName = 'berth' | 'distribution-proxy' | 'nginx' | 'distribution' | 'ceiling';

const LABEL: Record<TargetName, string> = {
  berth: 'Berth',
  'distribution-proxy': 'Distribution proxy',
  nginx: 'nginx (limit)',
  distribution: 'Distribution (direct)',
  ceiling: 'node:http (ceiling)',
};

interface Target {
  name: TargetName;
  port: number;
  pid: number;
}

const REPO_BIG = 'bench/big';
const REPO_MULTI = 'bench/multi';
const REPO_SMALL = 'bench/small';
const TAG = 'latest';

/** Rotates the order each round so no target always goes first (or right after another). */
function rotate<T>(items: readonly T[], round: number): T[] {
  const k = round % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

const log = (msg: string): void => {
  process.stderr.write(`[bench] ${msg}\n`);
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until a counter stops moving (a proxy finishing a background download); bounded. */
async function settle(read: () => number, quietMs = 500, maxMs = 60_000): Promise<number> {
  const deadline = Date.now() + maxMs;
  let last = read();
  let since = Date.now();
  while (Date.now() < deadline) {
    await sleep(100);
    const v = read();
    if (v !== last) {
      last = v;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) break;
  }
  return last;
}

/** GETs a URL and checks the body's sha256 (outside any timed section). */
async function verifyDigest(url: string, digest: string, headers: Record<string, string> = {}): Promise<void> {
  const res = await request(url, { headers });
  if (res.statusCode !== 200) {
    const text = await res.body.text().catch(() => '');
    throw new Error(`GET ${url}: HTTP ${res.statusCode} ${text.slice(0, 300)}`);
  }
  const h = createHash('sha256');
  for await (const chunk of res.body) h.update(chunk as Buffer);
  const got = `sha256:${h.digest('hex')}`;
  if (got !== digest) throw new Error(`GET ${url}: body hashes to ${got}, expected ${digest}`);
}

// ---------------------------------------------------------------------------------------------
// Results

interface BlobCell { gbps: number[]; rssMiB: number[]; rssGrowthMiB: number[]; cpuPerGB: number[]; errors: number }
interface ManifestCell {
  rps: number[];
  p50: number[];
  p99: number[];
  /** Server CPU time (user + system, whole process tree) per request served, µs. */
  cpuUs: number[];
  errors: number;
}
interface ColdCell {
  pullS: number[];
  pullUpstreamX: number[];
  fanS: number[];
  fanUpstreamX: number[];
  fanVsDirect: number[];
  /** The same fan-out with the upstream behind a paced link (Berth only). */
  linkFanS: number[];
  linkFanUpstreamX: number[];
  linkFanVsDirect: number[];
}

interface Results {
  blob: Partial<Record<TargetName, Record<number, BlobCell>>>;
  manifest: Record<'tag' | 'digest', Partial<Record<TargetName, ManifestCell>>>;
  cold: Partial<Record<TargetName, ColdCell>>;
  direct: { viaCounterS: number[]; rawS: number[]; linkS: number[] };
  idleRssMiB: Partial<Record<TargetName, number>>;
  /** Berth's RSS right after start, before any fill (the rest of its idle RSS is fill history). */
  berthFreshRssMiB: number;
  /** RSS two seconds after the last manifest run. */
  finalRssMiB: Partial<Record<TargetName, number>>;
  /** Pushes into a hosted repository (push.ts), with their options; null when not run. */
  push: { options: PushOptions; results: PushResults } | null;
}

function blobCell(r: Results, t: TargetName, c: number): BlobCell {
  const byC = (r.blob[t] ??= {});
  return (byC[c] ??= { gbps: [], rssMiB: [], rssGrowthMiB: [], cpuPerGB: [], errors: 0 });
}

function manifestCell(r: Results, kind: 'tag' | 'digest', t: TargetName): ManifestCell {
  return (r.manifest[kind][t] ??= { rps: [], p50: [], p99: [], cpuUs: [], errors: 0 });
}

function coldCell(r: Results, t: TargetName): ColdCell {
  return (r.cold[t] ??= { pullS: [], pullUpstreamX: [], fanS: [], fanUpstreamX: [], fanVsDirect: [], linkFanS: [], linkFanUpstreamX: [], linkFanVsDirect: [] });
}

// ---------------------------------------------------------------------------------------------
// The run

interface Env {
  opts: Options;
  upstream: Distribution;
  big: BuiltImage;
  multi: BuiltImage;
  small: BuiltImage;
  bigDigest: string;
  bigSize: number;
  multiSize: number;
  /** Counting proxies: Berth's upstream, the Distribution proxy's upstream, direct reference pulls. */
  countBerth: CountingProxy;
  countDist: CountingProxy;
  countDirect: CountingProxy;
  /** The upstream behind a paced link (`--link-mib-s`), for Berth and the direct reference. */
  countLink: CountingProxy;
  nginx: Nginx;
}

async function startBerth(env: Env, upstream: CountingProxy = env.countBerth): Promise<BerthProcess> {
  return startBerthProcess({
    upstreams: [upstreamOverride(upstream.url, { tagTtl: '24h' })],
    // One access-log line per request is Berth's default; the Distribution instances run with
    // their access logs off, so Berth logs warnings only here as well.
    log: { level: 'warn' },
  });
}

async function startDistProxy(env: Env): Promise<Distribution> {
  return startDistribution({ proxyRemoteUrl: env.countDist.url });
}

async function coldRound(env: Env, results: Results, round: number): Promise<void> {
  const { opts } = env;
  const bigPath = `/v2/${REPO_BIG}/blobs/${env.bigDigest}`;
  // The reference: one client downloading the blob straight from the upstream, through the same
  // counting proxy the mirrors fetch through, and without it.
  const via = await runClient<OnceResult>({ mode: 'once', port: env.countDirect.port, path: bigPath, connections: 1, expectLength: env.bigSize, timeoutMs: 120_000 }, 150_000);
  const raw = await runClient<OnceResult>({ mode: 'once', port: env.upstream.port, path: bigPath, connections: 1, expectLength: env.bigSize, timeoutMs: 120_000 }, 150_000);
  if (via.errors.length || raw.errors.length) throw new Error(`direct download failed: ${[...via.errors, ...raw.errors].join('; ')}`);
  results.direct.viaCounterS.push(via.totalMs / 1000);
  results.direct.rawS.push(raw.totalMs / 1000);
  log(`round ${round + 1}: direct download ${fmt(via.totalMs / 1000)} s via the counter, ${fmt(raw.totalMs / 1000)} s raw`);

  for (const name of rotate<TargetName>(['berth', 'distribution-proxy'], round)) {
    const counter = name === 'berth' ? env.countBerth : env.countDist;
    const server = name === 'berth' ? await startBerth(env) : await startDistProxy(env);
    try {
      const cell = coldCell(results, name);
      counter.reset();
      const pull = await runClient<PullResult>({
        mode: 'pull', port: server.port, repository: REPO_MULTI, tag: TAG, accept: MANIFEST_ACCEPT, parallel: opts.pullParallel, timeoutMs: 120_000,
      }, 150_000);
      if (pull.errors.length) throw new Error(`${name}: cold pull failed: ${pull.errors.join('; ')}`);
      const pullBytes = await settle(() => counter.bytesFromTarget());
      cell.pullS.push(pull.totalMs / 1000);
      cell.pullUpstreamX.push(pullBytes / env.multiSize);

      counter.reset();
      const fan = await runClient<OnceResult>({
        mode: 'once', port: server.port, path: bigPath, connections: opts.coldClients, expectLength: env.bigSize, timeoutMs: 300_000,
      }, 330_000);
      if (fan.errors.length) throw new Error(`${name}: ${opts.coldClients} cold clients failed: ${fan.errors.join('; ')}`);
      const fanBytes = await settle(() => counter.bytesFromTarget());
      cell.fanS.push(fan.totalMs / 1000);
      cell.fanUpstreamX.push(fanBytes / env.bigSize);
      cell.fanVsDirect.push(fan.totalMs / via.totalMs);
      log(`round ${round + 1}: ${name} cold pull ${fmt(pull.totalMs / 1000)} s (${fmt(pullBytes / env.multiSize)}× upstream), ` +
        `${opts.coldClients} cold clients ${fmt(fan.totalMs / 1000)} s (${fmt(fanBytes / env.bigSize)}× upstream)`);
    } finally {
      await server.stop();
    }
  }

  // The same fan-out when the upstream is slower than the mirror's clients (an internet link):
  // Berth against one direct download over the same paced link. (Distribution's proxy is left
  // out: it fetches the blob once per client, so over a shared link it needs that many times
  // longer — its byte count from the unpaced run above tells the same story in seconds.)
  const link = env.countLink;
  link.reset();
  const linkDirect = await runClient<OnceResult>({ mode: 'once', port: link.port, path: bigPath, connections: 1, expectLength: env.bigSize, timeoutMs: 300_000 }, 330_000);
  if (linkDirect.errors.length) throw new Error(`direct download over the paced link failed: ${linkDirect.errors.join('; ')}`);
  results.direct.linkS.push(linkDirect.totalMs / 1000);
  const berth = await startBerth(env, link);
  try {
    link.reset();
    const fan = await runClient<OnceResult>({
      mode: 'once', port: berth.port, path: bigPath, connections: opts.coldClients, expectLength: env.bigSize, timeoutMs: 300_000,
    }, 330_000);
    if (fan.errors.length) throw new Error(`berth: ${opts.coldClients} cold clients over the paced link failed: ${fan.errors.join('; ')}`);
    const fanBytes = await settle(() => link.bytesFromTarget());
    const cell = coldCell(results, 'berth');
    cell.linkFanS.push(fan.totalMs / 1000);
    cell.linkFanUpstreamX.push(fanBytes / env.bigSize);
    cell.linkFanVsDirect.push(fan.totalMs / linkDirect.totalMs);
    log(`round ${round + 1}: paced link: direct ${fmt(linkDirect.totalMs / 1000)} s, berth ${opts.coldClients} cold clients ${fmt(fan.totalMs / 1000)} s ` +
      `(${fmt(fanBytes / env.bigSize)}× upstream)`);
  } finally {
    await berth.stop();
  }
}

async function blobRun(env: Env, results: Results, t: Target, c: number, round: number): Promise<void> {
  const { opts } = env;
  const pids = await processTree(t.pid);
  await resetPeakRss(pids);
  const rss0 = (await currentRss(pids)) / MiB;
  const cpu0 = await cpuSeconds(pids);
  const r = await runClient<ThroughputResult>({
    mode: 'throughput', port: t.port, path: `/v2/${REPO_BIG}/blobs/${env.bigDigest}`, connections: c,
    durationMs: opts.blobSeconds * 1000, warmupMs: opts.blobWarmupMs, expectLength: env.bigSize,
  }, (opts.blobSeconds + 60) * 1000);
  const after = await processTree(t.pid);
  const rss = (await peakRss(after)) / MiB;
  const cpu = await cpuSeconds(after) - cpu0;
  const cell = blobCell(results, t.name, c);
  cell.errors += r.errors.length;
  if (r.errors.length) log(`  ${t.name} c=${c}: ${r.errors.length} errors: ${r.errors.slice(0, 3).join('; ')}`);
  const gbps = r.bytes / r.seconds / 1e9;
  cell.gbps.push(gbps);
  cell.rssMiB.push(rss);
  cell.rssGrowthMiB.push(rss - rss0);
  if (r.bytes > 0) cell.cpuPerGB.push(cpu / (r.bytes / 1e9));
  log(`round ${round + 1}: blob c=${c} ${t.name} ${fmt(gbps)} GB/s, peak RSS ${fmt(rss, 0)} MiB, ${fmt(cpu / (r.bytes / 1e9))} CPU s/GB`);
}

async function manifestRun(env: Env, results: Results, t: Target, kind: 'tag' | 'digest', round: number): Promise<void> {
  const { opts } = env;
  const ref = kind === 'tag' ? TAG : env.small.manifestDigest;
  // CPU per request holds up on a loaded machine, where req/s does not.
  const pids = await processTree(t.pid);
  const cpu0 = await cpuSeconds(pids);
  const w: WrkResult = await runWrk(`http://127.0.0.1:${t.port}/v2/${REPO_SMALL}/manifests/${ref}`, {
    threads: 2, connections: opts.manifestConnections, durationS: opts.manifestSeconds, headers: { Accept: MANIFEST_ACCEPT },
  });
  const cpuUs = ((await cpuSeconds(pids)) - cpu0) / w.requests * 1e6;
  const cell = manifestCell(results, kind, t.name);
  cell.errors += w.non2xx + w.socketErrors;
  if (w.non2xx + w.socketErrors > 0) log(`  ${t.name} manifest by ${kind}: ${w.non2xx} non-2xx, ${w.socketErrors} socket errors`);
  cell.rps.push(w.requestsPerSec);
  cell.p50.push(w.p50Ms);
  cell.p99.push(w.p99Ms);
  if (w.requests > 0) cell.cpuUs.push(cpuUs);
  log(`round ${round + 1}: manifest by ${kind} ${t.name} ${fmt(w.requestsPerSec, 0)} req/s, p50 ${fmt(w.p50Ms)} ms, p99 ${fmt(w.p99Ms)} ms, ${fmt(cpuUs, 1)} µs CPU/request`);
}

async function warmUp(env: Env, berth: BerthProcess, dist: Distribution): Promise<void> {
  const bigPath = `/v2/${REPO_BIG}/blobs/${env.bigDigest}`;
  for (const [name, url, counter] of [['berth', berth.url, env.countBerth], ['distribution-proxy', dist.url, env.countDist]] as const) {
    // First GET fills the cache; the second must be served from it (no upstream bytes).
    await verifyDigest(`${url}${bigPath}`, env.bigDigest);
    await settle(() => counter.bytesFromTarget());
    for (const ref of [TAG, env.small.manifestDigest]) {
      await verifyDigest(`${url}/v2/${REPO_SMALL}/manifests/${ref}`, env.small.manifestDigest, { accept: MANIFEST_ACCEPT });
    }
    await settle(() => counter.bytesFromTarget());
    counter.reset();
    await verifyDigest(`${url}${bigPath}`, env.bigDigest);
    await verifyDigest(`${url}/v2/${REPO_SMALL}/manifests/${env.small.manifestDigest}`, env.small.manifestDigest, { accept: MANIFEST_ACCEPT });
    if (name === 'berth') await verifyDigest(`${url}/v2/${REPO_SMALL}/manifests/${TAG}`, env.small.manifestDigest, { accept: MANIFEST_ACCEPT });
    const fetched = await settle(() => counter.bytesFromTarget(), 500);
    if (fetched > 64 * 1024) throw new Error(`${name} fetched ${fetched} bytes upstream for content it should have cached`);
  }
  await verifyDigest(`${env.nginx.url}${bigPath}`, env.bigDigest);
  await verifyDigest(`${env.upstream.url}${bigPath}`, env.bigDigest);
}

function versionOf(cmd: string, args: string[]): string {
  // nginx prints its version on stderr; wrk prints it on stdout and exits 1: read both.
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  const line = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').map((l) => l.trim()).find((l) => l !== '');
  return line ?? `${cmd}: version unknown`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const opts = parseArgs(argv);
  // Fail before starting anything when a tool is missing ("… not found: apt-get install -y …").
  requireBinary('docker-registry');
  requireBinary('nginx', 'nginx-light');
  requireBinary('wrk', 'wrk');
  const started = new Date();
  const loadAtStart = loadavg();
  const t0 = Date.now();
  log(`${opts.quick ? 'quick' : 'full'} run: ${opts.rounds} rounds, ${opts.blobBytes / MiB} MiB blob, ${opts.multiLayers.length}-layer image of ${opts.multiLayers.reduce((a, b) => a + b, 0) / MiB} MiB`);

  const stops: (() => Promise<void>)[] = [];
  const results: Results = { blob: {}, manifest: { tag: {}, digest: {} }, cold: {}, direct: { viaCounterS: [], rawS: [], linkS: [] }, idleRssMiB: {}, berthFreshRssMiB: NaN, finalRssMiB: {}, push: null };
  try {
    // ---- the upstream and its content
    const upstream = await startDistribution();
    stops.push(() => upstream.stop());
    const big = buildLargeBlobImage({ seed: 'bench-big', size: opts.blobBytes, raw: true });
    const multi = buildImage({ seed: 'bench-multi', layers: opts.multiLayers, compression: 'none' });
    const small = buildImage({ seed: 'bench-small', layers: 2 });
    await pushImage(upstream.url, REPO_BIG, TAG, big);
    await pushImage(upstream.url, REPO_MULTI, TAG, multi);
    await pushImage(upstream.url, REPO_SMALL, TAG, small);
    const bigLayer = big.layers[0];
    if (!bigLayer) throw new Error('no big layer');

    // ---- nginx serves the same bytes from disk
    const docroot = await makeTempDir('bench-www');
    stops.push(() => removeTempDir(docroot));
    await publish(docroot, REPO_BIG, 'blobs', bigLayer.digest, bigLayer.data);
    await publish(docroot, REPO_SMALL, 'manifests', TAG, small.manifest);
    await publish(docroot, REPO_SMALL, 'manifests', small.manifestDigest, small.manifest);
    const nginx = await startNginx(docroot, cpus().length);
    stops.push(() => nginx.stop());
    // ---- and a bare node:http process serves them with Berth's headers: one Node process's ceiling
    const ceiling = opts.only.has('manifest') ? await startCeilingServer(small.manifest, small.mediaType) : null;
    if (ceiling) stops.push(() => ceiling.stop());

    const countBerth = await startCountingProxy(upstream.port);
    const countDist = await startCountingProxy(upstream.port);
    const countDirect = await startCountingProxy(upstream.port);
    const countLink = await startCountingProxy(upstream.port, { bytesPerSecond: opts.linkBytesPerSecond });
    stops.push(() => countBerth.stop(), () => countDist.stop(), () => countDirect.stop(), () => countLink.stop());

    const env: Env = {
      opts, upstream, big, multi, small,
      bigDigest: bigLayer.digest,
      bigSize: bigLayer.size,
      multiSize: multi.manifest.length + multi.config.length + multi.layers.reduce((a, l) => a + l.size, 0),
      countBerth, countDist, countDirect, countLink, nginx,
    };
    // The big buffers are on the upstream's disk and in nginx's docroot now; drop ours.
    bigLayer.data = Buffer.alloc(0);
    for (const l of multi.layers) l.data = Buffer.alloc(0);

    // Page cache: read the blob once through the upstream before anything is timed.
    await verifyDigest(`${upstream.url}/v2/${REPO_BIG}/blobs/${env.bigDigest}`, env.bigDigest);

    // ---- cold: fresh mirrors each round
    if (opts.only.has('cold')) for (let round = 0; round < opts.rounds; round++) await coldRound(env, results, round);

    // ---- warm: long-lived mirrors, filled once
    const berth = await startBerth(env);
    stops.push(() => berth.stop());
    results.berthFreshRssMiB = (await currentRss(await processTree(berth.proc.pid))) / MiB;
    const dist = await startDistProxy(env);
    stops.push(() => dist.stop());
    await warmUp(env, berth, dist);

    const blobTargets: Target[] = [
      { name: 'berth', port: berth.port, pid: berth.proc.pid },
      { name: 'distribution-proxy', port: dist.port, pid: dist.process.pid },
      { name: 'nginx', port: nginx.port, pid: nginx.process.pid },
    ];
    if (opts.direct) blobTargets.push({ name: 'distribution', port: upstream.port, pid: upstream.process.pid });
    for (const t of blobTargets) results.idleRssMiB[t.name] = (await currentRss(await processTree(t.pid))) / MiB;

    const manifestTargets: Target[] = [...blobTargets];
    if (ceiling) {
      await verifyDigest(`${ceiling.url}/v2/${REPO_SMALL}/manifests/${TAG}`, small.manifestDigest, { accept: MANIFEST_ACCEPT });
      manifestTargets.push({ name: 'ceiling', port: ceiling.port, pid: ceiling.process.pid });
    }
    // Connections, JIT and caches warm before the first timed manifest run, for every target.
    if (opts.only.has('manifest')) {
      for (const t of manifestTargets) {
        await runWrk(`http://127.0.0.1:${t.port}/v2/${REPO_SMALL}/manifests/${TAG}`, {
          threads: 2, connections: opts.manifestConnections, durationS: 1, headers: { Accept: MANIFEST_ACCEPT },
        });
      }
    }
    // All blob rounds first, then all manifest rounds: thousands of manifest requests leave work
    // and memory behind in a server (see docs/benchmarks.md), which must not land in blob figures.
    for (let round = 0; round < opts.rounds; round++) {
      for (const c of opts.only.has('blob') ? opts.concurrencies : []) {
        for (const t of rotate(blobTargets, round)) await blobRun(env, results, t, c, round);
      }
    }
    for (let round = 0; round < opts.rounds; round++) {
      for (const kind of opts.only.has('manifest') ? (['tag', 'digest'] as const) : []) {
        for (const t of rotate(manifestTargets, round)) await manifestRun(env, results, t, kind, round);
      }
    }
    await sleep(2000);
    for (const t of blobTargets) results.finalRssMiB[t.name] = (await currentRss(await processTree(t.pid))) / MiB;

    // ---- push into a hosted repository: a fresh Berth and a fresh Distribution 2.8 of its own (push.ts)
    if (opts.only.has('push')) {
      const options: PushOptions = {
        rounds: opts.rounds, blobBytes: opts.blobBytes, layerBytes: (opts.quick ? 4 : 16) * MiB, concurrent: 8, concBytes: (opts.quick ? 16 : 64) * MiB,
      };
      results.push = { options, results: await measurePush(options) };
    }

    const seconds = (Date.now() - t0) / 1000;
    const report = render(env, results, argv, started, seconds, loadAtStart);
    process.stdout.write(`\n${report.table}\n`);
    await writeReport(opts.out, report.section);
    // ---- scale: generated stores of 10k (and 100k) blobs, one Berth at a time (scale.ts)
    if (opts.only.has('scale')) {
      const sc = scaleDefaults(opts.quick);
      const scale = renderScale(await measureScale(sc.sizes, sc.seconds), sc.seconds);
      process.stdout.write(`\n${scale}\n`);
      await writeReport(opts.out, `<!-- scale:begin (generated by test/bench/scale.ts; edit outside these markers) -->\n${scale}<!-- scale:end -->`, 'scale');
    }
    // ---- ui: a generated store of 10k repositories / 100k tags (1k / 10k quick), one Berth (ui-scale.ts)
    if (opts.only.has('ui')) {
      const ui = renderUiScale(await measureUiScale(uiScaleDefaults(opts.quick)));
      process.stdout.write(`\n${ui}\n`);
      await writeReport(opts.out, `${UI_SCALE_MARKERS.begin}\n${ui}${UI_SCALE_MARKERS.end}`, UI_SCALE_MARKERS.name);
    }
    await mkdir('dist/bench', { recursive: true });
    await writeFile('dist/bench/results.json', `${JSON.stringify({ options: opts, results }, null, 2)}\n`);
    log(`done in ${fmt(seconds, 0)} s; wrote ${opts.out} and dist/bench/results.json`);
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err: unknown) => log(`cleanup: ${(err as Error).message}`));
  }
}

// ---------------------------------------------------------------------------------------------
// Report

interface Rendered {
  /** The plain table printed at the end of a run. */
  table: string;
  /** The generated part of docs/benchmarks.md. */
  section: string;
}

function s(values: readonly number[]): Summary {
  return summarize(values);
}

function verdict(ok: boolean | null): string {
  return ok === null ? 'n/a' : ok ? 'met' : '**not met**';
}

function render(env: Env, r: Results, argv: string[], started: Date, seconds: number, loadAtStart: number[]): Rendered {
  const { opts } = env;
  const rows: string[][] = [];
  const targets: TargetName[] = ['berth', 'distribution-proxy', 'nginx', ...(opts.direct ? (['distribution'] as const) : [])];
  const head = ['measure', ...targets.map((t) => LABEL[t]), 'Berth / Dist. proxy', 'Berth / nginx'];
  const checks: string[][] = [];

  for (const c of opts.concurrencies) {
    const cells = targets.map((t) => s(r.blob[t]?.[c]?.gbps ?? []));
    const [b, d, n] = cells;
    rows.push([`warm blob GB/s, ${c} client${c > 1 ? 's' : ''}`, ...cells.map((x) => fmtSummary(x)), ratio(b, d), ratio(b, n)]);
    const vd = ratioValue(b, d);
    const vn = ratioValue(b, n);
    checks.push([`warm blob, ${c} client${c > 1 ? 's' : ''}: ≥ 1.0× Distribution proxy (aim ≥ 0.8× nginx)`,
      `${fmt(vd)}× Distribution, ${fmt(vn)}× nginx`, verdict(Number.isFinite(vd) ? vd >= 1.0 : null)]);
  }
  for (const c of opts.concurrencies) {
    const cpu = targets.map((t) => s(r.blob[t]?.[c]?.cpuPerGB ?? []));
    rows.push([`server CPU seconds per GB, ${c} client${c > 1 ? 's' : ''}`, ...cpu.map((x) => fmtSummary(x)), ratio(cpu[0], cpu[1]), ratio(cpu[0], cpu[2])]);
  }
  for (const c of opts.concurrencies) {
    const peaks = targets.map((t) => {
      const v = r.blob[t]?.[c]?.rssMiB ?? [];
      return v.length ? Math.max(...v) : NaN;
    });
    rows.push([`peak RSS MiB, ${c} client${c > 1 ? 's' : ''} (max of rounds)`, ...peaks.map((x) => fmt(x, 0)),
      peaks[1] ? `${fmt((peaks[0] ?? NaN) / peaks[1])}×` : '—', peaks[2] ? `${fmt((peaks[0] ?? NaN) / peaks[2])}×` : '—']);
    const growth = targets.map((t) => s(r.blob[t]?.[c]?.rssGrowthMiB ?? []));
    rows.push([`  of which added during the run, MiB`, ...growth.map((x) => fmtSummary(x, 0)), '', '']);
    if (c === Math.max(...opts.concurrencies)) {
      const b = peaks[0] ?? NaN;
      checks.push([`peak RSS at ${c} concurrent ${opts.blobBytes / MiB} MiB downloads ≤ 150 MiB`, `${fmt(b, 0)} MiB`, verdict(Number.isFinite(b) ? b <= 150 : null)]);
    }
  }
  rows.push(['idle RSS MiB (before the blob runs, after the warm-up fills)', ...targets.map((t) => fmt(r.idleRssMiB[t] ?? NaN, 0)), '', '']);
  rows.push(['Berth RSS MiB right after start (no fill yet)', fmt(r.berthFreshRssMiB, 0), ...targets.slice(1).map(() => ''), '', '']);
  rows.push(['RSS MiB after all runs (blobs, then manifests)', ...targets.map((t) => fmt(r.finalRssMiB[t] ?? NaN, 0)), '', '']);
  for (const kind of ['tag', 'digest'] as const) {
    const rps = targets.map((t) => s(r.manifest[kind][t]?.rps ?? []));
    const p50 = targets.map((t) => s(r.manifest[kind][t]?.p50 ?? []));
    const p99 = targets.map((t) => s(r.manifest[kind][t]?.p99 ?? []));
    rows.push([`manifest by ${kind}, req/s (${opts.manifestConnections} conns)`, ...rps.map((x) => fmtSummary(x, 0)), ratio(rps[0], rps[1], 1), ratio(rps[0], rps[2])]);
    rows.push([`manifest by ${kind}, p50 ms`, ...p50.map((x) => fmtSummary(x)), ratio(p50[0], p50[1]), ratio(p50[0], p50[2])]);
    rows.push([`manifest by ${kind}, p99 ms`, ...p99.map((x) => fmtSummary(x)), ratio(p99[0], p99[1]), ratio(p99[0], p99[2])]);
    if (kind === 'tag') {
      const x = ratioValue(rps[0], rps[1]);
      const lower = (p99[0]?.median ?? NaN) < (p99[1]?.median ?? NaN);
      checks.push(['manifest by tag: ≥ 10× Distribution proxy req/s, p99 below it',
        `${fmt(x, 1)}×, p99 ${fmt(p99[0]?.median ?? NaN)} vs ${fmt(p99[1]?.median ?? NaN)} ms`,
        verdict(Number.isFinite(x) ? x >= 10 && lower : null)]);
    }
  }
  // The manifest path against one Node process's ceiling (a bare node:http server with the same
  // bytes and headers) and against nginx (every core, no JavaScript), with the server's CPU time
  // per request, which holds up on a loaded machine where req/s does not.
  const mTargets: TargetName[] = ['berth', 'ceiling', 'nginx'];
  const mHead = [`manifest, ${opts.manifestConnections} connections`, ...mTargets.map((t) => LABEL[t]), 'Berth / ceiling', 'Berth / nginx'];
  const mRows: string[][] = [];
  for (const kind of ['tag', 'digest'] as const) {
    const pick = (f: (c: ManifestCell) => number[]): Summary[] => mTargets.map((t) => s(r.manifest[kind][t] ? f(r.manifest[kind][t] as ManifestCell) : []));
    const rps = pick((c) => c.rps);
    const p50 = pick((c) => c.p50);
    const p99 = pick((c) => c.p99);
    const cpu = pick((c) => c.cpuUs);
    mRows.push([`by ${kind}: req/s`, ...rps.map((x) => fmtSummary(x, 0)), ratio(rps[0], rps[1]), ratio(rps[0], rps[2])]);
    mRows.push([`by ${kind}: p50 ms`, ...p50.map((x) => fmtSummary(x)), ratio(p50[0], p50[1]), ratio(p50[0], p50[2])]);
    mRows.push([`by ${kind}: p99 ms`, ...p99.map((x) => fmtSummary(x)), ratio(p99[0], p99[1]), ratio(p99[0], p99[2])]);
    mRows.push([`by ${kind}: server CPU µs per request`, ...cpu.map((x) => fmtSummary(x, 1)), ratio(cpu[0], cpu[1]), ratio(cpu[0], cpu[2])]);
    const xn = ratioValue(rps[0], rps[2]);
    const xc = ratioValue(rps[0], rps[1]);
    checks.push([`manifest by ${kind}: ≥ 0.4× nginx req/s (issue 16)`, `${fmt(xn)}× nginx, ${fmt(xc)}× the node:http ceiling`, verdict(Number.isFinite(xn) ? xn >= 0.4 : null)]);
    const b99 = p99[0]?.median ?? NaN;
    checks.push([`manifest by ${kind}: p99 ≤ 10 ms at ${opts.manifestConnections} connections`, `${fmt(b99)} ms (ceiling ${fmt(p99[1]?.median ?? NaN)} ms)`, verdict(Number.isFinite(b99) ? b99 <= 10 : null)]);
  }
  const cold = (t: TargetName): ColdCell | undefined => r.cold[t];
  const none = opts.direct ? ['—', '—'] : ['—'];
  const coldRow = (label: string, pick: (c: ColdCell) => number[], digits = 2, nginxCell = '—'): void => {
    const b = s(cold('berth') ? pick(cold('berth') as ColdCell) : []);
    const d = s(cold('distribution-proxy') ? pick(cold('distribution-proxy') as ColdCell) : []);
    rows.push([label, fmtSummary(b, digits), fmtSummary(d, digits), nginxCell, ...none.slice(1), ratio(b, d), '—']);
  };
  const multiMiB = fmt(env.multiSize / MiB, 0);
  coldRow(`cold pull, ${opts.multiLayers.length} layers / ${multiMiB} MiB: seconds`, (c) => c.pullS);
  coldRow('cold pull: upstream bytes ÷ image size', (c) => c.pullUpstreamX);
  const blobMiB = opts.blobBytes / MiB;
  coldRow(`${opts.coldClients} cold clients, one ${blobMiB} MiB blob: seconds until all done`, (c) => c.fanS);
  coldRow(`${opts.coldClients} cold clients: upstream bytes ÷ blob size`, (c) => c.fanUpstreamX);
  coldRow(`${opts.coldClients} cold clients: time ÷ one direct download`, (c) => c.fanVsDirect);
  const linkMiB = fmt(opts.linkBytesPerSecond / MiB, 0);
  coldRow(`same over a ${linkMiB} MiB/s upstream link: seconds until all done`, (c) => c.linkFanS);
  coldRow(`same over the link: upstream bytes ÷ blob size`, (c) => c.linkFanUpstreamX);
  coldRow(`same over the link: time ÷ one direct download over it`, (c) => c.linkFanVsDirect);
  const direct = s(r.direct.viaCounterS);
  rows.push([`one direct download of the blob, seconds: through the byte counter / raw / over the ${linkMiB} MiB/s link`,
    `${fmtSummary(direct)} / ${fmtSummary(s(r.direct.rawS))} / ${fmtSummary(s(r.direct.linkS))}`, '', '', ...none.slice(1), '', '']);
  // What 32 clients cost when the upstream is as fast as the mirror: each client still needs
  // the whole blob, so the floor is 32 × size at the best warm rate measured for 32 clients.
  const cMax = Math.max(...opts.concurrencies);
  const floorS = (opts.coldClients * env.bigSize) / ((s(r.blob['nginx']?.[cMax]?.gbps ?? []).median) * 1e9);
  const berthWarmS = (opts.coldClients * env.bigSize) / ((s(r.blob['berth']?.[cMax]?.gbps ?? []).median) * 1e9);
  rows.push([`delivery floor for ${opts.coldClients} × the blob at the warm ${cMax}-client rate, seconds (nginx / Berth)`,
    `${fmt(floorS)} / ${fmt(berthWarmS)}`, '', '', ...none.slice(1), '', '']);
  const fanX = s(cold('berth')?.fanUpstreamX ?? []);
  const linkX = s(cold('berth')?.linkFanUpstreamX ?? []);
  const fanT = s(cold('berth')?.fanVsDirect ?? []);
  const linkT = s(cold('berth')?.linkFanVsDirect ?? []);
  const maxX = Math.max(fanX.max, linkX.max);
  checks.push([`${opts.coldClients} cold clients: upstream bytes = 1.0× the blob`, `${fmt(fanX.median)}× unpaced, ${fmt(linkX.median)}× over the link (max ${fmt(maxX)}×)`,
    verdict(fanX.n ? maxX < 1.01 : null)]);
  checks.push([`${opts.coldClients} cold clients: all done within 1.2× one direct download (over the ${linkMiB} MiB/s link)`, `${fmt(linkT.median)}×`,
    verdict(linkT.n ? linkT.median <= 1.2 : null)]);
  checks.push([`(same, upstream on loopback as fast as the mirror: bounded by delivering ${opts.coldClients} × the blob)`,
    `${fmt(fanT.median)}× (${fmt(s(cold('berth')?.fanS ?? []).median)} s vs floor ${fmt(berthWarmS)} s at Berth's warm rate)`, 'see text']);

  const md = (cols: string[][]): string => {
    const widths = (cols[0] ?? []).map((_, i) => Math.max(...cols.map((row) => (row[i] ?? '').length)));
    return cols.map((row, ri) => {
      const line = `| ${row.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
      return ri === 0 ? `${line}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|` : line;
    }).join('\n');
  };
  const push = r.push ? pushTables(r.push.options, r.push.results) : null;
  const table = md([head, ...rows]) + (opts.only.has('manifest') ? `\n\n${md([mHead, ...mRows])}` : '') + (push ? `\n\n${push.table}` : '');
  const checkTable = md([['target (issue 9; push: issue 14; manifest vs nginx: issue 16)', 'measured', 'result'], ...checks, ...(push?.checks ?? [])]);

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const command = `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const section = `<!-- bench:begin (generated by test/bench/run.ts; edit outside these markers) -->
## Results (${opts.quick ? 'quick run' : 'full run'}, ${started.toISOString().replace(/\.\d+Z$/, 'Z')})

Machine: ${cpus().length} × ${cpu}, ${fmt(totalmem() / 1024 ** 3, 1)} GiB RAM, Linux ${release()}; Node ${process.version};
${versionOf('docker-registry', ['--version'])}; ${versionOf('nginx', ['-v'])}; ${versionOf('wrk', ['--version']).replace(/\s+Copyright.*$/, '')}.
Load average (1/5/15 min) ${loadAtStart.map((x) => fmt(x)).join(' / ')} at the start and ${loadavg().map((x) => fmt(x)).join(' / ')} at the end: the
machine's ${cpus().length} cores also ran the load generators${loadAtStart[0] !== undefined && loadAtStart[0] > 1 ? ' and other work' : ''}.
Berth: one process, \`log.level: warn\`, \`tagTtl: 24h\`; both Distributions with their access logs off.

Command: \`${command}\` — ${opts.rounds} rounds, ${opts.blobBytes / MiB} MiB blob, ${opts.blobSeconds} s per blob run
(after ${opts.blobWarmupMs} ms warm-up), ${opts.manifestSeconds} s per manifest run, run time ${fmt(seconds / 60, 1)} min.
Medians with min–max over the rounds; "×" columns are ratios of medians (for RSS: of the peaks).

${table}

${checkTable}
<!-- bench:end -->`;
  return { table: `${table}\n\n${checkTable}`, section };
}

const SKELETON = `# Benchmarks

Run with \`npm run bench\` (see below). The section between the markers is rewritten by each run.

`;

/** Replace the text between `<!-- <name>:begin` and `<!-- <name>:end -->` (or append it). */
async function writeReport(file: string, section: string, name = 'bench'): Promise<void> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    text = SKELETON;
  }
  const begin = text.indexOf(`<!-- ${name}:begin`);
  const endMarker = `<!-- ${name}:end -->`;
  const end = text.indexOf(endMarker);
  const next = begin >= 0 && end > begin
    ? `${text.slice(0, begin)}${section}${text.slice(end + endMarker.length)}`
    : `${text.trimEnd()}\n\n${section}\n`;
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, next);
}

const entry = process.argv.includes('--soak') ? runSoak(process.argv.slice(2))
  : process.argv.includes('--s3') ? runS3Bench(process.argv.slice(2))
  : process.argv.includes('--replicas') ? runReplicaBench(process.argv.slice(2))
  : process.argv.includes('--scale') ? runScale(process.argv.slice(2))
  : process.argv.includes('--push') ? runPushBench(process.argv.slice(2))
  : process.argv.includes('--ui') ? runUiScale(process.argv.slice(2))
  : main().then(() => 0);
entry.then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
