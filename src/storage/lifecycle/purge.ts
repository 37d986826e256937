/**
 * Purge. An operator (or a client, with storage.deleteEnabled) removes a repository, a tag or a
 * manifest; content another repository, tag, index or pin still holds stays. Several whole
 * repositories at once (purge by pattern) share one reading of the records, and `planPurge`
 * says what such a purge would remove without changing anything (the dry run).
 */
import { parseDigest } from '../../oci/reference.js';
import { readHolds, repoId, repoLost, type Holds, type RepoRef } from './holds.js';
import { reach } from './inventory.js';
import { dropLinks, dropManifest } from './removal.js';
import { emptyRemoval, type LifecycleContext, type PurgeReport } from './types.js';

/** One repository's share of a purge of several. */
export interface RepoPurge extends RepoRef {
  /** Its tags that go (or would). */
  tags: string[];
  /** Its manifest links that go (or would). */
  links: number;
}

/** A purge of several whole repositories: totals as PurgeReport counts them, and each repository. */
export interface PurgeManyReport extends PurgeReport {
  repositories: RepoPurge[];
}

/**
 * Remove a repository (`reference` null), a tag, or a manifest by digest (run on the lifecycle's
 * change queue). Null when the cache knows nothing by that name.
 */
export async function purge(ctx: LifecycleContext, upstream: string, name: string, reference: string | null): Promise<PurgeReport | null> {
  await ctx.graph.learned();
  return purgeWith(ctx, await readHolds(ctx.records), upstream, name, reference);
}

/**
 * Remove several whole repositories (on the change queue), one after the other over one reading
 * of the records: content shared only among them goes with the last; content anything else holds
 * stays. Repositories the cache knows nothing of are left out of the report.
 */
export async function purgeMany(ctx: LifecycleContext, repos: readonly RepoRef[]): Promise<PurgeManyReport> {
  await ctx.graph.learned();
  const holds = await readHolds(ctx.records);
  const { named, tags } = namedBy(holds, repos);
  const total: PurgeManyReport = { ...emptyRemoval(), kept: 0, repositories: [] };
  for (const r of repos) {
    const report = await purgeWith(ctx, holds, r.upstream, r.name, null);
    if (!report) continue;
    total.repositories.push({ upstream: r.upstream, name: r.name, tags: (tags.get(repoId(r)) ?? []).sort(), links: report.links });
    total.tags += report.tags;
    total.links += report.links;
    total.manifests += report.manifests;
    total.blobs += report.blobs;
    total.bytes += report.bytes;
  }
  // Counted once the last purge is done: a manifest one repository's purge kept (another in the
  // set still held it) and a later one's removed is not kept.
  for (const d of named) if (ctx.graph.has(d)) total.kept += 1;
  return total;
}

/**
 * What purgeMany would remove, changing nothing: the records of the repositories, and the
 * manifests and blobs they reach that nothing outside them (another repository's tag or link, a
 * pin, a manifest left in the store) still reaches. Blobs count manifest bytes, as purge does.
 */
export async function planPurge(ctx: LifecycleContext, repos: readonly RepoRef[]): Promise<PurgeManyReport> {
  await ctx.graph.learned();
  const holds = await readHolds(ctx.records);
  const { named, tags, links, outside } = namedBy(holds, repos);
  const report: PurgeManyReport = { ...emptyRemoval(), kept: 0, repositories: [] };
  for (const r of repos) {
    const t = (tags.get(repoId(r)) ?? []).sort();
    const n = links.get(repoId(r)) ?? 0;
    if (t.length === 0 && n === 0) continue;
    report.repositories.push({ upstream: r.upstream, name: r.name, tags: t, links: n });
    report.tags += t.length;
    report.links += n;
  }
  const candidates = reach(ctx, named);
  // Every manifest the purge does not reach stays, and keeps what it names.
  const keepRoots = new Set([...outside, ...holds.pinned]);
  for (const d of ctx.graph.digests()) if (!candidates.has(d)) keepRoots.add(d);
  const kept = reach(ctx, keepRoots);
  for (const d of candidates) {
    if (kept.has(d)) {
      if (named.has(d) && ctx.graph.has(d)) report.kept += 1;
      continue;
    }
    if (ctx.graph.has(d)) report.manifests += 1;
    const e = ctx.usage.get(d);
    if (!e || ctx.cache?.filling(d)) continue;
    report.blobs += 1;
    report.bytes += e.size;
  }
  return report;
}

/**
 * Over the records: the digests the repositories' tags and links name, their tags and link
 * counts by repository, and the digests tags and links of every other repository name.
 */
function namedBy(holds: Holds, repos: readonly RepoRef[]): {
  named: Set<string>; tags: Map<string, string[]>; links: Map<string, number>; outside: Set<string>;
} {
  const ids = new Set(repos.map(repoId));
  const named = new Set<string>();
  const outside = new Set<string>();
  const tags = new Map<string, string[]>();
  const links = new Map<string, number>();
  for (const [digest, refs] of holds.tags) {
    for (const t of refs) {
      const id = repoId(t);
      if (!ids.has(id)) {
        outside.add(digest);
        continue;
      }
      named.add(digest);
      const list = tags.get(id);
      if (list) list.push(t.tag);
      else tags.set(id, [t.tag]);
    }
  }
  for (const [digest, refs] of holds.links) {
    for (const l of refs) {
      const id = repoId(l);
      if (!ids.has(id)) {
        outside.add(digest);
        continue;
      }
      named.add(digest);
      links.set(id, (links.get(id) ?? 0) + 1);
    }
  }
  return { named, tags, links, outside };
}

async function purgeWith(
  ctx: LifecycleContext, holds: Holds, upstream: string, name: string, reference: string | null,
): Promise<PurgeReport | null> {
  const { graph, records } = ctx;
  const scope: RepoRef = { upstream, name };
  const report: PurgeReport = { ...emptyRemoval(), kept: 0 };
  const affected = new Set<string>();
  const inRepo = (r: RepoRef) => r.upstream === upstream && r.name === name;
  const byDigest = reference !== null && reference.includes(':');

  for (const [digest, tags] of [...holds.tags]) {
    const going = tags.filter((t) => inRepo(t) && (reference === null || (byDigest ? digest === reference : t.tag === reference)));
    if (going.length === 0) continue;
    for (const t of going) {
      await records.deleteTag(t.upstream, t.name, t.tag);
      repoLost(records, holds, t);
      report.tags += 1;
    }
    const left = tags.filter((t) => !going.includes(t));
    if (left.length > 0) holds.tags.set(digest, left);
    else holds.tags.delete(digest);
    affected.add(digest);
  }
  for (const [digest, links] of [...holds.links]) {
    if (!links.some(inRepo)) continue;
    const wanted = reference === null || (byDigest ? digest === reference : affected.has(digest));
    // A tag purge keeps the link while another tag of this repository still names the manifest.
    if (!wanted || (holds.tags.get(digest) ?? []).some(inRepo)) continue;
    await dropLinks(ctx, digest, holds, report, scope);
    affected.add(digest);
  }
  if (report.tags === 0 && report.links === 0) return null;
  for (const raw of affected) {
    ctx.cache?.forget(raw);
    const d = parseDigest(raw);
    if (!d || !graph.has(d)) continue;
    if (held(ctx, d, holds)) {
      report.kept += 1;
      continue;
    }
    await dropManifest(ctx, d, holds, 'purge', report, scope);
  }
  ctx.log.info({ upstream, repository: name, reference, ...report }, 'purged from the cache');
  return report;
}

function held(ctx: LifecycleContext, d: string, holds: Holds): boolean {
  return (
    ctx.graph.parentsOf(d) > 0 ||
    holds.pinned.has(d) ||
    (holds.tags.get(d)?.length ?? 0) > 0 ||
    (holds.links.get(d)?.length ?? 0) > 0
  );
}
