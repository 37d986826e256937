/**
 * Hosted repositories in the lifecycle. Their content is never evicted by the cap: every
 * manifest a hosted repository holds (a tag or a manifest link) is a root like a pin, so GC and
 * eviction keep it and everything it names; blobs pushed or mounted into a hosted repository are
 * kept from eviction too, while a manifest that names them is still on its way. GC removes what
 * no hosted (or mirrored) manifest references once the grace period has passed: a blob's last
 * use is its commit or mount, so a push in progress is never collected under it.
 *
 * The hooks into the shared passes are small on purpose (holds.ts reads these holds; eviction
 * and removal skip `hostedBlobs`).
 *
 * Imports: records only.
 */
import type { HostedRecords } from '../records.js';

export interface HostedHolds {
  /** Manifests a hosted tag or manifest link holds. */
  manifests: Set<string>;
  /** Blobs linked into a hosted repository. */
  blobs: Set<string>;
}

/** What hosted repositories hold, as the records say now. */
export async function readHostedHolds(records: HostedRecords): Promise<HostedHolds> {
  const out: HostedHolds = { manifests: new Set(), blobs: new Set() };
  for await (const e of records.entries()) {
    if (e.kind === 'manifest') out.manifests.add(e.digest);
    else if (e.kind === 'blob') out.blobs.add(e.digest);
    else {
      const t = await records.getTag(e.name, e.tag);
      if (t) out.manifests.add(t.digest);
    }
  }
  return out;
}

/**
 * GC and hosted blob links: when GC removes a blob, the hosted repositories' links to it go in
 * the same pass, so a repository never serves a digest again that was removed from under it
 * (the same bytes pushed into another repository later would otherwise make the old link live).
 *
 *  - A link younger than the grace period keeps its blob: a push or mount just linked it (on any
 *    replica, whose access times this process's usage index may not have seen yet).
 *  - Links go before the bytes (records first, as removal.ts does), and after the bytes are gone
 *    a link re-made meanwhile (a mount racing the removal) is dropped too.
 *  - Links to bytes the store does not have (a crash between the two steps, a race) are repaired
 *    at the end of each pass.
 */
export class HostedLinkSweep {
  private constructor(
    private readonly records: HostedRecords,
    /** Digest → hosted repositories linking it, as the records said when the pass read them. */
    private readonly links: Map<string, string[]>,
    private readonly cutoff: number,
    private readonly exists: (digest: string) => Promise<boolean>,
  ) {}

  /** Read every hosted blob link once for this pass. */
  static async read(records: HostedRecords, cutoff: number, exists: (digest: string) => Promise<boolean>): Promise<HostedLinkSweep> {
    const links = new Map<string, string[]>();
    for await (const e of records.entries()) {
      if (e.kind !== 'blob') continue;
      const names = links.get(e.digest);
      if (names) names.push(e.name);
      else links.set(e.digest, [e.name]);
    }
    return new HostedLinkSweep(records, links, cutoff, exists);
  }

  /** May GC remove `digest`? Not while a hosted link to it is younger than the grace period. */
  async mayRemove(digest: string): Promise<boolean> {
    for (const name of this.links.get(digest) ?? []) {
      const rec = await this.records.getBlobLink(name, digest);
      if (rec && rec.linkedAt >= this.cutoff) return false;
    }
    return true;
  }

  /** Remove `digest`'s hosted links, then the bytes (`removeBytes`), then links re-made meanwhile. */
  async remove(digest: string, removeBytes: () => Promise<void>): Promise<void> {
    const names = this.links.get(digest) ?? [];
    for (const name of names) await this.records.unlinkBlob(name, digest);
    this.links.delete(digest);
    await removeBytes();
    if (names.length === 0 || (await this.exists(digest))) return;
    for (const name of names) await this.records.unlinkBlob(name, digest);
  }

  /** Drop links naming bytes the store does not have; the number found (nothing changes when `dry`). */
  async repair(dry: boolean): Promise<number> {
    let n = 0;
    for (const [digest, names] of this.links) {
      if (await this.exists(digest)) continue;
      for (const name of names) {
        if (dry) {
          n += 1;
          continue;
        }
        // Linked again since the pass began (a commit writes bytes before its link): keep it.
        if (await this.exists(digest)) break;
        if (await this.records.unlinkBlob(name, digest)) n += 1;
      }
    }
    return n;
  }
}
