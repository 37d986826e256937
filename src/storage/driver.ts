/**
 * The storage seam. A driver keeps two kinds of things:
 *  - blobs (layers, configs and manifests alike), content-addressed by digest, immutable;
 *  - small metadata records (tag records, manifest media types, repository links, access times)
 *    under slash-separated keys.
 * Fills always stage into a local spool file first (hashing as they write, so that joined clients
 * can read the bytes already there); `commitBlob` then makes a verified spool file durable under
 * its digest. The filesystem driver renames; an object-store driver would upload.
 * Every driver passes the one contract suite in test/unit/storage-contract.test.ts.
 */
import type { Readable } from 'node:stream';

export interface BlobStat {
  size: number;
}

export interface ByteRange {
  /** Inclusive first byte. */
  start: number;
  /** Inclusive last byte. */
  end: number;
}

export interface StorageDriver {
  readonly name: string;
  /** Prepare the store: create folders, remove spool files a crash left behind. */
  init(): Promise<void>;

  statBlob(digest: string): Promise<BlobStat | null>;
  /** A stream over the blob (or a range of it); null when absent. */
  readBlob(digest: string, range?: ByteRange): Promise<{ size: number; stream: Readable } | null>;
  /** Read a small blob whole (manifests); null when absent. */
  readBlobBuffer(digest: string): Promise<Buffer | null>;
  /** A new spool file path for a fill. The caller writes, verifies, then commits or discards it. */
  spoolPath(): string;
  /** Make a verified spool file the blob `digest`. Idempotent when the blob already exists. */
  commitBlob(spool: string, digest: string): Promise<void>;
  /** Write a small, already verified blob (a manifest). */
  putBlobBuffer(digest: string, data: Buffer): Promise<void>;
  deleteBlob(digest: string): Promise<boolean>;
  /** Every stored blob digest with its size. */
  listBlobs(): AsyncIterable<{ digest: string; size: number; mtimeMs?: number }>;

  getMeta(key: string): Promise<Buffer | null>;
  putMeta(key: string, value: Buffer): Promise<void>;
  deleteMeta(key: string): Promise<boolean>;
  /** Keys directly or indirectly under `prefix` (which ends in '/'). */
  listMeta(prefix: string): AsyncIterable<string>;

  /** Can the store take writes right now (readiness)? */
  writable(): Promise<boolean>;
}
