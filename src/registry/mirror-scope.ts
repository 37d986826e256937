/**
 * Which repository may serve which cached digest. The store is shared by digest, so without this
 * a client allowed to pull only `library/a` could read any cached manifest or blob of `library/b`
 * (or of a private upstream) by asking for its digest under `library/a`. A cached digest is served
 * through a repository (on its upstream) only when that repository holds it:
 *  - it was fetched or served through that repository in this process (`granted`, bounded), or
 *  - the repository's link records name it, or a manifest they name references it (config,
 *    layers, index children), read from the store once per repository at a time, or
 *  - the upstream confirms it for that repository: one HEAD of <name>/manifests|blobs/<digest>,
 *    as Distribution's proxy does. A yes is granted; a 404 is remembered for a while (bounded),
 *    and the request is answered as a miss would be (404). Any other upstream failure is thrown,
 *    so an unreachable upstream never lets another repository's content through.
 *
 * Imports: upstream/, oci/, registry records. Never Fastify.
 */
import { LRUCache } from 'lru-cache';
import { UPSTREAM_ACCEPT, parseManifest } from '../oci/media.js';
import { parseDigest, type Digest } from '../oci/reference.js';
import { UpstreamError } from '../upstream/errors.js';
import type { MirrorContext } from './mirror-context.js';
import type { Routed } from './routing.js';
import { SingleFlight } from './singleflight.js';

/**
 * Size of every entry in the count-bounded caches below: bounded by `maxSize` in entries rather
 * than `max`, because lru-cache allocates the whole of `max` up front (several MiB for these at
 * idle) while a `maxSize` bound grows with what is cached.
 */
const one = (): number => 1;

/** (repository, digest) pairs known to be held: about 100 bytes each, so at most ~20 MiB. */
const MAX_GRANTED = 200_000;
const MAX_EXPANDED = 50_000;
/** Upstream "not in this repository" answers remembered (at least this long, or `notFoundTtl`). */
const MIN_ABSENT_MS = 30_000;
const MAX_ABSENT = 10_000;
/** Most linked manifests read when a repository's holdings are rebuilt from the store. */
const MAX_SCANNED_MANIFESTS = 2_000;
/**
 * A repository's records are read again at most this often: what this process links meanwhile is
 * granted as it happens, and a link another replica wrote is confirmed by the upstream instead.
 */
const RESCAN_MS = 60_000;

/** How a repository holds a digest: already known, or just confirmed by the upstream (a HEAD). */
export type Holding = 'held' | 'confirmed';

export class RepoScope {
  private readonly granted = new LRUCache<string, true>({ maxSize: MAX_GRANTED, sizeCalculation: one });
  /** Manifests whose references were granted to the repository (upstream|name|digest). */
  private readonly expanded = new LRUCache<string, true>({ maxSize: MAX_EXPANDED, sizeCalculation: one });
  private readonly absent = new LRUCache<string, number>({ maxSize: MAX_ABSENT, sizeCalculation: one });
  private readonly confirms: SingleFlight<string, boolean>;
  private readonly scans: SingleFlight<string, void>;
  /** Repository (upstream|name) → when its records were last read. */
  private readonly scanned = new LRUCache<string, number>({ maxSize: MAX_ABSENT, sizeCalculation: one });

  constructor(private readonly ctx: MirrorContext) {
    this.confirms = new SingleFlight(ctx.now);
    this.scans = new SingleFlight(ctx.now);
  }

  /** The key of (repository on its upstream, digest); the same string MirrorManifests uses for its links. */
  key(r: Routed, digest: string): string {
    return `${r.upstream.name}|${r.name}|${digest}`;
  }

  /** Already known to be held (`key` from `key()`): the warm path's check, no promise, no upstream. */
  holds(key: string): boolean {
    return this.granted.has(key);
  }

  /** This repository holds `digest` (it was fetched, or confirmed, through it). */
  grant(r: Routed, digest: string): void {
    this.granted.set(this.key(r, digest), true);
  }

  /**
   * A manifest was served or fetched through this repository: it and everything it references
   * (config, layers, index children) belong to the repository. Parsed once per (repository,
   * manifest) while the grant is remembered, so a warm hit costs a map lookup.
   */
  grantManifest(r: Routed, digest: string, bytes: Buffer, key = this.key(r, digest)): void {
    if (this.expanded.has(key)) return;
    this.expanded.set(key, true);
    this.granted.set(key, true);
    this.grantReferences(r, bytes);
  }

  private grantReferences(r: Routed, bytes: Buffer): string[] {
    let children: string[] = [];
    try {
      const m = parseManifest(bytes);
      for (const d of m.blobs) this.grant(r, d.digest);
      children = m.manifests.map((d) => d.digest);
      for (const d of children) this.grant(r, d);
    } catch {
      // Stored manifests were validated; one that does not parse references nothing.
    }
    return children;
  }

  /**
   * May the cached `digest` be served through `r`? Resolves how it is held; throws UpstreamError
   * (kind not-found when the upstream says this repository does not have it, else the upstream's
   * failure) when it may not.
   */
  async check(r: Routed, digest: Digest, kind: 'manifest' | 'blob'): Promise<Holding> {
    const key = this.key(r, digest);
    if (this.granted.has(key)) return 'held';
    const repo = `${r.upstream.name}|${r.name}`;
    const at = this.scanned.get(repo);
    if (at === undefined || this.ctx.now() - at >= RESCAN_MS) {
      await this.scans.run(repo, () => this.scan(r));
      this.scanned.set(repo, this.ctx.now());
      if (this.granted.has(key)) return 'held';
    }
    const until = this.absent.get(key);
    if (until !== undefined && until > this.ctx.now()) throw this.notHere(r, digest);
    const { value: present } = await this.confirms.run(key, () => this.confirm(r, digest, kind));
    if (!present) throw this.notHere(r, digest);
    return 'confirmed';
  }

  private notHere(r: Routed, digest: string): UpstreamError {
    return new UpstreamError(r.upstream.name, 'not-found', `${r.name} does not hold ${digest} upstream`, { status: 404 });
  }

  /** Rebuild what this repository holds from its link records and the manifests they name. */
  private async scan(r: Routed): Promise<void> {
    const { ctx } = this;
    const linked = await ctx.meta.linkedManifests(r.upstream.name, r.name);
    const queue = [...linked];
    const seen = new Set<string>();
    while (queue.length > 0 && seen.size < MAX_SCANNED_MANIFESTS) {
      const raw = queue.shift() as string;
      if (seen.has(raw)) continue;
      seen.add(raw);
      this.grant(r, raw);
      const d = parseDigest(raw);
      const bytes = d ? await ctx.driver.readBlobBuffer(d).catch(() => null) : null;
      if (bytes) queue.push(...this.grantReferences(r, bytes));
    }
  }

  /** One HEAD through the repository's upstream: does it hold `digest`? */
  private async confirm(r: Routed, digest: Digest, kind: 'manifest' | 'blob'): Promise<boolean> {
    const { ctx } = this;
    const path = `/v2/${r.name}/${kind === 'manifest' ? 'manifests' : 'blobs'}/${digest}`;
    try {
      const res = await ctx.upstreams.client(r.upstream).request({
        method: 'HEAD', path, kind, repository: r.name, ...(kind === 'manifest' ? { headers: { accept: UPSTREAM_ACCEPT } } : {}),
      });
      res.body.resume();
    } catch (err) {
      if (err instanceof UpstreamError && err.kind === 'not-found') {
        this.absent.set(this.key(r, digest), ctx.now() + Math.max(MIN_ABSENT_MS, r.upstream.notFoundTtl));
        return false;
      }
      throw err;
    }
    this.grant(r, digest);
    return true;
  }
}
