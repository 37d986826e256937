/**
 * Usage and access order: every stored blob and manifest with its size and last access, the
 * total, and the persisted access records. Access times are held in memory and written in
 * batches (one record per first digest byte, through the records module) every few seconds and
 * on stop. A blob with no record (its access was not flushed before a crash) falls back to its
 * commit time as the driver reports it.
 */
import type { Logger } from 'pino';
import type { Digest } from '../../oci/reference.js';
import type { StorageDriver } from '../driver.js';
import type { AccessShard, MetadataStore } from '../records.js';
import { isNoSpace } from '../space.js';
import { Pacer, PassStopped, YIELD_EVERY } from './batch.js';

export interface BlobEntry {
  /** The digest itself: the one string the index keeps for it (the graph reuses it, see intern). */
  digest: Digest;
  size: number;
  /** Last access, ms since epoch. */
  access: number;
  /** Recency order among equal times (monotonic in this process). */
  seq: number;
}

/** Least recently used first. */
export function older(a: { access: number; seq: number }, b: { access: number; seq: number }): number {
  return a.access - b.access || a.seq - b.seq;
}

export class UsageIndex {
  private readonly blobs = new Map<Digest, BlobEntry>();
  private usage = 0;
  private seq = 0;
  private readonly dirty = new Set<string>();

  constructor(
    private readonly records: MetadataStore,
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly persist: boolean,
    /** A flush failed because the disk is full. */
    private readonly onNoSpace: (err: Error) => void,
  ) {}

  /** Bytes stored (blobs and manifests, each counted once). */
  get bytes(): number {
    return this.usage;
  }

  get count(): number {
    return this.blobs.size;
  }

  // Lookups take any string (tag and pin records hold digests as text): a miss is the answer for
  // one that is not a digest, since keys only ever go in as parsed Digests.
  has(d: string): boolean {
    return this.blobs.has(d as Digest);
  }

  get(d: string): BlobEntry | undefined {
    return this.blobs.get(d as Digest);
  }

  entries(): [Digest, BlobEntry][] {
    return [...this.blobs];
  }

  /**
   * The index's own string for a digest it knows (else `d`): the reference graph keeps its
   * digests through this, so a blob's name is held once, not once per structure (about 9 MiB at
   * 100,000 blobs).
   */
  intern(d: Digest): Digest {
    return this.blobs.get(d)?.digest ?? d;
  }

  /** A use: the entry becomes the most recently used. False when the index does not know it. */
  touch(d: Digest): boolean {
    const e = this.blobs.get(d);
    if (!e) return false;
    e.access = this.now();
    e.seq = ++this.seq;
    this.dirty.add(this.records.accessShardOf(d));
    return true;
  }

  /** A use at `at` (ms) the index heard of late (while it was being built); never moves an access back. */
  touchAt(d: Digest, at: number): boolean {
    const e = this.blobs.get(d);
    if (!e) return false;
    if (at >= e.access) {
      e.access = at;
      e.seq = ++this.seq;
      this.dirty.add(this.records.accessShardOf(d));
    }
    return true;
  }

  /** A commit (or a blob found in the store): counted, and the most recently used. */
  stored(d: Digest, size: number): void {
    const e = this.blobs.get(d);
    if (e) {
      this.usage += size - e.size;
      e.size = size;
      e.access = this.now();
      e.seq = ++this.seq;
    } else {
      this.blobs.set(d, { digest: d, size, access: this.now(), seq: ++this.seq });
      this.usage += size;
    }
    this.dirty.add(this.records.accessShardOf(d));
  }

  /** Forget a blob that is being removed; returns what the index knew of it. */
  remove(d: Digest): BlobEntry | undefined {
    const e = this.blobs.get(d);
    if (!e) return undefined;
    this.blobs.delete(d);
    this.usage -= e.size;
    this.dirty.add(this.records.accessShardOf(d));
    return e;
  }

  /**
   * Bring the index in line with the store's listing: blobs gone behind our back are dropped
   * (re-checked, so a commit racing the listing is not forgotten), new ones get their commit time
   * as last access, sizes follow the store.
   */
  async resync(driver: StorageDriver, stopping: () => boolean = () => false): Promise<void> {
    const pace = new Pacer();
    // Little held per listed blob (a set of names, flat records for new ones): at 100,000 blobs
    // a map of objects here was most of the build's peak memory.
    const seen = new Set<Digest>();
    const fresh: { d: Digest; size: number; mtime: number }[] = [];
    // Sizes of blobs already counted are known (immutable): the driver need not measure them again.
    const knownSize = (d: Digest): number | undefined => this.blobs.get(d)?.size;
    for await (const b of driver.listBlobs({ knownSize })) {
      if (seen.size % YIELD_EVERY === 0 && stopping()) throw new PassStopped();
      seen.add(b.digest);
      const e = this.blobs.get(b.digest);
      if (e) e.size = b.size;
      else fresh.push({ d: b.digest, size: b.size, mtime: b.storedAt ?? 0 });
    }
    for (const d of [...this.blobs.keys()]) {
      await pace.tick();
      if (!seen.has(d) && !(await driver.statBlob(d))) this.blobs.delete(d);
    }
    seen.clear();
    fresh.sort((a, b) => a.mtime - b.mtime);
    for (const f of fresh) {
      // Committed (and counted by stored()) since the listing saw it: keep what stored() set.
      if (!this.blobs.has(f.d)) this.blobs.set(f.d, { digest: f.d, size: f.size, access: Math.floor(f.mtime), seq: ++this.seq });
    }
    this.usage = 0;
    for (const e of this.blobs.values()) this.usage += e.size;
  }

  /** Load the persisted access times (a later one than the index has wins). */
  async loadAccess(): Promise<void> {
    const loaded: [BlobEntry, number][] = [];
    for await (const rec of this.records.accessShards()) {
      for (const [d, t] of Object.entries(rec)) {
        const e = this.blobs.get(d as Digest);
        if (e && typeof t === 'number' && t > e.access) loaded.push([e, t]);
      }
    }
    for (const [e, t] of loaded) e.access = t;
    // Recency order among equal times follows the loaded times.
    const all = [...this.blobs.values()].sort(older);
    for (const e of all) e.seq = ++this.seq;
  }

  /** Write the access records that changed since the last flush. */
  async flush(): Promise<void> {
    if (!this.persist || this.dirty.size === 0) return;
    const shards = new Map<string, AccessShard>();
    for (const s of this.dirty) shards.set(s, {});
    this.dirty.clear();
    for (const [d, e] of this.blobs) {
      const rec = shards.get(this.records.accessShardOf(d));
      if (rec) rec[d] = e.access;
    }
    for (const [key, rec] of shards) {
      try {
        await this.records.putAccessShard(key, rec);
      } catch (err) {
        this.dirty.add(key);
        if (isNoSpace(err)) this.onNoSpace(err);
        else this.log.warn({ err: (err as Error).message, key }, 'could not write access times; will retry');
      }
    }
  }

  nextSeq(): number {
    return ++this.seq;
  }
}
