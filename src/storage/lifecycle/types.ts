/**
 * The lifecycle's shapes: its options and tunables, the reports its passes return, and the
 * context its parts share (the store, the records, the usage index and the reference graph).
 */
import type { Logger } from 'pino';
import type { Metrics } from '../../metrics/metrics.js';
import type { StorageDriver } from '../driver.js';
import type { CacheContentsPort } from '../ports.js';
import type { MetadataStore } from '../records.js';
import type { SpaceProbe } from '../space.js';
import type { ReferenceGraph } from './graph.js';
import type { UsageIndex } from './usage.js';

/** Tunables that are not configuration: sensible for every deployment, overridable in tests. */
export const LIFECYCLE_DEFAULTS = {
  /** How often access times are written to storage. A crash loses at most this much of them. */
  flushInterval: 5_000,
  /** Unreferenced content younger than this is left for the next collection. */
  orphanGrace: 15 * 60_000,
  /** A spool file not written for this long belongs to no fill (fills time out long before). */
  spoolStaleAfter: 15 * 60_000,
  /** While the disk is full, how often free space is measured again. */
  spaceRecheck: 10_000,
  /**
   * Caching resumes once this fraction of the disk is free (at most resumeFreeMax bytes) and the
   * blob whose write failed would fit, so the mode does not flap on every miss.
   */
  resumeFreeFraction: 0.05,
  resumeFreeMax: 1024 ** 3,
};

/** What the lifecycle needs from the cache in front of it (the port MirrorService provides). */
export type CacheView = CacheContentsPort;

export interface LifecycleOptions {
  driver: StorageDriver;
  meta: MetadataStore;
  metrics: Metrics;
  log: Logger;
  maxSize: number | null;
  highWatermark: number;
  lowWatermark: number;
  cache?: CacheContentsPort;
  /** Free-space probe for the disk-full mode; the driver's own (`driver.space()`) by default. */
  space?: SpaceProbe;
  /** Write access times to storage (off for one-shot tools running beside a server). */
  persistAccess?: boolean;
  now?: () => number;
  flushInterval?: number;
  orphanGrace?: number;
  spoolStaleAfter?: number;
  spaceRecheck?: number;
}

export interface RemovalReport {
  tags: number;
  links: number;
  manifests: number;
  blobs: number;
  bytes: number;
}

export interface EvictionReport extends RemovalReport {
  /** Usage before and after the pass (bytes). */
  before: number;
  after: number;
}

export interface PurgeReport extends RemovalReport {
  /** Manifests left in place because another repository, tag, index or pin still holds them. */
  kept: number;
}

export interface GcReport {
  dryRun: boolean;
  /** Blobs (manifest bytes included) removed, or that would be. */
  blobs: number;
  bytes: number;
  /** Manifest records nothing holds. */
  manifests: number;
  /** Tag, link and manifest records that named missing content. */
  records: number;
  spoolFiles: number;
  spoolBytes: number;
  ms: number;
  /** With `list` and `dryRun`: each blob that would go (`manifest` when it is an image manifest). */
  items?: GcItem[];
}

export interface GcItem {
  digest: string;
  kind: 'manifest' | 'blob';
  bytes: number;
}

export interface CacheStats {
  bytes: number;
  blobs: number;
  manifests: number;
  maxSize: number | null;
  highWatermark: number;
  lowWatermark: number;
  pinned: { pins: number; blobs: number; bytes: number };
  evictions: { runs: number; blobs: number; bytes: number; lastRunAt: string | null };
  gc: (GcReport & { at: string }) | null;
  /**
   * The in-memory index of the store: `building` while serve lists the store after a start
   * (bytes and blobs above are what it has counted so far), `ready` once every blob is counted.
   */
  index: { state: 'idle' | 'building' | 'ready'; ms: number | null };
  storageFull: boolean;
  storageFullSince: string | null;
  freeBytes: number | null;
}

export function emptyRemoval(): RemovalReport {
  return { tags: 0, links: 0, manifests: 0, blobs: 0, bytes: 0 };
}

/** What the lifecycle's parts share. */
export interface LifecycleContext {
  driver: StorageDriver;
  records: MetadataStore;
  metrics: Metrics;
  log: Logger;
  now: () => number;
  cache: CacheContentsPort | null;
  usage: UsageIndex;
  graph: ReferenceGraph;
  /** The lifecycle is stopping: a pass still listing the store gives up (PassStopped). */
  stopping: () => boolean;
  /** Eviction totals since start (for stats). */
  evictions: { runs: number; blobs: number; bytes: number; lastRunAt: number | null };
  /**
   * Removals GC has decided on and not finished, by digest: a writer that has just marked a
   * digest used waits for these before it checks the content is still there (`removalsDone`).
   */
  removing: Map<string, Promise<void>>;
}
