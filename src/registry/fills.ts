/**
 * The fill coordinator: who fetches what from upstream while many clients ask at once. Every
 * miss either leads a fill (it does the upstream work) or joins the one under way, for three
 * kinds of fill:
 *  - a manifest by digest, keyed (upstream, name, digest);
 *  - a tag revalidation, keyed (upstream, name, tag);
 *  - a blob download, keyed by digest alone (blobs are shared by every repository and upstream),
 *    joinable until the download has committed or failed, not only until it has started.
 * and it lists the fills in progress (admin API, UI).
 *
 * `InProcessFills` is today's implementation: owned tables in this process (one per
 * MirrorService, never a module global). A cross-replica coordinator (leases in Redis, joins
 * streamed from the owner replica) implements the same interface.
 *
 * Imports: registry/ types and oci/ only.
 */
import type { CacheResult } from '../metrics/metrics.js';
import type { Digest } from '../oci/reference.js';
import type { BlobFill } from './blob-fill.js';
import type { ManifestResult } from './repository.js';
import { SingleFlight, type Flight } from './singleflight.js';

export type { Flight } from './singleflight.js';

/** What one tag revalidation produced, and how to count it. */
export interface TagOutcome {
  value: ManifestResult;
  result: CacheResult;
}

/**
 * What a joined client needs of a blob fill: its progress, its end, and a reader from any offset;
 * and, for operators, how many clients read it now (a BlobFill counts its readers).
 */
export type SharedFill = Pick<BlobFill, 'digest' | 'upstream' | 'size' | 'state' | 'error' | 'written' | 'finished' | 'reader'> & { readonly clients?: number };

export interface ManifestFillKey { upstream: string; name: string; digest: Digest }
export interface TagFillKey { upstream: string; name: string; tag: string }

/** One fill under way, as operators see it: plain JSON. */
export interface FillInProgress {
  kind: 'manifest' | 'tag' | 'blob';
  /** Upstream the fill reads from (for a blob: null until its download has started). */
  upstream: string | null;
  /** Repository (null for a blob: blobs are shared by every repository). */
  name: string | null;
  /** Digest, or tag for a tag revalidation. */
  reference: string;
  /** When the fill started (ms since epoch). */
  startedAt: number;
  /** Blob bytes written so far, and the length the upstream announced (null for others / unknown). */
  bytes: number | null;
  size: number | null;
  /**
   * Clients reading a blob fill now (joined and not yet gone); absent where nobody counts them
   * (manifest and tag fills, a fill that does not count its readers).
   */
  clients?: number;
}

export interface FillCoordinator {
  /** Lead the manifest fetch for this key with `lead`, or join the one under way. */
  manifest(key: ManifestFillKey, lead: () => Promise<ManifestResult>): Flight<ManifestResult>;
  /** Lead the revalidation of this tag with `lead`, or join the one under way. */
  tag(key: TagFillKey, lead: () => Promise<TagOutcome>): Flight<TagOutcome>;
  /** The blob fill under way for `digest`, to join; undefined when there is none. */
  runningBlob(digest: Digest): Promise<SharedFill> | undefined;
  /**
   * Lead the blob fill for `digest`, or join it when one is under way. `start` runs only when
   * this call leads; the fill stays joinable until it has committed or failed.
   */
  blob(digest: Digest, start: () => Promise<SharedFill>): Flight<SharedFill>;
  /** A joiner found this fill failed before reading a byte: stop handing it to later clients. */
  abandonBlob(digest: Digest, fill: Promise<SharedFill>): void;
  /** Is a fill for this blob under way? (The lifecycle layer never removes such a blob.) */
  filling(digest: string): boolean;
  inProgress(): FillInProgress[];
  /** Resolves once every blob fill under way has ended (committed or failed): shutdown. */
  drain(): Promise<void>;
}

export class InProcessFills implements FillCoordinator {
  private readonly manifests: SingleFlight<string, ManifestResult>;
  private readonly tags: SingleFlight<string, TagOutcome>;
  private readonly blobs: SingleFlight<string, SharedFill>;

  constructor(now: () => number = Date.now) {
    this.manifests = new SingleFlight(now);
    this.tags = new SingleFlight(now);
    this.blobs = new SingleFlight(now);
  }

  manifest(key: ManifestFillKey, lead: () => Promise<ManifestResult>): Flight<ManifestResult> {
    return this.manifests.join(`${key.upstream}|${key.name}|${key.digest}`, lead);
  }

  tag(key: TagFillKey, lead: () => Promise<TagOutcome>): Flight<TagOutcome> {
    return this.tags.join(`${key.upstream}|${key.name}|${key.tag}`, lead);
  }

  runningBlob(digest: Digest): Promise<SharedFill> | undefined {
    return this.blobs.peek(digest);
  }

  blob(digest: Digest, start: () => Promise<SharedFill>): Flight<SharedFill> {
    return this.blobs.join(digest, start, (fill) => fill.finished);
  }

  abandonBlob(digest: Digest, fill: Promise<SharedFill>): void {
    this.blobs.forget(digest, fill);
  }

  filling(digest: string): boolean {
    return this.blobs.has(digest);
  }

  inProgress(): FillInProgress[] {
    const keyed = (kind: 'manifest' | 'tag', key: string, startedAt: number): FillInProgress => {
      // Keys are upstream|name|reference; none of the three can contain '|'.
      const [upstream = '', name = '', reference = ''] = key.split('|');
      return { kind, upstream, name, reference, startedAt, bytes: null, size: null };
    };
    return [
      ...this.manifests.entries().map((e) => keyed('manifest', e.key, e.startedAt)),
      ...this.tags.entries().map((e) => keyed('tag', e.key, e.startedAt)),
      ...this.blobs.entries().map((e): FillInProgress => ({
        kind: 'blob',
        upstream: e.value?.upstream ?? null,
        name: null,
        reference: e.key,
        startedAt: e.startedAt,
        bytes: e.value?.written ?? 0,
        size: e.value?.size ?? null,
        ...(e.value === undefined ? { clients: 0 } : e.value.clients !== undefined ? { clients: e.value.clients } : {}),
      })),
    ].sort((a, b) => a.startedAt - b.startedAt);
  }

  async drain(): Promise<void> {
    const fills = await Promise.allSettled(this.blobs.promises());
    await Promise.allSettled(fills.map((f) => (f.status === 'fulfilled' ? f.value.finished : undefined)));
  }
}
