// `npm run bench -- --replicas`: Berth replicas on a real Ceph RGW and Redis (issue 13's figures).
//
//  - cold: 32 concurrent clients GET one cold blob through a round-robin TCP balancer in front of
//    2 Berth replicas (one bucket, one Redis), and the same through a balancer in front of two
//    Distribution 2.8 proxies (`storage: s3`) on one bucket of the same RGW. The upstream is paced
//    at the counting fault proxy so that the clients meet the fill in flight; the figure is the
//    bytes upstream sent ÷ the blob's size (Berth's target 1.00×). Every body is hashed.
//  - startup: a replica's start-up with N objects in its bucket (default 100,000: tiny images,
//    tag records, written by parallel PUTs; the generation time is reported): ms from spawn to
//    `/readyz` answering 200 (target < 2 s).
//
//   node dist/test/bench/run.js --replicas [--only cold,startup] [--blob-mib N] [--objects N] [--out FILE]
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Agent, request } from 'undici';
import { stringify } from 'yaml';
import { buildLargeBlobImage, drip, freePort, makeTempDir, pushImage, removeTempDir, startDistribution, startProcess } from '../helpers/index.js';
import { startBalancer, type Balancer } from '../helpers/balancer.js';
import { sharedRgw, startCluster, type ClusterRig } from '../integration/cluster-support.js';
import { MiB, fmt, walkFlags } from './stats.js';

interface ReplicaBenchOptions {
  only: Set<'cold' | 'startup'>;
  blobBytes: number;
  objects: number;
  out: string;
}

const USAGE = `usage: npm run bench -- --replicas [--only cold,startup] [--blob-mib N] [--objects N] [--out FILE]
  --only LIST    cold (upstream bytes ÷ blob size, 32 clients) and/or startup (spawn → /readyz); default both
  --blob-mib N   size of the cold blob (default 64)
  --objects N    objects in the bucket for the start-up figure (default 100000)
  --out FILE     report file (default dist/bench/replicas.md)
`;

function parseArgs(argv: string[]): ReplicaBenchOptions {
  const opts: ReplicaBenchOptions = { only: new Set(['cold', 'startup']), blobBytes: 64 * MiB, objects: 100_000, out: 'dist/bench/replicas.md' };
  walkFlags(argv, '--replicas', USAGE, (a, v) => {
    if (a === '--blob-mib') opts.blobBytes = v.num() * MiB;
    else if (a === '--objects') opts.objects = v.num();
    else if (a === '--out') opts.out = v.text();
    else if (a === '--only') {
      const parts = v.text().split(',');
      if (!parts.every((p) => p === 'cold' || p === 'startup')) throw new Error(`--only takes cold and/or startup\n${USAGE}`);
      opts.only = new Set(parts as ('cold' | 'startup')[]);
    } else return false;
    return true;
  });
  return opts;
}

const log = (msg: string): void => {
  process.stderr.write(`[bench replicas] ${msg}\n`);
};

const CLIENTS = 32;
/** How long a start may take before the figure is given up. */
const START_LIMIT_MS = 1_800_000;

/** 32 concurrent GETs through the balancer, each body hashed; throws on any wrong answer. */
async function coldGets(balancer: Balancer, path: string, digest: string, size: number): Promise<number> {
  // One connection per client, so the balancer spreads them 16/16.
  const agents = Array.from({ length: CLIENTS }, () => new Agent({ connections: 1 }));
  const t = Date.now();
  try {
    await Promise.all(agents.map(async (a) => {
      const res = await request(`${balancer.url}${path}`, { dispatcher: a });
      const h = createHash('sha256');
      let n = 0;
      for await (const c of res.body as AsyncIterable<Buffer>) {
        h.update(c);
        n += c.length;
      }
      if (res.statusCode !== 200 || n !== size || `sha256:${h.digest('hex')}` !== digest) {
        throw new Error(`GET ${path}: HTTP ${res.statusCode}, ${n} bytes, ${n === size ? 'wrong bytes' : 'short'}`);
      }
    }));
    return Date.now() - t;
  } finally {
    for (const a of agents) await a.close();
  }
}

async function benchCold(cluster: ClusterRig, opts: ReplicaBenchOptions): Promise<string[]> {
  const { rig } = cluster;
  const s3 = cluster.store.s3;
  if (!s3) throw new Error('the replicas are not on the RGW bucket');
  await s3.ceph.createBucket('bench-distribution');
  const blobSize = opts.blobBytes;
  // Distribution 2.8's S3 driver panics loading a custom CA bundle; its children inherit ours.
  delete process.env['AWS_CA_BUNDLE'];
  const dists = await Promise.all([0, 1].map(() => startDistribution({
    proxyRemoteUrl: rig.proxy.url,
    extraConfig: {
      storage: {
        s3: {
          regionendpoint: s3.ceph.endpoint, region: s3.ceph.region, bucket: 'bench-distribution',
          accesskey: s3.ceph.accessKeyId, secretkey: s3.ceph.secretAccessKey, secure: false, v4auth: true,
        },
        maintenance: { uploadpurging: { enabled: false } },
        redirect: { disable: true },
      },
    },
  })));
  const balancers: Balancer[] = [];
  try {
    const berthLb = await startBalancer(cluster.replicas.map((r) => r.url.replace('http://', '')));
    balancers.push(berthLb);
    const distLb = await startBalancer(dists.map((d) => `127.0.0.1:${d.port}`));
    balancers.push(distLb);
    const rows: string[] = [];
    for (const [name, lb, seed] of [['Berth, 2 replicas + Redis', berthLb, 'bench-replicas-berth'], ['Distribution 2.8, 2 proxies', distLb, 'bench-replicas-dist']] as const) {
      // A blob of its own for each, pushed to the upstream and cold everywhere.
      const img = buildLargeBlobImage({ seed, size: blobSize, raw: true });
      const layer = img.layers[0];
      if (!layer) throw new Error('no layer');
      await pushImage(rig.upstream.url, 'bench/cold', seed, img);
      rig.resetProxy();
      rig.proxy.setRules([drip(64 * 1024, 1, { match: { kind: 'blob', method: 'GET' } })]);
      const ms = await coldGets(lb, `/v2/bench/cold/blobs/${layer.digest}`, layer.digest, layer.size);
      rig.proxy.setRules([]);
      const gets = rig.proxy.requests.filter((r) => r.kind === 'blob' && r.method === 'GET');
      const bytes = gets.reduce((n, r) => n + r.bytesSent, 0);
      const x = bytes / layer.size;
      log(`${name}: ${CLIENTS} cold GETs in ${ms} ms, ${gets.length} upstream GETs, ${fmt(x)}× the blob upstream (connections ${lb.connections().join('/')})`);
      rows.push(`| ${name} | ${gets.length} | ${fmt(bytes / MiB)} | ${fmt(x)}× | ${fmt(ms / 1000)} |`);
    }
    return [
      `### Cold: ${CLIENTS} clients, one ${Math.round(blobSize / MiB)} MiB blob, through a round-robin balancer over two servers on one RGW bucket`,
      '',
      'Upstream paced at the counting proxy (64 KiB per timer tick); every body hashed.',
      '',
      '| servers | upstream GETs | upstream MiB | upstream ÷ blob | all 32 done (s) |',
      '|---|---|---|---|---|',
      ...rows,
      '',
    ];
  } finally {
    for (const b of balancers) await b.stop();
    for (const d of dists) await d.stop();
  }
}

async function benchStartup(cluster: ClusterRig, opts: ReplicaBenchOptions): Promise<string[]> {
  const s3 = cluster.store.s3;
  if (!s3) throw new Error('the replicas are not on the RGW bucket');
  const bucket = 'bench-startup';
  const prefix = 'startup';
  await s3.ceph.createBucket(bucket);
  const client = s3.ceph.client();
  // Images of one config blob each: the manifest (a blob too), its manifest record and a tag
  // record; the rest are plain blobs (layers). 4 of every 10 objects are an image's.
  const images = Math.floor(opts.objects / 10);
  const plain = opts.objects - 3 * images;
  const t0 = Date.now();
  const putBlob = async (body: Buffer): Promise<{ digest: string; size: number }> => {
    const hex = createHash('sha256').update(body).digest('hex');
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}/blobs/sha256/${hex}`, Body: body }));
    return { digest: `sha256:${hex}`, size: body.length };
  };
  const putMeta = (key: string, value: unknown): Promise<unknown> =>
    client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}/meta/${key}`, Body: JSON.stringify(value) }));
  let written = 0;
  const tick = (n: number): void => {
    const before = written;
    written += n;
    if (Math.floor(written / 20_000) > Math.floor(before / 20_000)) log(`${written} objects written (${Math.round(written / ((Date.now() - t0) / 1000))}/s)`);
  };
  let next = 0;
  const put = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= plain) return;
      if (i < images) {
        // Image i: its config is plain blob i.
        const config = await putBlob(Buffer.from(`{"startup":${i}}`));
        const mediaType = 'application/vnd.oci.image.manifest.v1+json';
        const manifest = await putBlob(Buffer.from(JSON.stringify({
          schemaVersion: 2, mediaType, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: config.size }, layers: [],
        })));
        const [alg, hex] = manifest.digest.split(':') as [string, string];
        await putMeta(`manifests/${alg}/${hex}`, { mediaType, size: manifest.size });
        await putMeta(`repos/docker.io/bench/app${i}/_tags/latest`, { digest: manifest.digest, mediaType, size: manifest.size, fetchedAt: t0, checkedAt: t0 });
        tick(4);
      } else {
        await putBlob(Buffer.from(`startup layer ${i}\n`));
        tick(1);
      }
    }
  };
  await Promise.all(Array.from({ length: 64 }, put));
  const genMs = Date.now() - t0;
  log(`${written} objects (${images} images: config, manifest, manifest record, tag record; ${plain - images} more blobs) written in ${fmt(genMs / 1000)} s`);

  const dir = await makeTempDir('bench-startup');
  try {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const file = join(dir, 'berth.yaml');
    const base = cluster.config;
    await writeFile(file, stringify({
      ...base,
      http: { host: '127.0.0.1', port },
      storage: { driver: 's3', root: join(dir, 'spool'), s3: { ...((base['storage'] as { s3: Record<string, unknown> }).s3), endpoint: s3.ceph.endpoint, bucket, prefix } },
      redis: { ...(base['redis'] as Record<string, unknown>), prefix: 'bench-startup' },
      cluster: { ...(base['cluster'] as Record<string, unknown>), replicaId: 'startup' },
      // Info: the lifecycle's "cache index built" line (its time and counts) goes in the report.
      log: { level: 'info' },
    }));
    const times: number[] = [];
    const indexLogs: string[] = [];
    // A second start only when the first was quick (a start that lists the bucket takes minutes).
    for (let run = 0; run < 2 && (run === 0 || (times[0] ?? Infinity) < 30_000); run++) {
      const t = Date.now();
      const proc = await startProcess(process.execPath, ['dist/src/cli.js', 'serve'], {
        env: { BERTH_CONFIG: file, BERTH_CLUSTER_ADVERTISE_URL: url },
        readyUrl: `${url}/readyz`,
        readyTimeoutMs: START_LIMIT_MS,
      });
      try {
        // readyUrl returns on any answer: wait for the 200.
        for (;;) {
          const res = await request(`${url}/readyz`);
          await res.body.dump();
          if (res.statusCode === 200) break;
          if (Date.now() - t > START_LIMIT_MS) throw new Error(`/readyz answered ${res.statusCode} for ${START_LIMIT_MS / 1000} s`);
          await new Promise((r) => setTimeout(r, 25));
        }
        times.push(Date.now() - t);
        const built = proc.output().split('\n').find((l) => l.includes('"cache index built"')) ?? '';
        const field = (k: string): string => new RegExp(`"${k}":(\\d+)`).exec(built)?.[1] ?? '?';
        indexLogs.push(built ? `${field('ms')} ms, ${field('blobs')} blobs, ${field('manifests')} manifests, ${field('repairedRecords')} records repaired` : 'no log line');
        log(`start ${run + 1}: spawn → /readyz 200 in ${times[times.length - 1]} ms; index: ${indexLogs[indexLogs.length - 1]}`);
      } finally {
        await proc.stop();
      }
    }
    return [
      `### Start-up with ${opts.objects.toLocaleString('en')} objects in the bucket`,
      '',
      `${images.toLocaleString('en')} images (a config blob, a manifest blob, its manifest record and a tag record each) and ` +
        `${(plain - images).toLocaleString('en')} more tiny blobs, written by 64 parallel PUTs in ${fmt(genMs / 1000)} s ` +
        `(${Math.round(written / (genMs / 1000))} objects/s). A replica (S3 driver, Redis, cluster.advertiseUrl) from spawn to \`/readyz\` 200, ` +
        'and the cache index build its log reports:',
      '',
      '| start | spawn → /readyz 200 (ms) | index build (its log) |',
      '|---|---|---|',
      ...times.map((ms, i) => `| ${i === 0 ? 'first' : 'again'} | ${ms} | ${indexLogs[i] ?? '-'} |`),
      '',
    ];
  } finally {
    await removeTempDir(dir);
  }
}

export async function runReplicaBench(argv: string[]): Promise<number> {
  const opts = parseArgs(argv);
  const cluster = await startCluster({ replicas: 2, upstream: { tagTtl: '1h' }, storage: sharedRgw });
  try {
    const lines = ['## Replicas on Ceph RGW + Redis', ''];
    if (opts.only.has('cold')) lines.push(...(await benchCold(cluster, opts)));
    if (opts.only.has('startup')) lines.push(...(await benchStartup(cluster, opts)));
    const report = lines.join('\n');
    process.stdout.write(`${report}\n`);
    await mkdir(dirname(opts.out), { recursive: true });
    await writeFile(opts.out, report);
    return 0;
  } finally {
    await cluster.stop();
  }
}
