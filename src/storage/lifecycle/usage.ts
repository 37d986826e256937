/**
 * Usage and access order: every stored blob and manifest with its size and last access, the
 * total, and the persisted access records. Access times are held in memory and written in
 * batches (one record per first digest byte, through the records module) every few seconds and
 * on stop. A blob with no record (its access was not flushed before a crash) falls back to its
 * commit time as the driver reports it.
 *
 * Held compactly: each digest is an id of the shared DigestTable (digest-table.ts) and size, last
 * access and recency order are typed arrays indexed by it, 24 bytes a blob outside V8's heap (a
 * Map of objects keyed by digest strings was ~200 bytes a blob on the heap, and made the build's
 * survivors grow V8's young generation). `get` and `entries` hand out BlobEntry objects made on
 * the spot; passes over the whole index use `forEachId` and the id methods instead.
 */
import type { Logger } from 'pino';
import type { Digest } from '../../oci/reference.js';
import type { StorageDriver } from '../driver.js';
import type { AccessShard, MetadataStore } from '../records.js';
import { isNoSpace } from '../space.js';
import { Pacer, PassStopped, YIELD_EVERY } from './batch.js';
import { DigestTable, grown } from './digest-table.js';

export interface BlobEntry {
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
  /** The digests, as ids (shared with the reference graph). */
  readonly table: DigestTable;
  /** 1 for an id the index counts. */
  private present = new Uint8Array(0);
  private sizes = new Float64Array(0);
  private accessAt = new Float64Array(0);
  /** Recency order among equal times; 0 for a blob listed by resync whose order is not set yet. */
  private seqs = new Float64Array(0);
  private counted = 0;
  private usage = 0;
  private seq = 0;
  private readonly dirty = new Set<string>();
  /** Access-record key of each first digest byte (sha256), as the records module names it. */
  private readonly shardKeys: (string | undefined)[] = [];

  constructor(
    private readonly records: MetadataStore,
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly persist: boolean,
    /** A flush failed because the disk is full. */
    private readonly onNoSpace: (err: Error) => void,
    table?: DigestTable,
  ) {
    this.table = table ?? new DigestTable();
    this.grow(this.table.capacity);
    this.table.onGrow((cap) => this.grow(cap));
  }

  private grow(cap: number): void {
    this.present = grown(this.present, cap);
    this.sizes = grown(this.sizes, cap);
    this.accessAt = grown(this.accessAt, cap);
    this.seqs = grown(this.seqs, cap);
  }

  /** Bytes stored (blobs and manifests, each counted once). */
  get bytes(): number {
    return this.usage;
  }

  get count(): number {
    return this.counted;
  }

  // Lookups take any string (tag and pin records hold digests as text): a miss is the answer for
  // one that is not a digest, since keys only ever go in as parsed Digests.
  has(d: string): boolean {
    return this.idOf(d) >= 0;
  }

  get(d: string): BlobEntry | undefined {
    const id = this.idOf(d);
    return id < 0 ? undefined : this.entryOf(id, d as Digest);
  }

  /** Every entry (made on the spot: a pass over a large index should use forEachId). */
  entries(): [Digest, BlobEntry][] {
    const out: [Digest, BlobEntry][] = [];
    this.forEachId((id) => {
      const d = this.table.digest(id);
      out.push([d, this.entryOf(id, d)]);
    });
    return out;
  }

  /**
   * Kept for callers of the string index: the graph now holds digests as ids of the same table,
   * so there is no string of the index's to share; returns `d`.
   */
  intern(d: Digest): Digest {
    return d;
  }

  /** A use: the entry becomes the most recently used. False when the index does not know it. */
  touch(d: Digest): boolean {
    const id = this.idOf(d);
    if (id < 0) return false;
    this.accessAt[id] = this.now();
    this.seqs[id] = ++this.seq;
    this.dirty.add(this.shardOf(id));
    return true;
  }

  /** A use at `at` (ms) the index heard of late (while it was being built); never moves an access back. */
  touchAt(d: Digest, at: number): boolean {
    const id = this.idOf(d);
    if (id < 0) return false;
    if (at >= (this.accessAt[id] as number)) {
      this.accessAt[id] = at;
      this.seqs[id] = ++this.seq;
      this.dirty.add(this.shardOf(id));
    }
    return true;
  }

  /** A commit (or a blob found in the store): counted, and the most recently used. */
  stored(d: Digest, size: number): void {
    let id = this.idOf(d);
    if (id >= 0) {
      this.usage += size - (this.sizes[id] as number);
    } else {
      id = this.add(d);
      this.usage += size;
    }
    this.sizes[id] = size;
    this.accessAt[id] = this.now();
    this.seqs[id] = ++this.seq;
    this.dirty.add(this.shardOf(id));
  }

  /** Forget a blob that is being removed; returns what the index knew of it. */
  remove(d: Digest): BlobEntry | undefined {
    const id = this.idOf(d);
    if (id < 0) return undefined;
    const e = this.entryOf(id, d);
    this.dirty.add(this.shardOf(id));
    this.drop(id);
    return e;
  }

  // ------------------------------------------------------------------ by id (passes over the index)

  /** The id of a digest the index counts, or -1. */
  idOf(d: string): number {
    const id = this.table.idOf(d);
    return id >= 0 && this.present[id] === 1 ? id : -1;
  }

  /** Does the index count this id? */
  hasId(id: number): boolean {
    return this.present[id] === 1;
  }

  sizeOf(id: number): number {
    return this.sizes[id] ?? 0;
  }

  accessOf(id: number): number {
    return this.accessAt[id] ?? 0;
  }

  seqOf(id: number): number {
    return this.seqs[id] ?? 0;
  }

  /** Call `fn` with the id of every blob the index counts (ids handed out before the call). */
  forEachId(fn: (id: number) => void): void {
    const end = this.table.end;
    const present = this.present;
    for (let id = 0; id < end; id++) if (present[id] === 1) fn(id);
  }

  /**
   * Bring the index in line with the store's listing: blobs gone behind our back are dropped
   * (re-checked, so a commit racing the listing is not forgotten), new ones get their commit time
   * as last access, sizes follow the store.
   */
  async resync(driver: StorageDriver, stopping: () => boolean = () => false): Promise<void> {
    const pace = new Pacer();
    // One byte per id marks what the listing saw; blobs new to the index go in at once, with
    // their commit time as last access and their order among equal times set after the listing.
    let seen = new Uint8Array(this.table.capacity);
    const fresh: number[] = [];
    let listed = 0;
    this.table.pin();
    try {
      // Sizes of blobs already counted are known (immutable): the driver need not measure them again.
      const knownSize = (d: Digest): number | undefined => {
        const id = this.idOf(d);
        return id < 0 ? undefined : this.sizes[id];
      };
      for await (const b of driver.listBlobs({ knownSize })) {
        if (listed++ % YIELD_EVERY === 0 && stopping()) throw new PassStopped();
        let id = this.idOf(b.digest);
        if (id < 0) {
          id = this.add(b.digest);
          this.accessAt[id] = Math.floor(b.storedAt ?? 0);
          this.seqs[id] = 0;
          fresh.push(id);
        }
        this.sizes[id] = b.size;
        if (id >= seen.length) seen = grown(seen, this.table.capacity);
        seen[id] = 1;
      }
      const end = this.table.end;
      for (let id = 0; id < end; id++) {
        if (this.present[id] !== 1 || seen[id] === 1) continue;
        await pace.tick();
        const d = this.table.digest(id);
        if (this.present[id] === 1 && !(await driver.statBlob(d))) {
          const again = this.idOf(d);
          if (again >= 0) this.drop(again);
        }
      }
    } finally {
      // New blobs in the order they were committed (a commit since the listing set its own order);
      // also when the listing ended early, so no counted blob is left without an order.
      const order = Int32Array.from(fresh.filter((id) => this.present[id] === 1 && this.seqs[id] === 0));
      order.sort((a, b) => (this.accessAt[a] as number) - (this.accessAt[b] as number));
      for (const id of order) this.seqs[id] = ++this.seq;
      this.table.unpin();
    }
    this.usage = 0;
    this.forEachId((id) => {
      this.usage += this.sizes[id] as number;
    });
  }

  /** Load the persisted access times (a later one than the index has wins). */
  async loadAccess(): Promise<void> {
    for await (const rec of this.records.accessShards()) {
      for (const [d, t] of Object.entries(rec)) {
        const id = this.idOf(d);
        if (id >= 0 && typeof t === 'number' && t > (this.accessAt[id] as number)) this.accessAt[id] = t;
      }
    }
    // Recency order among equal times follows the loaded times.
    const ids: number[] = [];
    this.forEachId((id) => ids.push(id));
    const all = Int32Array.from(ids);
    all.sort((a, b) => (this.accessAt[a] as number) - (this.accessAt[b] as number) || (this.seqs[a] as number) - (this.seqs[b] as number));
    for (const id of all) this.seqs[id] = ++this.seq;
  }

  /** Write the access records that changed since the last flush. */
  async flush(): Promise<void> {
    if (!this.persist || this.dirty.size === 0) return;
    const shards = new Map<string, AccessShard>();
    for (const s of this.dirty) shards.set(s, {});
    this.dirty.clear();
    this.forEachId((id) => {
      const rec = shards.get(this.shardOf(id));
      if (rec) rec[this.table.digest(id)] = this.accessAt[id] as number;
    });
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

  // ------------------------------------------------------------------ internals

  private entryOf(id: number, d: Digest): BlobEntry {
    return { digest: d, size: this.sizes[id] as number, access: this.accessAt[id] as number, seq: this.seqs[id] as number };
  }

  private add(d: Digest): number {
    const id = this.table.acquire(d);
    this.present[id] = 1;
    this.counted += 1;
    return id;
  }

  private drop(id: number): void {
    this.usage -= this.sizes[id] as number;
    this.present[id] = 0;
    this.sizes[id] = 0;
    this.accessAt[id] = 0;
    this.seqs[id] = 0;
    this.counted -= 1;
    this.table.release(id);
  }

  private shardOf(id: number): string {
    const b = this.table.firstByte(id);
    if (b < 0) return this.records.accessShardOf(this.table.digest(id));
    let key = this.shardKeys[b];
    if (key === undefined) {
      key = this.records.accessShardOf(this.table.digest(id));
      this.shardKeys[b] = key;
    }
    return key;
  }
}
