/**
 * Purge. An operator (or a client, with storage.deleteEnabled) removes a repository, a tag or a
 * manifest; content another repository, tag, index or pin still holds stays.
 */
import { parseDigest } from '../../oci/reference.js';
import { readHolds, repoLost, type Holds, type RepoRef } from './holds.js';
import { dropLinks, dropManifest } from './removal.js';
import { emptyRemoval, type LifecycleContext, type PurgeReport } from './types.js';

/**
 * Remove a repository (`reference` null), a tag, or a manifest by digest (run on the lifecycle's
 * change queue). Null when the cache knows nothing by that name.
 */
export async function purge(ctx: LifecycleContext, upstream: string, name: string, reference: string | null): Promise<PurgeReport | null> {
  const { graph, records } = ctx;
  await graph.learned();
  const holds = await readHolds(records);
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
