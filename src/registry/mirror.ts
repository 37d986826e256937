/**
 * MirrorService: the cache policy. Local first; upstream on a miss; one upstream fetch per
 * manifest, tag and blob however many clients ask (single-flight); tags trusted for `tagTtl`,
 * then revalidated with a free HEAD; the last known manifest served stale on any upstream
 * failure; 429s honoured without a retry storm.
 *
 * Imports: storage/, upstream/, config types, metrics. Never Fastify: the HTTP layer and the
 * pre-warm worker both drive the cache through this class.
 */
import { createHash } from 'node:crypto';
import type { LookupFunction } from 'node:net';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { LRUCache } from 'lru-cache';
import type { UpstreamConfig } from '../config/types.js';
import { registryError } from '../errors.js';
import type { CacheKind, CacheResult, Metrics } from '../metrics/metrics.js';
import type { ByteRange, StorageDriver } from '../storage/driver.js';
import { isNoSpace } from '../storage/space.js';
import { verifiedStream } from '../storage/verify-stream.js';
import { header, UpstreamClient } from '../upstream/client.js';
import { UpstreamError, toRegistryError } from '../upstream/errors.js';
import { BlobFill } from './blob-fill.js';
import { MANIFEST_TYPES, UPSTREAM_ACCEPT, isIndexType, negotiate, parseManifest, sniffMediaType } from '../oci/media.js';
import { MetadataStore, type TagRecord } from './metadata.js';
import { checkDigest, isValidTag, looksLikeDigest } from '../oci/reference.js';
import type { Routed } from './routing.js';
import { SingleFlight } from './singleflight.js';

export interface ManifestResult {
  bytes: Buffer;
  mediaType: string;
  digest: string;
  /** Served from cache because upstream could not be reached: add a Warning header. */
  stale: boolean;
}

export interface BlobHandle {
  digest: string;
  /** Total length, when known (always for cached blobs; from Content-Length for fills). */
  size: number | null;
  source: 'cache' | 'upstream';
  /** Open the bytes (or a range of them). Call once. */
  open(range?: ByteRange): Promise<Readable>;
  /** Give up without opening (HEAD): releases nothing held so far. */
}

/**
 * What the cache tells the lifecycle layer (eviction, GC, storage figures). Called on the request
 * path, so implementations must be cheap and must not throw.
 */
export interface CacheHooks {
  /** A blob or manifest was served or used (for LRU by last access). */
  accessed(digest: string): void;
  /** A blob or manifest was committed to storage. */
  stored(digest: string, size: number, kind: 'manifest' | 'blob'): void;
  /** A write failed because the disk is full (ENOSPC); `needed` is the blob's size when known. */
  storageFull?(err: Error, needed: number | null): void;
  /** May a blob miss be cached now? false (disk full) → stream it through uncached. */
  canStore?(): boolean;
}

export interface MirrorDeps {
  /** Lifecycle listener; none by default. */
  hooks?: CacheHooks;
  driver: StorageDriver;
  upstreams: UpstreamConfig[];
  metrics: Metrics;
  log: Logger;
  now?: () => number;
  /** Injected so tests (and several services in one process) do not share in-flight state. */
  flights?: FlightTables;
  /** Host-name resolution for upstream connections (a test seam for DNS failures); the system's by default. */
  lookup?: LookupFunction;
}

/** The in-flight tables: owned objects, never module globals. */
export class FlightTables {
  /** Blob fills by digest; an entry stays until its fill commits or fails, so late clients join it. */
  readonly blobs = new Map<string, Promise<BlobFill>>();
  readonly manifests = new SingleFlight<string, ManifestResult>();
  readonly tags = new SingleFlight<string, TagOutcome>();
}

interface CachedManifest {
  bytes: Buffer;
  mediaType: string;
}

/** What one tag revalidation produced, and how to count it. */
interface TagOutcome {
  value: ManifestResult;
  result: CacheResult;
}

export class MirrorService {
  readonly meta: MetadataStore;
  readonly clients = new Map<string, UpstreamClient>();
  private readonly driver: StorageDriver;
  private readonly metrics: Metrics;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly flights: FlightTables;
  /** Hot manifests by digest: bytes and media type, no disk and no JSON on the warm path. */
  private readonly manifestCache = new LRUCache<string, CachedManifest>({
    maxSize: 64 * 1024 * 1024,
    sizeCalculation: (v) => v.bytes.length + 200,
  });
  /** Upstream 404s remembered for `notFoundTtl`: key → until (ms since epoch). */
  private readonly notFound = new LRUCache<string, number>({ max: 10_000 });
  /** Repository links already on disk (upstream|name|digest): a warm hit must not write a file. */
  private readonly linked = new LRUCache<string, true>({ max: 100_000 });
  /** Stale answers already logged, once per tag and cause until the tag revalidates again. */
  private readonly staleLogged = new LRUCache<string, true>({ max: 10_000 });
  hooks: CacheHooks | null;

  constructor(deps: MirrorDeps) {
    this.hooks = deps.hooks ?? null;
    this.driver = deps.driver;
    this.metrics = deps.metrics;
    this.log = deps.log;
    this.now = deps.now ?? Date.now;
    this.flights = deps.flights ?? new FlightTables();
    this.meta = new MetadataStore(deps.driver);
    for (const u of deps.upstreams) {
      this.clients.set(u.name, new UpstreamClient(u, {
        metrics: deps.metrics, log: deps.log, now: this.now, ...(deps.lookup ? { lookup: deps.lookup } : {}),
      }));
    }
  }

  async close(): Promise<void> {
    // Let running fills finish so no spool is left half written by us.
    const fills = await Promise.allSettled([...this.flights.blobs.values()]);
    await Promise.allSettled(fills.map((f) => (f.status === 'fulfilled' ? f.value.finished : undefined)));
    await Promise.all([...this.clients.values()].map((c) => c.close()));
  }

  /** The lifecycle layer removed (or is removing) this manifest: stop serving it from memory. */
  forget(digest: string): void {
    this.manifestCache.delete(digest);
    // Eviction removed its links too; the next hit through a repository writes its link again.
    for (const key of this.linked.keys()) if (key.endsWith(`|${digest}`)) this.linked.delete(key);
  }

  /** Is a fill for this blob in flight? (The lifecycle layer never removes such a blob.) */
  filling(digest: string): boolean {
    return this.flights.blobs.has(digest);
  }

  client(upstream: UpstreamConfig): UpstreamClient {
    const c = this.clients.get(upstream.name);
    if (!c) throw new Error(`no client for upstream ${upstream.name}`);
    return c;
  }

  private count(kind: CacheKind, result: CacheResult): void {
    this.metrics.cacheRequests.inc({ kind, result });
  }

  // ---------------------------------------------------------------- manifests
  //
  // Counting: every client request for a manifest adds exactly one to berth_cache_requests_total:
  // hit (answered locally, nothing asked upstream), revalidated (a HEAD upstream confirmed what the
  // cache holds), miss (fetched, or tried to fetch, from upstream), coalesced (joined another
  // request's fetch), stale (answered from the cache because the upstream failed).

  /**
   * A manifest by tag or digest, negotiated against the client's Accept. Throws catalogued
   * errors (MANIFEST_UNKNOWN for a bad tag, as the conformance suite expects).
   */
  async getManifest(r: Routed, reference: string, accept: Set<string>): Promise<ManifestResult> {
    try {
      return await this.negotiatedManifest(r, reference, accept);
    } catch (err) {
      if (err instanceof UpstreamError) throw toRegistryError(err, 'MANIFEST_UNKNOWN');
      throw err;
    }
  }

  private async negotiatedManifest(r: Routed, reference: string, accept: Set<string>): Promise<ManifestResult> {
    const byTag = !looksLikeDigest(reference);
    let result: ManifestResult;
    if (byTag) {
      if (!isValidTag(reference)) throw registryError('MANIFEST_UNKNOWN', `"${reference}" is not a valid tag`);
      result = await this.manifestByTag(r, reference);
    } else {
      const c = checkDigest(reference);
      if (!c.ok) throw registryError('DIGEST_INVALID', c.reason);
      result = await this.manifestByDigest(r, reference);
    }
    const n = negotiate(result.mediaType, accept, byTag);
    if (n.ok === true) return result;
    if (n.ok === false) throw registryError('MANIFEST_UNKNOWN', n.reason);
    // An old client asked for a manifest list by tag: give it the linux/amd64 image.
    const list = parseManifest(result.bytes);
    const pick = list.manifests.find((d) => d.platform?.os === n.os && d.platform.architecture === n.architecture);
    if (!pick) throw registryError('MANIFEST_UNKNOWN', `manifest list has no ${n.os}/${n.architecture} entry for this client`);
    const child = await this.resolveDigest(r, pick.digest);
    return { ...child.value, stale: result.stale };
  }

  /** A manifest already in the cache, by digest (memory, then storage). */
  async localManifest(digest: string): Promise<CachedManifest | null> {
    const hot = this.manifestCache.get(digest);
    if (hot) {
      this.hooks?.accessed(digest);
      return hot;
    }
    const rec = await this.meta.getManifest(digest);
    if (!rec) return null;
    const bytes = await this.driver.readBlobBuffer(digest);
    if (!bytes) return null;
    const m = { bytes, mediaType: rec.mediaType };
    this.manifestCache.set(digest, m);
    this.hooks?.accessed(digest);
    return m;
  }

  /** A manifest by digest: immutable, so local when cached, else fetched once and verified. */
  async manifestByDigest(r: Routed, digest: string): Promise<ManifestResult> {
    let result: CacheResult = 'miss';
    try {
      const got = await this.resolveDigest(r, digest, (joined) => {
        result = joined;
      });
      result = got.result;
      return got.value;
    } finally {
      this.count('manifest', result);
    }
  }

  /**
   * Local, else the one upstream fetch for (upstream, repository, digest). `onJoin` learns at once
   * whether this call started the fetch or joined one, so a failed fetch is still counted right.
   */
  private async resolveDigest(
    r: Routed, digest: string, onJoin?: (result: CacheResult) => void,
  ): Promise<{ value: ManifestResult; result: CacheResult }> {
    const local = await this.localManifest(digest);
    if (local) {
      this.linkLater(r, digest);
      return { value: { bytes: local.bytes, mediaType: local.mediaType, digest, stale: false }, result: 'hit' };
    }
    const key = `${r.upstream.name}|${r.name}|${digest}`;
    this.checkNotFound(key, r);
    const { promise, shared } = this.flights.manifests.join(key, () => this.fetchManifest(r, digest, digest).catch((err: unknown) => {
      this.rememberNotFound(key, r, err);
      throw err;
    }));
    const result: CacheResult = shared ? 'coalesced' : 'miss';
    onJoin?.(result);
    return { value: await promise, result };
  }

  private async manifestByTag(r: Routed, tag: string): Promise<ManifestResult> {
    const rec = await this.meta.getTag(r.upstream.name, r.name, tag);
    const age = rec ? this.now() - rec.checkedAt : Infinity;
    if (rec && age < r.upstream.tagTtl) {
      const local = await this.localManifest(rec.digest);
      if (local) {
        this.count('manifest', 'hit');
        return { bytes: local.bytes, mediaType: local.mediaType, digest: rec.digest, stale: false };
      }
    }
    const key = `${r.upstream.name}|${r.name}|${tag}`;
    if (rec && r.upstream.staleWhileRevalidate > 0 && age < r.upstream.tagTtl + r.upstream.staleWhileRevalidate) {
      const local = await this.localManifest(rec.digest);
      if (local) {
        // Answer now; one background revalidation (joined by any other) refreshes the record
        // for the next client. Its failures are the stale path's business, not this client's.
        void this.flights.tags.join(key, () => this.revalidateTag(r, tag, rec)).promise.catch(() => undefined);
        this.count('manifest', 'hit');
        return { bytes: local.bytes, mediaType: local.mediaType, digest: rec.digest, stale: false };
      }
    }
    let result: CacheResult = 'miss';
    try {
      this.checkNotFound(key, r);
      const { promise, shared } = this.flights.tags.join(key, () => this.revalidateTag(r, tag, rec));
      if (shared) result = 'coalesced';
      const out = await promise;
      // A stale answer is counted as stale whoever asked: that is the figure operators watch.
      result = out.value.stale ? 'stale' : shared ? 'coalesced' : out.result;
      return out.value;
    } finally {
      this.count('manifest', result);
    }
  }

  /**
   * Ask upstream what the tag points at now (HEAD, free on Docker Hub); fetch only what changed;
   * on any upstream failure answer the last known manifest, marked stale. Never answers a digest
   * whose manifest this mirror does not hold: a changed tag is fetched before it is answered.
   */
  private async revalidateTag(r: Routed, tag: string, rec: TagRecord | null): Promise<TagOutcome> {
    const client = this.client(r.upstream);
    const path = `/v2/${r.name}/manifests/${tag}`;
    const key = `${r.upstream.name}|${r.name}|${tag}`;
    try {
      // Nothing cached and the pull budget spent: only a GET could answer, so answer 429 at once.
      if (!rec) client.checkPullBudget(`GET ${path}`);
      const head = await client.request({ method: 'HEAD', path, kind: 'manifest', repository: r.name, headers: { accept: UPSTREAM_ACCEPT } });
      head.body.resume();
      const digest = header(head.headers, 'docker-content-digest');
      const now = this.now();
      if (digest && checkDigest(digest).ok) {
        if (rec && rec.digest === digest) {
          const local = await this.localManifest(digest);
          if (local) {
            await this.record(() => this.meta.putTag(r.upstream.name, r.name, tag, { ...rec, checkedAt: now }));
            this.staleForget(key);
            return { value: { bytes: local.bytes, mediaType: local.mediaType, digest, stale: false }, result: 'revalidated' };
          }
        }
        const got = await this.resolveDigest(r, digest);
        const m = got.value;
        await this.record(() => this.meta.putTag(r.upstream.name, r.name, tag, {
          digest, mediaType: m.mediaType, size: m.bytes.length, fetchedAt: now, checkedAt: now,
        }));
        this.staleForget(key);
        // The new digest was already held (another tag or repository): upstream was asked, the cache answered.
        return { value: m, result: got.result === 'hit' ? 'revalidated' : got.result };
      }
      // No digest header: the only way to learn the digest is to GET by tag (counts as a pull).
      const m = await this.fetchManifest(r, tag, null);
      await this.record(() => this.meta.putTag(r.upstream.name, r.name, tag, {
        digest: m.digest, mediaType: m.mediaType, size: m.bytes.length, fetchedAt: now, checkedAt: now,
      }));
      this.staleForget(key);
      return { value: m, result: 'miss' };
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      this.rememberNotFound(key, r, err);
      // A 404 is an answer, not a failure: the tag is gone upstream.
      if (rec && err.kind !== 'not-found') {
        const local = await this.localManifest(rec.digest);
        if (local) {
          this.logStaleOnce(key, r, tag, err);
          return { value: { bytes: local.bytes, mediaType: local.mediaType, digest: rec.digest, stale: true }, result: 'stale' };
        }
      }
      throw err;
    }
  }

  private logStaleOnce(key: string, r: Routed, tag: string, err: UpstreamError): void {
    const once = `${key}|${err.kind}|${err.causeCode ?? err.status ?? ''}`;
    if (this.staleLogged.has(once)) return;
    this.staleLogged.set(once, true);
    this.log.warn({ upstream: r.upstream.name, repository: r.name, tag, cause: err.kind, status: err.status, code: err.causeCode, reason: err.message },
      'upstream failed; serving the cached manifest stale');
  }

  private staleForget(key: string): void {
    if (this.staleLogged.size === 0) return;
    for (const k of [...this.staleLogged.keys()]) if (k.startsWith(`${key}|`)) this.staleLogged.delete(k);
  }

  /** Throw the remembered 404 while it is fresh (`notFoundTtl`): no upstream request for it. */
  private checkNotFound(key: string, r: Routed): void {
    const until = this.notFound.get(key);
    if (until === undefined) return;
    if (until > this.now()) throw new UpstreamError(r.upstream.name, 'not-found', 'remembered as not found upstream');
    this.notFound.delete(key);
  }

  private rememberNotFound(key: string, r: Routed, err: unknown): void {
    if (err instanceof UpstreamError && err.kind === 'not-found' && err.status === 404 && r.upstream.notFoundTtl > 0) {
      this.notFound.set(key, this.now() + r.upstream.notFoundTtl);
    }
  }

  /**
   * GET a manifest upstream (by digest, or by tag when the upstream gave no digest on HEAD),
   * verify it, store it, link it to the repository.
   */
  private async fetchManifest(r: Routed, reference: string, expected: string | null): Promise<ManifestResult> {
    // Read whole under the upstream's body cap and request deadline (upstream/body.ts).
    const res = await this.client(r.upstream).fetchBuffered({
      method: 'GET',
      path: `/v2/${r.name}/manifests/${reference}`,
      kind: 'manifest',
      repository: r.name,
      headers: { accept: UPSTREAM_ACCEPT },
    });
    const bytes = res.bytes;
    const announced = header(res.headers, 'docker-content-digest');
    const want = expected ?? (announced && checkDigest(announced).ok ? announced : null);
    const algorithm = want ? want.slice(0, want.indexOf(':')) : 'sha256';
    const digest = `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
    if (want && digest !== want) {
      throw new UpstreamError(r.upstream.name, 'integrity', `manifest ${reference}: bytes hash to ${digest}, expected ${want}`);
    }
    const ctype = header(res.headers, 'content-type')?.split(';')[0]?.trim();
    const mediaType = ctype && MANIFEST_TYPES.includes(ctype) ? ctype : (sniffMediaType(bytes) ?? ctype ?? 'application/octet-stream');
    await this.storeManifest(digest, bytes, mediaType);
    if (await this.record(() => this.meta.link(r.upstream.name, r.name, digest, this.now()))) {
      this.linked.set(`${r.upstream.name}|${r.name}|${digest}`, true);
    }
    return { bytes, mediaType, digest, stale: false };
  }

  private async storeManifest(digest: string, bytes: Buffer, mediaType: string): Promise<void> {
    this.manifestCache.set(digest, { bytes, mediaType });
    const stored = await this.record(async () => {
      await this.driver.putBlobBuffer(digest, bytes);
      await this.meta.putManifest(digest, { mediaType, size: bytes.length });
    });
    if (stored) this.hooks?.stored(digest, bytes.length, 'manifest');
  }

  /**
   * Write a record or a manifest; when the disk is full (ENOSPC) tell the lifecycle layer and go
   * on without it, so the client is still answered (from memory, or by asking upstream again
   * next time). Any other failure is thrown. Returns whether the write happened.
   */
  private async record(write: () => Promise<void>): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (err) {
      if (!isNoSpace(err)) throw err;
      this.hooks?.storageFull?.(err, null);
      return false;
    }
  }

  private linkLater(r: Routed, digest: string): void {
    // A manifest reached through another repository still belongs to this one (catalog). Written
    // once per (repository, digest) per process: warm hits stay free of disk writes.
    const key = `${r.upstream.name}|${r.name}|${digest}`;
    if (this.linked.has(key)) return;
    this.linked.set(key, true);
    this.meta.link(r.upstream.name, r.name, digest, this.now()).catch((err: unknown) => {
      this.linked.delete(key);
      this.log.warn({ err, digest }, 'could not record repository link');
    });
  }

  /** Is this manifest an index? (pre-warm and the UI ask) */
  static isIndex(mediaType: string): boolean {
    return isIndexType(mediaType);
  }

  // ---------------------------------------------------------------- blobs

  /**
   * A handle on a blob: from the store when cached, else from the one upstream fill for this
   * digest (started now, or joined). HEAD callers use `statBlob` instead: no download for a HEAD.
   */
  async getBlob(r: Routed, digest: string): Promise<BlobHandle> {
    const c = checkDigest(digest);
    if (!c.ok) throw registryError('DIGEST_INVALID', c.reason);
    for (let attempt = 0; ; attempt++) {
      const local = await this.driver.statBlob(digest);
      if (local) {
        if (attempt === 0) this.count('blob', 'hit');
        this.hooks?.accessed(digest);
        return {
          digest, size: local.size, source: 'cache',
          open: async (range) => {
            const got = await this.driver.readBlob(digest, range);
            if (got) return got.stream;
            // Evicted between the stat and the open (lifecycle layer): fetch it again rather
            // than fail a client that has not been sent a byte yet.
            return (await this.getBlob(r, digest)).open(range);
          },
        };
      }
      let pending = this.flights.blobs.get(digest);
      const shared = pending !== undefined;
      // Disk full (lifecycle layer): no fill to join or start; this client gets its own stream.
      if (!pending && this.hooks?.canStore?.() === false) return this.streamThrough(r, digest, attempt === 0);
      if (!pending) pending = this.beginFill(r, digest);
      if (attempt === 0) this.count('blob', shared ? 'coalesced' : 'miss');
      let fill: BlobFill;
      try {
        fill = await pending;
      } catch (err) {
        if (err instanceof UpstreamError) throw toRegistryError(err, 'BLOB_UNKNOWN');
        if (isNoSpace(err)) {
          // Not even the spool file could be created: stream this one through.
          this.hooks?.storageFull?.(err, null);
          return this.streamThrough(r, digest, false);
        }
        throw err;
      }
      if (fill.state === 'failed' && isNoSpace(fill.error)) return this.streamThrough(r, digest, false);
      if (fill.state === 'failed') {
        // It failed before this client could read a byte: forget it, and (once) start afresh
        // rather than hand the client another request's failure.
        if (this.flights.blobs.get(digest) === pending) this.flights.blobs.delete(digest);
        if (shared && attempt === 0) continue;
        throw toRegistryError(asUpstreamError(fill, r), 'BLOB_UNKNOWN');
      }
      if (fill.state === 'done') {
        // Committed meanwhile: the store has it.
        return { digest, size: fill.written, source: 'cache', open: async (range) => this.openStored(digest, range) };
      }
      return {
        digest, size: fill.size, source: 'upstream',
        open: async (range) => {
          // Between the handle and the open the fill may have ended: committed bytes come from
          // the store; a failure is answered as one (no bytes were sent yet), except a full disk,
          // which this client gets round by streaming the blob through.
          if (fill.state === 'failed' && isNoSpace(fill.error)) return (await this.streamThrough(r, digest, false)).open(range);
          if (fill.state === 'failed') throw toRegistryError(asUpstreamError(fill, r), 'BLOB_UNKNOWN');
          if (fill.state === 'done') return this.openStored(digest, range);
          return fill.reader(range?.start ?? 0, range?.end ?? null);
        },
      };
    }
  }

  private async openStored(digest: string, range: ByteRange | undefined): Promise<Readable> {
    const got = await this.driver.readBlob(digest, range);
    if (!got) throw registryError('BLOB_UNKNOWN', 'blob was removed while being opened');
    return got.stream;
  }

  /** Start the fill for a digest and list it, so every later client joins it until it ends. */
  private beginFill(r: Routed, digest: string): Promise<BlobFill> {
    const pending = this.startFill(r, digest);
    this.flights.blobs.set(digest, pending);
    const forget = (): void => {
      if (this.flights.blobs.get(digest) === pending) this.flights.blobs.delete(digest);
    };
    pending.then((fill) => fill.finished.then(forget, forget), forget);
    return pending;
  }

  private async startFill(r: Routed, digest: string): Promise<BlobFill> {
    const client = this.client(r.upstream);
    const res = await client.request({ method: 'GET', path: `/v2/${r.name}/blobs/${digest}`, kind: 'blob', repository: r.name });
    const len = header(res.headers, 'content-length');
    const size = len !== undefined && /^\d+$/.test(len) ? Number(len) : null;
    let fill: BlobFill;
    try {
      fill = await BlobFill.create(digest, r.upstream.name, size, this.driver.spoolPath());
    } catch (err) {
      res.body.destroy();
      throw err;
    }
    const upstreamName = r.upstream.name;
    void fill
      .run(res.body as AsyncIterable<Buffer>, { commit: (spool, d) => this.driver.commitBlob(spool, d) }, (n) =>
        this.metrics.upstreamBytes.inc({ upstream: upstreamName }, n))
      .then(() => {
        if (fill.state === 'done') this.hooks?.stored(digest, fill.written, 'blob');
        if (fill.state === 'failed' && isNoSpace(fill.error)) this.hooks?.storageFull?.(fill.error, fill.size);
        if (fill.state === 'failed') {
          this.log.warn({ upstream: upstreamName, digest, err: fill.error?.message }, 'blob fill failed; nothing was cached');
        }
      });
    return fill;
  }

  /**
   * Degraded mode while the disk is full: this client's own upstream GET, streamed straight
   * through, hash-checked and not stored (src/storage/verify-stream.ts). One upstream request per
   * client until space returns, which is the price of still answering at all.
   */
  private async streamThrough(r: Routed, digest: string, count: boolean): Promise<BlobHandle> {
    if (count) this.count('blob', 'miss');
    let res;
    try {
      res = await this.client(r.upstream).request({ method: 'GET', path: `/v2/${r.name}/blobs/${digest}`, kind: 'blob', repository: r.name });
    } catch (err) {
      if (err instanceof UpstreamError) throw toRegistryError(err, 'BLOB_UNKNOWN');
      throw err;
    }
    const body = res.body;
    const len = header(res.headers, 'content-length');
    const size = len !== undefined && /^\d+$/.test(len) ? Number(len) : null;
    const upstreamName = r.upstream.name;
    // A handle that is never opened (the request failed on a bad Range) must not hold the connection.
    const abandon = setTimeout(() => body.destroy(), STREAM_THROUGH_OPEN_MS);
    abandon.unref();
    return {
      digest, size, source: 'upstream',
      open: async (range) => {
        clearTimeout(abandon);
        return verifiedStream(body as AsyncIterable<Buffer>, {
          digest, size, ...(range ? { range } : {}),
          mismatch: (reason) => new UpstreamError(upstreamName, 'integrity', `blob ${digest}: ${reason}`),
          onBytes: (n) => this.metrics.upstreamBytes.inc({ upstream: upstreamName }, n),
        });
      },
    };
  }

  /** Size of a blob without downloading it: the store, a running fill, or an upstream HEAD. */
  async statBlob(r: Routed, digest: string): Promise<{ size: number | null; source: 'cache' | 'upstream' }> {
    const c = checkDigest(digest);
    if (!c.ok) throw registryError('DIGEST_INVALID', c.reason);
    const local = await this.driver.statBlob(digest);
    if (local) {
      this.count('blob', 'hit');
      return { size: local.size, source: 'cache' };
    }
    const running = this.flights.blobs.get(digest);
    if (running) {
      const fill = await running.catch(() => null);
      if (fill && fill.size !== null) return { size: fill.size, source: 'upstream' };
    }
    try {
      const res = await this.client(r.upstream).request({ method: 'HEAD', path: `/v2/${r.name}/blobs/${digest}`, kind: 'blob', repository: r.name });
      res.body.resume();
      const len = header(res.headers, 'content-length');
      return { size: len !== undefined && /^\d+$/.test(len) ? Number(len) : null, source: 'upstream' };
    } catch (err) {
      if (err instanceof UpstreamError) throw toRegistryError(err, 'BLOB_UNKNOWN');
      throw err;
    }
  }

  /**
   * Pre-warm: make sure a blob is in the store without reading it. Cached: nothing to do. Else
   * start, or join, the one fill for the digest (the same one clients join) and wait until it
   * commits. `beforeFetch` runs only when this call would start a new upstream download, so a
   * budget check there can still stop it. Throws UpstreamError when the fill fails.
   */
  async ensureBlob(r: Routed, digest: string, beforeFetch?: () => void): Promise<'cached' | 'fetched' | 'joined'> {
    if (await this.driver.statBlob(digest)) {
      this.hooks?.accessed(digest);
      return 'cached';
    }
    let pending = this.flights.blobs.get(digest);
    const shared = pending !== undefined;
    if (!pending) {
      beforeFetch?.();
      pending = this.beginFill(r, digest);
    }
    const fill = await pending;
    await fill.finished.catch(() => {
      throw asUpstreamError(fill, r);
    });
    return shared ? 'joined' : 'fetched';
  }

  /**
   * Pre-warm: the digest a tag points at upstream now, from one HEAD (free on Docker Hub). No GET,
   * no cache, no stale fallback: null when the upstream sends no digest. Throws UpstreamError.
   */
  async resolveTag(r: Routed, tag: string): Promise<string | null> {
    const res = await this.client(r.upstream).request({
      method: 'HEAD', path: `/v2/${r.name}/manifests/${tag}`, kind: 'manifest', repository: r.name, headers: { accept: UPSTREAM_ACCEPT },
    });
    res.body.resume();
    const digest = header(res.headers, 'docker-content-digest');
    return digest !== undefined && checkDigest(digest).ok ? digest : null;
  }

  // ---------------------------------------------------------------- tags, catalog

  /** Tags of a repository: upstream's list, sorted; the tags the cache knows when upstream fails. */
  async listTags(r: Routed): Promise<string[]> {
    let tags: string[];
    try {
      tags = await this.fetchTags(r);
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      const local = await this.meta.listTags(r.upstream.name, r.name);
      if (local.length === 0 || err.kind === 'not-found') throw toRegistryError(err, 'NAME_UNKNOWN');
      tags = local;
    }
    return [...new Set(tags)].sort();
  }

  private async fetchTags(r: Routed): Promise<string[]> {
    // Paginated, capped and under the request deadline: upstream/tags.ts.
    return this.client(r.upstream).listTags(r.name);
  }

  /** Cached repositories, named as a client reaches them through this mirror. */
  async catalog(publicName: (upstream: string, name: string) => string): Promise<string[]> {
    const repos = await this.meta.repositories();
    return repos.map(([u, n]) => publicName(u, n)).sort();
  }
}

/** How long a streamed-through blob's upstream response waits to be opened before it is let go. */
const STREAM_THROUGH_OPEN_MS = 30_000;

/** The error a failed fill ended with, as the upstream failure it stands for. */
function asUpstreamError(fill: BlobFill, r: Routed): UpstreamError {
  const e = fill.error;
  if (e instanceof UpstreamError) return e;
  return new UpstreamError(r.upstream.name, 'unavailable', `blob ${fill.digest}: download failed: ${e?.message ?? 'unknown error'}`);
}
