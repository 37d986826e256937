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
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { LRUCache } from 'lru-cache';
import type { UpstreamConfig } from '../config/types.js';
import { registryError } from '../errors.js';
import type { Metrics } from '../metrics/metrics.js';
import type { ByteRange, StorageDriver } from '../storage/driver.js';
import { header, MAX_MANIFEST_BYTES, UpstreamClient } from '../upstream/client.js';
import { UpstreamError, toRegistryError } from '../upstream/errors.js';
import { BlobFill } from './blob-fill.js';
import { MANIFEST_TYPES, UPSTREAM_ACCEPT, isIndexType, negotiate, parseManifest, sniffMediaType } from './media.js';
import { MetadataStore, type TagRecord } from './metadata.js';
import { checkDigest, isValidTag, looksLikeDigest } from './reference.js';
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
}

/** The in-flight tables: owned objects, never module globals. */
export class FlightTables {
  readonly blobs = new Map<string, Promise<BlobFill>>();
  readonly manifests = new SingleFlight<string, ManifestResult>();
  readonly tags = new SingleFlight<string, ManifestResult>();
}

interface CachedManifest {
  bytes: Buffer;
  mediaType: string;
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
  private readonly notFound = new LRUCache<string, number>({ max: 10_000 });
  private readonly staleLogged = new Set<string>();
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
      this.clients.set(u.name, new UpstreamClient(u, { metrics: deps.metrics, log: deps.log, now: this.now }));
    }
  }

  async close(): Promise<void> {
    // Let running fills finish so no spool is left half written by us.
    const fills = await Promise.allSettled([...this.flights.blobs.values()]);
    await Promise.allSettled(fills.map((f) => (f.status === 'fulfilled' ? f.value.finished : undefined)));
    await Promise.all([...this.clients.values()].map((c) => c.close()));
  }

  client(upstream: UpstreamConfig): UpstreamClient {
    const c = this.clients.get(upstream.name);
    if (!c) throw new Error(`no client for upstream ${upstream.name}`);
    return c;
  }

  // ---------------------------------------------------------------- manifests

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
    const child = await this.manifestByDigest(r, pick.digest);
    return { ...child, stale: result.stale };
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

  async manifestByDigest(r: Routed, digest: string): Promise<ManifestResult> {
    const local = await this.localManifest(digest);
    if (local) {
      this.metrics.cacheRequests.inc({ kind: 'manifest', result: 'hit' });
      this.linkLater(r, digest);
      return { bytes: local.bytes, mediaType: local.mediaType, digest, stale: false };
    }
    const key = `${r.upstream.name}|${digest}`;
    const { value, shared } = await this.flights.manifests.run(key, () => this.fetchManifest(r, digest, digest));
    this.metrics.cacheRequests.inc({ kind: 'manifest', result: shared ? 'coalesced' : 'miss' });
    if (shared) this.linkLater(r, digest);
    return value;
  }

  private async manifestByTag(r: Routed, tag: string): Promise<ManifestResult> {
    const rec = await this.meta.getTag(r.upstream.name, r.name, tag);
    const age = rec ? this.now() - rec.checkedAt : Infinity;
    if (rec && age < r.upstream.tagTtl) {
      const local = await this.localManifest(rec.digest);
      if (local) {
        this.metrics.cacheRequests.inc({ kind: 'manifest', result: 'hit' });
        return { bytes: local.bytes, mediaType: local.mediaType, digest: rec.digest, stale: false };
      }
    }
    const key = `${r.upstream.name}|${r.name}|${tag}`;
    if (rec && r.upstream.staleWhileRevalidate > 0 && age < r.upstream.tagTtl + r.upstream.staleWhileRevalidate) {
      const local = await this.localManifest(rec.digest);
      if (local) {
        // Answer now; one background revalidation refreshes the record for the next client.
        void this.flights.tags.run(key, () => this.revalidateTag(r, tag, rec)).catch(() => undefined);
        this.metrics.cacheRequests.inc({ kind: 'manifest', result: 'hit' });
        return { bytes: local.bytes, mediaType: local.mediaType, digest: rec.digest, stale: false };
      }
    }
    const { value, shared } = await this.flights.tags.run(key, () => this.revalidateTag(r, tag, rec));
    if (shared) this.metrics.cacheRequests.inc({ kind: 'manifest', result: 'coalesced' });
    return value;
  }

  /** Ask upstream what the tag points at now; fetch what changed; fall back to stale on failure. */
  private async revalidateTag(r: Routed, tag: string, rec: TagRecord | null): Promise<ManifestResult> {
    const client = this.client(r.upstream);
    const path = `/v2/${r.name}/manifests/${tag}`;
    const nfKey = `${r.upstream.name}|${r.name}|${tag}`;
    try {
      if (!rec) this.checkNotFound(nfKey);
      const head = await client.request({ method: 'HEAD', path, kind: 'manifest', repository: r.name, headers: { accept: UPSTREAM_ACCEPT } });
      head.body.resume();
      const digest = header(head.headers, 'docker-content-digest');
      const now = this.now();
      if (digest && checkDigest(digest).ok) {
        if (rec && rec.digest === digest) {
          const local = await this.localManifest(digest);
          if (local) {
            await this.meta.putTag(r.upstream.name, r.name, tag, { ...rec, checkedAt: now });
            this.metrics.cacheRequests.inc({ kind: 'manifest', result: 'revalidated' });
            this.staleForget(nfKey);
            return { bytes: local.bytes, mediaType: local.mediaType, digest, stale: false };
          }
        }
        const m = await this.manifestByDigest(r, digest);
        await this.meta.putTag(r.upstream.name, r.name, tag, {
          digest, mediaType: m.mediaType, size: m.bytes.length, fetchedAt: now, checkedAt: now,
        });
        this.staleForget(nfKey);
        return m;
      }
      // No digest header: the only way to learn the digest is to GET by tag (counts as a pull).
      const m = await this.fetchManifest(r, tag, null);
      await this.meta.putTag(r.upstream.name, r.name, tag, {
        digest: m.digest, mediaType: m.mediaType, size: m.bytes.length, fetchedAt: now, checkedAt: now,
      });
      this.metrics.cacheRequests.inc({ kind: 'manifest', result: 'miss' });
      return m;
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      if (err.kind === 'not-found' && r.upstream.notFoundTtl > 0) this.notFound.set(nfKey, this.now() + r.upstream.notFoundTtl);
      if (rec && err.kind !== 'not-found') {
        const local = await this.localManifest(rec.digest);
        if (local) {
          this.metrics.cacheRequests.inc({ kind: 'manifest', result: 'stale' });
          const once = `${nfKey}|${err.kind}|${err.causeCode ?? err.status ?? ''}`;
          if (!this.staleLogged.has(once)) {
            this.staleLogged.add(once);
            this.log.warn({ upstream: r.upstream.name, repository: r.name, tag, cause: err.kind, status: err.status, code: err.causeCode },
              'upstream failed; serving the cached manifest stale');
          }
          return { bytes: local.bytes, mediaType: local.mediaType, digest: rec.digest, stale: true };
        }
      }
      throw toRegistryError(err, 'MANIFEST_UNKNOWN');
    }
  }

  private staleForget(prefix: string): void {
    if (this.staleLogged.size === 0) return;
    for (const k of this.staleLogged) if (k.startsWith(`${prefix}|`)) this.staleLogged.delete(k);
  }

  private checkNotFound(key: string): void {
    const until = this.notFound.get(key);
    if (until === undefined) return;
    if (until > this.now()) throw new UpstreamError(key.split('|')[0] ?? '', 'not-found', 'remembered as not found upstream');
    this.notFound.delete(key);
  }

  /**
   * GET a manifest upstream (by digest, or by tag when the upstream gave no digest on HEAD),
   * verify it, store it, link it to the repository.
   */
  private async fetchManifest(r: Routed, reference: string, expected: string | null): Promise<ManifestResult> {
    const client = this.client(r.upstream);
    const res = await client.request({
      method: 'GET',
      path: `/v2/${r.name}/manifests/${reference}`,
      kind: 'manifest',
      repository: r.name,
      headers: { accept: UPSTREAM_ACCEPT },
    });
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > MAX_MANIFEST_BYTES) {
          res.body.destroy();
          throw new UpstreamError(r.upstream.name, 'bad-response', `manifest ${reference} is larger than ${MAX_MANIFEST_BYTES} bytes`);
        }
        chunks.push(chunk);
      }
    } catch (err) {
      if (err instanceof UpstreamError) throw err;
      throw new UpstreamError(r.upstream.name, 'unavailable', `manifest ${reference}: body cut: ${(err as Error).message}`);
    }
    this.metrics.upstreamBytes.inc({ upstream: r.upstream.name }, total);
    const bytes = Buffer.concat(chunks, total);
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
    await this.meta.link(r.upstream.name, r.name, digest, this.now());
    return { bytes, mediaType, digest, stale: false };
  }

  private async storeManifest(digest: string, bytes: Buffer, mediaType: string): Promise<void> {
    this.manifestCache.set(digest, { bytes, mediaType });
    await this.driver.putBlobBuffer(digest, bytes);
    await this.meta.putManifest(digest, { mediaType, size: bytes.length });
    this.hooks?.stored(digest, bytes.length, 'manifest');
  }

  private linkLater(r: Routed, digest: string): void {
    // A manifest reached through another repository still belongs to this one (catalog).
    this.meta.link(r.upstream.name, r.name, digest, this.now()).catch((err: unknown) =>
      this.log.warn({ err, digest }, 'could not record repository link'));
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
    const local = await this.driver.statBlob(digest);
    if (local) {
      this.metrics.cacheRequests.inc({ kind: 'blob', result: 'hit' });
      this.hooks?.accessed(digest);
      return {
        digest, size: local.size, source: 'cache',
        open: async (range) => {
          const got = await this.driver.readBlob(digest, range);
          if (!got) throw registryError('BLOB_UNKNOWN', 'blob was removed while being opened');
          return got.stream;
        },
      };
    }
    let pending = this.flights.blobs.get(digest);
    let shared = true;
    if (!pending) {
      shared = false;
      pending = this.startFill(r, digest);
      this.flights.blobs.set(digest, pending);
      pending.catch(() => this.flights.blobs.delete(digest));
    }
    this.metrics.cacheRequests.inc({ kind: 'blob', result: shared ? 'coalesced' : 'miss' });
    let fill: BlobFill;
    try {
      fill = await pending;
    } catch (err) {
      if (err instanceof UpstreamError) throw toRegistryError(err, 'BLOB_UNKNOWN');
      throw err;
    }
    return {
      digest, size: fill.size, source: 'upstream',
      open: async (range) => {
        if (fill.state === 'failed') throw toRegistryError(fill.error as UpstreamError, 'BLOB_UNKNOWN');
        return fill.reader(range?.start ?? 0, range?.end ?? null);
      },
    };
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
        this.flights.blobs.delete(digest);
        if (fill.state === 'done') this.hooks?.stored(digest, fill.written, 'blob');
        if (fill.state === 'failed') {
          this.log.warn({ upstream: upstreamName, digest, err: fill.error?.message }, 'blob fill failed; nothing was cached');
        }
      });
    return fill;
  }

  /** Size of a blob without downloading it: the store, a running fill, or an upstream HEAD. */
  async statBlob(r: Routed, digest: string): Promise<{ size: number | null; source: 'cache' | 'upstream' }> {
    const c = checkDigest(digest);
    if (!c.ok) throw registryError('DIGEST_INVALID', c.reason);
    const local = await this.driver.statBlob(digest);
    if (local) {
      this.metrics.cacheRequests.inc({ kind: 'blob', result: 'hit' });
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
    const client = this.client(r.upstream);
    const out: string[] = [];
    let path: string | null = `/v2/${r.name}/tags/list`;
    for (let page = 0; path && page < 100; page++) {
      const res = await client.request({ method: 'GET', path, kind: 'tags', repository: r.name });
      const text = await res.body.text();
      let doc: { tags?: unknown };
      try {
        doc = JSON.parse(text) as { tags?: unknown };
      } catch {
        throw new UpstreamError(r.upstream.name, 'bad-response', `tags list of ${r.name} is not JSON`);
      }
      if (Array.isArray(doc.tags)) for (const t of doc.tags) if (typeof t === 'string') out.push(t);
      const link = header(res.headers, 'link');
      const next = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link)?.[1] : undefined;
      path = next ? new URL(next, 'http://x').pathname + new URL(next, 'http://x').search : null;
    }
    return out;
  }

  /** Cached repositories, named as a client reaches them through this mirror. */
  async catalog(publicName: (upstream: string, name: string) => string): Promise<string[]> {
    const repos = await this.meta.repositories();
    return repos.map(([u, n]) => publicName(u, n)).sort();
  }
}
