// `npm run bench -- --s3`: warm blob throughput of Berth on the S3 driver against Distribution 2.8
// (`storage: s3`, proxy mode) on the same Ceph RGW, side by side, at 1/8/32 clients. Both proxy
// the same Distribution upstream and keep their content in their own bucket of one RGW (started
// here: test/helpers/ceph.ts). Each is warmed with one verified GET of the blob, then measured in
// alternating rounds with the shared load generator; the report gives GB/s and Berth ÷ Distribution.
//
//   node dist/test/bench/run.js --s3 [--rounds N] [--blob-mib N] [--seconds N] [--out FILE]
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { request } from 'undici';
import { buildLargeBlobImage, pushImage, startDistribution, type Distribution } from '../helpers/index.js';
import { startBerthProcess, upstreamOverride, type BerthProcess } from '../helpers/berth.js';
import { startCeph, type CephRgw } from '../helpers/ceph.js';
import { runClient } from './servers.js';
import type { ThroughputResult } from './load-client.js';
import { MiB, fmt, fmtSummary, ratio, summarize, walkFlags } from './stats.js';

interface S3BenchOptions {
  rounds: number;
  blobBytes: number;
  seconds: number;
  out: string;
}

const USAGE = `usage: npm run bench -- --s3 [--rounds N] [--blob-mib N] [--seconds N] [--out FILE]
  --rounds N     rounds per cell, targets alternating (default 3)
  --blob-mib N   size of the blob (default 64)
  --seconds N    length of each measurement (default 3)
  --out FILE     report file (default dist/bench/s3.md)
`;

function parseArgs(argv: string[]): S3BenchOptions {
  const opts: S3BenchOptions = { rounds: 3, blobBytes: 64 * MiB, seconds: 3, out: 'dist/bench/s3.md' };
  walkFlags(argv, '--s3', USAGE, (a, v) => {
    if (a === '--rounds') opts.rounds = v.num();
    else if (a === '--blob-mib') opts.blobBytes = v.num() * MiB;
    else if (a === '--seconds') opts.seconds = v.num();
    else if (a === '--out') opts.out = v.text();
    else return false;
    return true;
  });
  return opts;
}

const log = (msg: string): void => {
  process.stderr.write(`[bench s3] ${msg}\n`);
};

async function verify(url: string, digest: string): Promise<void> {
  const res = await request(url);
  if (res.statusCode !== 200) throw new Error(`GET ${url}: HTTP ${res.statusCode} ${(await res.body.text()).slice(0, 300)}`);
  const h = createHash('sha256');
  for await (const c of res.body) h.update(c as Buffer);
  if (`sha256:${h.digest('hex')}` !== digest) throw new Error(`GET ${url}: wrong bytes`);
}

const CONCURRENCIES = [1, 8, 32];
type Name = 'berth' | 'distribution';

export async function runS3Bench(argv: string[]): Promise<number> {
  const opts = parseArgs(argv);
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async (): Promise<void> => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    const ceph: CephRgw = await startCeph({ buckets: ['bench-berth', 'bench-distribution'], memstoreBytes: 4 * opts.blobBytes + 512 * MiB });
    stops.push(() => ceph.stop());
    log(`Ceph RGW up in ${ceph.startMs} ms at ${ceph.endpoint}`);
    const img = buildLargeBlobImage({ seed: 'bench-s3', size: opts.blobBytes, raw: true });
    const layer = img.layers[0];
    if (!layer) throw new Error('no layer');
    const upstream = await startDistribution();
    stops.push(() => upstream.stop());
    await pushImage(upstream.url, 'bench/big', 'latest', img);

    const berth: BerthProcess = await startBerthProcess({
      upstreams: [upstreamOverride(upstream.url, { tagTtl: '24h' })],
      log: { level: 'warn' },
      storage: {
        driver: 's3',
        s3: { endpoint: ceph.endpoint, bucket: 'bench-berth', accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey },
      },
    });
    stops.push(() => berth.stop());
    // Distribution 2.8's S3 driver panics loading a custom CA bundle; its children inherit ours.
    delete process.env['AWS_CA_BUNDLE'];
    const dist: Distribution = await startDistribution({
      proxyRemoteUrl: upstream.url,
      extraConfig: {
        storage: {
          s3: {
            regionendpoint: ceph.endpoint, region: ceph.region, bucket: 'bench-distribution',
            accesskey: ceph.accessKeyId, secretkey: ceph.secretAccessKey, secure: false, v4auth: true,
          },
          maintenance: { uploadpurging: { enabled: false } },
          // Serve the bytes itself, as Berth does (its default answers GETs with a redirect to S3).
          redirect: { disable: true },
        },
      },
    });
    stops.push(() => dist.stop());

    const path = `/v2/bench/big/blobs/${layer.digest}`;
    const ports: Record<Name, number> = { berth: berth.port, distribution: dist.port };
    for (const name of ['berth', 'distribution'] as const) {
      const t = Date.now();
      await verify(`http://127.0.0.1:${ports[name]}${path}`, layer.digest);
      await verify(`http://127.0.0.1:${ports[name]}${path}`, layer.digest);
      log(`${name}: cold + warm verified GETs ${Date.now() - t} ms`);
    }

    const gbps: Record<Name, Record<number, number[]>> = { berth: {}, distribution: {} };
    for (let round = 0; round < opts.rounds; round++) {
      for (const c of CONCURRENCIES) {
        const order: Name[] = round % 2 === 0 ? ['berth', 'distribution'] : ['distribution', 'berth'];
        for (const name of order) {
          const r = await runClient<ThroughputResult>({
            mode: 'throughput', port: ports[name], path, connections: c,
            durationMs: opts.seconds * 1000, warmupMs: 300, expectLength: layer.size,
          }, (opts.seconds + 60) * 1000);
          if (r.errors.length > 0) throw new Error(`${name} at ${c} clients: ${r.errors.slice(0, 3).join('; ')}`);
          const v = r.bytes / r.seconds / 1e9;
          (gbps[name][c] ??= []).push(v);
          log(`round ${round + 1}: ${name} ${c} clients ${fmt(v)} GB/s`);
        }
      }
    }

    const lines = [
      '## Berth on S3 (Ceph RGW) vs Distribution 2.8 proxy on S3: warm blob GB/s',
      '',
      `One ${Math.round(opts.blobBytes / MiB)} MiB blob, cached by both in their own bucket of one Ceph RGW (one memstore OSD), ` +
        `${opts.rounds} rounds of ${opts.seconds} s per cell, targets alternating; medians (min–max).`,
      '',
      '| clients | Berth GB/s | Distribution GB/s | Berth ÷ Distribution |',
      '|---|---|---|---|',
      ...CONCURRENCIES.map((c) => {
        const b = summarize(gbps.berth[c] ?? []);
        const d = summarize(gbps.distribution[c] ?? []);
        return `| ${c} | ${fmtSummary(b)} | ${fmtSummary(d)} | ${ratio(b, d)} |`;
      }),
      '',
    ];
    const report = lines.join('\n');
    process.stdout.write(`${report}\n`);
    await mkdir(dirname(opts.out), { recursive: true });
    await writeFile(opts.out, report);
    return 0;
  } finally {
    await stopAll();
  }
}
