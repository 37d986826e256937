/**
 * MirrorService: the cache policy, as a `Repository` (src/registry/repository.ts). Local first;
 * upstream on a miss; one upstream fetch per manifest, tag and blob however many clients ask
 * (single-flight through a fill coordinator, src/registry/fills.ts); tags trusted for `tagTtl`,
 * then revalidated with a free HEAD; the last known manifest served stale on any upstream
 * failure; 429s honoured without a retry storm.
 *
 * This class assembles the parts and is what callers hold: the manifest path
 * (mirror-manifests.ts), the blob path (mirror-blobs.ts), tag lists and the catalog
 * (mirror-tags.ts), the upstream clients (upstreams.ts), which repository may serve which cached
 * digest (mirror-scope.ts) and what they share (mirror-context.ts).
 *
 * Imports: storage/, upstream/, config types, metrics. Never Fastify: the HTTP layer and the
 * pre-warm worker both drive the cache through this class.
 */
import type { LookupFunction } from 'node:net';
import type { Logger } from 'pino';
import type { UpstreamConfig } from '../config/types.js';
import type { Metrics } from '../metrics/metrics.js';
import { isIndexType } from '../oci/media.js';
import type { Digest } from '../oci/reference.js';
import type { StorageDriver } from '../storage/driver.js';
import type { UpstreamClient } from '../upstream/client.js';
import type { TagChecks } from './cluster-tags.js';
import { InProcessFills, type FillCoordinator, type FillInProgress } from './fills.js';
import { MetadataStore } from '../storage/records.js';
import { MirrorBlobs } from './mirror-blobs.js';
import { MirrorContext, type CacheHooks } from './mirror-context.js';
import { MirrorManifests, type CachedManifest } from './mirror-manifests.js';
import { RepoScope } from './mirror-scope.js';
import { MirrorTags } from './mirror-tags.js';
import type { BlobHandle, BlobInfo, CatalogSource, ManifestRef, ManifestResult, Repository } from './repository.js';
import type { Routed } from './routing.js';
import { UpstreamSet, type UpstreamStatus } from './upstreams.js';

export type { CacheHooks } from './mirror-context.js';
export type { BlobHandle, ManifestResult } from './repository.js';

export interface MirrorDeps {
  /** Lifecycle listener; none by default. */
  hooks?: CacheHooks;
  driver: StorageDriver;
  upstreams: UpstreamConfig[];
  metrics: Metrics;
  log: Logger;
  now?: () => number;
  /**
   * Who leads and who joins each fill. In-process by default (owned tables, never module
   * globals, so tests and several services in one process do not share in-flight state).
   */
  fills?: FillCoordinator;
  /** Host-name resolution for upstream connections (a test seam for DNS failures); the system's by default. */
  lookup?: LookupFunction;
  /** Replicas: tag checks shared through Redis (cluster-tags.ts). */
  tagChecks?: TagChecks;
}

/** The mirror as operators see it (admin API): plain JSON. */
export interface MirrorStatus {
  upstreams: UpstreamStatus[];
  fills: FillInProgress[];
}

export class MirrorService implements Repository, CatalogSource {
  readonly meta: MetadataStore;
  private readonly ctx: MirrorContext;
  private readonly upstreams: UpstreamSet;
  private readonly fills: FillCoordinator;
  private readonly manifests: MirrorManifests;
  private readonly blobs: MirrorBlobs;
  private readonly tags: MirrorTags;

  constructor(deps: MirrorDeps) {
    const now = deps.now ?? Date.now;
    this.meta = new MetadataStore(deps.driver);
    this.fills = deps.fills ?? new InProcessFills(now);
    this.upstreams = new UpstreamSet(deps.upstreams, {
      metrics: deps.metrics, log: deps.log, now, ...(deps.lookup ? { lookup: deps.lookup } : {}),
    });
    this.ctx = new MirrorContext(deps.driver, this.meta, this.upstreams, this.fills, deps.metrics, deps.log, now, deps.hooks ?? null);
    this.ctx.tagChecks = deps.tagChecks ?? null;
    const scope = new RepoScope(this.ctx);
    this.manifests = new MirrorManifests(this.ctx, scope);
    this.blobs = new MirrorBlobs(this.ctx, scope);
    this.tags = new MirrorTags(this.ctx);
  }

  /** The lifecycle listener the parts report to (null: none). */
  get hooks(): CacheHooks | null {
    return this.ctx.hooks;
  }

  set hooks(hooks: CacheHooks | null) {
    this.ctx.hooks = hooks;
  }

  async close(): Promise<void> {
    // Let running fills finish so no spool is left half written by us.
    await this.fills.drain();
    await this.upstreams.close();
  }

  /** Upstreams (knobs, breaker, pull budget) and fills in progress, for the admin API. */
  status(): MirrorStatus {
    return { upstreams: this.upstreams.status(), fills: this.fills.inProgress() };
  }

  /** The lifecycle layer removed (or is removing) this manifest: stop serving it from memory. */
  forget(digest: string): void {
    this.manifests.forget(digest);
  }

  /** Is a fill for this blob in flight? (The lifecycle layer never removes such a blob.) */
  filling(digest: string): boolean {
    return this.fills.filling(digest);
  }

  client(upstream: UpstreamConfig): UpstreamClient {
    return this.upstreams.client(upstream);
  }

  // ---------------------------------------------------------------- Repository

  getManifest(r: Routed, ref: ManifestRef, accept: Set<string>): Promise<ManifestResult> {
    return this.manifests.getManifest(r, ref, accept);
  }

  statBlob(r: Routed, digest: Digest): Promise<BlobInfo> {
    return this.blobs.statBlob(r, digest);
  }

  getBlob(r: Routed, digest: Digest): Promise<BlobHandle> {
    return this.blobs.getBlob(r, digest);
  }

  listTags(r: Routed): Promise<string[]> {
    return this.tags.listTags(r);
  }

  catalog(publicName: (upstream: string, name: string) => string): Promise<string[]> {
    return this.tags.catalog(publicName);
  }

  // ---------------------------------------------------------------- pre-warm

  /** A manifest already in the cache, by digest (memory, then storage). */
  localManifest(digest: Digest): Promise<CachedManifest | null> {
    return this.manifests.localManifest(digest);
  }

  /** A manifest by digest: local when cached, else fetched once (single-flight) and verified. */
  manifestByDigest(r: Routed, digest: Digest): Promise<ManifestResult> {
    return this.manifests.manifestByDigest(r, digest);
  }

  /** The digest a tag points at upstream now, from one HEAD; null when upstream sends none. */
  resolveTag(r: Routed, tag: string): Promise<Digest | null> {
    return this.manifests.resolveTag(r, tag);
  }

  /** Make sure a blob is stored, through the same fill clients join (mirror-blobs.ts). */
  ensureBlob(r: Routed, digest: Digest, beforeFetch?: () => void): Promise<'cached' | 'fetched' | 'joined'> {
    return this.blobs.ensureBlob(r, digest, beforeFetch);
  }

  /** Is this manifest an index? (pre-warm and the UI ask) */
  static isIndex(mediaType: string): boolean {
    return isIndexType(mediaType);
  }
}
