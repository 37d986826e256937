// What the replica suites (cluster-*.test.ts) share: a real Distribution upstream behind the
// counting fault proxy, a real Redis, and N Berth replicas as child processes sharing ONE store
// and that Redis. The store is one parameter (`ClusterOptions.storage`): a bucket on a private
// Ceph RGW (`sharedRgw`, the S3 driver, what the replica suites run on) or one filesystem root
// (`sharedFilesystem`, the default, kept for a smoke test).
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { Agent as HttpAgent, createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { stringify } from 'yaml';
import { upstreamOverride } from '../helpers/berth.js';
import { startCeph, type CephRgw } from '../helpers/ceph.js';
import { freePort, makeTempDir, removeTempDir, startProcess, startRedis, type ProcessHandle, type RedisServer } from '../helpers/index.js';
import { startRig, type Rig } from '../helpers/rig.js';

/** A blob as the store holds it: the digest it is stored under, and what its bytes hash to. */
export interface StoredBlob {
  digest: string;
  hashesTo: string;
}

/**
 * Where every replica keeps blobs and records: its `storage` config, every blob it holds (read
 * back and hashed, so a test can show nothing unverified was committed), and its cleanup. An
 * object store plugs in by implementing the same three.
 */
export interface SharedStore {
  config: Record<string, unknown>;
  blobs(): Promise<StoredBlob[]>;
  cleanup(): Promise<void>;
  /** The bucket, when the store is an S3 one (tests list its keys and multipart uploads). */
  s3?: {
    ceph: CephRgw;
    bucket: string;
    prefix: string;
    /** Every request the replicas sent the store, in order (they reach RGW through a counting relay). */
    requests: S3Request[];
  };
}

/** One request to the object store, as the counting relay saw it. */
export interface S3Request {
  method: string;
  /** The key, without the bucket (`mirror/blobs/sha256/…`). */
  key: string;
  /** The query's parameter names (`uploads`, `uploadId`, `partNumber`, …). */
  params: string[];
}

/**
 * Where a blob came from in the store's request log: single PUTs, multipart uploads created, and
 * multipart uploads completed under its key.
 */
export function uploadsOf(requests: readonly S3Request[], key: string): { puts: number; created: number; completed: number } {
  const on = requests.filter((r) => r.key === key);
  return {
    puts: on.filter((r) => r.method === 'PUT' && r.params.length === 0).length,
    created: on.filter((r) => r.method === 'POST' && r.params.includes('uploads')).length,
    completed: on.filter((r) => r.method === 'POST' && r.params.includes('uploadId')).length,
  };
}

/**
 * A plain HTTP relay in front of RGW that logs each request's method, key and query names. The
 * relay forwards every header unchanged (the signature covers the Host the client used).
 */
async function countingRelay(target: string, bucket: string): Promise<{ url: string; requests: S3Request[]; stop(): Promise<void> }> {
  const requests: S3Request[] = [];
  const to = new URL(target);
  const agent = new HttpAgent({ keepAlive: true, maxSockets: 256 });
  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://relay');
    const path = decodeURIComponent(u.pathname);
    const key = path.startsWith(`/${bucket}/`) ? path.slice(bucket.length + 2) : path;
    requests.push({ method: req.method ?? '', key, params: [...u.searchParams.keys()] });
    const up = httpRequest({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers, agent }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
      ur.on('error', () => res.destroy());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}

/** The default shared store: one filesystem root for every replica. */
export async function sharedFilesystem(): Promise<SharedStore> {
  const root = await makeTempDir('cluster-store');
  return {
    config: { root },
    async blobs() {
      const out: StoredBlob[] = [];
      const base = join(root, 'blobs');
      for (const alg of await readdir(base).catch(() => [])) {
        for (const prefix of await readdir(join(base, alg))) {
          for (const name of await readdir(join(base, alg, prefix))) {
            const hash = createHash(alg);
            for await (const chunk of createReadStream(join(base, alg, prefix, name))) hash.update(chunk as Buffer);
            out.push({ digest: `${alg}:${name}`, hashesTo: `${alg}:${hash.digest('hex')}` });
          }
        }
      }
      return out;
    },
    cleanup: () => removeTempDir(root),
  };
}

/**
 * A bucket on a private Ceph RGW started for this store (one per test file: each file starts one
 * cluster), under a prefix like a shared production bucket. `blobs()` lists the bucket's `blobs/`
 * keys and streams each object through its hash.
 */
export async function sharedRgw(): Promise<SharedStore> {
  const bucket = 'berth-replicas';
  const prefix = 'mirror';
  const ceph = await startCeph({ buckets: [bucket] });
  console.log(`# Ceph RGW started in ${ceph.startMs} ms`);
  const relay = await countingRelay(ceph.endpoint, bucket).catch(async (err: unknown) => {
    await ceph.stop();
    throw err;
  });
  return {
    config: {
      driver: 's3',
      s3: {
        endpoint: relay.url, region: ceph.region, bucket, prefix,
        accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey,
      },
    },
    s3: { ceph, bucket, prefix, requests: relay.requests },
    async blobs() {
      const out: StoredBlob[] = [];
      const base = `${prefix}/blobs/`;
      for (const key of await ceph.listKeys(bucket, base)) {
        const [alg = '', hex = ''] = key.slice(base.length).split('/');
        const res = await ceph.client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        const hash = createHash(alg);
        for await (const chunk of res.Body as AsyncIterable<Uint8Array>) hash.update(chunk);
        out.push({ digest: `${alg}:${hex}`, hashesTo: `${alg}:${hash.digest('hex')}` });
      }
      return out;
    },
    async cleanup() {
      await relay.stop();
      await ceph.stop();
    },
  };
}

export interface ClusterOptions {
  replicas: number;
  /** Extra fields of the docker.io upstream entry (tagTtl …); its url is the proxy. */
  upstream?: Record<string, unknown>;
  /** The shared store (default: `sharedFilesystem()`). */
  storage?: () => Promise<SharedStore>;
  /** Other config for every replica. */
  config?: Record<string, unknown>;
  /** Upstream URL replicas use instead of the proxy (a throttle in front of it, a fake upstream). */
  upstreamUrl?: string;
  /** More upstreams (name, tagTtl …), also reached through the proxy. */
  extraUpstreams?: Record<string, unknown>[];
}

export interface Replica {
  id: string;
  url: string;
  proc: ProcessHandle;
  stop(): Promise<void>;
}

/**
 * `berth serve` as a child process on a port chosen up front, because the replica's advertised
 * URL (given here by BERTH_CLUSTER_ADVERTISE_URL, as a deployment sets it per pod) names it.
 */
async function startReplica(id: string, config: Record<string, unknown>): Promise<Replica> {
  const dir = await makeTempDir('cluster-replica');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const file = join(dir, 'berth.yaml');
  await writeFile(file, stringify({ ...config, http: { host: '127.0.0.1', port } }));
  try {
    const proc = await startProcess(process.execPath, ['dist/src/cli.js', 'serve'], {
      env: { BERTH_CONFIG: file, BERTH_CLUSTER_ADVERTISE_URL: url },
      readyUrl: `${url}/healthz`,
      readyTimeoutMs: 45_000,
    });
    return {
      id, url, proc,
      async stop() {
        await proc.stop();
        await removeTempDir(dir);
      },
    };
  } catch (err) {
    await removeTempDir(dir);
    throw err;
  }
}

export interface ClusterRig {
  rig: Rig;
  redis: RedisServer;
  store: SharedStore;
  replicas: Replica[];
  secret: string;
  /** The config every replica shares (upstreams, storage, redis, cluster.secret): a command beside them runs with it. */
  config: Record<string, unknown>;
  /** Start one more replica like the others (say `id` to reuse a name). */
  addReplica(id?: string): Promise<Replica>;
  stop(): Promise<void>;
}

export async function startCluster(opts: ClusterOptions): Promise<ClusterRig> {
  const rig = await startRig({ startBerth: false });
  const cleanups: Array<() => Promise<void>> = [() => rig.stop()];
  const stop = async (): Promise<void> => {
    while (cleanups.length > 0) await cleanups.pop()?.().catch(() => undefined);
  };
  try {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const store = await (opts.storage ?? sharedFilesystem)();
    cleanups.push(() => store.cleanup());
    const secret = randomBytes(24).toString('hex');
    const prefix = `t${randomBytes(4).toString('hex')}`;
    const replicas: Replica[] = [];
    let n = 0;
    const config: Record<string, unknown> = {
      upstreams: [
        upstreamOverride(opts.upstreamUrl ?? rig.proxy.url, opts.upstream ?? {}),
        ...(opts.extraUpstreams ?? []).map((u) => ({ url: rig.proxy.url, ...u })),
      ],
      storage: store.config,
      redis: { url: redis.url, prefix },
      cluster: { secret },
      log: { level: 'warn' },
      ...opts.config,
    };
    const addReplica = async (wanted?: string): Promise<Replica> => {
      const id = wanted ?? `r${++n}`;
      const r = await startReplica(id, { ...config, cluster: { replicaId: id, secret } });
      replicas.push(r);
      cleanups.push(() => r.stop());
      return r;
    };
    for (let i = 0; i < opts.replicas; i++) await addReplica();
    return { rig, redis, store, replicas, secret, config, addReplica, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A counter's (or gauge's) value from a replica's /metrics; 0 when the series is absent. */
export async function metric(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await request(`${url}/metrics`)).body.text();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    if (Object.entries(labels).every(([k, v]) => rest.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}
