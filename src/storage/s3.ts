/**
 * S3 storage driver (scale-out): blobs and records in one bucket of any S3-compatible store
 * (tested against Ceph RGW), several replicas sharing it. Key layout, under an optional `prefix`
 * (`<prefix>/` when set, nothing otherwise):
 *   <prefix>/blobs/<algorithm>/<hex>   blob bytes, named by digest (no sharding: S3 has no folders)
 *   <prefix>/meta/<key>                metadata records, the key as src/storage/records.ts builds it
 * Staging stays local: a fill writes into a spool file under `storage.root` (the filesystem
 * driver's spool, reused as it is, with its dead-process and age sweeps), so the clients that
 * joined it read any position at disk speed. The spool file goes up to the blob's key streamed
 * from disk in bounded parts (a blob never sits whole in memory): a large blob's full parts while
 * the fill runs (when the fill names the digest it expects), the rest at `commit`, which completes
 * the upload with `If-None-Match: *` (412 means another replica stored the same verified bytes
 * first). Nothing is visible under the key before that; a discard or a failed upload aborts the
 * multipart upload, so no parts are left behind either. Reads go through undici with a locally
 * presigned URL (faster than the SDK's GetObject stream); the rest through the SDK. The spool file
 * is unlinked after the upload but stays readable to the readers holding it. (The spool's
 * driver also makes empty `blobs/` and `meta/` folders beside it; nothing is written there.)
 *
 * Imports: the driver seam, the filesystem driver (for the spool), src/oci/, undici and the AWS
 * SDK — loaded only when `storage.driver: s3` (factory.ts imports this module dynamically).
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import {
  S3Client,
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Agent, request as httpRequest } from 'undici';
import { parseDigest, type Digest } from '../oci/reference.js';
import type { BlobListing, ByteRange, InitOptions, SpaceInfo, StagedBlob, StorageDriver } from './driver.js';
import { FilesystemDriver } from './filesystem.js';

/** The `storage.s3` config section as this driver needs it (stated here, so storage/ stays below config/). */
export interface S3DriverConfig {
  endpoint: string;
  region: string;
  bucket: string;
  prefix: string;
  forcePathStyle: boolean;
  accessKeyId: string | null;
  secretAccessKey: string | null;
  redirect: { publicEndpoint: string | null };
}

/**
 * Parts of a multipart upload: 16 MiB (S3's minimum is 5 MiB; 10,000 parts allow 160 GB blobs),
 * each streamed from the spool file, at most UPLOAD_QUEUE at a time per upload. A blob no larger
 * than one part goes up in a single PUT.
 */
export const PART_SIZE = 16 * 1024 * 1024;
const UPLOAD_QUEUE = 4;
/** Tries per part (and per single PUT): each try streams the part again from the spool file. */
const UPLOAD_TRIES = 3;
/** Reads from the spool file for an upload: 1 MiB, as the filesystem driver reads. */
const READ_CHUNK = 1024 * 1024;
/** `readBlobBuffer` is for manifests; anything larger is refused rather than buffered. */
export const MAX_BUFFERED_BLOB = 16 * 1024 * 1024;
/** Sockets to the store, shared by every request of this process. */
const MAX_SOCKETS = 128;
const CONNECT_TIMEOUT_MS = 10_000;
/**
 * A socket idle this long is cut: a store that stops answering, or a blob reader that stopped
 * reading (its client stalled) for two minutes. Active transfers of any length are not bounded.
 */
const IDLE_TIMEOUT_MS = 120_000;
/**
 * Blob reads go through undici with a URL presigned locally (no request sent to sign it): about
 * 30 % more throughput than the SDK's own GetObject stream at 8–32 concurrent reads on the test
 * RGW here. The signature only needs to outlive the request's start.
 */
const READ_URL_TTL_S = 300;

/** A store failure that is not "absent": an outage, bad credentials, a missing bucket. */
export class S3StoreError extends Error {
  constructor(message: string, readonly status: number | undefined, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'S3StoreError';
  }
}

interface SdkError {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

function statusOf(err: unknown): number | undefined {
  return (err as SdkError | null)?.$metadata?.httpStatusCode;
}

function isAbsent(err: unknown): boolean {
  const e = err as SdkError | null;
  return statusOf(err) === 404 || e?.name === 'NoSuchKey' || e?.name === 'NotFound';
}

function isPreconditionFailed(err: unknown): boolean {
  const e = err as SdkError | null;
  return statusOf(err) === 412 || e?.name === 'PreconditionFailed' || e?.Code === 'PreconditionFailed';
}

export class S3Driver implements StorageDriver {
  readonly name = 's3';
  readonly bucket: string;
  readonly endpoint: string;
  private readonly prefix: string;
  private readonly client: S3Client;
  /** Uploads retry themselves (a streamed body cannot be replayed by the SDK). */
  private readonly uploader: S3Client;
  private readonly presigner: S3Client;
  private readonly reads: Agent;
  private readonly spool: FilesystemDriver;

  constructor(cfg: S3DriverConfig, spoolRoot: string) {
    this.bucket = cfg.bucket;
    this.endpoint = cfg.endpoint;
    const p = cfg.prefix.replace(/^\/+|\/+$/g, '');
    this.prefix = p === '' ? '' : `${p}/`;
    this.spool = new FilesystemDriver(spoolRoot);
    const agentOptions = { keepAlive: true, maxSockets: MAX_SOCKETS };
    const base: S3ClientConfig = {
      region: cfg.region,
      forcePathStyle: cfg.forcePathStyle,
      // S3-compatible stores refuse the CRC32 checksums the SDK would otherwise add to every request.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // Static keys from the config; without them the SDK's own chain (AWS_ACCESS_KEY_ID /
      // AWS_SECRET_ACCESS_KEY, profiles, workload identity) finds them.
      ...(cfg.accessKeyId !== null && cfg.secretAccessKey !== null
        ? { credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey } }
        : {}),
    };
    const requestHandler = {
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
      connectionTimeout: CONNECT_TIMEOUT_MS,
      requestTimeout: IDLE_TIMEOUT_MS,
    };
    this.client = new S3Client({ ...base, endpoint: cfg.endpoint, requestHandler });
    this.uploader = new S3Client({ ...base, endpoint: cfg.endpoint, requestHandler, maxAttempts: 1 });
    this.reads = new Agent({
      connections: MAX_SOCKETS,
      connectTimeout: CONNECT_TIMEOUT_MS,
      headersTimeout: IDLE_TIMEOUT_MS,
      bodyTimeout: IDLE_TIMEOUT_MS,
    });
    // Signs URLs for clients (redirects); sends nothing itself.
    this.presigner = new S3Client({ ...base, endpoint: cfg.redirect.publicEndpoint ?? cfg.endpoint });
  }

  private where(): string {
    return `bucket "${this.bucket}" at ${this.endpoint}`;
  }

  /** Wraps a store failure in a message naming the operation, the key and the store. */
  private fail(op: string, key: string, err: unknown): S3StoreError {
    const status = statusOf(err);
    const name = (err as SdkError | null)?.name ?? 'Error';
    const why = err instanceof Error ? err.message : String(err);
    return new S3StoreError(`S3 ${op} ${key} in ${this.where()} failed: ${name}${status ? ` (HTTP ${status})` : ''}: ${why}`, status, { cause: err });
  }

  blobKey(digest: Digest): string {
    const i = digest.indexOf(':');
    return `${this.prefix}blobs/${digest.slice(0, i)}/${digest.slice(i + 1)}`;
  }

  private metaKey(key: string): string {
    if (key.split('/').some((p) => p === '' || p === '.' || p === '..')) throw new Error(`invalid metadata key ${key}`);
    return `${this.prefix}meta/${key}`;
  }

  async init(opts: InitOptions = {}): Promise<void> {
    await this.spool.init(opts);
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      const status = statusOf(err);
      const why =
        status === 404 ? 'the bucket does not exist (create it first; Berth does not create buckets)'
        : status === 403 ? 'access denied (check storage.s3.accessKeyId / secretAccessKey or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)'
        : (err as SdkError | null)?.name === 'CredentialsProviderError'
          ? 'no credentials (set storage.s3.accessKeyId and secretAccessKey, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)'
          : `the store did not answer: ${err instanceof Error ? err.message : String(err)}`;
      throw new S3StoreError(`storage.s3: cannot use ${this.where()}: ${why}`, status, { cause: err });
    }
  }

  async statBlob(digest: Digest): Promise<{ size: number } | null> {
    const key = this.blobKey(digest);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: head.ContentLength ?? 0 };
    } catch (err) {
      if (isAbsent(err)) return null;
      throw this.fail('HEAD', key, err);
    }
  }

  async readBlob(digest: Digest, range?: ByteRange): Promise<{ size: number; stream: Readable } | null> {
    const key = this.blobKey(digest);
    let res;
    try {
      const url = await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn: READ_URL_TTL_S });
      res = await httpRequest(url, { dispatcher: this.reads, headers: range ? { range: `bytes=${range.start}-${range.end}` } : {} });
    } catch (err) {
      throw this.fail('GET', key, err);
    }
    if (res.statusCode === 404) {
      // The answer's small XML body is read so the connection goes back to the pool.
      await res.body.dump().catch(() => undefined);
      return null;
    }
    if (res.statusCode !== 200 && res.statusCode !== 206) {
      const text = await res.body.text().catch(() => '');
      const code = /<Code>([^<]{1,100})<\/Code>/.exec(text)?.[1] ?? 'Error';
      throw new S3StoreError(`S3 GET ${key} in ${this.where()} failed: ${code} (HTTP ${res.statusCode})`, res.statusCode);
    }
    // `bytes a-b/total` gives the whole blob's size under a Range; without one it is the length.
    const header = (name: string): string => String(res.headers[name] ?? '');
    const total = /\/(\d+)$/.exec(header('content-range'))?.[1];
    const size = Number(total ?? header('content-length'));
    return { size, stream: res.body };
  }

  async readBlobBuffer(digest: Digest): Promise<Buffer | null> {
    const key = this.blobKey(digest);
    let res;
    try {
      res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      if (isAbsent(err)) return null;
      throw this.fail('GET', key, err);
    }
    const body = res.Body as Readable | undefined;
    if (!body) return Buffer.alloc(0);
    if ((res.ContentLength ?? 0) > MAX_BUFFERED_BLOB) {
      body.destroy();
      throw new S3StoreError(`S3 GET ${key}: ${res.ContentLength} bytes is more than the ${MAX_BUFFERED_BLOB} a buffered read takes`, undefined);
    }
    const chunks: Buffer[] = [];
    let n = 0;
    try {
      for await (const c of body) {
        n += (c as Buffer).length;
        if (n > MAX_BUFFERED_BLOB) throw new S3StoreError(`S3 GET ${key}: body exceeds ${MAX_BUFFERED_BLOB} bytes`, undefined);
        chunks.push(c as Buffer);
      }
    } catch (err) {
      body.destroy();
      throw err instanceof S3StoreError ? err : this.fail('GET', key, err);
    }
    return Buffer.concat(chunks);
  }

  /**
   * A fill's stage. With the digest it expects, the parts of a large blob go up while the fill
   * runs, so the commit only sends the last part and completes the upload.
   */
  async stage(expected?: Digest): Promise<StagedBlob> {
    const local = await this.spool.stage();
    const readAt: ReadAt = (buf, pos) => local.readAt(buf, pos);
    const early = expected === undefined ? undefined : this.parts(this.blobKey(expected), readAt);
    return new S3Stage(local, early, expected, (digest, size, parts) => this.upload(this.blobKey(digest), size, readAt, parts));
  }

  async putBlobBuffer(digest: Digest, data: Buffer): Promise<void> {
    const key = this.blobKey(digest);
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: data, IfNoneMatch: '*' }));
    } catch (err) {
      // Already there: blobs are content-addressed, so it holds these bytes.
      if (isPreconditionFailed(err)) return;
      throw this.fail('PUT', key, err);
    }
  }

  /**
   * Upload `size` verified bytes read through `readAt` to `key`, created only if absent. One PUT
   * for a small blob; else a multipart upload (`parts`, when the fill already started one while
   * it ran), aborted on any failure so nothing is left behind. One fallback: a multipart upload
   * that failed part-way is done again from the start, the spool file still holding every byte.
   */
  private async upload(key: string, size: number, readAt: ReadAt, parts?: PartUploader): Promise<void> {
    if (size <= PART_SIZE) {
      await parts?.abort();
      try {
        await retry(() =>
          this.uploader.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: spoolStream(readAt, 0, size), ContentLength: size, IfNoneMatch: '*' })),
        );
      } catch (err) {
        if (isPreconditionFailed(err)) return;
        throw this.fail('PUT', key, err);
      }
      return;
    }
    let first: unknown;
    for (const u of [parts ?? this.parts(key, readAt), this.parts(key, readAt)]) {
      try {
        await u.finish(size);
        return;
      } catch (err) {
        await u.abort();
        if (isPreconditionFailed(err)) return;
        first ??= err;
      }
    }
    throw this.fail('multipart upload of', key, first);
  }

  /** A multipart upload of `key`, fed from a staged blob (S3Stage starts one while a fill runs). */
  parts(key: string, readAt: ReadAt): PartUploader {
    return new PartUploader(this.uploader, this.bucket, key, readAt);
  }

  async deleteBlob(digest: Digest): Promise<boolean> {
    return this.deleteKey(this.blobKey(digest));
  }

  /** S3 deletes answer 204 whether or not the key existed: a HEAD first tells which. */
  private async deleteKey(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      if (isAbsent(err)) return false;
      throw this.fail('HEAD', key, err);
    }
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (err) {
      if (isAbsent(err)) return false;
      throw this.fail('DELETE', key, err);
    }
  }

  /** Every object under `prefix`, page by page (1,000 keys a page). */
  private async *list(prefix: string): AsyncIterable<{ key: string; size: number; modified: number | null }> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }));
      } catch (err) {
        throw this.fail('LIST', prefix, err);
      }
      for (const o of page.Contents ?? []) {
        if (o.Key !== undefined) yield { key: o.Key, size: o.Size ?? 0, modified: o.LastModified?.getTime() ?? null };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async *listBlobs(): AsyncIterable<BlobListing> {
    const base = `${this.prefix}blobs/`;
    for await (const o of this.list(base)) {
      const rest = o.key.slice(base.length);
      const slash = rest.indexOf('/');
      // The bucket is an edge too: a key put there by hand is not a blob.
      const digest = slash > 0 ? parseDigest(`${rest.slice(0, slash)}:${rest.slice(slash + 1)}`) : null;
      if (digest) yield { digest, size: o.size, storedAt: o.modified };
    }
  }

  async getMeta(key: string): Promise<Buffer | null> {
    const k = this.metaKey(key);
    let res;
    try {
      res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: k }));
    } catch (err) {
      if (isAbsent(err)) return null;
      throw this.fail('GET', k, err);
    }
    try {
      return res.Body ? Buffer.from(await res.Body.transformToByteArray()) : Buffer.alloc(0);
    } catch (err) {
      (res.Body as Readable | undefined)?.destroy();
      throw this.fail('GET', k, err);
    }
  }

  async putMeta(key: string, value: Buffer): Promise<void> {
    const k = this.metaKey(key);
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: k, Body: value }));
    } catch (err) {
      throw this.fail('PUT', k, err);
    }
  }

  async deleteMeta(key: string): Promise<boolean> {
    return this.deleteKey(this.metaKey(key));
  }

  async *listMeta(prefix: string): AsyncIterable<string> {
    const base = `${this.prefix}meta/`;
    for await (const o of this.list(`${base}${prefix}`)) yield o.key.slice(base.length);
  }

  /** A cheap probe: the bucket answers, and the local spool takes writes. */
  async writable(): Promise<boolean> {
    if (!(await this.spool.writable())) return false;
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return true;
    } catch {
      return false;
    }
  }

  async space(): Promise<SpaceInfo | null> {
    return null;
  }

  /**
   * Staging is the local spool (the filesystem driver's sweep) plus the bucket's multipart
   * uploads under this prefix that a process killed mid-upload left open: their parts take space
   * in the store but belong to no object. An upload started more than `olderThanMs` ago is aborted
   * (a live fill sends a part at least every few seconds and ends long before). Their part bytes
   * are not counted: the store does not say them without a listing per upload.
   */
  async sweepStaging(olderThanMs: number, dryRun: boolean): Promise<{ files: number; bytes: number }> {
    const local = await this.spool.sweepStaging(olderThanMs, dryRun);
    const cutoff = Date.now() - olderThanMs;
    let uploads = 0;
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await this.client.send(new ListMultipartUploadsCommand({
          Bucket: this.bucket, Prefix: `${this.prefix}blobs/`, KeyMarker: keyMarker, UploadIdMarker: idMarker,
        }));
      } catch (err) {
        throw this.fail('LIST uploads', `${this.prefix}blobs/`, err);
      }
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId || !u.Initiated || u.Initiated.getTime() > cutoff) continue;
        uploads += 1;
        if (dryRun) continue;
        try {
          await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }));
        } catch (err) {
          if (statusOf(err) !== 404) throw this.fail('ABORT upload', u.Key, err);
        }
      }
      if (!page.IsTruncated) break;
      keyMarker = page.NextKeyMarker;
      idMarker = page.NextUploadIdMarker;
      if (keyMarker === undefined && idMarker === undefined) break;
    }
    return { files: local.files + uploads, bytes: local.bytes };
  }

  /** A GET URL for the blob, signed for `ttlSeconds`, on the public endpoint (redirects). */
  async presign(digest: Digest, ttlSeconds: number): Promise<string> {
    return getSignedUrl(this.presigner, new GetObjectCommand({ Bucket: this.bucket, Key: this.blobKey(digest) }), { expiresIn: ttlSeconds });
  }

  /** Release the socket pools (tests, shutdown). */
  close(): void {
    void this.reads.close();
    this.client.destroy();
    this.uploader.destroy();
    this.presigner.destroy();
  }
}

type ReadAt = (buf: Buffer, pos: number) => Promise<number>;

/**
 * A fill's stage: the local spool file, uploaded to the bucket. With the expected digest, full
 * parts go up as soon as the spool holds them (past the first part, so only a blob that needs a
 * multipart upload starts one); the commit uploads the rest and completes. Nothing is visible
 * under the key before the commit completes the upload; a discard aborts it.
 */
class S3Stage implements StagedBlob {
  private finished = false;

  constructor(
    private readonly local: StagedBlob,
    private readonly early: PartUploader | undefined,
    private readonly expected: Digest | undefined,
    private readonly upload: (digest: Digest, size: number, parts: PartUploader | undefined) => Promise<void>,
  ) {}

  get written(): number {
    return this.local.written;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.finished) throw new Error('write to a staged blob that was committed or discarded');
    await this.local.write(chunk);
    if (this.early && this.local.written > PART_SIZE) this.early.grow(this.local.written);
  }

  readAt(buf: Buffer, position: number): Promise<number> {
    return this.local.readAt(buf, position);
  }

  async commit(digest: Digest): Promise<void> {
    this.finished = true;
    const started = this.early?.started() === true && digest === this.expected ? this.early : undefined;
    if (!started) await this.early?.abort();
    await this.upload(digest, this.local.written, started);
    // The spool file goes; the handle stays open for the readers still reading it.
    await this.local.discard();
  }

  async discard(): Promise<void> {
    this.finished = true;
    await this.early?.abort();
    await this.local.discard();
  }

  async close(): Promise<void> {
    if (!this.finished) await this.discard();
    await this.local.close();
  }
}

/**
 * One multipart upload of a staged blob: parts of PART_SIZE streamed from the spool, at most
 * UPLOAD_QUEUE at a time, started as the bytes arrive (`grow`) or at the end (`finish`).
 */
class PartUploader {
  private uploadId: Promise<string> | undefined;
  private readonly done: CompletedPart[] = [];
  private next = 0;
  private inFlight = 0;
  private available = 0;
  private size: number | null = null;
  private error: unknown = undefined;
  private aborted = false;
  private readonly cancel = new AbortController();
  private waiters: Array<() => void> = [];

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly key: string,
    private readonly readAt: ReadAt,
  ) {}

  /** Has a part been sent (so an upload exists to complete or abort)? */
  started(): boolean {
    return this.uploadId !== undefined;
  }

  /** Bytes [0, n) are staged: send the full parts among them. */
  grow(n: number): void {
    this.available = n;
    this.pump();
  }

  private pump(): void {
    while (this.error === undefined && !this.aborted && this.inFlight < UPLOAD_QUEUE) {
      const limit = this.size ?? this.available;
      const start = this.next * PART_SIZE;
      const end = Math.min(start + PART_SIZE, limit);
      // Before the end is known only full parts go; the last one may be short.
      if (start >= limit || (this.size === null && end - start < PART_SIZE)) return;
      const i = this.next++;
      this.inFlight += 1;
      this.send(i, start, end).then(
        (etag) => {
          this.done[i] = { PartNumber: i + 1, ETag: etag };
        },
        (err: unknown) => {
          this.error ??= err;
        },
      ).finally(() => {
        this.inFlight -= 1;
        this.pump();
        for (const w of this.waiters.splice(0)) w();
      });
    }
  }

  private async send(i: number, start: number, end: number): Promise<string | undefined> {
    this.uploadId ??= this.s3.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.key })).then((r) => {
      if (!r.UploadId) throw new Error('the store returned no UploadId');
      return r.UploadId;
    });
    const UploadId = await this.uploadId;
    const res = await retry(
      () =>
        this.s3.send(
          new UploadPartCommand({
            Bucket: this.bucket, Key: this.key, UploadId, PartNumber: i + 1, Body: spoolStream(this.readAt, start, end), ContentLength: end - start,
          }),
          { abortSignal: this.cancel.signal },
        ),
      () => this.aborted,
    );
    return res.ETag;
  }

  private idle(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => this.waiters.push(() => r())).then(() => this.idle());
  }

  /** All `size` bytes are staged and verified: send the rest, then complete (if absent). */
  async finish(size: number): Promise<void> {
    if (this.aborted) throw new Error('multipart upload was aborted');
    this.size = size;
    this.pump();
    while (this.error === undefined && this.next * PART_SIZE < size) await this.idle();
    await this.idle();
    if (this.error !== undefined) throw this.error;
    const UploadId = await this.uploadId;
    await retry(() =>
      this.s3.send(new CompleteMultipartUploadCommand({
        Bucket: this.bucket, Key: this.key, UploadId, MultipartUpload: { Parts: this.done }, IfNoneMatch: '*',
      })),
    );
    this.uploadId = undefined;
  }

  /** Stop sending; once the parts in flight have settled, abort the upload (nothing is left). */
  async abort(): Promise<void> {
    this.aborted = true;
    // Parts in flight are cut rather than waited for: a failed fill should not wait on the store.
    this.cancel.abort();
    await this.idle();
    const id = await this.uploadId?.catch(() => undefined);
    this.uploadId = undefined;
    if (id !== undefined) {
      await this.s3.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: id })).catch(() => undefined);
    }
  }
}

/** Bytes [start, end) of a staged blob as a stream, in 1 MiB reads. */
function spoolStream(readAt: ReadAt, start: number, end: number): Readable {
  return Readable.from(spoolRange(readAt, start, end), { objectMode: false });
}

/** Bytes [start, end) of a staged blob, in 1 MiB reads. */
async function* spoolRange(readAt: ReadAt, start: number, end: number): AsyncGenerator<Buffer> {
  let pos = start;
  while (pos < end) {
    const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, end - pos));
    const n = await readAt(buf, pos);
    if (n === 0) throw new Error(`staged blob ended at ${pos} of ${end} bytes`);
    pos += n;
    yield n === buf.length ? buf : buf.subarray(0, n);
  }
}

/** A few tries with a short backoff; a 412 (the object exists) or a 4xx other than 408/429 is final. */
async function retry<T>(fn: () => Promise<T>, stopped: () => boolean = () => false): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const status = statusOf(err);
      const final = status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429;
      if (final || stopped() || attempt >= UPLOAD_TRIES) throw err;
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}
