/**
 * src/app: the composition root. `buildCore` builds the core of Berth once from a config — the
 * storage driver, the metadata records, the metrics, the upstream router, the mirror, the cache
 * lifecycle and the pre-warm service — for every command: `serve` (serve.ts adds access control and
 * the HTTP app), `worker` and `prewarm` (workers/), `gc` (gc.ts). Each command asks only for the
 * parts it needs; everything is wired here, at construction, so no part is patched into another
 * later (the mirror's cache hooks are the lifecycle from the start).
 *
 * May import anything below it in src/ (registry, storage, upstream, queue, auth, config, metrics);
 * only serve.ts imports http/. Nothing in src/ imports this folder except cli.ts and workers/.
 */
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/types.js';
import { Metrics } from '../metrics/metrics.js';
import { createPrewarmService, loadBullmq, type PrewarmService } from '../queue/index.js';
import { Cluster } from '../registry/cluster.js';
import { MirrorService, type CacheHooks } from '../registry/mirror.js';
import { HostedService } from '../registry/hosted-service.js';
import { Router } from '../registry/routing.js';
import type { StorageDriver } from '../storage/driver.js';
import { createDriver } from '../storage/factory.js';
import { CacheLifecycle, type LifecycleOptions } from '../storage/lifecycle.js';
import { MetadataStore } from '../storage/records.js';
import { StartupError } from './errors.js';

/** Overrides for the lifecycle's internal tunables (tests; a fake free-space probe). */
export type LifecycleTunables = Partial<Pick<LifecycleOptions, 'space' | 'flushInterval' | 'orphanGrace' | 'spoolStaleAfter' | 'spaceRecheck' | 'now' | 'persistAccess' | 'maxSize'>>;

export interface CoreOptions {
  /**
   * `own`: this process owns the store (`serve`): prepare it, clearing spool files a dead process
   * left. `shared`: beside a server that may be running (`worker`, `prewarm`, `gc`): a store that
   * exists is used as it is, because clearing the spool would cut the server's downloads.
   */
  store: 'own' | 'shared';
  /** Build the mirror (upstream clients): needed to serve, run pre-warm jobs or purge. */
  mirror?: boolean;
  /** Build the cache lifecycle (size cap, eviction, GC, purge): false for none. */
  lifecycle?: false | LifecycleTunables;
  /** Build the pre-warm service on the transport the config asks for. */
  prewarm?: boolean;
  metrics?: Metrics;
  now?: () => number;
  /** A driver built elsewhere (tests: the in-memory one); createDriver(config.storage) by default. */
  driver?: StorageDriver;
}

export interface Core {
  config: BerthConfig;
  log: Logger;
  driver: StorageDriver;
  meta: MetadataStore;
  metrics: Metrics;
  router: Router;
  mirror: MirrorService | null;
  lifecycle: CacheLifecycle | null;
  prewarm: PrewarmService | null;
  /** Replica coordination through Redis (src/registry/cluster.ts); null without redis.url or a mirror. */
  cluster: Cluster | null;
  /** Hosted repositories (push), when a `repositories` rule makes any name hosted; else null. */
  hosted: HostedService | null;
  /** Close what was built, in reverse order (the lifecycle is stopped by whoever started it). */
  close(): Promise<void>;
}

/**
 * The storage driver for the config, prepared. `shared`: create what is missing and clear nothing
 * (staged bytes may belong to a running server's downloads); `own`: also clear what a dead
 * process left staged.
 */
export async function openDriver(config: BerthConfig, mode: 'own' | 'shared', injected?: StorageDriver): Promise<StorageDriver> {
  const driver = injected ?? (await createDriver(config.storage));
  try {
    await driver.init(mode === 'shared' ? { shared: true } : {});
  } catch (err) {
    // S3 driver: the bucket (not storage.root) is what failed; its message names endpoint and bucket.
    if ((err as Error | null)?.name === 'S3StoreError') throw new StartupError('storage.s3.bucket', (err as Error).message);
    throw StartupError.fromStorage(config.storage.root, err);
  }
  return driver;
}

export async function buildCore(config: BerthConfig, log: Logger, opts: CoreOptions): Promise<Core> {
  // Replicas share the store: none of them clears what the others may have in flight.
  const store = config.cluster.advertiseUrl !== null ? 'shared' : opts.store;
  const driver = await openDriver(config, store, opts.driver);
  const metrics = opts.metrics ?? new Metrics();
  metrics.prepare({ upstreams: config.upstreams.map((u) => u.name), storageMaxBytes: config.storage.maxSize, storageSpace: () => driver.space() });
  const router = new Router(config.upstreams, config.defaultUpstream);
  const now = opts.now ? { now: opts.now } : {};

  // The two directions between the mirror and the lifecycle, wired here once as named ports: the
  // mirror tells the lifecycle what it stored and served (CacheHooks), the lifecycle asks the
  // mirror what is in flight and makes it forget what it removes (CacheView). They share one
  // metadata store (its record caches must agree), the mirror's.
  let lifecycle: CacheLifecycle | null = null;
  const hooks: CacheHooks = {
    accessed: (d) => lifecycle?.accessed(d),
    stored: (d, size, kind) => lifecycle?.stored(d, size, kind),
    storageFull: (err, needed) => lifecycle?.storageFull(err, needed),
    canStore: () => lifecycle?.canStore() ?? true,
    removalsDone: async (digests) => lifecycle?.removalsDone(digests),
  };
  const wantLifecycle = opts.lifecycle !== undefined && opts.lifecycle !== false;
  // Replicas (src/registry/cluster.ts): with redis.url, tag checks, rate limits and removals are
  // shared; with cluster.advertiseUrl too, blob fills are led by one replica and joined by the rest.
  const wantMirror = opts.mirror ?? true;
  const cluster = wantMirror && config.redis.url !== null
    ? await Cluster.open(config, { driver, metrics, log, ...(wantLifecycle ? { stored: (d, size) => hooks.stored(d, size, 'blob') } : {}) })
    : null;
  const clusterDeps = cluster ? { tagChecks: cluster.tagChecks, ...(cluster.fills ? { fills: cluster.fills } : {}) } : {};
  const mirror = wantMirror
    ? new MirrorService({ driver, upstreams: config.upstreams, metrics, log, ...now, ...(wantLifecycle ? { hooks } : {}), ...clusterDeps })
    : null;
  if (cluster && mirror) cluster.attach(mirror, config.upstreams);
  const meta = mirror?.meta ?? new MetadataStore(driver);
  if (opts.lifecycle !== undefined && opts.lifecycle !== false) {
    const storage = config.storage;
    lifecycle = new CacheLifecycle({
      driver,
      meta,
      metrics,
      log: log.child({ component: 'lifecycle' }),
      ...(mirror ? { cache: mirror } : {}),
      maxSize: storage.maxSize,
      highWatermark: storage.highWatermark,
      lowWatermark: storage.lowWatermark,
      ...opts.lifecycle,
    });
  }
  // BullMQ/ioredis are imported only with redis.url (issue 16: idle memory and start-up time).
  const bullmq = opts.prewarm ? await loadBullmq(config) : null;
  const prewarm = opts.prewarm ? createPrewarmService({ config, router, metrics, log, driver, mirror, bullmq }) : null;
  // Hosted repositories (issue 14): on the mirror's records and the lifecycle's hooks.
  const hosted = config.repositories.some((r) => r.mode === 'hosted')
    ? new HostedService({ config, driver, meta, metrics, log: log.child({ component: 'hosted' }), events: hooks, ...now })
    : null;
  return {
    config, log, driver, meta, metrics, router, mirror, lifecycle, prewarm, cluster, hosted,
    async close() {
      await hosted?.close();
      await prewarm?.close();
      await mirror?.close();
      await cluster?.close();
    },
  };
}
