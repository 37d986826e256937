/**
 * Blob upload sessions of hosted repositories (the OCI push protocol's POST/PATCH/PUT/DELETE on
 * `/v2/<name>/blobs/uploads/`). Bytes stream into a blob the storage driver stages
 * (`driver.stage()`), hashed as they arrive, never buffered whole: chunks are gathered into
 * writes of up to WRITE_CHUNK bytes, and the next chunk is read only once the previous write
 * is done (backpressure reaches the client's socket). The final PUT verifies the digest and
 * commits the staged bytes under it; a wrong digest, a short body or a failed write discards
 * them, so nothing half-written is ever a blob.
 *
 * Sessions live in this process (the staged bytes are held open by it) and each is also written
 * as a record (`uploads/<id>`, src/storage/records.ts) naming its owner (this replica's
 * cluster.advertiseUrl, when set), so an operator and GC can see them and another replica can
 * forward a request for the session to its owner (uploads-forward.ts). A session not written to
 * for `hosted.uploadTtl` expires: its staged bytes are discarded and its record goes. One request
 * writes a session at a time; a second one meanwhile is refused.
 *
 * Imports: storage seam and records, oci/, errors. Never Fastify.
 */
import { createHash, randomUUID, type Hash } from 'node:crypto';
import type { Logger } from 'pino';
import { isRegistryError, registryError } from '../errors.js';
import type { Digest } from '../oci/reference.js';
import type { StagedBlob, StorageDriver } from '../storage/driver.js';
import type { HostedRecords } from '../storage/records.js';
import type { CacheEventsPort } from '../storage/ports.js';

/**
 * Writes to the stage are gathered up to this size (socket reads are 64 KiB). Measured with
 * test/bench/push.ts on a loaded 2-core machine: 1 MiB gave the same throughput as 256 KiB and
 * 128 KiB but ~25 MiB more peak RSS over 8 concurrent pushes (each write is a fresh buffer).
 */
const WRITE_CHUNK = 256 * 1024;
/** Most often the expiry sweep runs. */
const MAX_SWEEP_MS = 60_000;

export interface UploadMetrics {
  pushBytes: { inc(n: number): void };
  uploadsInProgress: { inc(): void; dec(): void; set(n: number): void };
}

export interface UploadsOptions {
  driver: StorageDriver;
  records: HostedRecords;
  /** hosted.uploadTtl (ms). */
  ttl: number;
  metrics: UploadMetrics;
  log: Logger;
  events?: Pick<CacheEventsPort, 'stored'>;
  now?: () => number;
  /** This replica's cluster.advertiseUrl: written into each session's record as its owner. */
  owner?: string | null;
}

/** Where an upload stands: its id, repository and the bytes received so far. */
export interface UploadState {
  id: string;
  name: string;
  offset: number;
}

interface Session {
  id: string;
  name: string;
  stage: StagedBlob;
  hash: Hash;
  offset: number;
  startedAt: number;
  touchedAt: number;
  busy: boolean;
}

/** A byte range a chunk says it carries (inclusive), from Content-Range. */
export interface ChunkRange {
  start: number;
  end: number;
}

export class Uploads {
  private readonly sessions = new Map<string, Session>();
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly o: UploadsOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Start the expiry sweep. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.sweep().catch((err: unknown) => this.o.log.warn({ err: (err as Error).message }, 'upload expiry sweep failed'));
    }, Math.max(1_000, Math.min(MAX_SWEEP_MS, Math.floor(this.o.ttl / 2))));
    this.timer.unref();
  }

  /** Stop the sweep and discard every open session (shutdown). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const s of [...this.sessions.values()]) await this.drop(s);
  }

  get open(): number {
    return this.sessions.size;
  }

  /** Does this process hold session `id` (its staged bytes)? */
  holds(id: string): boolean {
    return this.sessions.has(id);
  }

  /** Open a session for `name`. */
  async begin(name: string): Promise<UploadState> {
    this.start();
    const stage = await this.o.driver.stage();
    const at = this.now();
    const s: Session = { id: randomUUID(), name, stage, hash: createHash('sha256'), offset: 0, startedAt: at, touchedAt: at, busy: false };
    this.sessions.set(s.id, s);
    this.o.metrics.uploadsInProgress.inc();
    try {
      await this.o.records.putUpload(s.id, { name, startedAt: at, touchedAt: at, offset: 0, ...this.ownerField() });
    } catch (err) {
      await this.drop(s);
      throw err;
    }
    return this.state(s);
  }

  /**
   * The replica holding session `id` of `name` when it is another one (its advertised URL, from
   * the session's record); null when this process holds it, or no other replica claims it.
   */
  async remoteOwner(name: string, id: string): Promise<string | null> {
    if (this.sessions.has(id)) return null;
    const rec = await this.o.records.getUpload(id).catch(() => null);
    if (!rec || rec.name !== name || rec.owner === undefined || rec.owner === (this.o.owner ?? null)) return null;
    return rec.owner;
  }

  /** Where an upload stands (GET on the session). */
  async status(name: string, id: string): Promise<UploadState> {
    return this.state(await this.find(name, id, false));
  }

  /**
   * A PATCH: append the body. With a range it must start where the upload stands (else 416 with
   * the current Range) and carry exactly its length; a body that breaks off, or a failed write,
   * discards the session (the client starts again).
   */
  async append(name: string, id: string, body: AsyncIterable<Buffer>, range: ChunkRange | null, length: number | null): Promise<UploadState> {
    const s = await this.find(name, id);
    if (range && range.start !== s.offset) {
      throw registryError('BLOB_UPLOAD_RANGE', `the chunk starts at ${range.start}, the upload stands at ${s.offset}`, {
        headers: { range: rangeHeader(s.offset), location: uploadLocation(s.name, s.id), 'docker-upload-uuid': s.id },
        detail: { offset: s.offset },
      });
    }
    const expected = range ? range.end - range.start + 1 : length;
    await this.write(s, body, expected);
    await this.persist(s);
    return this.state(s);
  }

  /**
   * The final PUT: append the body (if any), verify the digest, commit. Nothing is committed on a
   * mismatch, and the session is gone either way.
   */
  async finish(name: string, id: string, digest: Digest, body: AsyncIterable<Buffer> | null, length: number | null): Promise<{ size: number }> {
    const s = await this.find(name, id);
    if (body) await this.write(s, body, length);
    return this.commit(s, digest);
  }

  /** A monolithic upload (`POST ?digest=` with the body): no session left behind either way. */
  async monolithic(name: string, digest: Digest, body: AsyncIterable<Buffer>, length: number | null): Promise<{ size: number }> {
    const { id } = await this.begin(name);
    const s = this.sessions.get(id) as Session;
    await this.write(s, body, length);
    return this.commit(s, digest);
  }

  /** DELETE on the session. */
  async cancel(name: string, id: string): Promise<void> {
    const s = await this.find(name, id);
    await this.drop(s);
  }

  /** Expire sessions untouched for the ttl, and records of sessions no process holds any more. */
  async sweep(): Promise<number> {
    const cutoff = this.now() - this.o.ttl;
    let n = 0;
    for (const s of [...this.sessions.values()]) {
      if (s.busy || s.touchedAt >= cutoff) continue;
      await this.drop(s);
      n += 1;
      this.o.log.info({ upload: s.id, name: s.name, offset: s.offset }, 'upload session expired (hosted.uploadTtl)');
    }
    for await (const { id, rec } of this.o.records.uploads()) {
      if (this.sessions.has(id) || rec.touchedAt >= cutoff) continue;
      await this.o.records.deleteUpload(id);
    }
    return n;
  }

  private state(s: Session): UploadState {
    return { id: s.id, name: s.name, offset: s.offset };
  }

  /** The session `id` of `name`; `writing`: the caller will write it, so it must not be busy. */
  private async find(name: string, id: string, writing = true): Promise<Session> {
    const s = this.sessions.get(id);
    if (!s || s.name !== name) {
      const rec = s ? null : await this.o.records.getUpload(id).catch(() => null);
      const why = !rec || rec.name !== name
        ? 'no such upload in this repository'
        : rec.owner !== undefined && rec.owner === (this.o.owner ?? null)
          ? 'the upload was started before this replica restarted, and its staged bytes went with the old process; start it again'
          : 'the upload was started by another process (a restart, or a replica without cluster.advertiseUrl); start it again';
      throw registryError('BLOB_UPLOAD_UNKNOWN', why, { detail: { uuid: id } });
    }
    if (s.touchedAt < this.now() - this.o.ttl && !s.busy) {
      await this.drop(s);
      throw registryError('BLOB_UPLOAD_UNKNOWN', 'the upload expired (hosted.uploadTtl)', { detail: { uuid: id } });
    }
    if (writing && s.busy) throw registryError('BLOB_UPLOAD_INVALID', 'another request is writing this upload right now');
    return s;
  }

  /**
   * Stream a body into the session; `expected` bytes when known. Any failure drops the session.
   * One gathered write is in flight while the next WRITE_CHUNK is read and hashed, so the socket
   * is never left unread while the disk works.
   */
  private async write(s: Session, body: AsyncIterable<Buffer>, expected: number | null): Promise<void> {
    s.busy = true;
    let got = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let inflight: Promise<void> | null = null;
    let failed: unknown = null;
    const settle = async (): Promise<void> => {
      if (inflight) await inflight;
      inflight = null;
      if (failed !== null) throw failed;
    };
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return;
      const buf = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending, pendingBytes);
      const n = pendingBytes;
      pending = [];
      pendingBytes = 0;
      await settle();
      inflight = s.stage.write(buf).then(
        () => this.o.metrics.pushBytes.inc(n),
        (err: unknown) => {
          failed = err;
        },
      );
    };
    try {
      for await (const chunk of body) {
        got += chunk.length;
        if (expected !== null && got > expected) {
          throw registryError('SIZE_INVALID', `the body is longer than the ${expected} bytes announced`);
        }
        s.hash.update(chunk);
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= WRITE_CHUNK) await flush();
      }
      await flush();
      await settle();
      if (expected !== null && got !== expected) {
        throw registryError('SIZE_INVALID', `the body ended after ${got} of the ${expected} bytes announced`);
      }
    } catch (err) {
      await inflight;
      s.busy = false;
      await this.drop(s);
      if (isRegistryError(err) || failed !== null) throw err;
      // The client's body broke off (a reset, an aborted request): the upload is gone with it.
      throw registryError('BLOB_UPLOAD_INVALID', `the request body broke off after ${got} bytes (${(err as Error).message}); the upload was dropped`);
    }
    s.offset += got;
    s.touchedAt = this.now();
    s.busy = false;
  }

  private async commit(s: Session, digest: Digest): Promise<{ size: number }> {
    s.busy = true;
    try {
      const got = await this.digestOf(s, digest);
      if (got !== digest) {
        throw registryError('DIGEST_INVALID', `the uploaded bytes hash to ${got}, not ${digest}`, { detail: { digest, size: s.offset } });
      }
      const size = s.offset;
      const existing = await this.o.driver.statBlob(digest);
      if (existing && existing.size === size) await s.stage.discard();
      else await commitStaged(s.stage, digest);
      await this.o.records.linkBlob(s.name, digest, this.now());
      this.o.events?.stored(digest, size, 'blob');
      await this.forget(s);
      return { size };
    } catch (err) {
      await this.drop(s);
      throw err;
    }
  }

  /** The digest of the staged bytes in `want`'s algorithm (sha256 was hashed on the way in). */
  private async digestOf(s: Session, want: Digest): Promise<string> {
    const algorithm = want.slice(0, want.indexOf(':'));
    if (algorithm === 'sha256') return `sha256:${s.hash.digest('hex')}`;
    const h = createHash(algorithm);
    const buf = Buffer.allocUnsafe(WRITE_CHUNK);
    for (let pos = 0; pos < s.offset;) {
      const n = await s.stage.readAt(buf, pos);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      pos += n;
    }
    return `${algorithm}:${h.digest('hex')}`;
  }

  private async persist(s: Session): Promise<void> {
    await this.o.records.putUpload(s.id, { name: s.name, startedAt: s.startedAt, touchedAt: s.touchedAt, offset: s.offset, ...this.ownerField() });
  }

  private ownerField(): { owner?: string } {
    return this.o.owner ? { owner: this.o.owner } : {};
  }

  /** Discard the staged bytes and forget the session. */
  private async drop(s: Session): Promise<void> {
    await s.stage.discard().catch(() => undefined);
    await this.forget(s);
  }

  private async forget(s: Session): Promise<void> {
    if (!this.sessions.delete(s.id)) return;
    this.o.metrics.uploadsInProgress.dec();
    await s.stage.close().catch(() => undefined);
    await this.o.records.deleteUpload(s.id).catch(() => false);
  }
}

/**
 * Commit staged bytes. Staged bytes swept meanwhile (idle longer than the store's staging
 * sweep) cannot be committed: the upload is then unknown, and the client uploads again.
 */
async function commitStaged(stage: StagedBlob, digest: Digest): Promise<void> {
  try {
    await stage.commit(digest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw registryError('BLOB_UPLOAD_UNKNOWN', 'the staged bytes of this upload were swept while it was idle; upload the blob again');
    }
    throw err;
  }
}

/** The Range header of an upload that has `offset` bytes: `0-<last>` (`0-0` before the first byte, as Distribution does). */
export function rangeHeader(offset: number): string {
  return `0-${Math.max(0, offset - 1)}`;
}

export function uploadLocation(name: string, id: string): string {
  return `/v2/${name}/blobs/uploads/${id}`;
}
