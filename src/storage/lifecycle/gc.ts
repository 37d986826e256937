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

/** Marks of a digest id during a collection. */
const LIVE = 1;
const VISITED = 2;
const KEPT = 4;
const DEAD = 8;

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
  // The two listings overlap: the blob tree and the record tree are separate folders (or key
  // ranges), and the walk over the records (four folders per repository) is most of a pass; one
  // after the other, the pass waited on each in turn. Reading the holds before the scan ends is
  // safe for the same reason reading them at all is: what is written after they are read is used
  // after the pass began, so it is young (cutoff below).
  const [missing, holds] = await Promise.all([scan(ctx, !dry), readHolds(records)]);
  report.records += missing;
  report.records += await repairRecords(ctx, holds, dry);

  const { table } = usage;
  // Marks per digest id (digest-table.ts), not sets of strings: one byte each for the whole pass.
  // Ids freed meanwhile are not handed out again until it ends (pin), so a mark never lands on
  // a digest stored during the pass; ids handed out during it have no mark (they are young).
  table.pin();
  try {
    const flags = new Uint8Array(table.capacity);
    const flag = (id: number): number => flags[id] ?? 0;
    const pace = new Pacer();

    // Mark: what tags, links and pins hold, and everything those manifests name.
    const stack: number[] = [];
    const root = (d: string): void => {
      const id = table.idOf(d);
      if (id >= 0) stack.push(id);
    };
    for (const d of holds.tags.keys()) root(d);
    for (const d of holds.links.keys()) root(d);
    for (const d of holds.pinned) root(d);
    for (let id = stack.pop(); id !== undefined; id = stack.pop()) {
      if (flag(id) & VISITED) continue;
      await pace.tick();
      flags[id] = flag(id) | VISITED | LIVE;
      graph.forEachEdge(id, (t, child) => {
        if (child) stack.push(t);
        else flags[t] = flag(t) | LIVE;
      });
    }
    // Anything used since this pass began is young, whatever the grace period: a push that wrote its
    // records after readHolds marks its content used, and the checks below see that mark.
    const cutoff = Math.min(ctx.now() - o.graceMs, began);
    const old = (id: number): boolean => (usage.hasId(id) ? usage.accessOf(id) : 0) < cutoff;
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
    const dead: number[] = [];
    graph.forEachManifestId((id) => {
      if (!(flag(id) & LIVE) && old(id)) {
        flags[id] = flag(id) | DEAD;
        dead.push(id);
      }
    });
    graph.forEachManifestId((id) => {
      if (flag(id) & DEAD) return;
      graph.forEachEdge(id, (t) => {
        flags[t] = flag(t) | KEPT;
      });
    });
    for (const id of dead) {
      // Checked again at the moment of removal: a push may have marked it used since.
      if (!dry && !old(id)) {
        flags[id] = flag(id) & ~DEAD;
        continue;
      }
      report.manifests += 1;
      if (dry) continue;
      const d = table.digest(id);
      await removing(d, async () => {
        await records.deleteManifest(d);
        ctx.cache?.forget(d);
        graph.unlearn(d);
      });
    }
    // Hosted blob links (hosted.ts): a fresh one keeps its blob; the rest go with the bytes.
    const hostedLinks = await HostedLinkSweep.read(records.hosted, cutoff, async (d) => usage.has(d) || (await ctx.driver.statBlob(d as Digest)) !== null);
    const end = table.end;
    for (let id = 0; id < end; id++) {
      if (!usage.hasId(id)) continue;
      await pace.tick();
      const f = flag(id);
      if (f & (LIVE | KEPT)) continue;
      if (!(f & DEAD) && (graph.isManifestId(id) || !old(id))) continue;
      const d = table.digest(id);
      if (busy(d) || !(await hostedLinks.mayRemove(d))) continue;
      if (dry) {
        const bytes = usage.sizeOf(id);
        report.blobs += 1;
        report.bytes += bytes;
        items.push({ digest: d, kind: f & DEAD ? 'manifest' : 'blob', bytes });
      } else {
        // Checked again at the moment of removal (a push may have marked it used since).
        if (!usage.hasId(id) || !old(id)) continue;
        await removing(d, () => hostedLinks.remove(d, () => removeBlob(ctx, d, 'gc', report)));
      }
    }
    report.records += await hostedLinks.repair(dry);
  } finally {
    table.unpin();
  }
  const s = await ctx.driver.sweepStaging(o.stagingStaleAfter, dry);
  report.spoolFiles = s.files;
  report.spoolBytes = s.bytes;
  report.ms = ctx.now() - began;
  ctx.log.info(report, dry ? 'garbage collection (dry run): nothing was changed' : 'garbage collection done');
  if (o.list && dry) report.items = items;
  return report;
}
