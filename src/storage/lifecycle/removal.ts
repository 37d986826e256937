/**
 * Removing content, shared by eviction, GC and purge, always in the order that keeps the store
 * consistent if the process dies half way: tag and link records first, then the manifest record,
 * then the bytes. A crash at any step leaves no tag naming missing content. Pinned digests and
 * blobs with a fill in flight are never removed. A blob being read is safe to remove: readers
 * hold an open descriptor (or buffer) and keep reading.
 */
import type { Digest } from '../../oci/reference.js';
import { repoId, repoLost, type Holds, type RepoRef } from './holds.js';
import type { LifecycleContext, RemovalReport } from './types.js';

export type Reason = 'evict' | 'gc' | 'purge';

/** Evict a top-level manifest: its tags and links first, then it, its children and their blobs. */
export async function evictImage(ctx: LifecycleContext, root: Digest, holds: Holds, report: RemovalReport): Promise<Digest[]> {
  for (const t of holds.tags.get(root) ?? []) {
    await ctx.records.deleteTag(t.upstream, t.name, t.tag);
    repoLost(ctx.records, holds, t);
    report.tags += 1;
  }
  holds.tags.delete(root);
  return dropManifest(ctx, root, holds, 'evict', report, null);
}

/**
 * Remove a manifest nothing keeps: its links (all of them, or those of `scope` when purging one
 * repository), its record, its bytes, then the blobs and child manifests only it kept. Returns
 * children that lost their last index but that a tag still names (they stay, as images of their own).
 */
export async function dropManifest(
  ctx: LifecycleContext, digest: Digest, holds: Holds, reason: Reason, report: RemovalReport, scope: RepoRef | null,
): Promise<Digest[]> {
  const refs = ctx.graph.refs(digest);
  await dropLinks(ctx, digest, holds, report, scope);
  await ctx.records.deleteManifest(digest);
  ctx.cache?.forget(digest);
  ctx.graph.unlearn(digest);
  report.manifests += 1;
  await removeBlobIfFree(ctx, digest, holds, reason, report);
  for (const b of refs?.blobs ?? []) await removeBlobIfFree(ctx, b, holds, reason, report);
  const survivors: Digest[] = [];
  for (const c of refs?.children ?? []) {
    if (!ctx.graph.has(c) || ctx.graph.parentsOf(c) > 0 || holds.pinned.has(c)) continue;
    if ((holds.tags.get(c)?.length ?? 0) > 0) {
      survivors.push(c);
      continue;
    }
    if (scope && (holds.links.get(c) ?? []).some((l) => repoId(l) !== repoId(scope))) continue;
    survivors.push(...(await dropManifest(ctx, c, holds, reason, report, scope)));
  }
  return survivors;
}

export async function dropLinks(ctx: LifecycleContext, digest: string, holds: Holds, report: RemovalReport, scope: RepoRef | null): Promise<void> {
  const links = holds.links.get(digest) ?? [];
  const keep: RepoRef[] = [];
  for (const l of links) {
    if (scope && repoId(l) !== repoId(scope)) {
      keep.push(l);
      continue;
    }
    await ctx.records.unlink(l.upstream, l.name, digest);
    repoLost(ctx.records, holds, l);
    report.links += 1;
  }
  if (keep.length > 0) holds.links.set(digest, keep);
  else holds.links.delete(digest);
}

export async function removeBlobIfFree(ctx: LifecycleContext, digest: Digest, holds: Holds, reason: Reason, report: RemovalReport): Promise<void> {
  if (ctx.graph.isReferenced(digest) || ctx.graph.has(digest) || holds.pinned.has(digest) || holds.hostedBlobs.has(digest)) return;
  if (ctx.cache?.filling(digest)) return;
  await removeBlob(ctx, digest, reason, report);
}

export async function removeBlob(ctx: LifecycleContext, digest: Digest, reason: Reason, report: { blobs: number; bytes: number }): Promise<void> {
  const e = ctx.usage.remove(digest);
  const removed = await ctx.driver.deleteBlob(digest);
  if (!e && !removed) return;
  const size = e?.size ?? 0;
  report.blobs += 1;
  report.bytes += size;
  if (reason !== 'purge') {
    ctx.metrics.evictions.inc();
    ctx.metrics.evictedBytes.inc(size);
  }
  if (reason === 'evict') {
    ctx.evictions.blobs += 1;
    ctx.evictions.bytes += size;
  }
}
