// What the replica suites (cluster-*.test.ts) share: a real Distribution upstream behind the
// counting fault proxy, a real Redis, and N Berth replicas as child processes sharing ONE store
// and that Redis. The store is one parameter (`ClusterOptions.storage`): a filesystem root
// shared by every replica by default; an object store (the S3 driver) plugs in the same way.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { upstreamOverride } from '../helpers/berth.js';
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
      readyTimeoutMs: 15_000,
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
    const addReplica = async (wanted?: string): Promise<Replica> => {
      const id = wanted ?? `r${++n}`;
      const r = await startReplica(id, {
        upstreams: [
          upstreamOverride(opts.upstreamUrl ?? rig.proxy.url, opts.upstream ?? {}),
          ...(opts.extraUpstreams ?? []).map((u) => ({ url: rig.proxy.url, ...u })),
        ],
        storage: store.config,
        redis: { url: redis.url, prefix },
        cluster: { replicaId: id, secret },
        log: { level: 'warn' },
        ...opts.config,
      });
      replicas.push(r);
      cleanups.push(() => r.stop());
      return r;
    };
    for (let i = 0; i < opts.replicas; i++) await addReplica();
    return { rig, redis, store, replicas, secret, addReplica, stop };
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
