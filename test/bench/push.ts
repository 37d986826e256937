// Push throughput into a hosted repository (issue 14): Berth against a plain Distribution 2.8 on
// the same disk, rounds alternating between them.
//
//   node dist/test/bench/push.js [--rounds N] [--blob-mib N] [--layer-mib N] [--concurrent N]
//
//  - one large layer pushed as the streaming PATCH dockerd and BuildKit send (POST, PATCH with a
//    chunked body, PUT ?digest=), MB/s;
//  - an 8-layer image (each layer the same way, then the manifest), MB/s;
//  - N concurrent pushes of distinct layers into Berth, with Berth's peak RSS while they run.
// Prints a Markdown table. Everything runs on loopback, started and stopped here.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { seededBytes, startDistribution, type Distribution } from '../helpers/index.js';
import { startBerthProcess, upstreamOverride, type BerthProcess } from '../helpers/berth.js';
import { currentRss, peakRss, processTree, resetPeakRss } from './servers.js';
import { MiB, fmt, fmtSummary, ratio, summarize, type Summary } from './stats.js';

interface Options {
  rounds: number;
  blobBytes: number;
  layerBytes: number;
  concurrent: number;
}

function parseArgs(argv: string[]): Options {
  const value = (name: string, dflt: number): number => {
    const i = argv.indexOf(name);
    const v = i >= 0 ? Number(argv[i + 1]) : dflt;
    if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} takes a positive number`);
    return v;
  };
  return {
    rounds: value('--rounds', 3),
    blobBytes: value('--blob-mib', 256) * MiB,
    layerBytes: value('--layer-mib', 16) * MiB,
    concurrent: value('--concurrent', 8),
  };
}

const CHUNK = 1024 * 1024;

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

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  let dist: Distribution | null = null;
  let berth: BerthProcess | null = null;
  try {
    dist = await startDistribution();
    berth = await startBerthProcess({ upstreams: [upstreamOverride('http://127.0.0.1:9')], repositories: [{ match: 'bench/**', mode: 'hosted' }], log: { level: 'warn' } });
    const targets = [{ name: 'Berth', url: berth.url }, { name: 'Distribution 2.8', url: dist.url }];
    const big: Record<string, number[]> = { Berth: [], 'Distribution 2.8': [] };
    const multi: Record<string, number[]> = { Berth: [], 'Distribution 2.8': [] };
    // Peak RSS of a fresh Berth during N concurrent pushes of distinct layers (first, so earlier
    // rounds' garbage is not counted).
    const pids = await processTree(berth.proc.pid);
    const idleRss = await currentRss(pids);
    await resetPeakRss(pids);
    const conc = Array.from({ length: o.concurrent }, (_, i) => {
      const data = seededBytes(`push-bench-conc-${i}`, o.layerBytes * 4);
      return { data, digest: sha256(data) };
    });
    const concSeconds = await timed(async () => {
      await Promise.all(conc.map((l, i) => pushBlobStreaming(berth!.url, `bench/conc${i}`, l.data, l.digest)));
    });
    const rss = await peakRss(pids);
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
        big[t.name]?.push(o.blobBytes / MiB / s);
        const m = await timed(() => pushImage(t.url, `bench/multi${r}`, layers));
        multi[t.name]?.push((8 * o.layerBytes) / MiB / m);
      }
    }
    const s = (name: string, rec: Record<string, number[]>): Summary => summarize(rec[name] ?? []);
    const lines = [
      `| measure | Berth (MB/s) | Distribution 2.8 (MB/s) | Berth / Distribution |`,
      `|---|---|---|---|`,
      `| one ${o.blobBytes / MiB} MiB layer, streaming PATCH | ${fmtSummary(s('Berth', big), 0)} | ${fmtSummary(s('Distribution 2.8', big), 0)} | ${ratio(s('Berth', big), s('Distribution 2.8', big))} |`,
      `| 8 × ${o.layerBytes / MiB} MiB layers + manifest | ${fmtSummary(s('Berth', multi), 0)} | ${fmtSummary(s('Distribution 2.8', multi), 0)} | ${ratio(s('Berth', multi), s('Distribution 2.8', multi))} |`,
      '',
      `${o.concurrent} concurrent pushes of ${(4 * o.layerBytes) / MiB} MiB each into Berth: ${fmt((o.concurrent * 4 * o.layerBytes) / MiB / concSeconds, 0)} MB/s in total, Berth peak RSS ${fmt(rss / MiB, 0)} MiB (${fmt(idleRss / MiB, 0)} MiB just before).`,
      `(${o.rounds} rounds, median [min–max]; MB/s = MiB of blob bytes per second.)`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await berth?.stop();
    await dist?.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
