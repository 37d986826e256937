/**
 * The cache lifecycle: keeps the store inside its disk budget, for as long as it runs, without
 * breaking a pull.
 *
 *  - Access tracking. Every blob and manifest has a last-access time, updated through the cache
 *    hooks (`accessed`, `stored`), held in memory and persisted in batches as small records
 *    (`access/<alg>/<xx>`, one per first digest byte) every few seconds and on stop. A blob with no
 *    record (its access was not flushed before a crash) falls back to its file's commit time.
 *  - An index of blob sizes, built at start from the store and kept by `stored`; a reference
 *    graph built from the manifests (which blobs and child manifests each one names), so a blob
 *    shared by many repositories is counted once and removed only when no kept manifest names it.
 *  - Eviction. Above highWatermark × maxSize, whole images go, least recently used first, until
 *    usage is under lowWatermark × maxSize. An image is a manifest no kept index refers to, with
 *    its children; it goes with its tag records and repository links (those first, then the
 *    manifest records, then the bytes: a crash at any step leaves no tag naming missing content)
 *    and with the blobs no kept manifest needs. Pinned digests (pre-warm) are never removed; nor
 *    is a blob with a fill in flight. A blob being read is safe to remove: readers hold an open
 *    descriptor, and on POSIX filesystems unlinking a file leaves its open descriptors readable.
 *  - Garbage collection. Blobs and manifests nothing holds (no tag, link or pin, directly or
 *    through an index), spool files a failed write left behind, and records that name content
 *    which is not there (repaired: dropped). Orphans younger than a grace period are left alone:
 *    a fill and the manifest that names it are written a moment apart.
 *  - Purge. An operator (or a client, with storage.deleteEnabled) removes a repository, a tag or a
 *    manifest; content another repository, tag or pin still holds stays.
 *  - Disk full. A write that fails with ENOSPC puts the cache in a degraded mode: cached content
 *    is still served and misses are streamed through uncached (`canStore` says so to the cache),
 *    until free space is back (re-checked with statfs).
 *
 * All changes to the store are serialised on one queue (eviction, GC, purge). The lifecycle reads
 * and writes the registry's records through MetadataStore and reads manifests with the registry's
 * parser; it never imports MirrorService or anything that speaks HTTP.
 */
import type { Logger } from 'pino';
import type { Metrics } from '../metrics/metrics.js';
import type { MetadataStore } from '../registry/metadata.js';
import { parseManifest } from '../oci/media.js';
import type { StorageDriver } from './driver.js';
import { isNoSpace, type SpaceProbe } from './space.js';

/** Tunables that are not configuration: sensible for every deployment, overridable in tests. */
export const LIFECYCLE_DEFAULTS = {
  /** How often access times are written to storage. A crash loses at most this much of them. */
  flushInterval: 5_000,
  /** Unreferenced content younger than this is left for the next collection. */
  orphanGrace: 15 * 60_000,
  /** A spool file not written for this long belongs to no fill (fills time out long before). */
  spoolStaleAfter: 15 * 60_000,
  /** While the disk is full, how often free space is measured again. */
  spaceRecheck: 10_000,
  /**
   * Caching resumes once this fraction of the disk is free (at most resumeFreeMax bytes) and the
   * blob whose write failed would fit, so the mode does not flap on every miss.
   */
  resumeFreeFraction: 0.05,
  resumeFreeMax: 1024 ** 3,
};

/** What the lifecycle needs from the cache in front of it (MirrorService provides it). */
export interface CacheView {
  /** Drop a manifest from in-memory caches: it is being removed from storage. */
  forget(digest: string): void;
  /** Is a fill for this blob in flight? (It is never removed then.) */
  filling(digest: string): boolean;
}

/** A driver that can list and remove spool files a failed write left behind (filesystem). */
export interface SpoolSweeper {
  sweepSpool(olderThanMs: number, dryRun: boolean): Promise<{ files: number; bytes: number }>;
}

function isSpoolSweeper(d: StorageDriver): d is StorageDriver & SpoolSweeper {
  return typeof (d as Partial<SpoolSweeper>).sweepSpool === 'function';
}

export interface LifecycleOptions {
  driver: StorageDriver;
  meta: MetadataStore;
  metrics: Metrics;
  log: Logger;
  maxSize: number | null;
  highWatermark: number;
  lowWatermark: number;
  cache?: CacheView;
  /** Free-space probe for the disk-full mode; without one, writes are simply tried again later. */
  space?: SpaceProbe;
  /** Write access times to storage (off for one-shot tools running beside a server). */
  persistAccess?: boolean;
  now?: () => number;
  flushInterval?: number;
  orphanGrace?: number;
  spoolStaleAfter?: number;
  spaceRecheck?: number;
}

export interface RemovalReport {
  tags: number;
  links: number;
  manifests: number;
  blobs: number;
  bytes: number;
}

export interface EvictionReport extends RemovalReport {
  /** Usage before and after the pass (bytes). */
  before: number;
  after: number;
}

export interface PurgeReport extends RemovalReport {
  /** Manifests left in place because another repository, tag, index or pin still holds them. */
  kept: number;
}

export interface GcReport {
  dryRun: boolean;
  /** Blobs (manifest bytes included) removed, or that would be. */
  blobs: number;
  bytes: number;
  /** Manifest records nothing holds. */
  manifests: number;
  /** Tag, link and manifest records that named missing content. */
  records: number;
  spoolFiles: number;
  spoolBytes: number;
  ms: number;
  /** With `list` and `dryRun`: each blob that would go (`manifest` when it is an image manifest). */
  items?: GcItem[];
}

export interface GcItem {
  digest: string;
  kind: 'manifest' | 'blob';
  bytes: number;
}

export interface CacheStats {
  bytes: number;
  blobs: number;
  manifests: number;
  maxSize: number | null;
  highWatermark: number;
  lowWatermark: number;
  pinned: { pins: number; blobs: number; bytes: number };
  evictions: { runs: number; blobs: number; bytes: number; lastRunAt: string | null };
  gc: (GcReport & { at: string }) | null;
  storageFull: boolean;
  storageFullSince: string | null;
  freeBytes: number | null;
}

interface BlobEntry {
  size: number;
  /** Last access, ms since epoch. */
  access: number;
  /** Recency order among equal times (monotonic in this process). */
  seq: number;
}

interface ManifestRefs {
  /** Child manifests (an index's entries). */
  children: string[];
  /** Config and layers. */
  blobs: string[];
}

interface RepoRef {
  upstream: string;
  name: string;
}

interface TagRef extends RepoRef {
  tag: string;
}

/** Who holds what, read from the records at the start of each pass. */
interface Holds {
  tags: Map<string, TagRef[]>;
  links: Map<string, RepoRef[]>;
  /** upstream\0name → tag and link records left in the repository. */
  repoEntries: Map<string, number>;
  pinned: Set<string>;
  pins: number;
}

interface Unit {
  kind: 'image' | 'blob';
  digest: string;
  access: number;
  seq: number;
}

type Reason = 'evict' | 'gc' | 'purge';

const TAG_KEY = /^repos\/([^/]+)\/(.+?)\/_tags\/([^/]+)$/;
const LINK_KEY = /^repos\/([^/]+)\/(.+?)\/_manifests\/([a-z0-9]+)\/([a-zA-Z0-9=_-]+)$/;

function shardOf(digest: string): string {
  const i = digest.indexOf(':');
  return `access/${digest.slice(0, i)}/${digest.slice(i + 1, i + 3)}`;
}

function repoId(r: RepoRef): string {
  return `${r.upstream}\u0000${r.name}`;
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

function bump(m: Map<string, number>, k: string, by: number): void {
  const n = (m.get(k) ?? 0) + by;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

function older(a: { access: number; seq: number }, b: { access: number; seq: number }): number {
  return a.access - b.access || a.seq - b.seq;
}

function emptyRemoval(): RemovalReport {
  return { tags: 0, links: 0, manifests: 0, blobs: 0, bytes: 0 };
}

export class CacheLifecycle {
  private readonly driver: StorageDriver;
  private readonly meta: MetadataStore;
  private readonly metrics: Metrics;
  private readonly log: Logger;
  private readonly cache: CacheView | null;
  private readonly space: SpaceProbe | null;
  private readonly now: () => number;
  private readonly persistAccess: boolean;
  readonly maxSize: number | null;
  readonly highWatermark: number;
  readonly lowWatermark: number;
  private readonly flushInterval: number;
  private readonly orphanGrace: number;
  private readonly spoolStaleAfter: number;
  private readonly spaceRecheck: number;

  private readonly blobs = new Map<string, BlobEntry>();
  private readonly manifests = new Map<string, ManifestRefs>();
  /** How many known manifests name a digest as config or layer. */
  private readonly blobRefs = new Map<string, number>();
  /** How many known manifests name a digest as a child. */
  private readonly parents = new Map<string, number>();
  private usage = 0;
  private seq = 0;
  private readonly dirty = new Set<string>();
  private readonly learning = new Set<Promise<void>>();
  private readonly discovering = new Set<string>();
  private readonly missing = new Map<string, number>();
  private chain: Promise<void> = Promise.resolve();
  private evictQueued = false;
  private flushTimer: NodeJS.Timeout | null = null;
  private spaceTimer: NodeJS.Timeout | null = null;
  private full: { since: number; needed: number; free: number | null } | null = null;
  private stopped = false;
  private readonly evictions = { runs: 0, blobs: 0, bytes: 0, lastRunAt: null as number | null };
  private lastGc: (GcReport & { at: number }) | null = null;

  constructor(o: LifecycleOptions) {
    this.driver = o.driver;
    this.meta = o.meta;
    this.metrics = o.metrics;
    this.log = o.log;
    this.cache = o.cache ?? null;
    this.space = o.space ?? null;
    this.now = o.now ?? Date.now;
    this.persistAccess = o.persistAccess ?? true;
    this.maxSize = o.maxSize;
    this.highWatermark = o.highWatermark;
    this.lowWatermark = o.lowWatermark;
    this.flushInterval = o.flushInterval ?? LIFECYCLE_DEFAULTS.flushInterval;
    this.orphanGrace = o.orphanGrace ?? LIFECYCLE_DEFAULTS.orphanGrace;
    this.spoolStaleAfter = o.spoolStaleAfter ?? LIFECYCLE_DEFAULTS.spoolStaleAfter;
    this.spaceRecheck = o.spaceRecheck ?? LIFECYCLE_DEFAULTS.spaceRecheck;
    this.metrics.reportStorageFrom(() => ({ bytes: this.usage, blobs: this.blobs.size }));
    this.metrics.storageFull.set(0);
  }

  // ------------------------------------------------------------------ start, stop

  /**
   * Build the index from the store, load access times, and repair records that name missing
   * content (the start-up check after a crash). `repair: false` only reports (dry runs).
   */
  async start(opts: { timers?: boolean; repair?: boolean } = {}): Promise<{ repaired: number }> {
    const began = this.now();
    const repair = opts.repair ?? true;
    const repaired = await this.exclusive(async () => {
      const missing = await this.scan(repair);
      await this.loadAccess();
      const holds = await this.readHolds();
      const dangling = await this.repairRecords(holds, !repair);
      this.log.info(
        { blobs: this.blobs.size, bytes: this.usage, manifests: this.manifests.size, repairedRecords: missing + dangling, ms: this.now() - began },
        'cache index built',
      );
      return missing + dangling;
    });
    if (opts.timers ?? true) {
      this.flushTimer = setInterval(() => void this.flush(), this.flushInterval);
      this.flushTimer.unref();
    }
    this.maybeEvict();
    return { repaired };
  }

  /** Stop timers, let queued work finish, write access times. */
  async stop(): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer);
    if (this.spaceTimer) clearInterval(this.spaceTimer);
    this.flushTimer = null;
    this.spaceTimer = null;
    await this.settled();
    this.stopped = true;
    await this.flush();
  }

  /** Resolves once no pass is queued or running and every stored manifest has been read. */
  async settled(): Promise<void> {
    for (;;) {
      const chain = this.chain;
      await Promise.all([...this.learning]);
      await chain;
      if (chain === this.chain && this.learning.size === 0) return;
    }
  }

  /** Is this digest in the store, as far as the index knows? */
  has(digest: string): boolean {
    return this.blobs.has(digest);
  }

  /** Bytes stored (blobs and manifests, each counted once). */
  get bytes(): number {
    return this.usage;
  }

  // ------------------------------------------------------------------ cache hooks

  /** A blob or manifest was served: it is now the most recently used. Cheap; never throws. */
  accessed(digest: string): void {
    if (this.stopped) return;
    const e = this.blobs.get(digest);
    if (!e) {
      this.discover(digest);
      return;
    }
    e.access = this.now();
    e.seq = ++this.seq;
    this.dirty.add(shardOf(digest));
  }

  /**
   * Served, but not in the index: written by another process on the same store (a pre-warm
   * worker, `berth prewarm`). Counted from now on (GC's resync would find it later anyway).
   * Runs on the change queue so it cannot race an eviction removing the same file.
   */
  private discover(digest: string): void {
    if (this.discovering.has(digest)) return;
    // Not on disk either (a manifest the mirror holds only in memory while the disk is full):
    // looked for at most once a minute.
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
      if (this.blobs.has(digest)) return;
      this.blobs.set(digest, { size: s.size, access: this.now(), seq: ++this.seq });
      this.usage += s.size;
      this.dirty.add(shardOf(digest));
      if (await this.meta.getManifest(digest)) await this.learn(digest);
    })
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message, digest }, 'could not index a blob'))
      .finally(() => {
        this.discovering.delete(digest);
        this.maybeEvict();
      });
  }

  /** A blob or manifest was committed. Cheap; the manifest is read and eviction runs off the request path. */
  stored(digest: string, size: number, kind: 'manifest' | 'blob'): void {
    if (this.stopped) return;
    const e = this.blobs.get(digest);
    if (e) {
      this.usage += size - e.size;
      e.size = size;
      e.access = this.now();
      e.seq = ++this.seq;
    } else {
      this.blobs.set(digest, { size, access: this.now(), seq: ++this.seq });
      this.usage += size;
    }
    this.dirty.add(shardOf(digest));
    if (kind === 'manifest') this.learnLater(digest);
    this.maybeEvict();
  }

  /** A write failed with ENOSPC/EDQUOT: serve what is cached, stream misses through, watch for space. */
  storageFull(err: Error, needed: number | null): void {
    if (this.stopped) return;
    if (this.full) {
      this.full.needed = Math.max(this.full.needed, needed ?? 0);
      return;
    }
    this.full = { since: this.now(), needed: needed ?? 0, free: null };
    this.metrics.storageFull.set(1);
    this.log.warn(
      { code: (err as NodeJS.ErrnoException).code, needed },
      'storage is full: cached content is still served, new blobs are streamed through uncached until space returns',
    );
    this.spaceTimer = setInterval(() => void this.checkSpace(), this.spaceRecheck);
    this.spaceTimer.unref();
  }

  /** May a blob miss be cached now? false while the disk is full. */
  canStore(): boolean {
    return this.full === null;
  }

  /** Measure free space; leave the disk-full mode when there is room again. Returns canStore(). */
  async checkSpace(): Promise<boolean> {
    const full = this.full;
    if (!full) return true;
    let info = null;
    try {
      info = this.space ? await this.space() : null;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not measure free space');
      return false;
    }
    if (info) {
      full.free = info.free;
      const floor = Math.min(info.total * LIFECYCLE_DEFAULTS.resumeFreeFraction, LIFECYCLE_DEFAULTS.resumeFreeMax);
      if (info.free < Math.max(floor, full.needed)) return false;
    }
    // Without a probe the next write simply tries again.
    this.full = null;
    if (this.spaceTimer) clearInterval(this.spaceTimer);
    this.spaceTimer = null;
    this.metrics.storageFull.set(0);
    this.log.info({ free: info?.free ?? null }, 'storage has space again: caching resumes');
    return true;
  }

  /**
   * For /readyz (registered as an optional check: the mirror is degraded, not unready, while the
   * disk is full, because it still serves everything; taking it out of a load balancer would not).
   */
  diskCheck(): { ok: boolean; detail?: string } {
    if (!this.full) return { ok: true };
    const free = this.full.free === null ? '' : ` (${this.full.free} bytes free)`;
    return {
      ok: false,
      detail: `storage full since ${new Date(this.full.since).toISOString()}${free}: cached content is served, new content is streamed through uncached until space returns`,
    };
  }

  // ------------------------------------------------------------------ figures

  async stats(): Promise<CacheStats> {
    const pins = await this.meta.listPins();
    const pinned = new Set(pins.flatMap((p) => p.pin.digests));
    let pinnedBlobs = 0;
    let pinnedBytes = 0;
    for (const d of pinned) {
      const e = this.blobs.get(d);
      if (!e) continue;
      pinnedBlobs += 1;
      pinnedBytes += e.size;
    }
    const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
    const gc = this.lastGc;
    return {
      bytes: this.usage,
      blobs: this.blobs.size,
      manifests: this.manifests.size,
      maxSize: this.maxSize,
      highWatermark: this.highWatermark,
      lowWatermark: this.lowWatermark,
      pinned: { pins: pins.length, blobs: pinnedBlobs, bytes: pinnedBytes },
      evictions: { runs: this.evictions.runs, blobs: this.evictions.blobs, bytes: this.evictions.bytes, lastRunAt: iso(this.evictions.lastRunAt) },
      gc: gc ? { ...gc, at: iso(gc.at) ?? '' } : null,
      storageFull: this.full !== null,
      storageFullSince: iso(this.full?.since ?? null),
      freeBytes: this.full?.free ?? null,
    };
  }

  // ------------------------------------------------------------------ eviction

  /** Run an eviction pass now (it also runs by itself whenever usage passes the high mark). */
  evict(): Promise<EvictionReport> {
    return this.exclusive(() => this.evictPass());
  }

  private maybeEvict(): void {
    if (this.maxSize === null || this.stopped || this.evictQueued) return;
    if (this.usage <= this.maxSize * this.highWatermark) return;
    this.evictQueued = true;
    this.exclusive(async () => {
      this.evictQueued = false;
      await this.evictPass();
    }).catch((err: unknown) => this.log.error({ err }, 'eviction failed'));
  }

  private async evictPass(): Promise<EvictionReport> {
    const report: EvictionReport = { ...emptyRemoval(), before: this.usage, after: this.usage };
    if (this.maxSize === null) return report;
    await this.learned();
    if (this.usage <= this.maxSize * this.highWatermark) return report;
    const low = this.maxSize * this.lowWatermark;
    const holds = await this.readHolds();
    const units = this.units(holds);
    for (let i = 0; i < units.length && this.usage > low; i++) {
      const u = units[i];
      if (!u) break;
      if (u.kind === 'image') {
        // Used since the pass began (or now held by an index): no longer least recently used.
        if (!this.manifests.has(u.digest) || this.parentsOf(u.digest) > 0) continue;
        if (this.groupStamp(u.digest).seq !== u.seq) continue;
        const survivors = await this.evictImage(u.digest, holds, report);
        // Children a tag still names become images of their own; they take their place in line.
        for (const s of survivors) {
          const unit: Unit = { kind: 'image', digest: s, ...this.groupStamp(s) };
          let at = i + 1;
          while (at < units.length && older(units[at] as Unit, unit) < 0) at++;
          units.splice(at, 0, unit);
        }
      } else {
        const e = this.blobs.get(u.digest);
        if (!e || e.seq !== u.seq || this.isReferenced(u.digest) || this.manifests.has(u.digest)) continue;
        await this.removeBlobIfFree(u.digest, holds, 'evict', report);
      }
    }
    report.after = this.usage;
    this.evictions.runs += 1;
    this.evictions.lastRunAt = this.now();
    this.log.info(
      { manifests: report.manifests, blobs: report.blobs, bytes: report.bytes, tags: report.tags, before: report.before, after: report.after, maxSize: this.maxSize },
      'evicted least recently used content',
    );
    if (this.usage > low) {
      this.log.warn({ usage: this.usage, target: low, pinned: holds.pinned.size }, 'pinned content and fills in flight keep usage above the low watermark');
    }
    return report;
  }

  /** Eviction candidates, least recently used first: images (top-level manifests) and orphan blobs. */
  private units(holds: Holds): Unit[] {
    const out: Unit[] = [];
    for (const d of this.manifests.keys()) {
      if (this.parentsOf(d) > 0 || holds.pinned.has(d) || !this.blobs.has(d)) continue;
      out.push({ kind: 'image', digest: d, ...this.groupStamp(d) });
    }
    for (const [d, e] of this.blobs) {
      if (this.manifests.has(d) || this.isReferenced(d) || holds.pinned.has(d)) continue;
      out.push({ kind: 'blob', digest: d, access: e.access, seq: e.seq });
    }
    return out.sort(older);
  }

  /** An image's recency: the latest use of its manifest or any child manifest. */
  private groupStamp(root: string): { access: number; seq: number } {
    let access = 0;
    let seq = 0;
    const seen = new Set<string>();
    const stack = [root];
    for (let d = stack.pop(); d !== undefined; d = stack.pop()) {
      if (seen.has(d)) continue;
      seen.add(d);
      const e = this.blobs.get(d);
      if (e) {
        access = Math.max(access, e.access);
        seq = Math.max(seq, e.seq);
      }
      for (const c of this.manifests.get(d)?.children ?? []) if (this.manifests.has(c)) stack.push(c);
    }
    return { access, seq };
  }

  /** Evict a top-level manifest: its tags and links first, then it, its children and their blobs. */
  private async evictImage(root: string, holds: Holds, report: RemovalReport): Promise<string[]> {
    for (const t of holds.tags.get(root) ?? []) {
      await this.meta.deleteTag(t.upstream, t.name, t.tag);
      this.repoLost(holds, t);
      report.tags += 1;
    }
    holds.tags.delete(root);
    return this.dropManifest(root, holds, 'evict', report, null);
  }

  /**
   * Remove a manifest nothing keeps: its links (all of them, or those of `scope` when purging one
   * repository), its record, its bytes, then the blobs and child manifests only it kept. Returns
   * children that lost their last index but that a tag still names (they stay, as images of their own).
   */
  private async dropManifest(digest: string, holds: Holds, reason: Reason, report: RemovalReport, scope: RepoRef | null): Promise<string[]> {
    const refs = this.manifests.get(digest);
    await this.dropLinks(digest, holds, report, scope);
    await this.meta.deleteManifest(digest);
    this.cache?.forget(digest);
    this.unlearn(digest);
    report.manifests += 1;
    await this.removeBlobIfFree(digest, holds, reason, report);
    for (const b of refs?.blobs ?? []) await this.removeBlobIfFree(b, holds, reason, report);
    const survivors: string[] = [];
    for (const c of refs?.children ?? []) {
      if (!this.manifests.has(c) || this.parentsOf(c) > 0 || holds.pinned.has(c)) continue;
      if ((holds.tags.get(c)?.length ?? 0) > 0) {
        survivors.push(c);
        continue;
      }
      if (scope && (holds.links.get(c) ?? []).some((l) => repoId(l) !== repoId(scope))) continue;
      survivors.push(...(await this.dropManifest(c, holds, reason, report, scope)));
    }
    return survivors;
  }

  private async dropLinks(digest: string, holds: Holds, report: RemovalReport, scope: RepoRef | null): Promise<void> {
    const links = holds.links.get(digest) ?? [];
    const keep: RepoRef[] = [];
    for (const l of links) {
      if (scope && repoId(l) !== repoId(scope)) {
        keep.push(l);
        continue;
      }
      await this.meta.unlink(l.upstream, l.name, digest);
      this.repoLost(holds, l);
      report.links += 1;
    }
    if (keep.length > 0) holds.links.set(digest, keep);
    else holds.links.delete(digest);
  }

  /** A tag or link record of a repository went; forget the repository once it has none left. */
  private repoLost(holds: Holds, r: RepoRef): void {
    const id = repoId(r);
    bump(holds.repoEntries, id, -1);
    if (!holds.repoEntries.has(id)) this.meta.forgetRepo(r.upstream, r.name);
  }

  private async removeBlobIfFree(digest: string, holds: Holds, reason: Reason, report: RemovalReport): Promise<void> {
    if (this.isReferenced(digest) || this.manifests.has(digest) || holds.pinned.has(digest)) return;
    if (this.cache?.filling(digest)) return;
    await this.removeBlob(digest, reason, report);
  }

  private async removeBlob(digest: string, reason: Reason, report: { blobs: number; bytes: number }): Promise<void> {
    const e = this.blobs.get(digest);
    if (e) {
      this.blobs.delete(digest);
      this.usage -= e.size;
      this.dirty.add(shardOf(digest));
    }
    const removed = await this.driver.deleteBlob(digest);
    if (!e && !removed) return;
    const size = e?.size ?? 0;
    report.blobs += 1;
    report.bytes += size;
    if (reason !== 'purge') {
      this.metrics.evictions.inc();
      this.metrics.evictedBytes.inc(size);
    }
    if (reason === 'evict') {
      this.evictions.blobs += 1;
      this.evictions.bytes += size;
    }
  }

  // ------------------------------------------------------------------ purge

  /**
   * Remove a repository (`reference` null), a tag, or a manifest by digest from the cache. Tags
   * and links go; a manifest goes when nothing else (another repository, tag, index or pin) holds
   * it, with the blobs only it needed. Null when the cache knows nothing by that name.
   */
  purge(upstream: string, name: string, reference: string | null): Promise<PurgeReport | null> {
    return this.exclusive(async () => {
      await this.learned();
      const holds = await this.readHolds();
      const scope: RepoRef = { upstream, name };
      const report: PurgeReport = { ...emptyRemoval(), kept: 0 };
      const affected = new Set<string>();
      const inRepo = (r: RepoRef) => r.upstream === upstream && r.name === name;
      const byDigest = reference !== null && reference.includes(':');

      for (const [digest, tags] of [...holds.tags]) {
        const going = tags.filter((t) => inRepo(t) && (reference === null || (byDigest ? digest === reference : t.tag === reference)));
        if (going.length === 0) continue;
        for (const t of going) {
          await this.meta.deleteTag(t.upstream, t.name, t.tag);
          this.repoLost(holds, t);
          report.tags += 1;
        }
        const left = tags.filter((t) => !going.includes(t));
        if (left.length > 0) holds.tags.set(digest, left);
        else holds.tags.delete(digest);
        affected.add(digest);
      }
      for (const [digest, links] of [...holds.links]) {
        if (!links.some(inRepo)) continue;
        const wanted = reference === null || (byDigest ? digest === reference : affected.has(digest));
        // A tag purge keeps the link while another tag of this repository still names the manifest.
        if (!wanted || (holds.tags.get(digest) ?? []).some(inRepo)) continue;
        await this.dropLinks(digest, holds, report, scope);
        affected.add(digest);
      }
      if (report.tags === 0 && report.links === 0) return null;
      for (const d of affected) {
        this.cache?.forget(d);
        if (!this.manifests.has(d)) continue;
        if (this.held(d, holds)) {
          report.kept += 1;
          continue;
        }
        await this.dropManifest(d, holds, 'purge', report, scope);
      }
      this.log.info({ upstream, repository: name, reference, ...report }, 'purged from the cache');
      return report;
    });
  }

  private held(d: string, holds: Holds): boolean {
    return (
      this.parentsOf(d) > 0 ||
      holds.pinned.has(d) ||
      (holds.tags.get(d)?.length ?? 0) > 0 ||
      (holds.links.get(d)?.length ?? 0) > 0
    );
  }

  // ------------------------------------------------------------------ garbage collection

  /**
   * Collect garbage: resynchronise the index with the store, drop records naming missing content,
   * remove manifests and blobs nothing holds (older than the grace period) and stale spool files.
   * With dryRun nothing is changed; the report says what would go.
   */
  gc(opts: { dryRun?: boolean; graceMs?: number; list?: boolean } = {}): Promise<GcReport> {
    return this.exclusive(async () => {
      const began = this.now();
      const dry = opts.dryRun ?? false;
      const grace = opts.graceMs ?? this.orphanGrace;
      const report: GcReport = { dryRun: dry, blobs: 0, bytes: 0, manifests: 0, records: 0, spoolFiles: 0, spoolBytes: 0, ms: 0 };
      const items: GcItem[] = [];
      await this.learned();
      report.records += await this.scan(!dry);
      const holds = await this.readHolds();
      report.records += await this.repairRecords(holds, dry);

      // Mark: what tags, links and pins hold, and everything those manifests name.
      const live = new Set<string>(holds.pinned);
      const visited = new Set<string>();
      const stack = [...holds.tags.keys(), ...holds.links.keys(), ...holds.pinned];
      for (let d = stack.pop(); d !== undefined; d = stack.pop()) {
        if (visited.has(d)) continue;
        visited.add(d);
        live.add(d);
        const refs = this.manifests.get(d);
        if (!refs) continue;
        for (const b of refs.blobs) live.add(b);
        stack.push(...refs.children);
      }
      const cutoff = this.now() - grace;
      const old = (d: string) => (this.blobs.get(d)?.access ?? 0) < cutoff;
      const busy = (d: string) => this.cache?.filling(d) ?? false;

      // Sweep: unheld manifests (records first, bytes below), then blobs nothing kept names.
      const dead = new Set<string>();
      for (const d of this.manifests.keys()) if (!live.has(d) && old(d)) dead.add(d);
      const keptRefs = new Set<string>();
      for (const [d, refs] of this.manifests) {
        if (dead.has(d)) continue;
        for (const b of refs.blobs) keptRefs.add(b);
        for (const c of refs.children) keptRefs.add(c);
      }
      for (const d of dead) {
        report.manifests += 1;
        if (dry) continue;
        await this.meta.deleteManifest(d);
        this.cache?.forget(d);
        this.unlearn(d);
      }
      for (const [d, e] of [...this.blobs]) {
        if (live.has(d) || keptRefs.has(d) || busy(d)) continue;
        if (this.manifests.has(d) && !dead.has(d)) continue;
        if (!dead.has(d) && !old(d)) continue;
        if (dry) {
          report.blobs += 1;
          report.bytes += e.size;
          items.push({ digest: d, kind: dead.has(d) ? 'manifest' : 'blob', bytes: e.size });
        } else {
          await this.removeBlob(d, 'gc', report);
        }
      }
      if (isSpoolSweeper(this.driver)) {
        const s = await this.driver.sweepSpool(this.spoolStaleAfter, dry);
        report.spoolFiles = s.files;
        report.spoolBytes = s.bytes;
      }
      report.ms = this.now() - began;
      this.lastGc = { ...report, at: began };
      this.log.info(report, dry ? 'garbage collection (dry run): nothing was changed' : 'garbage collection done');
      if (!dry) await this.evictPass();
      if (opts.list && dry) report.items = items;
      return report;
    });
  }

  /**
   * Tag and link records that name a manifest the store does not have are dropped, so a tag
   * never points at missing content. Each is checked against the store before it goes (a
   * manifest can be written a moment before the index hears of it).
   */
  private async repairRecords(holds: Holds, dry: boolean): Promise<number> {
    let fixed = 0;
    const present = async (d: string): Promise<boolean> => {
      if (this.manifests.has(d)) return true;
      if (!(await this.meta.getManifest(d)) || !(await this.driver.statBlob(d))) return false;
      await this.learn(d);
      return true;
    };
    for (const [d, tags] of [...holds.tags]) {
      if (await present(d)) continue;
      fixed += tags.length;
      holds.tags.delete(d);
      if (dry) continue;
      for (const t of tags) {
        await this.meta.deleteTag(t.upstream, t.name, t.tag);
        this.repoLost(holds, t);
      }
      this.log.warn({ digest: d, tags: tags.map((t) => `${t.upstream}/${t.name}:${t.tag}`) }, 'dropped tag records naming a missing manifest');
    }
    for (const [d, links] of [...holds.links]) {
      if (await present(d)) continue;
      fixed += links.length;
      holds.links.delete(d);
      if (dry) continue;
      for (const l of links) {
        await this.meta.unlink(l.upstream, l.name, d);
        this.repoLost(holds, l);
      }
    }
    return fixed;
  }

  // ------------------------------------------------------------------ index

  /**
   * Bring the index in line with the store: every blob with its size (new ones get their file's
   * time as last access), every manifest record read. Records whose manifest bytes are missing
   * are dropped (`repair`) and counted.
   */
  private async scan(repair: boolean): Promise<number> {
    const seen = new Map<string, { size: number; mtime: number }>();
    for await (const b of this.driver.listBlobs()) {
      const mtime = (b as { mtimeMs?: unknown }).mtimeMs;
      seen.set(b.digest, { size: b.size, mtime: typeof mtime === 'number' ? mtime : 0 });
    }
    // Gone from the store behind our back (another process); re-checked so a commit racing the
    // listing is not forgotten.
    for (const d of [...this.blobs.keys()]) {
      if (!seen.has(d) && !(await this.driver.statBlob(d))) this.blobs.delete(d);
    }
    const fresh = [...seen].filter(([d]) => !this.blobs.has(d)).sort((a, b) => a[1].mtime - b[1].mtime);
    for (const [d, s] of fresh) this.blobs.set(d, { size: s.size, access: Math.floor(s.mtime), seq: ++this.seq });
    for (const [d, s] of seen) {
      const e = this.blobs.get(d);
      if (e) e.size = s.size;
    }
    this.usage = 0;
    for (const e of this.blobs.values()) this.usage += e.size;

    let missing = 0;
    const recorded = new Set<string>();
    for await (const key of this.driver.listMeta('manifests/')) {
      const rest = key.slice('manifests/'.length);
      const slash = rest.indexOf('/');
      if (slash <= 0) continue;
      const d = `${rest.slice(0, slash)}:${rest.slice(slash + 1)}`;
      recorded.add(d);
      if (this.manifests.has(d)) continue;
      if (!this.blobs.has(d) && !(await this.driver.statBlob(d))) {
        missing += 1;
        if (repair) {
          await this.meta.deleteManifest(d);
          this.cache?.forget(d);
          this.log.warn({ digest: d }, 'dropped a manifest record whose bytes are missing');
        }
        continue;
      }
      await this.learn(d);
    }
    for (const d of [...this.manifests.keys()]) {
      if (!recorded.has(d) && !(await this.meta.getManifest(d))) this.unlearn(d);
    }
    return missing;
  }

  private async loadAccess(): Promise<void> {
    const loaded: [BlobEntry, number][] = [];
    for await (const key of this.driver.listMeta('access/')) {
      const buf = await this.driver.getMeta(key);
      if (!buf) continue;
      let rec: unknown;
      try {
        rec = JSON.parse(buf.toString('utf8'));
      } catch {
        continue; // rewritten whole at the next flush
      }
      if (typeof rec !== 'object' || rec === null) continue;
      for (const [d, t] of Object.entries(rec as Record<string, unknown>)) {
        const e = this.blobs.get(d);
        if (e && typeof t === 'number' && t > e.access) loaded.push([e, t]);
      }
    }
    for (const [e, t] of loaded) e.access = t;
    // Recency order among equal times follows the loaded times.
    const all = [...this.blobs.values()].sort((a, b) => a.access - b.access || a.seq - b.seq);
    for (const e of all) e.seq = ++this.seq;
  }

  /** Write the access records that changed since the last flush. */
  async flush(): Promise<void> {
    if (!this.persistAccess || this.dirty.size === 0) return;
    const shards = new Map<string, Record<string, number>>();
    for (const s of this.dirty) shards.set(s, {});
    this.dirty.clear();
    for (const [d, e] of this.blobs) {
      const rec = shards.get(shardOf(d));
      if (rec) rec[d] = e.access;
    }
    for (const [key, rec] of shards) {
      try {
        if (Object.keys(rec).length === 0) await this.driver.deleteMeta(key);
        else await this.driver.putMeta(key, Buffer.from(JSON.stringify(rec)));
      } catch (err) {
        this.dirty.add(key);
        if (isNoSpace(err)) this.storageFull(err, null);
        else this.log.warn({ err: (err as Error).message, key }, 'could not write access times; will retry');
      }
    }
  }

  private learnLater(digest: string): void {
    const p: Promise<void> = this.learn(digest)
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message, digest }, 'could not read a stored manifest'))
      .finally(() => this.learning.delete(p));
    this.learning.add(p);
  }

  private async learned(): Promise<void> {
    while (this.learning.size > 0) await Promise.all([...this.learning]);
  }

  /** Read a stored manifest and note what it names. Unparseable bytes name nothing. */
  private async learn(digest: string): Promise<void> {
    if (this.manifests.has(digest)) return;
    const bytes = await this.driver.readBlobBuffer(digest);
    if (!bytes || this.manifests.has(digest)) return;
    let refs: ManifestRefs;
    try {
      const m = parseManifest(bytes);
      refs = { children: [...new Set(m.manifests.map((x) => x.digest))], blobs: [...new Set(m.blobs.map((x) => x.digest))] };
    } catch {
      refs = { children: [], blobs: [] };
    }
    this.manifests.set(digest, refs);
    for (const b of refs.blobs) bump(this.blobRefs, b, 1);
    for (const c of refs.children) bump(this.parents, c, 1);
  }

  private unlearn(digest: string): void {
    const refs = this.manifests.get(digest);
    if (!refs) return;
    this.manifests.delete(digest);
    for (const b of refs.blobs) bump(this.blobRefs, b, -1);
    for (const c of refs.children) bump(this.parents, c, -1);
  }

  private parentsOf(d: string): number {
    return this.parents.get(d) ?? 0;
  }

  private isReferenced(d: string): boolean {
    return (this.blobRefs.get(d) ?? 0) > 0 || this.parentsOf(d) > 0;
  }

  /** Tags, links and pins as the records say now (other processes write them too). */
  private async readHolds(): Promise<Holds> {
    const holds: Holds = { tags: new Map(), links: new Map(), repoEntries: new Map(), pinned: new Set(), pins: 0 };
    for await (const key of this.driver.listMeta('repos/')) {
      const t = TAG_KEY.exec(key);
      if (t && t[1] !== undefined && t[2] !== undefined && t[3] !== undefined) {
        const ref: TagRef = { upstream: decodeURIComponent(t[1]), name: t[2], tag: t[3] };
        const rec = await this.meta.getTag(ref.upstream, ref.name, ref.tag);
        if (!rec) continue;
        push(holds.tags, rec.digest, ref);
        bump(holds.repoEntries, repoId(ref), 1);
        continue;
      }
      const l = LINK_KEY.exec(key);
      if (l && l[1] !== undefined && l[2] !== undefined) {
        const ref: RepoRef = { upstream: decodeURIComponent(l[1]), name: l[2] };
        push(holds.links, `${l[3]}:${l[4]}`, ref);
        bump(holds.repoEntries, repoId(ref), 1);
      }
    }
    for (const { pin } of await this.meta.listPins()) {
      holds.pins += 1;
      for (const d of pin.digests) holds.pinned.add(d);
    }
    return holds;
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
