/**
 * The two directions between the cache policy (src/registry/) and the cache lifecycle
 * (src/storage/lifecycle.ts), as named ports. The composition root passes each side the other's
 * port at construction; neither side imports the other.
 *
 *  - CacheEventsPort: registry → lifecycle. What the cache tells the lifecycle on the request
 *    path (a use, a commit, a full disk) and asks it (may a miss be stored now?). CacheLifecycle
 *    implements it.
 *  - CacheContentsPort: lifecycle → registry. What the lifecycle asks of the cache in front of it
 *    before it removes content (is a fill in flight?) and tells it (drop this manifest from
 *    memory). MirrorService provides it.
 *
 * Imports: src/oci/ only.
 */
import type { Digest } from '../oci/reference.js';

/** Called on the request path: implementations are cheap and never throw. */
export interface CacheEventsPort {
  /** A blob or manifest was served or used (for LRU by last access). */
  accessed(digest: Digest): void;
  /** A blob or manifest was committed to storage. */
  stored(digest: Digest, size: number, kind: 'manifest' | 'blob'): void;
  /** A write failed because the disk is full (ENOSPC); `needed` is the blob's size when known. */
  storageFull(err: Error, needed: number | null): void;
  /** May a blob miss be cached now? false (disk full) → stream it through uncached. */
  canStore(): boolean;
  /**
   * Resolves once no removal of these digests is in flight (a GC pass may have decided on them
   * just before they were marked used): a writer checks they are still stored after this.
   */
  removalsDone?(digests: readonly Digest[]): Promise<void>;
}

export interface CacheContentsPort {
  /** Drop a manifest from in-memory caches: it is being removed from storage. */
  forget(digest: string): void;
  /** Is a fill for this blob in flight? (It is never removed then.) */
  filling(digest: string): boolean;
}
