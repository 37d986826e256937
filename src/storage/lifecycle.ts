/**
 * The cache lifecycle: keeps the store inside its disk budget, for as long as it runs, without
 * breaking a pull. This file is the facade; each job lives in src/storage/lifecycle/:
 *
 *  - usage.ts     access order: last access per blob and manifest, persisted in batches.
 *  - graph.ts     the reference graph read from the manifests (what each one names).
 *  - holds.ts     tag, link and pin records as the store says now.
 *  - eviction.ts  above the high watermark, least recently used images and orphan blobs go.
 *  - removal.ts   removing content in the order that survives a crash (records, then bytes).
 *  - gc.ts        garbage collection, the start-up scan, and repair of records naming missing content.
 *  - purge.ts     an operator removes a repository, a tag or a manifest, or many repositories.
 *  - inventory.ts what is cached, per repository (tags, sizes, last pulled, pins), read-only.
 *  - disk-full.ts the degraded mode while writes fail with ENOSPC.
 *
 * All changes to the store are serialised on one queue (eviction, GC, purge). The lifecycle
 * reads and writes records through src/storage/records.ts and reads manifests with the OCI
 * parser; it never imports the registry or anything that speaks HTTP. The registry reaches it
 * through CacheEventsPort (which this class implements) and it reaches the registry through the
 * CacheContentsPort it is given at construction (src/storage/ports.ts).
 */
import type { Logger } from 'pino';
import type { Digest } from '../oci/reference.js';
import type { StorageDriver } from './driver.js';
import type { CacheContentsPort, CacheEventsPort } from './ports.js';
import type { MetadataStore } from './records.js';
import { DiskFullMode } from './lifecycle/disk-full.js';
import { evictPass, overHighMark, type EvictionLimits } from './lifecycle/eviction.js';
import { PassStopped, releaseMemory } from './lifecycle/batch.js';
import { collect, repairRecords, scan } from './lifecycle/gc.js';
import { ReferenceGraph } from './lifecycle/graph.js';
import { readHolds } from './lifecycle/holds.js';
import { inventory, type InventoryOptions, type RepoInventory } from './lifecycle/inventory.js';
import { planPurge, purge, purgeMany, type PurgeManyReport } from './lifecycle/purge.js';
import type { RepoRef } from './lifecycle/holds.js';
import { UsageIndex } from './lifecycle/usage.js';
import {
  LIFECYCLE_DEFAULTS, type CacheStats, type EvictionReport, type GcReport, type LifecycleContext, type LifecycleOptions, type PurgeReport,
} from './lifecycle/types.js';

export {
  LIFECYCLE_DEFAULTS,
  type CacheStats, type CacheView, type EvictionReport, type GcItem, type GcReport, type LifecycleOptions, type PurgeReport, type RemovalReport,
} from './lifecycle/types.js';
export type { InventoryOptions, ManifestInventory, RepoInventory, TagInventory } from './lifecycle/inventory.js';
export type { PurgeManyReport, RepoPurge } from './lifecycle/purge.js';
export type { RepoRef } from './lifecycle/holds.js';

/** Index size from which a pass over the store ends with a full collection (releaseMemory). */
const RELEASE_MEMORY_FROM = 20_000;

/** Uses remembered while the index builds, at most (beyond, a blob keeps its commit time). */
const EARLY_USES_MAX = 100_000;

export class CacheLifecycle implements CacheEventsPort {
  private readonly driver: StorageDriver;
  private readonly meta: MetadataStore;
  private readonly log: Logger;
  private readonly cache: CacheContentsPort | null;
  private readonly now: () => number;
  readonly maxSize: number | null;
  readonly highWatermark: number;
  readonly lowWatermark: number;
  private readonly flushInterval: number;
  private readonly orphanGrace: number;
  private readonly spoolStaleAfter: number;

  private readonly ctx: LifecycleContext;
  private readonly usage: UsageIndex;
  private readonly graph: ReferenceGraph;
  private readonly diskFull: DiskFullMode;
  private readonly discovering = new Set<string>();
  private readonly missing = new Map<string, number>();
  private chain: Promise<void> = Promise.resolve();
  private evictQueued = false;
  private flushTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private stopping = false;
  private lastGc: (GcReport & { at: number }) | null = null;
  private indexState: 'idle' | 'building' | 'ready' = 'idle';
  private indexMs: number | null = null;
  /** The index has counted the whole store at least once (a build or a GC succeeded). */
  private indexComplete = false;
  private built: Promise<number> = Promise.resolve(0);
  /** Uses of digests the index did not know yet while it was being built (digest → when). */
  private readonly early = new Map<Digest, number>();

  constructor(o: LifecycleOptions) {
    this.driver = o.driver;
    this.meta = o.meta;
    this.log = o.log;
    this.cache = o.cache ?? null;
    this.now = o.now ?? Date.now;
    this.maxSize = o.maxSize;
    this.highWatermark = o.highWatermark;
    this.lowWatermark = o.lowWatermark;
    this.flushInterval = o.flushInterval ?? LIFECYCLE_DEFAULTS.flushInterval;
    this.orphanGrace = o.orphanGrace ?? LIFECYCLE_DEFAULTS.orphanGrace;
    this.spoolStaleAfter = o.spoolStaleAfter ?? LIFECYCLE_DEFAULTS.spoolStaleAfter;
    const space = o.space ?? (() => o.driver.space());
    this.diskFull = new DiskFullMode(space, o.metrics, o.log, this.now, o.spaceRecheck ?? LIFECYCLE_DEFAULTS.spaceRecheck);
    this.usage = new UsageIndex(o.meta, o.log, this.now, o.persistAccess ?? true, (err) => this.storageFull(err, null));
    this.graph = new ReferenceGraph(o.driver, o.log, this.usage.table);
    this.ctx = {
      driver: o.driver, records: o.meta, metrics: o.metrics, log: o.log, now: this.now, cache: this.cache,
      usage: this.usage, graph: this.graph, evictions: { runs: 0, blobs: 0, bytes: 0, lastRunAt: null },
      stopping: () => this.stopping,
      removing: new Map(),
    };
    o.metrics.reportStorageFrom(() => ({ bytes: this.usage.bytes, blobs: this.usage.count }));
  }

  private get limits(): EvictionLimits {
    return { maxSize: this.maxSize, highWatermark: this.highWatermark, lowWatermark: this.lowWatermark };
  }

  // ------------------------------------------------------------------ start, stop

  /**
   * Build the index from the store, load access times, and repair records that name missing
   * content (the start-up check after a crash). `repair: false` only reports (dry runs).
   * Resolves once the index is built; `serve` uses startInBackground instead.
   */
  async start(opts: { timers?: boolean; repair?: boolean } = {}): Promise<{ repaired: number }> {
    const built = this.build(opts.repair ?? true);
    if (opts.timers ?? true) this.startTimers();
    const repaired = await built;
    this.maybeEvict();
    return { repaired };
  }

  /**
   * Start building the index and return at once: pulls are served meanwhile (a hit needs only
   * the store, never the index), uses are remembered and applied when the build ends, commits are
   * counted as they happen. Eviction, GC and purges queue behind the build, so they only ever see
   * the whole store. `ready()` resolves when it is done; a failed build is logged and retried by
   * the next GC's resynchronisation.
   */
  startInBackground(opts: { timers?: boolean } = {}): void {
    if (opts.timers ?? true) this.startTimers();
    this.build(true).then(
      () => this.maybeEvict(),
      (err: unknown) => {
        if (err instanceof PassStopped) this.log.info('the cache index build ended early: the server is stopping');
        else this.log.error({ err }, 'building the cache index failed; the next garbage collection rebuilds it');
      },
    );
  }

  /** Resolves once the index has been built (at once when it has). */
  ready(): Promise<void> {
    return this.built.then(() => undefined, () => undefined);
  }

  /** Is the index built (every blob in the store counted)? */
  get indexReady(): boolean {
    return this.indexState === 'ready';
  }

  private build(repair: boolean): Promise<number> {
    const began = this.now();
    this.indexState = 'building';
    const run = this.exclusive(async () => {
      // The blob listing (then the access records) and the walk over the tag and link records
      // overlap, as in a GC pass (gc.ts).
      const [missing, holds] = await Promise.all([
        scan(this.ctx, repair).then(async (n) => {
          await this.usage.loadAccess();
          return n;
        }),
        readHolds(this.meta),
      ]);
      const dangling = await repairRecords(this.ctx, holds, !repair);
      this.indexState = 'ready';
      this.indexComplete = true;
      this.indexMs = this.now() - began;
      this.applyEarlyUses();
      const gcMs = await this.afterPass();
      this.log.info(
        { blobs: this.usage.count, bytes: this.usage.bytes, manifests: this.graph.size, repairedRecords: missing + dangling, ms: this.indexMs, gcMs },
        'cache index built',
      );
      return missing + dangling;
    });
    this.built = run;
    // Failing, the index is still usable (what it counted so far; the next GC resynchronises).
    run.catch(() => {
      this.indexState = 'ready';
      this.applyEarlyUses();
    });
    return run;
  }

  /**
   * After a pass over the whole store: give the heap it grew back (a full collection, only for
   * stores big enough for it to matter). The duration in ms, or null when none ran.
   */
  private async afterPass(): Promise<number | null> {
    if (this.usage.count < RELEASE_MEMORY_FROM) return null;
    const ms = await releaseMemory();
    return ms === null ? null : Math.round(ms);
  }

  /** Uses served while the index was being built, now that it knows every blob. */
  private applyEarlyUses(): void {
    const early = [...this.early];
    this.early.clear();
    for (const [d, at] of early) if (!this.usage.touchAt(d, at)) this.discover(d);
  }

  private startTimers(): void {
    if (this.flushTimer) return;
    this.flushTimer = setInterval(() => void this.flush(), this.flushInterval);
    this.flushTimer.unref();
  }

  /** Stop timers, let queued work finish, write access times. */
  async stop(): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer);
    this.flushTimer = null;
    this.diskFull.stop();
    // A listing still under way (the build of a large store, a GC) ends early instead of holding
    // the shutdown for as long as the rest of the store takes to list.
    this.stopping = true;
    await this.settled();
    this.stopped = true;
    await this.flush();
  }

  /** Resolves once no pass is queued or running and every stored manifest has been read. */
  async settled(): Promise<void> {
    for (;;) {
      const chain = this.chain;
      const learning = this.graph.pending();
      await Promise.all(learning);
      await chain;
      if (chain === this.chain && this.graph.pending().length === 0) return;
    }
  }

  /** Is this digest in the store, as far as the index knows? */
  has(digest: string): boolean {
    return this.usage.has(digest);
  }

  /** Bytes stored (blobs and manifests, each counted once). */
  get bytes(): number {
    return this.usage.bytes;
  }

  /** Write the access records that changed since the last flush. */
  flush(): Promise<void> {
    // An access record is rewritten whole from the index: while the index is still being built it
    // does not know every blob of a record yet, and rewriting would drop the others' times.
    // After a failed build the next successful GC (a full resynchronisation) allows it again.
    if (!this.indexComplete) return Promise.resolve();
    return this.usage.flush();
  }

  // ------------------------------------------------------------------ CacheEventsPort

  /** A blob or manifest was served: it is now the most recently used. Cheap; never throws. */
  accessed(digest: Digest): void {
    if (this.stopped) return;
    if (this.usage.touch(digest)) return;
    if (this.indexState === 'building') {
      // Not listed yet: remembered, applied once the build has counted it (bounded: one entry per
      // digest, and a build lists everything the store holds anyway).
      if (this.early.size < EARLY_USES_MAX) this.early.set(digest, this.now());
      return;
    }
    this.discover(digest);
  }

  /**
   * Served, but not in the index: written by another process on the same store (a pre-warm
   * worker, `berth prewarm`). Counted from now on (GC's resync would find it later anyway).
   * Runs on the change queue so it cannot race an eviction removing the same file.
   */
  private discover(digest: Digest): void {
    if (this.discovering.has(digest)) return;
    // Not in the store either (a manifest the mirror holds only in memory while the disk is
    // full): looked for at most once a minute.
    const missed = this.missing.get(digest);
    if (missed !== undefined && this.now() - missed < 60_000) return;
    this.discovering.add(digest);
    this.exclusive(async () => {
      const s = await this.driver.statBlob(digest);
      if (!s) {
        if (this.missing.size >= 10_000) this.missing.clear();
        this.missing.set(digest, this.now());
        return;
      }
      this.missing.delete(digest);
      if (this.usage.has(digest)) return;
      this.usage.stored(digest, s.size);
      if (await this.meta.getManifest(digest)) await this.graph.learn(digest);
    })
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message, digest }, 'could not index a blob'))
      .finally(() => {
        this.discovering.delete(digest);
        this.maybeEvict();
      });
  }

  /**
   * Resolves once no removal of these digests is in flight. A writer that marks content used
   * (`accessed`) and then checks it is still stored calls this in between, so a GC pass that
   * decided on the content a moment before the mark has finished removing it when it looks.
   */
  async removalsDone(digests: readonly Digest[]): Promise<void> {
    await Promise.all(digests.map((d) => this.ctx.removing.get(d)));
  }

  /** A blob or manifest was committed. Cheap; the manifest is read and eviction runs off the request path. */
  stored(digest: Digest, size: number, kind: 'manifest' | 'blob'): void {
    if (this.stopped) return;
    this.usage.stored(digest, size);
    if (kind === 'manifest') this.graph.learnLater(digest);
    this.maybeEvict();
  }

  /** A write failed with ENOSPC/EDQUOT: serve what is cached, stream misses through, watch for space. */
  storageFull(err: Error, needed: number | null): void {
    if (this.stopped) return;
    this.diskFull.enter(err, needed);
  }

  /** May a blob miss be cached now? false while the disk is full. */
  canStore(): boolean {
    return this.diskFull.canStore();
  }

  /** Measure free space; leave the disk-full mode when there is room again. Returns canStore(). */
  checkSpace(): Promise<boolean> {
    return this.diskFull.check();
  }

  /**
   * For /readyz (registered as an optional check: the mirror is degraded, not unready, while the
   * disk is full, because it still serves everything; taking it out of a load balancer would not).
   */
  diskCheck(): { ok: boolean; detail?: string } {
    return this.diskFull.readiness();
  }

  // ------------------------------------------------------------------ figures

  async stats(): Promise<CacheStats> {
    const pins = await this.meta.listPins();
    const pinned = new Set(pins.flatMap((p) => p.pin.digests));
    let pinnedBlobs = 0;
    let pinnedBytes = 0;
    for (const d of pinned) {
      const e = this.usage.get(d);
      if (!e) continue;
      pinnedBlobs += 1;
      pinnedBytes += e.size;
    }
    const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
    const gc = this.lastGc;
    const ev = this.ctx.evictions;
    const full = this.diskFull.state();
    return {
      bytes: this.usage.bytes,
      blobs: this.usage.count,
      manifests: this.graph.size,
      maxSize: this.maxSize,
      highWatermark: this.highWatermark,
      lowWatermark: this.lowWatermark,
      pinned: { pins: pins.length, blobs: pinnedBlobs, bytes: pinnedBytes },
      evictions: { runs: ev.runs, blobs: ev.blobs, bytes: ev.bytes, lastRunAt: iso(ev.lastRunAt) },
      gc: gc ? { ...gc, at: iso(gc.at) ?? '' } : null,
      index: { state: this.indexState, ms: this.indexMs },
      storageFull: full !== null,
      storageFullSince: iso(full?.since ?? null),
      freeBytes: full?.free ?? null,
    };
  }

  // ------------------------------------------------------------------ passes

  /** Run an eviction pass now (it also runs by itself whenever usage passes the high mark). */
  evict(): Promise<EvictionReport> {
    return this.exclusive(() => evictPass(this.ctx, this.limits));
  }

  private maybeEvict(): void {
    if (this.maxSize === null || this.stopped || this.evictQueued) return;
    if (!overHighMark(this.ctx, this.limits)) return;
    this.evictQueued = true;
    this.exclusive(async () => {
      this.evictQueued = false;
      await evictPass(this.ctx, this.limits);
    }).catch((err: unknown) => this.log.error({ err }, 'eviction failed'));
  }

  /**
   * Collect garbage: resynchronise the index with the store, drop records naming missing content,
   * remove manifests and blobs nothing holds (older than the grace period) and stale staged
   * bytes. With dryRun nothing is changed; the report says what would go.
   */
  gc(opts: { dryRun?: boolean; graceMs?: number; list?: boolean } = {}): Promise<GcReport> {
    return this.exclusive(async () => {
      const at = this.now();
      const dryRun = opts.dryRun ?? false;
      const report = await collect(this.ctx, { dryRun, graceMs: opts.graceMs ?? this.orphanGrace, stagingStaleAfter: this.spoolStaleAfter, list: opts.list ?? false });
      this.indexComplete = true;
      this.lastGc = { ...report, at };
      if (!dryRun) await evictPass(this.ctx, this.limits);
      await this.afterPass();
      return report;
    });
  }

  /**
   * Remove a repository (`reference` null), a tag, or a manifest by digest from the cache. Tags
   * and links go; a manifest goes when nothing else (another repository, tag, index or pin) holds
   * it, with the blobs only it needed. Null when the cache knows nothing by that name.
   */
  purge(upstream: string, name: string, reference: string | null): Promise<PurgeReport | null> {
    return this.exclusive(() => purge(this.ctx, upstream, name, reference));
  }

  /**
   * What the cache holds for each repository (tags, linked manifests, bytes, last pulled, pins),
   * in the order given; repositories with no records are left out. Read-only, so it does not wait
   * for queued passes; a pass running meanwhile may show in one repository and not another.
   */
  async inventory(repos: readonly RepoRef[], opts: InventoryOptions): Promise<RepoInventory[]> {
    await this.ready();
    await this.graph.learned();
    return inventory(this.ctx, repos, opts);
  }

  /**
   * Remove several whole repositories (purge by pattern), or with dryRun only report what would
   * go: the same totals, each repository with its tags. Shared content stays while anything
   * outside the set holds it.
   */
  purgeRepositories(repos: readonly RepoRef[], opts: { dryRun: boolean }): Promise<PurgeManyReport> {
    return this.exclusive(() => (opts.dryRun ? planPurge(this.ctx, repos) : purgeMany(this.ctx, repos)));
  }

  /** Run `fn` after every change queued before it: one change to the store at a time. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}
