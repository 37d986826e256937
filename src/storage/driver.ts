/**
 * The storage seam. A driver keeps two kinds of things:
 *  - blobs (layers, configs and manifests alike), content-addressed by digest, immutable;
 *  - small metadata records (tag records, manifest media types, repository links, access times)
 *    under slash-separated keys. Only src/storage/records.ts knows the key layout.
 * Fills write into a staged blob the driver owns (`stage()`): appended by the fill, readable at
 * any position by the clients that joined it, then committed under its digest once the caller
 * has verified it, or discarded. The filesystem driver stages in a spool file and commits by
 * rename; the in-memory driver keeps the bytes; an object-store driver would upload.
 * Digests arrive typed (`Digest`, parsed once at the edge): drivers do not re-validate them.
 * What differs between drivers is declared here (`space`, `sweepStaging`, `storedAt`, `presign`), never
 * probed for. Every driver passes the one contract suite in test/integration/storage-contract.test.ts.
 *
 * Imports: src/oci/ only.
 */
import type { Readable } from 'node:stream';
import type { Digest } from '../oci/reference.js';

export interface BlobStat {
  size: number;
}

export interface ByteRange {
  /** Inclusive first byte. */
  start: number;
  /** Inclusive last byte. */
  end: number;
}

export interface BlobListing {
  digest: Digest;
  size: number;
  /**
   * When the blob was committed (ms since epoch), when the driver knows; the lifecycle layer's
   * fallback for a last access that was not persisted before a crash.
   */
  storedAt: number | null;
}

export interface ListBlobsOptions {
  /**
   * Sizes the caller already knows (blobs are immutable, so a digest's size never changes). A
   * driver that measures each blob separately (the filesystem: one stat per file) may take the
   * size from here instead and report `storedAt: null` for such a blob; a driver whose listing
   * carries sizes anyway (object storage, memory) ignores it.
   */
  knownSize?: (digest: Digest) => number | undefined;
}

export interface SpaceInfo {
  /** Bytes an unprivileged writer can still use. */
  free: number;
  /** Size of the volume in bytes. */
  total: number;
}

/**
 * Bytes on their way into the store. One writer appends; any number of readers read what has
 * been written at their own positions, before and after the commit. `close()` releases it once
 * the writer has committed or discarded and no reader needs it.
 */
export interface StagedBlob {
  /** Bytes appended so far. */
  readonly written: number;
  /** Append a chunk (resolves once it is readable through `readAt`). */
  write(chunk: Buffer): Promise<void>;
  /** Read into `buf` from `position`; returns how many bytes were read (0 at the end so far). */
  readAt(buf: Buffer, position: number): Promise<number>;
  /** Make the staged bytes, already verified by the caller, the blob `digest` (durably). */
  commit(digest: Digest): Promise<void>;
  /** Drop the staged bytes; nothing is left behind. Readers must not be started after this. */
  discard(): Promise<void>;
  /** Release what the stage holds (file handle, buffers). Idempotent. */
  close(): Promise<void>;
}

export interface InitOptions {
  /**
   * Another process may be using this store right now (`berth worker` beside `berth serve`):
   * create what is missing but clear nothing, since its staged writes are in flight.
   */
  shared?: boolean;
}

export interface StorageDriver {
  readonly name: string;
  /** Prepare the store: create what is missing, remove staged bytes a crash left behind. */
  init(opts?: InitOptions): Promise<void>;

  statBlob(digest: Digest): Promise<BlobStat | null>;
  /** A stream over the blob (or a range of it); null when absent. */
  readBlob(digest: Digest, range?: ByteRange): Promise<{ size: number; stream: Readable } | null>;
  /** Read a small blob whole (manifests); null when absent. */
  readBlobBuffer(digest: Digest): Promise<Buffer | null>;
  /**
   * Start staging a blob for a fill. The caller writes, verifies, then commits or discards it.
   * `expected`: the digest the fill expects (a hint, still verified by the caller before commit);
   * an object-store driver starts uploading while the fill runs. Others ignore it.
   */
  stage(expected?: Digest): Promise<StagedBlob>;
  /** Write a small, already verified blob (a manifest). Idempotent. */
  putBlobBuffer(digest: Digest, data: Buffer): Promise<void>;
  deleteBlob(digest: Digest): Promise<boolean>;
  /** Every stored blob with its size (see ListBlobsOptions for a hint that saves work). */
  listBlobs(opts?: ListBlobsOptions): AsyncIterable<BlobListing>;

  getMeta(key: string): Promise<Buffer | null>;
  putMeta(key: string, value: Buffer): Promise<void>;
  deleteMeta(key: string): Promise<boolean>;
  /** Keys directly or indirectly under `prefix` (which ends in '/'). */
  listMeta(prefix: string): AsyncIterable<string>;

  /** Can the store take writes right now (readiness)? */
  writable(): Promise<boolean>;
  /** Free and total bytes where the blobs live; null when the store cannot say (object storage, memory). */
  space(): Promise<SpaceInfo | null>;
  /**
   * Remove staged bytes not written for `olderThanMs` (left by a failure: a fill in flight writes
   * continuously and times out long before). Unless dryRun. Reports what went, or would.
   */
  sweepStaging(olderThanMs: number, dryRun: boolean): Promise<{ files: number; bytes: number }>;
  /**
   * Capability of object stores (S3): a URL a client can GET the committed blob from directly,
   * valid for `ttlSeconds`. Absent on drivers whose blobs only this process can serve. The `/v2`
   * blob route uses it for `storage.s3.redirect`.
   */
  presign?(digest: Digest, ttlSeconds: number): Promise<string>;
}
