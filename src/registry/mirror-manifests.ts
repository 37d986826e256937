/**
 * The mirror's manifest path. By digest: immutable, so local when cached, else fetched once
 * (single-flight through the fill coordinator), verified and stored. By tag: trusted for
 * `tagTtl`, then revalidated with a free HEAD; only a changed digest is fetched; on any upstream
 * failure the last known manifest is answered stale. Upstream 404s are remembered for
 * `notFoundTtl`; hot manifests are kept in memory so a warm hit touches no disk.
 *
 * Counting: every client request for a manifest adds exactly one to berth_cache_requests_total:
 * hit (answered locally, nothing asked upstream), revalidated (a HEAD upstream confirmed what the
 * cache holds), miss (fetched, or tried to fetch, from upstream), coalesced (joined another
 * request's fetch), stale (answered from the cache because the upstream failed).
 *
 * Imports: storage/, upstream/, oci/, metrics. Never Fastify.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { registryError } from '../errors.js';
import type { CacheResult } from '../metrics/metrics.js';
import { UPSTREAM_ACCEPT, negotiate, parseManifest } from '../oci/media.js';
import { validateManifest } from '../oci/manifest-validate.js';
import { parseDigest, type Digest } from '../oci/reference.js';
import { header } from '../upstream/client.js';
import { UpstreamError, toRegistryError } from '../upstream/errors.js';
import type { TagCheck } from './cluster-tags.js';
import type { TagOutcome } from './fills.js';
import type { TagRecord } from '../storage/records.js';
import type { MirrorContext } from './mirror-context.js';
import type { RepoScope } from './mirror-scope.js';
import type { ManifestRef, ManifestResult } from './repository.js';
import type { Routed } from './routing.js';

/**
 * Size of every entry in the count-bounded caches below: bounded by `maxSize` in entries rather
 * than `max`, because lru-cache allocates the whole of `max` up front (several MiB for these at
 * idle) while a `maxSize` bound grows with what is cached.
 */
const one = (): number => 1;

/**
 * Replicas: how long a replica waits for another's revalidation of the same tag before it asks
 * upstream itself (as long as that replica's lock lasts, cluster-tags.ts).
 */
const TAG_WAIT_MS = 5_000;

export interface CachedManifest {
  bytes: Buffer;
  mediaType: string;
}

/** A tag record whose digest has been parsed (once per request, where the record is read). */
type KnownTag = TagRecord & { digest: Digest };

/** The record as a typed value; a record whose digest does not parse is no record at all. */
function knownTag(rec: TagRecord | null): KnownTag | null {
  if (!rec) return null;
  const digest = parseDigest(rec.digest);
  return digest ? { ...rec, digest } : null;
}

export class MirrorManifests {
  /** Hot manifests by digest: bytes and media type, no disk and no JSON on the warm path. */
  private readonly manifestCache = new LRUCache<string, CachedManifest>({
    maxSize: 64 * 1024 * 1024,
    sizeCalculation: (v) => v.bytes.length + 200,
  });
  /** Upstream 404s remembered for `notFoundTtl`: key → until (ms since epoch). */
  private readonly notFound = new LRUCache<string, number>({ maxSize: 10_000, sizeCalculation: one });
  /** Repository links already on disk (upstream|name|digest): a warm hit must not write a file. */
  private readonly linked = new LRUCache<string, true>({ maxSize: 100_000, sizeCalculation: one });
  /** Stale answers already logged, once per tag and cause until the tag revalidates again. */
  private readonly staleLogged = new LRUCache<string, true>({ maxSize: 10_000, sizeCalculation: one });

  /**
   * The parsed digest of each in-memory tag record, for the warm path: a record is replaced, never
   * changed, when the tag moves, and one that leaves memory takes its entry with it.
   */
  private readonly tagDigests = new WeakMap<TagRecord, Digest | null>();

  constructor(private readonly ctx: MirrorContext, private readonly scope: RepoScope) {}

  /** The lifecycle layer removed (or is removing) this manifest: stop serving it from memory. */
  forget(digest: string): void {
    this.manifestCache.delete(digest);
    // Eviction removed its links too; the next hit through a repository writes its link again.
    for (const key of this.linked.keys()) if (key.endsWith(`|${digest}`)) this.linked.delete(key);
  }

  /**
   * A manifest by tag or digest, negotiated against the client's Accept. Throws catalogued
   * errors; an upstream failure with nothing to serve is MANIFEST_UNKNOWN's family.
   */
  getManifest(r: Routed, ref: ManifestRef, accept: Set<string>): Promise<ManifestResult> {
    let warm: ManifestResult | null;
    try {
      warm = this.warmManifest(r, ref, accept);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return warm !== null ? Promise.resolve(warm) : this.anyManifest(r, ref, accept);
  }

  private async anyManifest(r: Routed, ref: ManifestRef, accept: Set<string>): Promise<ManifestResult> {
    try {
      return await this.negotiatedManifest(r, ref, accept);
    } catch (err) {
      if (err instanceof UpstreamError) throw toRegistryError(err, 'MANIFEST_UNKNOWN');
      throw err;
    }
  }

  /**
   * The warm hit, answered without a promise when all it needs is in memory: a tag record checked
   * within `tagTtl` (or a digest) whose manifest is in the hot cache, already held by this
   * repository (mirror-scope.ts) and acceptable to the client as it is. It counts, tracks access,
   * grants and links exactly as the async path does for the same answer (manifestByTag and
   * resolveDigest with a hot, held manifest); anything else returns null, before any of that, and
   * the request takes the async path. A warm hit by tag or digest was about a dozen promises
   * through that path, each with the request note's AsyncLocalStorage hook.
   */
  private warmManifest(r: Routed, ref: ManifestRef, accept: Set<string>): ManifestResult | null {
    const { ctx } = this;
    let digest: Digest;
    let age = 0;
    if (ref.kind === 'tag') {
      const rec = ctx.meta.cachedTag(r.upstream.name, r.name, ref.tag);
      if (rec === undefined) return null;
      age = ctx.now() - rec.checkedAt;
      if (!(age < r.upstream.tagTtl)) return null;
      let d = this.tagDigests.get(rec);
      if (d === undefined) {
        d = parseDigest(rec.digest);
        this.tagDigests.set(rec, d);
      }
      if (d === null) return null;
      digest = d;
    } else {
      digest = ref.digest;
    }
    const hot = this.manifestCache.get(digest);
    if (hot === undefined) return null;
    if (negotiate(hot.mediaType, accept, ref.kind === 'tag').ok !== true) return null;
    const key = this.scope.key(r, digest);
    if (ref.kind === 'digest' && !this.scope.holds(key)) return null;
    ctx.hooks?.accessed(digest);
    if (ref.kind === 'tag') {
      ctx.decide(r, { tag: ref.tag, digest, ageMs: age, tagTtlMs: r.upstream.tagTtl }, 'tag checked within tagTtl; served from the cache, upstream not asked');
    } else {
      this.linkLater(r, digest, key);
    }
    this.scope.grantManifest(r, digest, hot.bytes, key);
    ctx.count('manifest', 'hit');
    return { bytes: hot.bytes, mediaType: hot.mediaType, digest, stale: false };
  }

  private async negotiatedManifest(r: Routed, ref: ManifestRef, accept: Set<string>): Promise<ManifestResult> {
    const byTag = ref.kind === 'tag';
    const result = ref.kind === 'tag' ? await this.manifestByTag(r, ref.tag) : await this.manifestByDigest(r, ref.digest);
    // What this repository's manifest names (layers, config, index children) is its to serve.
    this.scope.grantManifest(r, result.digest, result.bytes);
    const n = negotiate(result.mediaType, accept, byTag);
    if (n.ok === true) return result;
    if (n.ok === false) throw registryError('MANIFEST_UNKNOWN', n.reason);
    // An old client asked for a manifest list by tag: give it the linux/amd64 image.
    const list = parseManifest(result.bytes);
    const pick = list.manifests.find((d) => d.platform?.os === n.os && d.platform.architecture === n.architecture);
    if (!pick) throw registryError('MANIFEST_UNKNOWN', `manifest list has no ${n.os}/${n.architecture} entry for this client`);
    const child = parseDigest(pick.digest);
    if (child === null) throw registryError('MANIFEST_UNKNOWN', `manifest list entry for ${n.os}/${n.architecture} has no valid digest`);
    const got = await this.resolveDigest(r, child);
    return { ...got.value, stale: result.stale };
  }

  /** A manifest already in the cache, by digest (memory, then storage). */
  async localManifest(digest: Digest): Promise<CachedManifest | null> {
    const hot = this.manifestCache.get(digest);
    if (hot) {
      this.ctx.hooks?.accessed(digest);
      return hot;
    }
    const rec = await this.ctx.meta.getManifest(digest);
    if (!rec) return null;
    const bytes = await this.ctx.driver.readBlobBuffer(digest);
    if (!bytes) return null;
    const m = { bytes, mediaType: rec.mediaType };
    this.manifestCache.set(digest, m);
    this.ctx.hooks?.accessed(digest);
    return m;
  }

  /** A manifest by digest: immutable, so local when cached, else fetched once and verified. */
  async manifestByDigest(r: Routed, digest: Digest): Promise<ManifestResult> {
    let result: CacheResult = 'miss';
    try {
      const got = await this.resolveDigest(r, digest, (joined) => {
        result = joined;
      });
      result = got.result;
      return got.value;
    } finally {
      this.ctx.count('manifest', result);
    }
  }

  /**
   * Local, else the one upstream fetch for (upstream, repository, digest). `onJoin` learns at once
   * whether this call started the fetch or joined one, so a failed fetch is still counted right.
   */
  private async resolveDigest(
    r: Routed, digest: Digest, onJoin?: (result: CacheResult) => void, confirmed = false,
  ): Promise<{ value: ManifestResult; result: CacheResult }> {
    const local = await this.localManifest(digest);
    if (local) {
      // Cached through some repository: served through this one only when it holds the digest
      // too (mirror-scope.ts). `confirmed`: the upstream just named it for this repository.
      const holding = confirmed ? 'held' : await this.scope.check(r, digest, 'manifest');
      this.scope.grantManifest(r, digest, local.bytes);
      this.linkLater(r, digest);
      return { value: { bytes: local.bytes, mediaType: local.mediaType, digest, stale: false }, result: holding === 'held' ? 'hit' : 'revalidated' };
    }
    const key = `${r.upstream.name}|${r.name}|${digest}`;
    this.checkNotFound(key, r);
    const { promise, shared } = this.ctx.fills.manifest({ upstream: r.upstream.name, name: r.name, digest }, () =>
      this.fetchManifest(r, digest, digest).catch((err: unknown) => {
        this.rememberNotFound(key, r, err);
        throw err;
      }));
    const result: CacheResult = shared ? 'coalesced' : 'miss';
    onJoin?.(result);
    return { value: await promise, result };
  }

  private async manifestByTag(r: Routed, tag: string): Promise<ManifestResult> {
    const { ctx } = this;
    let rec = knownTag(await ctx.meta.getTag(r.upstream.name, r.name, tag));
    // Replicas: another one may have confirmed the tag since this one did (cluster-tags.ts).
    if (rec && ctx.tagChecks && ctx.now() - rec.checkedAt >= r.upstream.tagTtl) {
      const seen = await ctx.tagChecks.last(r.upstream.name, r.name, tag);
      if (seen && seen.checkedAt > rec.checkedAt) rec = await this.adoptCheck(r, tag, rec, seen);
    }
    const age = rec ? ctx.now() - rec.checkedAt : Infinity;
    if (rec && age < r.upstream.tagTtl) {
      const local = await this.localManifest(rec.digest);
      if (local) {
        ctx.decide(r, { tag, digest: rec.digest, ageMs: age, tagTtlMs: r.upstream.tagTtl }, 'tag checked within tagTtl; served from the cache, upstream not asked');
        ctx.count('manifest', 'hit');
        return { bytes: local.bytes, mediaType: local.mediaType, digest: rec.digest, stale: false };
      }
    }
    const key = `${r.upstream.name}|${r.name}|${tag}`;
    const fill = { upstream: r.upstream.name, name: r.name, tag };
    if (rec && r.upstream.staleWhileRevalidate > 0 && age < r.upstream.tagTtl + r.upstream.staleWhileRevalidate) {
      const local = await this.localManifest(rec.digest);
      if (local) {
        // Answer now; one background revalidation (joined by any other) refreshes the record
        // for the next client. Its failures are the stale path's business, not this client's.
        void ctx.fills.tag(fill, () => this.revalidateShared(r, tag, rec)).promise.catch(() => undefined);
        ctx.decide(r, { tag, digest: rec.digest, ageMs: age, tagTtlMs: r.upstream.tagTtl }, 'tag older than tagTtl, within staleWhileRevalidate; served from the cache, revalidating in the background');
        ctx.count('manifest', 'hit');
        return { bytes: local.bytes, mediaType: local.mediaType, digest: rec.digest, stale: false };
      }
    }
    let result: CacheResult = 'miss';
    try {
      this.checkNotFound(key, r);
      ctx.decide(r, { tag, cachedDigest: rec?.digest ?? null, ageMs: rec ? age : null, tagTtlMs: r.upstream.tagTtl }, rec ? 'tag not checked within tagTtl; revalidating with upstream HEAD' : 'tag not cached; asking upstream');
      const { promise, shared } = ctx.fills.tag(fill, () => this.revalidateShared(r, tag, rec));
      if (shared) result = 'coalesced';
      const out = await promise;
      // A stale answer is counted as stale whoever asked: that is the figure operators watch.
      result = out.value.stale ? 'stale' : shared ? 'coalesced' : out.result;
      return out.value;
    } finally {
      ctx.count('manifest', result);
    }
  }

  /**
   * A check another replica made (cluster-tags.ts), taken in: the same digest refreshes this
   * replica's copy of the record; a new one is read from the store, where that replica wrote it.
   * Returns the record to go on with (the one given when the store does not agree yet).
   */
  private async adoptCheck(r: Routed, tag: string, rec: KnownTag | null, seen: TagCheck): Promise<KnownTag | null> {
    const { meta } = this.ctx;
    if (rec && rec.digest === seen.digest) {
      const next = { ...rec, checkedAt: seen.checkedAt };
      meta.rememberTag(r.upstream.name, r.name, tag, next);
      return next;
    }
    const stored = knownTag(await meta.rereadTag(r.upstream.name, r.name, tag));
    if (!stored || stored.digest !== seen.digest) return rec;
    const next = { ...stored, checkedAt: Math.max(stored.checkedAt, seen.checkedAt) };
    meta.rememberTag(r.upstream.name, r.name, tag, next);
    return next;
  }

  /**
   * Replicas: one revalidation of a tag at a time across the cluster. The replica that takes the
   * tag's lock asks upstream and publishes its check; the others wait for that check and answer
   * from the store. No Redis, or no answer within TAG_WAIT_MS: this replica asks upstream itself.
   */
  private async revalidateShared(r: Routed, tag: string, rec: KnownTag | null): Promise<TagOutcome> {
    const { ctx } = this;
    const checks = ctx.tagChecks;
    if (!checks) return this.revalidateTag(r, tag, rec);
    const u = r.upstream.name;
    const fromCheck = async (seen: TagCheck | null): Promise<TagOutcome | null> => {
      if (!seen || seen.checkedAt <= (rec?.checkedAt ?? 0)) return null;
      const next = await this.adoptCheck(r, tag, rec, seen);
      const local = next && next.digest === seen.digest ? await this.localManifest(next.digest) : null;
      if (!next || !local) return null;
      ctx.decide(r, { tag, digest: next.digest }, 'another replica revalidated the tag; served from the cache, upstream not asked');
      return { value: { bytes: local.bytes, mediaType: local.mediaType, digest: next.digest, stale: false }, result: 'coalesced' };
    };
    const lock = await checks.lock(u, r.name, tag);
    if (lock.kind === 'theirs') {
      const got = await fromCheck(await checks.waitFor(u, r.name, tag, rec?.checkedAt ?? 0, TAG_WAIT_MS));
      if (got) return got;
    }
    try {
      if (lock.kind === 'mine') {
        // The previous holder may have published its check just before this lock was taken.
        const got = await fromCheck(await checks.last(u, r.name, tag));
        if (got) return got;
      }
      const out = await this.revalidateTag(r, tag, rec);
      if (!out.value.stale) checks.note(u, r.name, tag, { digest: out.value.digest, checkedAt: ctx.now() }, r.upstream.tagTtl);
      return out;
    } finally {
      if (lock.kind === 'mine') lock.release();
    }
  }

  /**
   * Ask upstream what the tag points at now (HEAD, free on Docker Hub); fetch only what changed;
   * on any upstream failure answer the last known manifest, marked stale. Never answers a digest
   * whose manifest this mirror does not hold: a changed tag is fetched before it is answered.
   */
  private async revalidateTag(r: Routed, tag: string, rec: KnownTag | null): Promise<TagOutcome> {
    const { ctx } = this;
    const client = ctx.upstreams.client(r.upstream);
    const path = `/v2/${r.name}/manifests/${tag}`;
    const key = `${r.upstream.name}|${r.name}|${tag}`;
    const putTag = (m: ManifestResult, now: number): Promise<boolean> => ctx.record(() => ctx.meta.putTag(r.upstream.name, r.name, tag, {
      digest: m.digest, mediaType: m.mediaType, size: m.bytes.length, fetchedAt: now, checkedAt: now,
    }));
    try {
      // Nothing cached and the pull budget spent: only a GET could answer, so answer 429 at once.
      if (!rec) client.checkPullBudget(`GET ${path}`);
      const head = await client.request({ method: 'HEAD', path, kind: 'manifest', repository: r.name, headers: { accept: UPSTREAM_ACCEPT } });
      head.body.resume();
      const announced = header(head.headers, 'docker-content-digest');
      const digest = announced !== undefined ? parseDigest(announced) : null;
      const now = ctx.now();
      if (digest) {
        if (rec && rec.digest === digest) {
          const local = await this.localManifest(digest);
          if (local) {
            await ctx.record(() => ctx.meta.putTag(r.upstream.name, r.name, tag, { ...rec, checkedAt: now }));
            this.staleForget(key);
            ctx.decide(r, { tag, digest }, 'upstream HEAD names the cached digest; tag revalidated, check time refreshed');
            return { value: { bytes: local.bytes, mediaType: local.mediaType, digest, stale: false }, result: 'revalidated' };
          }
        }
        ctx.decide(r, { tag, cachedDigest: rec?.digest ?? null, digest }, rec ? 'tag moved upstream; fetching the new digest' : 'tag resolved upstream; fetching its manifest');
        // The HEAD of this repository's tag named the digest: it holds it, whoever cached it.
        const got = await this.resolveDigest(r, digest, undefined, true);
        await putTag(got.value, now);
        this.staleForget(key);
        // The new digest was already held (another tag or repository): upstream was asked, the cache answered.
        return { value: got.value, result: got.result === 'hit' ? 'revalidated' : got.result };
      }
      // No digest header: the only way to learn the digest is to GET by tag (counts as a pull).
      const m = await this.fetchManifest(r, tag, null);
      await putTag(m, now);
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
          ctx.decide(r, { tag, digest: rec.digest, cause: err.kind, status: err.status ?? null, code: err.causeCode ?? null }, 'upstream failed; serving the cached manifest stale');
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
    this.ctx.log.warn({ upstream: r.upstream.name, repository: r.name, tag, cause: err.kind, status: err.status, code: err.causeCode, reason: err.message },
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
    if (until > this.ctx.now()) throw new UpstreamError(r.upstream.name, 'not-found', 'remembered as not found upstream');
    this.notFound.delete(key);
  }

  private rememberNotFound(key: string, r: Routed, err: unknown): void {
    if (err instanceof UpstreamError && err.kind === 'not-found' && err.status === 404 && r.upstream.notFoundTtl > 0) {
      this.notFound.set(key, this.ctx.now() + r.upstream.notFoundTtl);
    }
  }

  /**
   * GET a manifest upstream (by digest, or by tag when the upstream gave no digest on HEAD),
   * verify it, store it, link it to the repository.
   */
  private async fetchManifest(r: Routed, reference: string, expected: Digest | null): Promise<ManifestResult> {
    const { ctx } = this;
    // Read whole under the upstream's body cap and request deadline (upstream/body.ts).
    const res = await ctx.upstreams.client(r.upstream).fetchBuffered({
      method: 'GET',
      path: `/v2/${r.name}/manifests/${reference}`,
      kind: 'manifest',
      repository: r.name,
      headers: { accept: UPSTREAM_ACCEPT },
    });
    const bytes = res.bytes;
    const announced = header(res.headers, 'docker-content-digest');
    const want = expected ?? (announced !== undefined ? parseDigest(announced) : null);
    const algorithm = want ? want.slice(0, want.indexOf(':')) : 'sha256';
    // Built from a supported algorithm and its own hex encoding: a digest by construction.
    const digest = `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}` as Digest;
    if (want && digest !== want) {
      throw new UpstreamError(r.upstream.name, 'integrity', `manifest ${reference}: bytes hash to ${digest}, expected ${want}`);
    }
    // Only a manifest is stored as one: bytes that do not parse as the type the upstream declared
    // (a gzip body, an error page, a by-tag answer without a digest) are a bad gateway, and the
    // tag's last good manifest, if any, is what the client gets instead (revalidateTag).
    const valid = validateManifest(bytes, header(res.headers, 'content-type'));
    if (!valid.ok) {
      throw new UpstreamError(r.upstream.name, 'bad-response', `${r.upstream.name} sent an invalid manifest for ${r.name}${reference.includes(':') ? '@' : ':'}${reference}: ${valid.reason}`);
    }
    const mediaType = valid.mediaType;
    await this.storeManifest(digest, bytes, mediaType);
    this.scope.grantManifest(r, digest, bytes);
    if (await ctx.record(() => ctx.meta.link(r.upstream.name, r.name, digest, ctx.now()))) {
      this.linked.set(`${r.upstream.name}|${r.name}|${digest}`, true);
    }
    return { bytes, mediaType, digest, stale: false };
  }

  private async storeManifest(digest: Digest, bytes: Buffer, mediaType: string): Promise<void> {
    const { ctx } = this;
    this.manifestCache.set(digest, { bytes, mediaType });
    const stored = await ctx.record(async () => {
      await ctx.driver.putBlobBuffer(digest, bytes);
      await ctx.meta.putManifest(digest, { mediaType, size: bytes.length });
    });
    if (stored) ctx.hooks?.stored(digest, bytes.length, 'manifest');
  }

  private linkLater(r: Routed, digest: Digest, key = `${r.upstream.name}|${r.name}|${digest}`): void {
    // A manifest reached through another repository still belongs to this one (catalog). Written
    // once per (repository, digest) per process: warm hits stay free of disk writes.
    if (this.linked.has(key)) return;
    this.linked.set(key, true);
    this.ctx.meta.link(r.upstream.name, r.name, digest, this.ctx.now()).catch((err: unknown) => {
      this.linked.delete(key);
      this.ctx.log.warn({ err, digest }, 'could not record repository link');
    });
  }

  /**
   * Pre-warm: the digest a tag points at upstream now, from one HEAD (free on Docker Hub). No GET,
   * no cache, no stale fallback: null when the upstream sends no digest. Throws UpstreamError.
   */
  async resolveTag(r: Routed, tag: string): Promise<Digest | null> {
    const res = await this.ctx.upstreams.client(r.upstream).request({
      method: 'HEAD', path: `/v2/${r.name}/manifests/${tag}`, kind: 'manifest', repository: r.name, headers: { accept: UPSTREAM_ACCEPT },
    });
    res.body.resume();
    const digest = header(res.headers, 'docker-content-digest');
    return digest !== undefined ? parseDigest(digest) : null;
  }
}
