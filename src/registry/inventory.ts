/**
 * The cache as an operator asks about it, shared by the admin API (src/http/routes/cache-list.ts)
 * and `berth cache` (src/app/cache-command.ts): repositories named as a client names them
 * (`library/alpine` on the default upstream, `ghcr.io/org/app` elsewhere), selected by a glob,
 * paged, described (tags, stale flags against the upstream's tagTtl, sizes, last pull, pins), and
 * purged by pattern with a dry run. The figures come from the cache lifecycle
 * (src/storage/lifecycle.ts); this module adds the naming, the matching and the views.
 *
 * Patterns: `*` matches within one path component, `**` across components, `?` one character.
 * A pattern matches a repository's client name or its full `<upstream>/<name>`, so `library/*`
 * and `docker.io/library/*` both select Docker Hub's official images.
 */
import { registryError } from '../errors.js';
import type { CacheLifecycle, PurgeManyReport, RepoInventory, RepoRef } from '../storage/lifecycle.js';
import type { MetadataStore } from '../storage/records.js';
import type { Router } from './routing.js';

/** Page sizes for the repository listing (as the catalog's, bounded: each entry reads its records). */
export const INVENTORY_PAGE = { default: 100, max: 1000 } as const;
/** A listing entry names its tags when it has at most this many (the detail view has them all). */
export const LISTED_TAGS = 10;
/** Patterns longer than any repository name could be are refused. */
const MAX_PATTERN = 512;

export interface RepositorySummary {
  /** As a client names it (pull `<mirror>/<repository>:<tag>`). */
  repository: string;
  upstream: string;
  /** The name upstream knows it by (the cache key). */
  name: string;
  tags: number;
  /** The tag names when there are at most LISTED_TAGS, else the first LISTED_TAGS. */
  tagNames: string[];
  manifests: number;
  bytes: number;
  blobs: number;
  lastPulled: string | null;
  pinned: boolean;
}

export interface RepositoryDetail extends Omit<RepositorySummary, 'tags' | 'tagNames' | 'manifests'> {
  /** The upstream's tagTtl (ms) the stale flags are measured against; null for an upstream no longer configured. */
  tagTtl: number | null;
  pins: string[];
  tags: {
    tag: string; digest: string; mediaType: string; size: number;
    lastPulled: string | null; lastChecked: string; fetched: string; stale: boolean; pinned: boolean;
  }[];
  manifests: { digest: string; mediaType: string | null; size: number | null; linked: string | null; lastPulled: string | null; tags: string[] }[];
}

export interface PurgeResult extends Omit<PurgeManyReport, 'repositories'> {
  dryRun: boolean;
  repositories: { repository: string; upstream: string; name: string; tags: string[]; links: number }[];
}

export interface Selection {
  /** Glob over the client name or `<upstream>/<name>`; null for every repository. */
  pattern: string | null;
  /** Only this upstream (a name or an alias); null for every upstream. */
  upstream: string | null;
}

type Named = RepoRef & { repository: string };

const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());

type GlobToken = { kind: 'char'; ch: string } | { kind: 'one' } | { kind: 'star' } | { kind: 'globstar' };

/** A compiled pattern. Matching simulates the pattern as an automaton: linear in the name for any pattern, no backtracking. */
export interface Pattern {
  test(name: string): boolean;
}

/** Compile a glob; throws NAME_INVALID for a pattern no repository name could match. */
export function compilePattern(pattern: string): Pattern {
  if (pattern.length === 0 || pattern.length > MAX_PATTERN || !/^[a-zA-Z0-9._\-/:*?]+$/.test(pattern)) {
    throw registryError('NAME_INVALID', `"${pattern.slice(0, 80)}" is not a repository pattern: use name characters and the globs * (within a component), ** (across components), ? (one character)`);
  }
  const tokens: GlobToken[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] ?? '';
    if (c === '*' && pattern[i + 1] === '*') {
      while (pattern[i + 1] === '*') i += 1;
      tokens.push({ kind: 'globstar' });
    } else if (c === '*') tokens.push({ kind: 'star' });
    else if (c === '?') tokens.push({ kind: 'one' });
    else tokens.push({ kind: 'char', ch: c.toLowerCase() });
  }
  return { test: (name) => globMatch(tokens, name.toLowerCase()) };
}

function globMatch(tokens: readonly GlobToken[], text: string): boolean {
  const m = tokens.length;
  let states = new Uint8Array(m + 1);
  const close = (set: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> => {
    // A star or globstar may match nothing: its successor is live too (tokens run left to right).
    for (let i = 0; i < m; i++) {
      const k = tokens[i]?.kind;
      if (set[i] && (k === 'star' || k === 'globstar')) set[i + 1] = 1;
    }
    return set;
  };
  states[0] = 1;
  close(states);
  for (const c of text) {
    const next = new Uint8Array(m + 1);
    let any = false;
    for (let i = 0; i < m; i++) {
      if (!states[i]) continue;
      const t = tokens[i];
      if (!t) continue;
      if (t.kind === 'char' ? t.ch === c : t.kind === 'one' ? c !== '/' : false) next[i + 1] = 1;
      else if (t.kind === 'star' ? c !== '/' : t.kind === 'globstar') next[i] = 1;
      else continue;
      any = true;
    }
    if (!any) return false;
    states = close(next);
  }
  return states[m] === 1;
}

export class CacheInventory {
  constructor(
    private readonly router: Router,
    private readonly meta: MetadataStore,
    private readonly lifecycle: CacheLifecycle,
  ) {}

  /** Every cached repository the selection matches, sorted by client name. */
  async select(sel: Selection): Promise<Named[]> {
    const re = sel.pattern !== null ? compilePattern(sel.pattern) : null;
    let only: string | null = null;
    if (sel.upstream !== null) {
      const u = this.router.upstream(sel.upstream);
      if (!u) throw registryError('NAME_UNKNOWN', `"${sel.upstream}" is not an upstream this mirror serves`, { detail: { upstream: sel.upstream } });
      only = u.name;
    }
    const out: Named[] = [];
    for (const [upstream, name] of await this.meta.repositories()) {
      if (only !== null && upstream !== only) continue;
      const repository = this.router.publicName(upstream, name);
      if (re && !re.test(repository) && !re.test(`${upstream}/${name}`)) continue;
      out.push({ upstream, name, repository });
    }
    return out.sort((a, b) => (a.repository < b.repository ? -1 : a.repository > b.repository ? 1 : 0));
  }

  /**
   * One page of the listing, after `last` (a client name, as the catalog pages). `next` is the
   * `last` of the following page, or null at the end.
   */
  async list(sel: Selection, page: { n: number; last: string | null }): Promise<{ repositories: RepositorySummary[]; next: string | null }> {
    const all = await this.select(sel);
    const after = page.last !== null ? all.filter((r) => r.repository > page.last!) : all;
    const slice = after.slice(0, page.n);
    const found = await this.describe(slice);
    const next = page.n > 0 && after.length > page.n ? (slice[slice.length - 1]?.repository ?? null) : null;
    return { repositories: found.map(({ named, inv }) => summary(named, inv)), next };
  }

  /** Every matching repository (the CLI's table). */
  async all(sel: Selection): Promise<RepositorySummary[]> {
    return (await this.describe(await this.select(sel))).map(({ named, inv }) => summary(named, inv));
  }

  /** One repository, named as a client pulls it (`ns` as `?ns=` would); NAME_UNKNOWN when nothing is cached. */
  async detail(requested: string, ns: string | undefined): Promise<RepositoryDetail> {
    const routed = this.router.route(requested, ns);
    const named: Named = { upstream: routed.upstream.name, name: routed.name, repository: this.router.publicName(routed.upstream.name, routed.name) };
    const [hit] = await this.describe([named]);
    if (!hit) throw registryError('NAME_UNKNOWN', `nothing is cached for ${named.upstream}/${named.name}`, { detail: { upstream: named.upstream, name: named.name } });
    const { inv } = hit;
    return {
      repository: named.repository, upstream: inv.upstream, name: inv.name, bytes: inv.bytes, blobs: inv.blobs,
      lastPulled: iso(inv.lastPulled), pinned: inv.pinned, pins: inv.pins,
      tagTtl: this.tagTtl(inv.upstream),
      tags: inv.tags.map((t) => ({
        tag: t.tag, digest: t.digest, mediaType: t.mediaType, size: t.size, lastPulled: iso(t.lastPulled),
        lastChecked: iso(t.checkedAt) ?? '', fetched: iso(t.fetchedAt) ?? '', stale: t.stale, pinned: t.pinned,
      })),
      manifests: inv.manifests.map((m) => ({
        digest: m.digest, mediaType: m.mediaType, size: m.size, linked: iso(m.linkedAt), lastPulled: iso(m.lastPulled), tags: m.tags,
      })),
    };
  }

  /** Purge every repository the selection matches (or say what would go). At least one of pattern and upstream is required. */
  async purge(sel: Selection, dryRun: boolean): Promise<PurgeResult> {
    if (sel.pattern === null && sel.upstream === null) {
      throw registryError('NAME_INVALID', 'say what to purge: a "pattern" (`library/*`, `**` for everything) or an "upstream"');
    }
    const chosen = await this.select(sel);
    const report = await this.lifecycle.purgeRepositories(chosen, { dryRun });
    const names = new Map(chosen.map((c) => [`${c.upstream}\u0000${c.name}`, c.repository]));
    return {
      ...report,
      dryRun,
      repositories: report.repositories.map((r) => ({
        repository: names.get(`${r.upstream}\u0000${r.name}`) ?? `${r.upstream}/${r.name}`, ...r,
      })),
    };
  }

  private tagTtl(upstream: string): number | null {
    return this.router.upstream(upstream)?.tagTtl ?? null;
  }

  private async describe(repos: Named[]): Promise<{ named: Named; inv: RepoInventory }[]> {
    const invs = await this.lifecycle.inventory(repos, { tagTtl: (u) => this.tagTtl(u) });
    const byKey = new Map(repos.map((r) => [`${r.upstream}\u0000${r.name}`, r]));
    const out: { named: Named; inv: RepoInventory }[] = [];
    for (const inv of invs) {
      const named = byKey.get(`${inv.upstream}\u0000${inv.name}`);
      if (named) out.push({ named, inv });
    }
    return out;
  }
}

function summary(named: Named, inv: RepoInventory): RepositorySummary {
  return {
    repository: named.repository, upstream: inv.upstream, name: inv.name,
    tags: inv.tags.length, tagNames: inv.tags.slice(0, LISTED_TAGS).map((t) => t.tag),
    manifests: inv.manifests.length, bytes: inv.bytes, blobs: inv.blobs,
    lastPulled: iso(inv.lastPulled), pinned: inv.pinned,
  };
}
