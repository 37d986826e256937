/**
 * Eviction. Above highWatermark × maxSize, whole images go, least recently used first, until
 * usage is under lowWatermark × maxSize. An image is a manifest no kept index refers to, with its
 * children; it goes with its tag records and repository links and with the blobs no kept
 * manifest needs (src/storage/lifecycle/removal.ts). Blobs nothing names go in the same order.
 */
import type { Digest } from '../../oci/reference.js';
import { readHolds, type Holds } from './holds.js';
import { evictImage, removeBlobIfFree } from './removal.js';
import { emptyRemoval, type EvictionReport, type LifecycleContext } from './types.js';
import { older } from './usage.js';

export interface EvictionLimits {
  maxSize: number | null;
  highWatermark: number;
  lowWatermark: number;
}

interface Unit {
  kind: 'image' | 'blob';
  digest: Digest;
  access: number;
  seq: number;
}

/** Is usage above the high mark (so a pass is due)? */
export function overHighMark(ctx: LifecycleContext, limits: EvictionLimits): boolean {
  return limits.maxSize !== null && ctx.usage.bytes > limits.maxSize * limits.highWatermark;
}

/** One eviction pass (run on the lifecycle's change queue). */
export async function evictPass(ctx: LifecycleContext, limits: EvictionLimits): Promise<EvictionReport> {
  const { usage, graph } = ctx;
  const report: EvictionReport = { ...emptyRemoval(), before: usage.bytes, after: usage.bytes };
  if (limits.maxSize === null) return report;
  await graph.learned();
  if (!overHighMark(ctx, limits)) return report;
  const low = limits.maxSize * limits.lowWatermark;
  const holds = await readHolds(ctx.records);
  const units = candidates(ctx, holds);
  for (let i = 0; i < units.length && usage.bytes > low; i++) {
    const u = units[i];
    if (!u) break;
    if (u.kind === 'image') {
      // Used since the pass began (or now held by an index): no longer least recently used.
      if (!graph.has(u.digest) || graph.parentsOf(u.digest) > 0) continue;
      if (graph.groupStamp(u.digest, usage).seq !== u.seq) continue;
      const survivors = await evictImage(ctx, u.digest, holds, report);
      // Children a tag still names become images of their own; they take their place in line.
      for (const s of survivors) {
        const unit: Unit = { kind: 'image', digest: s, ...graph.groupStamp(s, usage) };
        let at = i + 1;
        while (at < units.length && older(units[at] as Unit, unit) < 0) at++;
        units.splice(at, 0, unit);
      }
    } else {
      const e = usage.get(u.digest);
      if (!e || e.seq !== u.seq || graph.isReferenced(u.digest) || graph.has(u.digest)) continue;
      await removeBlobIfFree(ctx, u.digest, holds, 'evict', report);
    }
  }
  report.after = usage.bytes;
  ctx.evictions.runs += 1;
  ctx.evictions.lastRunAt = ctx.now();
  ctx.log.info(
    { manifests: report.manifests, blobs: report.blobs, bytes: report.bytes, tags: report.tags, before: report.before, after: report.after, maxSize: limits.maxSize },
    'evicted least recently used content',
  );
  if (usage.bytes > low) {
    ctx.log.warn({ usage: usage.bytes, target: low, pinned: holds.pinned.size }, 'pinned content and fills in flight keep usage above the low watermark');
  }
  return report;
}

/** Eviction candidates, least recently used first: images (top-level manifests) and orphan blobs. */
function candidates(ctx: LifecycleContext, holds: Holds): Unit[] {
  const { usage, graph } = ctx;
  const out: Unit[] = [];
  for (const d of graph.digests()) {
    if (graph.parentsOf(d) > 0 || holds.pinned.has(d) || !usage.has(d)) continue;
    out.push({ kind: 'image', digest: d, ...graph.groupStamp(d, usage) });
  }
  for (const [d, e] of usage.entries()) {
    if (graph.has(d) || graph.isReferenced(d) || holds.pinned.has(d) || holds.hostedBlobs.has(d)) continue;
    out.push({ kind: 'blob', digest: d, access: e.access, seq: e.seq });
  }
  return out.sort(older);
}
