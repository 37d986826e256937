/**
 * What the cache holds, per repository, for operators: each tag with what it points at and when
 * upstream last confirmed it, the manifests linked to the repository, the bytes its images take
 * (every blob and manifest they reach, each counted once however many of its tags share it), when
 * it was last pulled (the latest access of any manifest it names, from the usage index) and
 * whether a pre-warm pin holds it. Read-only: records come from the store, sizes and the
 * reference graph from the lifecycle's in-memory index, so listing a page costs a few record
 * reads per repository and no blob reads.
 */
import type { PinRecord } from '../records.js';
import type { RepoRef } from './holds.js';
import type { LifecycleContext } from './types.js';

export interface TagInventory {
  tag: string;
  digest: string;
  mediaType: string;
  /** The manifest's own size (bytes). */
  size: number;
  /** When the manifest the tag names was fetched, ms since epoch. */
  fetchedAt: number;
  /** When upstream last confirmed the tag (its record's check time), ms since epoch. */
  checkedAt: number;
  /** Past the upstream's tagTtl: the next pull asks upstream again. */
  stale: boolean;
  /** Latest access of its manifest or any child manifest (ms), null when the index has none. */
  lastPulled: number | null;
  /** A pre-warm pin of this repository holds the manifest the tag names. */
  pinned: boolean;
}

export interface ManifestInventory {
  digest: string;
  /** From the manifest record; null when the record is gone (repaired by the next GC). */
  mediaType: string | null;
  size: number | null;
  /** When the manifest was first linked to this repository (ms), null for an unreadable record. */
  linkedAt: number | null;
  lastPulled: number | null;
  /** Tags of this repository that name it. */
  tags: string[];
}

export interface RepoInventory extends RepoRef {
  tags: TagInventory[];
  manifests: ManifestInventory[];
  /** Bytes of every blob and manifest the repository's tags and links reach, each counted once. */
  bytes: number;
  blobs: number;
  lastPulled: number | null;
  pinned: boolean;
  /** References of the pre-warm entries that pin it. */
  pins: string[];
}

export interface InventoryOptions {
  /** The upstream's tagTtl (ms), to mark stale tags; null for an upstream no longer configured. */
  tagTtl: (upstream: string) => number | null;
}

/** The inventory of each repository, in the order given; a repository with no records left is skipped. */
export async function inventory(ctx: LifecycleContext, repos: readonly RepoRef[], opts: InventoryOptions): Promise<RepoInventory[]> {
  const pins = await ctx.records.listPins();
  const out: RepoInventory[] = [];
  for (const r of repos) {
    const inv = await one(ctx, r, pins.map((p) => p.pin), opts);
    if (inv) out.push(inv);
  }
  return out;
}

async function one(ctx: LifecycleContext, repo: RepoRef, pins: PinRecord[], opts: InventoryOptions): Promise<RepoInventory | null> {
  const { records } = ctx;
  const { upstream, name } = repo;
  const mine = pins.filter((p) => p.upstream === upstream && p.name === name);
  const pinnedDigests = new Set(mine.flatMap((p) => p.digests));
  const ttl = opts.tagTtl(upstream);
  const now = ctx.now();

  const tags: TagInventory[] = [];
  for (const tag of (await records.listTags(upstream, name)).sort()) {
    const rec = await records.getTag(upstream, name, tag);
    if (!rec) continue;
    tags.push({
      tag, digest: rec.digest, mediaType: rec.mediaType, size: rec.size, fetchedAt: rec.fetchedAt, checkedAt: rec.checkedAt,
      stale: ttl !== null && now - rec.checkedAt >= ttl,
      lastPulled: lastAccess(ctx, rec.digest),
      pinned: pinnedDigests.has(rec.digest),
    });
  }
  const manifests: ManifestInventory[] = [];
  for (const digest of (await records.linkedManifests(upstream, name)).sort()) {
    const rec = await records.getManifest(digest);
    const link = await records.getLink(upstream, name, digest);
    manifests.push({
      digest, mediaType: rec?.mediaType ?? null, size: rec?.size ?? null, linkedAt: link?.linkedAt ?? null,
      lastPulled: lastAccess(ctx, digest), tags: tags.filter((t) => t.digest === digest).map((t) => t.tag),
    });
  }
  if (tags.length === 0 && manifests.length === 0) return null;

  const roots = [...tags.map((t) => t.digest), ...manifests.map((m) => m.digest)];
  let bytes = 0;
  let blobs = 0;
  for (const d of reach(ctx, roots)) {
    const e = ctx.usage.get(d);
    if (!e) continue;
    bytes += e.size;
    blobs += 1;
  }
  const pulls = [...tags.map((t) => t.lastPulled), ...manifests.map((m) => m.lastPulled)].filter((t): t is number => t !== null);
  return {
    upstream, name, tags, manifests, bytes, blobs,
    lastPulled: pulls.length > 0 ? Math.max(...pulls) : null,
    pinned: mine.length > 0,
    pins: mine.map((p) => p.ref),
  };
}

/** Every digest the roots reach: the manifests themselves, their children, and the blobs they name. */
export function reach(ctx: LifecycleContext, roots: Iterable<string>): Set<string> {
  const seen = new Set<string>();
  const stack = [...roots];
  for (let d = stack.pop(); d !== undefined; d = stack.pop()) {
    if (seen.has(d)) continue;
    seen.add(d);
    const refs = ctx.graph.refs(d);
    if (!refs) continue;
    for (const b of refs.blobs) seen.add(b);
    for (const c of refs.children) stack.push(c);
  }
  return seen;
}

/** Latest access of a manifest or any child manifest, null when the index knows none of them. */
function lastAccess(ctx: LifecycleContext, digest: string): number | null {
  let latest: number | null = null;
  const seen = new Set<string>();
  const stack = [digest];
  for (let d = stack.pop(); d !== undefined; d = stack.pop()) {
    if (seen.has(d)) continue;
    seen.add(d);
    const e = ctx.usage.get(d);
    if (e && (latest === null || e.access > latest)) latest = e.access;
    for (const c of ctx.graph.refs(d)?.children ?? []) stack.push(c);
  }
  return latest;
}
