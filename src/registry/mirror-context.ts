/**
 * What the parts of MirrorService (mirror-manifests.ts, mirror-blobs.ts, mirror-tags.ts) share:
 * the store and its records, the upstream clients, the fill coordinator, the clock, the
 * lifecycle hooks, and the two habits every part follows (count each client request once; a
 * record write that meets a full disk is reported, not thrown).
 *
 * Imports: storage/, upstream/, metrics, config types. Never Fastify.
 */
import type { Logger } from 'pino';
import { noteCacheResult, requestNote } from '../log.js';
import type { CacheKind, CacheResult, Metrics } from '../metrics/metrics.js';
import type { StorageDriver } from '../storage/driver.js';
import { isNoSpace } from '../storage/space.js';
import { header, type Headers } from '../upstream/client.js';
import { UpstreamError } from '../upstream/errors.js';
import type { TagChecks } from './cluster-tags.js';
import type { FillCoordinator, SharedFill } from './fills.js';
import type { MetadataStore } from '../storage/records.js';
import type { CacheEventsPort } from '../storage/ports.js';
import type { Routed } from './routing.js';
import type { UpstreamSet } from './upstreams.js';

/** What the cache tells the lifecycle layer: the registry → lifecycle port (storage/ports.ts). */
export type CacheHooks = CacheEventsPort;

export class MirrorContext {
  /** Lifecycle listener; null until one is attached. Read at each use, so attaching later works. */
  hooks: CacheHooks | null;
  /** Replicas: tag checks shared through Redis (cluster-tags.ts); null in a single process. */
  tagChecks: TagChecks | null = null;

  constructor(
    readonly driver: StorageDriver,
    readonly meta: MetadataStore,
    readonly upstreams: UpstreamSet,
    readonly fills: FillCoordinator,
    readonly metrics: Metrics,
    readonly log: Logger,
    readonly now: () => number,
    hooks: CacheHooks | null,
  ) {
    this.hooks = hooks;
  }

  /** Count a client request's cache result, and tell that request's access line (src/log.ts). */
  count(kind: CacheKind, result: CacheResult): void {
    this.metrics.countCache(kind, result);
    noteCacheResult(result);
  }

  /** At debug: why the cache answered as it did (fresh, revalidated, moved, stale), for one repository. */
  decide(r: Routed, fields: Record<string, unknown>, why: string): void {
    if (!this.log.isLevelEnabled('debug')) return;
    const reqId = requestNote()?.reqId;
    this.log.debug({ ...(reqId !== undefined ? { reqId } : {}), upstream: r.upstream.name, repository: r.name, ...fields }, `cache decision: ${why}`);
  }

  /**
   * Write a record or a manifest; when the disk is full (ENOSPC) tell the lifecycle layer and go
   * on without it, so the client is still answered (from memory, or by asking upstream again
   * next time). Any other failure is thrown. Returns whether the write happened.
   */
  async record(write: () => Promise<void>): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (err) {
      if (!isNoSpace(err)) throw err;
      this.hooks?.storageFull?.(err, null);
      return false;
    }
  }
}

/** An upstream response's Content-Length, when it sent a plain one. */
export function contentLength(headers: Headers): number | null {
  const len = header(headers, 'content-length');
  return len !== undefined && /^\d+$/.test(len) ? Number(len) : null;
}

/** The error a failed fill ended with, as the upstream failure it stands for. */
export function asUpstreamError(fill: SharedFill, r: Routed): UpstreamError {
  const e = fill.error;
  if (e instanceof UpstreamError) return e;
  return new UpstreamError(r.upstream.name, 'unavailable', `blob ${fill.digest}: download failed: ${e?.message ?? 'unknown error'}`);
}
