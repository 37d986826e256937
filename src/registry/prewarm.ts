/**
 * Pre-warm: fill the cache with a pinned image before anyone pulls it, spending as few upstream
 * pulls as possible. One run of one entry:
 *
 *   1. resolve each tag with a HEAD (free on Docker Hub) — a tag pattern (`3.19.*`) is first
 *      expanded against the upstream's tag list;
 *   2. take the manifest (and, for an index, the children of the configured platforms) from the
 *      cache, or GET it through MirrorService — the only requests Docker Hub counts as pulls;
 *   3. make sure every blob they reference is cached, through the same single-flight fill a
 *      client pull uses (a pre-warm and a client pulling the same layer share one download);
 *   4. record the tag as just confirmed and pin every digest (eviction never removes pinned content).
 *
 * A steady-state run (tag unchanged, everything cached) sends HEADs only: `unchanged`, zero
 * pulls. Before each GET the upstream's pull budget is checked; at or below `reservePulls`, or
 * while the upstream is exhausted, the run stops with PrewarmDeferred until the window resets.
 *
 * Failures are classified here, once, for whatever queue runs this: PrewarmDeferred (come back
 * later, not an attempt), PrewarmPermanentError (unknown image, access denied: retrying cannot
 * help) and PrewarmTransientError (retry with backoff, never sooner than `retryAfter`).
 *
 * Imports: registry/ and upstream/ only. No queue, no Fastify: src/queue/ drives this.
 */
import type { Logger } from 'pino';
import { isRegistryError } from '../errors.js';
import type { UpstreamClient } from '../upstream/client.js';
import { UpstreamError } from '../upstream/errors.js';
import { isIndexType, parseManifest, type Descriptor } from '../oci/media.js';
import type { MirrorService } from './mirror.js';
import { checkDigest, isValidTag, parseDigest, type Digest } from '../oci/reference.js';
import type { Routed, Router } from './routing.js';

/** A tag pattern matching more tags than this is refused: almost certainly a typo (`*`). */
export const MAX_PATTERN_TAGS = 200;
/** Blobs of one run fetched at once: enough to overlap latency, few enough to leave room for clients. */
const BLOB_PARALLELISM = 3;

// ---------------------------------------------------------------------------------------------
// Outcomes and failures

export type PrewarmResult = 'success' | 'unchanged';

export interface PrewarmTarget {
  /** Pin record id (the entry id). */
  id: string;
  /** The reference as configured (`docker.io/library/alpine:3.20`, `node`, `ghcr.io/org/app@sha256:…`). */
  ref: string;
  /** `os/arch[/variant]` filters for an index; empty = every platform. */
  platforms: string[];
  /** Glob over the upstream's tags (`3.19.*`), or null for the ref's own tag. */
  tags: string | null;
  /** Pin what this run keeps (configured entries); a one-off only fills the cache. */
  pin: boolean;
}

export interface ResolvedTag {
  /** The tag, or null when the ref names a digest. */
  tag: string | null;
  digest: string;
}

export interface PrewarmOutcome {
  result: PrewarmResult;
  upstream: string;
  name: string;
  resolved: ResolvedTag[];
  /** Upstream manifest GETs this run sent (Docker Hub's unit of "pulls"). */
  pulls: number;
  /** Blobs this run downloaded (or joined a download of). */
  blobsFetched: number;
  /** Digests pinned (manifests and blobs); 0 for a one-off. */
  pinned: number;
}

/** Counters a run updates as it goes, so a caller still sees them when the run throws. */
export interface PrewarmProgress {
  upstream: string | null;
  pulls: number;
  blobsFetched: number;
}

export function newProgress(): PrewarmProgress {
  return { upstream: null, pulls: 0, blobsFetched: 0 };
}

/** Not now: the pull budget is at the reserve or spent. Run again at `until`; not a failed attempt. */
export class PrewarmDeferred extends Error {
  override readonly name = 'PrewarmDeferred';
  constructor(
    readonly until: number,
    message: string,
  ) {
    super(message);
  }
}

/** Retrying cannot help (unknown image or tag, access denied, a ref that names nothing). */
export class PrewarmPermanentError extends Error {
  override readonly name = 'PrewarmPermanentError';
}

/** Worth retrying with backoff; never sooner than `retryAfter` seconds when the upstream said so. */
export class PrewarmTransientError extends Error {
  override readonly name = 'PrewarmTransientError';
  constructor(
    message: string,
    readonly retryAfter: number | undefined,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// References, patterns, platforms

export interface ParsedImageRef {
  routed: Routed;
  tag: string | null;
  digest: Digest | null;
}

/** A first path component that names a registry host rather than a namespace. */
function looksLikeHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

/**
 * Split `[host/]name[:tag][@digest]` and route it as a client request would be routed. A host
 * that is not a configured upstream is refused: pre-warm never reaches a registry the mirror
 * does not serve. Throws PrewarmPermanentError.
 */
export function parseImageRef(ref: string, router: Router): ParsedImageRef {
  let rest = ref.trim();
  let digest: Digest | null = null;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const c = checkDigest(rest.slice(at + 1));
    rest = rest.slice(0, at);
    if (!c.ok) throw new PrewarmPermanentError(`${ref}: ${c.reason}`);
    digest = c.digest;
  }
  let tag: string | null = null;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) throw new PrewarmPermanentError(`${ref}: "${tag}" is not a valid tag`);
  }
  const slash = rest.indexOf('/');
  if (slash > 0) {
    const first = rest.slice(0, slash);
    if (looksLikeHost(first) && router.upstream(first) === undefined) {
      throw new PrewarmPermanentError(`${ref}: "${first}" is not a configured upstream`);
    }
  }
  try {
    return { routed: router.route(rest, undefined), tag, digest };
  } catch (err) {
    throw new PrewarmPermanentError(`${ref}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** `3.19.*` → /^3\.19\..*$/ ; `?` is one character. Nothing else is special. */
export function tagPattern(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

export interface PlatformFilter {
  os: string;
  architecture: string;
  variant: string | undefined;
}

export function parsePlatform(s: string): PlatformFilter {
  const [os = '', architecture = '', variant] = s.split('/');
  return { os, architecture, variant };
}

/** An index entry is wanted when no filter is set, or one filter names its os/arch (and variant, if the filter gives one). */
export function wantedPlatform(d: Descriptor, filters: readonly PlatformFilter[]): boolean {
  if (filters.length === 0) return true;
  const p = d.platform;
  if (!p) return false;
  return filters.some((f) => p.os === f.os && p.architecture === f.architecture && (f.variant === undefined || p.variant === f.variant));
}

// ---------------------------------------------------------------------------------------------
// The run

export interface PrewarmerDeps {
  mirror: MirrorService;
  router: Router;
  /** Never spend the upstream's last this-many pulls (prewarm.reservePulls). */
  reservePulls: number;
  log: Logger;
  now?: () => number;
}

export class Prewarmer {
  private readonly now: () => number;

  constructor(private readonly deps: PrewarmerDeps) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * Warm (and pin) one target. Resolves with what happened; throws PrewarmDeferred,
   * PrewarmPermanentError or PrewarmTransientError — nothing else.
   */
  async run(target: PrewarmTarget, progress: PrewarmProgress = newProgress()): Promise<PrewarmOutcome> {
    let client: UpstreamClient | null = null;
    try {
      const parsed = parseImageRef(target.ref, this.deps.router);
      const r = parsed.routed;
      progress.upstream = r.upstream.name;
      client = this.deps.mirror.client(r.upstream);
      const run = new Run(this.deps, r, client, target, progress, this.now);
      return await run.execute(parsed);
    } catch (err) {
      throw classify(err, target.ref, client, this.now());
    }
  }
}

/** One run's state: what it has pinned and whether anything changed. */
class Run {
  private readonly pinned = new Set<string>();
  private changed = false;
  private readonly filters: PlatformFilter[];

  constructor(
    private readonly deps: PrewarmerDeps,
    private readonly r: Routed,
    private readonly client: UpstreamClient,
    private readonly target: PrewarmTarget,
    private readonly progress: PrewarmProgress,
    private readonly now: () => number,
  ) {
    this.filters = target.platforms.map(parsePlatform);
  }

  async execute(parsed: ParsedImageRef): Promise<PrewarmOutcome> {
    const { mirror, log } = this.deps;
    const resolved: ResolvedTag[] = [];
    if (parsed.digest !== null && this.target.tags === null) {
      await this.warmDigest(parsed.digest, true);
      resolved.push({ tag: null, digest: parsed.digest });
    } else {
      const tags = this.target.tags !== null ? await this.expand(this.target.tags) : [parsed.tag ?? 'latest'];
      const single = this.target.tags === null;
      for (const tag of tags) {
        const digest = await this.warmTag(tag, single);
        if (digest !== null) resolved.push({ tag, digest });
      }
      if (resolved.length === 0) {
        throw new PrewarmPermanentError(`${this.target.ref}: no tag matching "${this.target.tags ?? ''}" has the platforms ${this.target.platforms.join(', ')}`);
      }
    }
    if (this.target.pin) {
      await mirror.meta.putPin(this.target.id, {
        ref: this.target.ref,
        upstream: this.r.upstream.name,
        name: this.r.name,
        digests: [...this.pinned].sort(),
        pinnedAt: this.now(),
      });
    }
    const unchanged = !this.changed && this.progress.pulls === 0 && this.progress.blobsFetched === 0;
    const outcome: PrewarmOutcome = {
      result: unchanged ? 'unchanged' : 'success',
      upstream: this.r.upstream.name,
      name: this.r.name,
      resolved,
      pulls: this.progress.pulls,
      blobsFetched: this.progress.blobsFetched,
      pinned: this.target.pin ? this.pinned.size : 0,
    };
    log.info({ ref: this.target.ref, result: outcome.result, pulls: outcome.pulls, blobs: outcome.blobsFetched, tags: resolved.length }, 'pre-warm run finished');
    return outcome;
  }

  /** The upstream's tags matching the pattern (tags/list is not a pull). */
  private async expand(glob: string): Promise<string[]> {
    const re = tagPattern(glob);
    const tags = (await this.deps.mirror.listTags(this.r)).filter((t) => re.test(t));
    if (tags.length === 0) throw new PrewarmPermanentError(`${this.target.ref}: no upstream tag matches "${glob}"`);
    if (tags.length > MAX_PATTERN_TAGS) {
      throw new PrewarmPermanentError(`${this.target.ref}: "${glob}" matches ${tags.length} tags (at most ${MAX_PATTERN_TAGS}); narrow the pattern`);
    }
    return tags;
  }

  /**
   * HEAD the tag, warm what it points at, record the tag as confirmed. Returns the digest, or null
   * when the tag is part of a pattern and its index has none of the wanted platforms.
   */
  private async warmTag(tag: string, single: boolean): Promise<string | null> {
    const { mirror } = this.deps;
    const before = await mirror.meta.getTag(this.r.upstream.name, this.r.name, tag);
    let digest = await mirror.resolveTag(this.r, tag);
    if (digest === null) {
      // The upstream sent no digest on HEAD: only a GET by tag can tell (and it counts).
      this.checkBudget(`GET manifest ${this.r.name}:${tag}`);
      const m = await mirror.getManifest(this.r, { kind: 'tag', tag }, new Set());
      if (m.stale) throw new PrewarmTransientError(`${this.target.ref}: upstream did not answer for ${tag}`, undefined);
      this.progress.pulls += 1;
      digest = m.digest;
    }
    if (before?.digest !== digest) this.changed = true;
    const top = await this.warmDigest(digest, single);
    if (top === null) return null;
    const now = this.now();
    await mirror.meta.putTag(this.r.upstream.name, this.r.name, tag, {
      digest,
      mediaType: top.mediaType,
      size: top.size,
      fetchedAt: before?.digest === digest ? before.fetchedAt : now,
      checkedAt: now,
    });
    return digest;
  }

  /**
   * Warm a manifest by digest: itself, the wanted children of an index, and every blob. Returns
   * its media type and size, or null (pattern members only) when no child has a wanted platform.
   */
  private async warmDigest(digest: Digest, mustMatch: boolean): Promise<{ mediaType: string; size: number } | null> {
    const top = await this.manifest(digest);
    const images: Buffer[] = [];
    if (isIndexType(top.mediaType)) {
      const children = parseManifest(top.bytes).manifests.filter((d) => wantedPlatform(d, this.filters));
      if (children.length === 0) {
        const what = `${this.target.ref}: index ${digest} has none of the platforms ${this.target.platforms.join(', ')}`;
        if (mustMatch) throw new PrewarmPermanentError(what);
        this.deps.log.warn({ ref: this.target.ref, digest }, 'pre-warm: a matching tag lacks the configured platforms; skipped');
        return null;
      }
      for (const child of children) images.push((await this.manifest(this.digestOf(child))).bytes);
    } else {
      images.push(top.bytes);
    }
    const blobs = [...new Set(images.flatMap((b) => parseManifest(b).blobs.map((d) => this.digestOf(d))))];
    await eachLimit(blobs, BLOB_PARALLELISM, (d) => this.blob(d));
    return { mediaType: top.mediaType, size: top.bytes.length };
  }

  /** A descriptor's digest, parsed: a manifest naming an invalid digest cannot be warmed, now or later. */
  private digestOf(d: Descriptor): Digest {
    const digest = parseDigest(d.digest);
    if (digest === null) throw new PrewarmPermanentError(`${this.target.ref}: a manifest references the invalid digest "${d.digest}"`);
    return digest;
  }

  /** A manifest from the cache, else one GET upstream (a pull) through the mirror's single-flight. */
  private async manifest(digest: Digest): Promise<{ bytes: Buffer; mediaType: string }> {
    const { mirror } = this.deps;
    const local = await mirror.localManifest(digest);
    this.pinned.add(digest);
    if (local) return local;
    this.checkBudget(`GET manifest ${this.r.name}@${digest}`);
    this.progress.pulls += 1;
    this.changed = true;
    return mirror.manifestByDigest(this.r, digest);
  }

  private async blob(digest: Digest): Promise<void> {
    this.pinned.add(digest);
    // Blob GETs are not pulls, but an upstream that answered 429 gets nothing until it recovers.
    const how = await this.deps.mirror.ensureBlob(this.r, digest, () => {
      const blocked = this.client.rateLimit.blockedFor();
      if (blocked > 0) {
        throw new PrewarmDeferred(this.now() + blocked * 1000, `${this.client.name} is rate-limited; not fetching blobs for ${blocked}s`);
      }
    });
    if (how !== 'cached') this.progress.blobsFetched += 1;
  }

  /**
   * Before a GET that counts as a pull: stop while the upstream is exhausted, or while the pulls
   * it reported left in the current window are at or below the reserve. A window that has ended
   * since the numbers were seen is treated as refilled (the HEAD before this GET would have
   * reported otherwise).
   */
  private checkBudget(what: string): void {
    const rl = this.client.rateLimit;
    const now = this.now();
    const blocked = rl.blockedFor();
    if (blocked > 0) {
      throw new PrewarmDeferred(now + blocked * 1000, `${this.client.name} pull budget is spent; deferring ${what} for ${blocked}s`);
    }
    const remaining = rl.remaining();
    if (remaining === null) return;
    const reset = rl.resetAt();
    if (reset !== null && reset <= now) return;
    if (remaining <= this.deps.reservePulls) {
      throw new PrewarmDeferred(
        reset ?? now + 60_000,
        `${this.client.name} reports ${remaining} pulls left (reserve ${this.deps.reservePulls}); deferring ${what} until the window resets`,
      );
    }
  }
}

/** Run `fn` over items with at most `limit` at once; the first failure stops new starts and is thrown. */
async function eachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | null = null;
  const lane = async (): Promise<void> => {
    while (failure === null && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failure !== null) throw (failure as { err: unknown }).err;
}

/**
 * The one place a pre-warm failure gets its class. Upstream kinds first (never messages):
 * not-found / denied / unauthorized are permanent; rate-limited defers to the window's end; the
 * rest is transient. Catalogued registry errors (from routing, tag lists) by status alike.
 */
export function classify(err: unknown, ref: string, client: UpstreamClient | null, now: number): Error {
  if (err instanceof PrewarmDeferred || err instanceof PrewarmPermanentError || err instanceof PrewarmTransientError) return err;
  if (err instanceof UpstreamError) {
    switch (err.kind) {
      case 'not-found':
      case 'denied':
      case 'unauthorized':
        return new PrewarmPermanentError(`${ref}: ${err.message}`);
      case 'rate-limited': {
        const until = client?.rateLimit.resetAt() ?? now + (err.retryAfter ?? 60) * 1000;
        return new PrewarmDeferred(Math.max(until, now + (err.retryAfter ?? 0) * 1000), `${ref}: ${err.message}`);
      }
      default:
        return new PrewarmTransientError(`${ref}: ${err.message}`, err.retryAfter);
    }
  }
  if (isRegistryError(err)) {
    const header = err.headers?.['retry-after'];
    const retryAfter = header !== undefined && /^\d+$/.test(header) ? Number(header) : undefined;
    if (err.statusCode === 429) return new PrewarmDeferred(now + (retryAfter ?? 60) * 1000, `${ref}: ${err.message}`);
    if (err.statusCode >= 400 && err.statusCode < 500) return new PrewarmPermanentError(`${ref}: ${err.message}`);
    return new PrewarmTransientError(`${ref}: ${err.message}`, retryAfter);
  }
  const message = err instanceof Error ? err.message : String(err);
  return new PrewarmTransientError(`${ref}: ${message}`, undefined);
}
