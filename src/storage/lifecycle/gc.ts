/**
 * Garbage collection and repair. Blobs and manifests nothing holds (no tag, link or pin, directly
 * or through an index), staged bytes a failed write left behind, and records that name content
 * which is not there (repaired: dropped). Orphans younger than a grace period are left alone: a
 * fill and the manifest that names it are written a moment apart. `scan` and `repairRecords`
 * are also the start-up check after a crash.
 */
import { parseDigest, type Digest } from '../../oci/reference.js';
import { eachLimit, Pacer } from './batch.js';
import { readHolds, repoLost, type Holds } from './holds.js';
import { HostedLinkSweep } from './hosted.js';
import { removeBlob } from './removal.js';
import type { GcItem, GcReport, LifecycleContext } from './types.js';

export interface GcOptions {
  dryRun: boolean;
  graceMs: number;
  stagingStaleAfter: number;
  /** Report each blob that would go (dry runs only). */
  list?: boolean;
}

/** Manifests read at once while learning the reference graph. */
const LEARN_CONCURRENCY = 8;

/**
 * Bring the index in line with the store: every blob with its size, every manifest record read
 * (only those the graph does not know yet: manifests are immutable). Records whose manifest bytes
 * are missing are dropped (`repair`) and counted.
 */
export async function scan(ctx: LifecycleContext, repair: boolean): Promise<number> {
  const { usage, graph, records, driver } = ctx;
  await usage.resync(driver, ctx.stopping);
  let missing = 0;
  const recorded = new Set<string>();
  const unknown: Digest[] = [];
  for await (const raw of records.manifestDigests()) {
    recorded.add(raw);
    if (graph.has(raw)) continue;
    const d = parseDigest(raw);
    if (!d || (!usage.has(d) && !(await driver.statBlob(d)))) {
      missing += 1;
      if (repair) {
        await records.deleteManifest(raw);
        ctx.cache?.forget(raw);
        ctx.log.warn({ digest: raw }, 'dropped a manifest record whose bytes are missing');
      }
      continue;
    }
    unknown.push(d);
  }
  await eachLimit(unknown, LEARN_CONCURRENCY, (d) => graph.learn(d));
  for (const d of graph.digests()) {
    if (!recorded.has(d) && !(await records.getManifest(d))) graph.unlearn(d);
  }
  return missing;
}

/**
 * Tag and link records that name a manifest the store does not have are dropped, so a tag
 * never points at missing content. Each is checked against the store before it goes (a
 * manifest can be written a moment before the index hears of it).
 */
export async function repairRecords(ctx: LifecycleContext, holds: Holds, dry: boolean): Promise<number> {
  const { graph, records, driver } = ctx;
  let fixed = 0;
  const present = async (raw: string): Promise<boolean> => {
    if (graph.has(raw)) return true;
    const d = parseDigest(raw);
    if (!d || !(await records.getManifest(d)) || !(await driver.statBlob(d))) return false;
    await graph.learn(d);
    return true;
  };
  for (const [d, tags] of [...holds.tags]) {
    if (await present(d)) continue;
    fixed += tags.length;
    holds.tags.delete(d);
    if (dry) continue;
    for (const t of tags) {
      await records.deleteTag(t.upstream, t.name, t.tag);
      repoLost(records, holds, t);
    }
    ctx.log.warn({ digest: d, tags: tags.map((t) => `${t.upstream}/${t.name}:${t.tag}`) }, 'dropped tag records naming a missing manifest');
  }
  for (const [d, links] of [...holds.links]) {
    if (await present(d)) continue;
    fixed += links.length;
    holds.links.delete(d);
    if (dry) continue;
    for (const l of links) {
      await records.unlink(l.upstream, l.name, d);
      repoLost(records, holds, l);
    }
  }
  return fixed;
}

/** One collection (run on the lifecycle's change queue). With dryRun nothing is changed. */
export async function collect(ctx: LifecycleContext, o: GcOptions): Promise<GcReport> {
  const { usage, graph, records } = ctx;
  const began = ctx.now();
  const dry = o.dryRun;
  const report: GcReport = { dryRun: dry, blobs: 0, bytes: 0, manifests: 0, records: 0, spoolFiles: 0, spoolBytes: 0, ms: 0 };
  const items: GcItem[] = [];
  await graph.learned();
  report.records += await scan(ctx, !dry);
  const holds = await readHolds(records);
  report.records += await repairRecords(ctx, holds, dry);

  // Mark: what tags, links and pins hold, and everything those manifests name.
  const pace = new Pacer();
  const live = new Set<string>(holds.pinned);
  const visited = new Set<string>();
  const stack: string[] = [...holds.tags.keys(), ...holds.links.keys(), ...holds.pinned];
  for (let d = stack.pop(); d !== undefined; d = stack.pop()) {
    if (visited.has(d)) continue;
    await pace.tick();
    visited.add(d);
    live.add(d);
    const refs = graph.refs(d);
    if (!refs) continue;
    for (const b of refs.blobs) live.add(b);
    stack.push(...refs.children);
  }
  // Anything used since this pass began is young, whatever the grace period: a push that wrote its
  // records after readHolds marks its content used, and the checks below see that mark.
  const cutoff = Math.min(ctx.now() - o.graceMs, began);
  const old = (d: string) => (usage.get(d)?.access ?? 0) < cutoff;
  /** Run a removal, registered (synchronously, right after the last check) until it ends. */
  const removing = async (d: string, work: () => Promise<void>): Promise<void> => {
    const p = work();
    ctx.removing.set(d, p.catch(() => undefined));
    try {
      await p;
    } finally {
      ctx.removing.delete(d);
    }
  };
  const busy = (d: string) => ctx.cache?.filling(d) ?? false;

  // Sweep: unheld manifests (records first, bytes below), then blobs nothing kept names.
  const dead = new Set<Digest>();
  for (const d of graph.digests()) if (!live.has(d) && old(d)) dead.add(d);
  const keptRefs = new Set<string>();
  for (const [d, refs] of graph.entries()) {
    await pace.tick();
    if (dead.has(d)) continue;
    for (const b of refs.blobs) keptRefs.add(b);
    for (const c of refs.children) keptRefs.add(c);
  }
  for (const d of dead) {
    // Checked again at the moment of removal: a push may have marked it used since.
    if (!dry && !old(d)) {
      dead.delete(d);
      continue;
    }
    report.manifests += 1;
    if (dry) continue;
    await removing(d, async () => {
      await records.deleteManifest(d);
      ctx.cache?.forget(d);
      graph.unlearn(d);
    });
  }
  // Hosted blob links (hosted.ts): a fresh one keeps its blob; the rest go with the bytes.
  const hostedLinks = await HostedLinkSweep.read(records.hosted, cutoff, async (d) => usage.has(d) || (await ctx.driver.statBlob(d as Digest)) !== null);
  for (const [d, e] of usage.entries()) {
    await pace.tick();
    if (live.has(d) || keptRefs.has(d) || busy(d)) continue;
    if (graph.has(d) && !dead.has(d)) continue;
    if (!dead.has(d) && !old(d)) continue;
    if (!(await hostedLinks.mayRemove(d))) continue;
    if (dry) {
      report.blobs += 1;
      report.bytes += e.size;
      items.push({ digest: d, kind: dead.has(d as Digest) ? 'manifest' : 'blob', bytes: e.size });
    } else {
      // Checked again at the moment of removal (a push may have marked it used since).
      if (!old(d)) continue;
      await removing(d, () => hostedLinks.remove(d, () => removeBlob(ctx, d, 'gc', report)));
    }
  }
  report.records += await hostedLinks.repair(dry);
  const s = await ctx.driver.sweepStaging(o.stagingStaleAfter, dry);
  report.spoolFiles = s.files;
  report.spoolBytes = s.bytes;
  report.ms = ctx.now() - began;
  ctx.log.info(report, dry ? 'garbage collection (dry run): nothing was changed' : 'garbage collection done');
  if (o.list && dry) report.items = items;
  return report;
}
