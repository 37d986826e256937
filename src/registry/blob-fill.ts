/**
 * One upstream download of one blob, shared by every client that wants it.
 *
 * The fill streams upstream bytes into a blob staged by the storage driver (`driver.stage()`:
 * a spool file on the filesystem), hashing as it writes; it never waits for a client. Each
 * client (the first one and every joiner, whatever its Range) reads the staged bytes through its
 * own FillReader, at its own pace, from the bytes already written and then from new ones as they
 * land — so a slow client cannot stall the fill and a fast one buffers nothing beyond its
 * stream's high-water mark. The stage stays readable across its commit, so readers keep working.
 *
 * Only a blob whose length and digest match is committed. A cut or a mismatch fails every
 * reader (their responses are cut short, never completed with wrong bytes) and discards the
 * staged bytes. A client that goes away only stops its own reader; the fill goes on and fills
 * the cache.
 */
import { createHash, type Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Digest } from '../oci/reference.js';
import type { StagedBlob, StorageDriver } from '../storage/driver.js';
import { UpstreamError } from '../upstream/errors.js';

/** Chunk size for reads from the staged bytes (see STYLE.md habit 6). */
const READ_CHUNK = 1024 * 1024;
/** Readers waiting for bytes are woken once per this many bytes written (and at the end). */
const WAKE_EVERY = 256 * 1024;

export type FillState = 'running' | 'done' | 'failed';

export class BlobFill {
  state: FillState = 'running';
  error: Error | null = null;
  /** Resolves when the blob is committed; rejects when the fill failed. Never unhandled. */
  readonly finished: Promise<void>;
  private readers = 0;
  private wokenAt = 0;
  private waiters: (() => void)[] = [];
  private closed = false;
  private resolveFinished!: () => void;
  private rejectFinished!: (e: Error) => void;

  private constructor(
    readonly digest: Digest,
    readonly upstream: string,
    /** Length announced by the upstream (Content-Length), when it announced one. */
    readonly size: number | null,
    private readonly staged: StagedBlob,
  ) {
    this.finished = new Promise<void>((res, rej) => {
      this.resolveFinished = res;
      this.rejectFinished = rej;
    });
    this.finished.catch(() => undefined);
  }

  /** A fill staging into `driver`; rejects when the driver cannot stage (a full disk). */
  static async create(digest: Digest, upstream: string, size: number | null, driver: Pick<StorageDriver, 'stage'>): Promise<BlobFill> {
    return new BlobFill(digest, upstream, size, await driver.stage(digest));
  }

  /** Clients reading this fill now: one per reader, counted when it joins and when it stops reading. */
  get clients(): number {
    return this.readers;
  }

  /** Bytes written so far. */
  get written(): number {
    return this.staged.written;
  }

  /** Run the fill to its end. Resolves (never rejects) once committed or failed and cleaned up. */
  async run(body: AsyncIterable<Buffer>, onBytes: (n: number) => void): Promise<void> {
    const algorithm = this.digest.slice(0, this.digest.indexOf(':'));
    let hash: Hash;
    try {
      hash = createHash(algorithm);
      for await (const chunk of body) {
        hash.update(chunk);
        await this.staged.write(chunk);
        onBytes(chunk.length);
        if (this.size !== null && this.written > this.size) {
          throw this.integrity(`upstream sent more than the announced ${this.size} bytes`);
        }
        // Waking every reader per network chunk (often 16–64 KiB) costs more CPU than it buys;
        // per WAKE_EVERY bytes keeps joiners streaming. The end (commit or failure) always wakes.
        if (this.written - this.wokenAt >= WAKE_EVERY) {
          this.wokenAt = this.written;
          this.wake();
        }
      }
      if (this.size !== null && this.written !== this.size) {
        throw this.integrity(`upstream stream ended after ${this.written} of ${this.size} bytes`);
      }
      const got = `${algorithm}:${hash.digest('hex')}`;
      if (got !== this.digest) throw this.integrity(`upstream bytes hash to ${got}`);
      await this.staged.commit(this.digest);
      this.state = 'done';
      this.resolveFinished();
    } catch (err) {
      this.state = 'failed';
      this.error = err instanceof Error ? err : new Error(String(err));
      await this.staged.discard().catch(() => undefined);
      this.rejectFinished(this.error);
    } finally {
      this.wake();
      await this.maybeClose();
    }
  }

  private integrity(msg: string): UpstreamError {
    return new UpstreamError(this.upstream, 'integrity', `blob ${this.digest}: ${msg}`);
  }

  /** A stream of bytes [start, end] (inclusive) of the blob as the fill provides them. */
  reader(start = 0, end: number | null = null): Readable {
    this.readers += 1;
    return new FillReader(this, start, end);
  }

  /** @internal read the staged bytes at a position. */
  readAt(buf: Buffer, position: number): Promise<number> {
    return this.staged.readAt(buf, position);
  }

  /** @internal resolves on the next write, commit or failure. */
  waitForProgress(): Promise<void> {
    return new Promise((res) => this.waiters.push(res));
  }

  /** @internal a reader is gone. */
  async release(): Promise<void> {
    this.readers -= 1;
    await this.maybeClose();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async maybeClose(): Promise<void> {
    if (this.closed || this.state === 'running' || this.readers > 0) return;
    this.closed = true;
    await this.staged.close().catch(() => undefined);
  }
}

class FillReader extends Readable {
  private pos: number;
  private pumping = false;
  private released = false;

  constructor(
    private readonly fill: BlobFill,
    start: number,
    private readonly end: number | null,
  ) {
    super({ highWaterMark: READ_CHUNK });
    this.pos = start;
  }

  override _read(): void {
    if (this.pumping) return;
    this.pumping = true;
    this.pump().then(
      () => {
        this.pumping = false;
      },
      (err: unknown) => {
        this.pumping = false;
        this.destroy(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  private async pump(): Promise<void> {
    const fill = this.fill;
    for (;;) {
      if (this.destroyed) return;
      const limit = this.end === null ? Infinity : this.end + 1;
      if (fill.state === 'failed') {
        this.destroy(fill.error ?? new Error('fill failed'));
        return;
      }
      // Until the digest verifies, the last byte is held back: a client can never receive a
      // complete body whose bytes turn out to be wrong (it sees a cut instead).
      const verified = fill.state === 'done' || fill.size === null ? fill.written : Math.min(fill.written, fill.size - 1);
      const available = Math.min(verified, limit);
      if (this.pos < available) {
        const n = Math.min(available - this.pos, READ_CHUNK);
        const buf = Buffer.allocUnsafe(n);
        const got = await fill.readAt(buf, this.pos);
        if (this.destroyed) return;
        this.pos += got;
        if (!this.push(got === n ? buf : buf.subarray(0, got))) return;
        continue;
      }
      if (this.pos >= limit || fill.state === 'done') {
        this.push(null);
        return;
      }
      await fill.waitForProgress();
    }
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    if (!this.released) {
      this.released = true;
      void this.fill.release();
    }
    cb(err);
  }
}
