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
