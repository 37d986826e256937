/**
 * In-memory storage driver: blobs, records and staged fills held in this process. A real driver
 * (it passes the same contract suite as the filesystem driver), for tests and embedding, and the
 * model for drivers that stage somewhere other than a spool file. Nothing survives the process,
 * and it is bounded only by the cache size cap (storage.maxSize) the lifecycle layer enforces, so
 * it is not selectable from the config file.
 *
 * Imports: the driver seam and src/oci/ only.
 */
import { Readable } from 'node:stream';
import type { Digest } from '../oci/reference.js';
import type { BlobListing, ByteRange, InitOptions, StagedBlob, StorageDriver } from './driver.js';

/** Reads are cut into chunks of this size, as the filesystem driver reads. */
const READ_CHUNK = 1024 * 1024;

interface StoredBlob {
  data: Buffer;
  storedAt: number;
}

export interface MemoryDriverOptions {
  /** Clock for commit times and staging ages (ms since epoch). */
  now?: () => number;
}

export class MemoryDriver implements StorageDriver {
  readonly name = 'memory';
  private readonly blobs = new Map<Digest, StoredBlob>();
  private readonly meta = new Map<string, Buffer>();
  private readonly stages = new Set<MemoryStage>();
  private readonly now: () => number;

  constructor(o: MemoryDriverOptions = {}) {
    this.now = o.now ?? Date.now;
  }

  async init(opts: InitOptions = {}): Promise<void> {
    if (opts.shared) return;
    // As the filesystem driver removes this process's spool files at start: nothing staged before
    // init is still being written.
    for (const s of [...this.stages]) await s.discard();
  }

  async statBlob(digest: Digest): Promise<{ size: number } | null> {
    const b = this.blobs.get(digest);
    return b ? { size: b.data.length } : null;
  }

  async readBlob(digest: Digest, range?: ByteRange): Promise<{ size: number; stream: Readable } | null> {
    const b = this.blobs.get(digest);
    if (!b) return null;
    // The stream holds the buffer: a blob deleted under a reader stays readable to it.
    const data = b.data;
    const start = range?.start ?? 0;
    const end = Math.min(range?.end ?? data.length - 1, data.length - 1);
    function* chunks(): Generator<Buffer> {
      for (let at = start; at <= end; at += READ_CHUNK) yield data.subarray(at, Math.min(at + READ_CHUNK, end + 1));
    }
    return { size: data.length, stream: Readable.from(chunks(), { objectMode: false }) };
  }

  async readBlobBuffer(digest: Digest): Promise<Buffer | null> {
    const b = this.blobs.get(digest);
    return b ? Buffer.from(b.data) : null;
  }

  async stage(): Promise<StagedBlob> {
    const s = new MemoryStage(this.now, (st) => this.stages.delete(st), (d, data) => this.keep(d, data));
    this.stages.add(s);
    return s;
  }

  async putBlobBuffer(digest: Digest, data: Buffer): Promise<void> {
    this.keep(digest, Buffer.from(data));
  }

  private keep(digest: Digest, data: Buffer): void {
    this.blobs.set(digest, { data, storedAt: this.now() });
  }

  async deleteBlob(digest: Digest): Promise<boolean> {
    return this.blobs.delete(digest);
  }

  async *listBlobs(): AsyncIterable<BlobListing> {
    for (const [digest, b] of [...this.blobs]) yield { digest, size: b.data.length, storedAt: b.storedAt };
  }

  async getMeta(key: string): Promise<Buffer | null> {
    const v = this.meta.get(checkKey(key));
    return v ? Buffer.from(v) : null;
  }

  async putMeta(key: string, value: Buffer): Promise<void> {
    this.meta.set(checkKey(key), Buffer.from(value));
  }

  async deleteMeta(key: string): Promise<boolean> {
    return this.meta.delete(checkKey(key));
  }

  async *listMeta(prefix: string): AsyncIterable<string> {
    const base = prefix.replace(/\/$/, '');
    const under = base ? `${base}/` : '';
    for (const key of [...this.meta.keys()]) if (key.startsWith(under)) yield key;
  }

  async writable(): Promise<boolean> {
    return true;
  }

  async space(): Promise<null> {
    return null;
  }

  async sweepStaging(olderThanMs: number, dryRun: boolean): Promise<{ files: number; bytes: number }> {
    const cutoff = this.now() - olderThanMs;
    let files = 0;
    let bytes = 0;
    for (const s of [...this.stages]) {
      if (s.lastWrite >= cutoff) continue;
      files += 1;
      bytes += s.written;
      if (!dryRun) await s.discard();
    }
    return { files, bytes };
  }
}

/** Keys as the filesystem driver accepts them: no empty, `.` or `..` component. */
function checkKey(key: string): string {
  if (key.split('/').some((p) => p === '' || p === '.' || p === '..')) throw new Error(`invalid metadata key ${key}`);
  return key;
}

/** Staged bytes: the chunks as written, found by binary search on their offsets. */
class MemoryStage implements StagedBlob {
  written = 0;
  lastWrite: number;
  private chunks: Buffer[] = [];
  private offsets: number[] = [];
  private done = false;

  constructor(
    private readonly now: () => number,
    private readonly release: (s: MemoryStage) => void,
    private readonly keep: (digest: Digest, data: Buffer) => void,
  ) {
    this.lastWrite = now();
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.done) throw new Error('write to a staged blob that was committed or discarded');
    if (chunk.length === 0) return;
    this.offsets.push(this.written);
    this.chunks.push(Buffer.from(chunk));
    this.written += chunk.length;
    this.lastWrite = this.now();
  }

  async readAt(buf: Buffer, position: number): Promise<number> {
    let lo = 0;
    let hi = this.offsets.length - 1;
    // The last chunk starting at or before `position`.
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.offsets[mid] ?? 0) <= position) lo = mid;
      else hi = mid - 1;
    }
    let n = 0;
    for (let i = lo; i < this.chunks.length && n < buf.length; i++) {
      const c = this.chunks[i] as Buffer;
      const at = this.offsets[i] ?? 0;
      const from = Math.max(position + n - at, 0);
      if (from >= c.length) continue;
      n += c.copy(buf, n, from);
    }
    return n;
  }

  async commit(digest: Digest): Promise<void> {
    const data = Buffer.concat(this.chunks, this.written);
    // Readers still reading the stage read the committed copy: the chunks can go.
    this.chunks = [data];
    this.offsets = [0];
    this.keep(digest, data);
    this.finish();
  }

  async discard(): Promise<void> {
    this.chunks = [];
    this.offsets = [];
    this.finish();
  }

  async close(): Promise<void> {
    this.finish();
  }

  private finish(): void {
    this.done = true;
    this.release(this);
  }
}
