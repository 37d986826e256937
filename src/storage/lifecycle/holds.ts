/**
 * Who holds what: the tag, link and pin records as the store says at the start of a pass (other
 * processes write them too), and the bookkeeping that forgets a repository once its last tag or
 * link record goes. Digests here are as the records spell them (strings): the passes parse them
 * where they reach the store.
 */
import type { MetadataStore, RepoEntry } from '../records.js';
import { eachLimit } from './batch.js';
import { bump } from './graph.js';
import { readHostedHolds } from './hosted.js';

export interface RepoRef {
  upstream: string;
  name: string;
}

export interface TagRef extends RepoRef {
  tag: string;
}

export interface Holds {
  tags: Map<string, TagRef[]>;
  links: Map<string, RepoRef[]>;
  /** upstream\0name → tag and link records left in the repository. */
  repoEntries: Map<string, number>;
  pinned: Set<string>;
  pins: number;
  /** Blobs pushed or mounted into a hosted repository: never evicted (GC still takes them once unreferenced). */
  hostedBlobs: Set<string>;
}

export function repoId(r: RepoRef): string {
  return `${r.upstream}\u0000${r.name}`;
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

/** Tag records read at once. */
const READ_CONCURRENCY = 8;

/** Tags, links and pins as the records say now. */
export async function readHolds(records: MetadataStore): Promise<Holds> {
  const holds: Holds = { tags: new Map(), links: new Map(), repoEntries: new Map(), pinned: new Set(), pins: 0, hostedBlobs: new Set() };
  const tags: Extract<RepoEntry, { kind: 'tag' }>[] = [];
  for await (const e of records.repoEntries()) {
    if (e.kind === 'tag') {
      tags.push(e);
      continue;
    }
    const ref: RepoRef = { upstream: e.upstream, name: e.name };
    push(holds.links, e.digest, ref);
    bump(holds.repoEntries, repoId(ref), 1);
  }
  // The tag records are read in parallel, then filed in listing order (as one by one did).
  const read = new Array<string | null>(tags.length).fill(null);
  await eachLimit(tags.map((_, i) => i), READ_CONCURRENCY, async (i) => {
    const e = tags[i] as TagRef;
    read[i] = (await records.getTag(e.upstream, e.name, e.tag))?.digest ?? null;
  });
  tags.forEach((e, i) => {
    const digest = read[i];
    if (digest === null || digest === undefined) return;
    const ref: TagRef = { upstream: e.upstream, name: e.name, tag: e.tag };
    push(holds.tags, digest, ref);
    bump(holds.repoEntries, repoId(ref), 1);
  });
  for (const { pin } of await records.listPins()) {
    holds.pins += 1;
    for (const d of pin.digests) holds.pinned.add(d);
  }
  // Hosted content (src/storage/lifecycle/hosted.ts): manifests held like pins, blobs kept from eviction.
  const hosted = await readHostedHolds(records.hosted);
  for (const d of hosted.manifests) holds.pinned.add(d);
  holds.hostedBlobs = hosted.blobs;
  return holds;
}

/** A tag or link record of a repository went; forget the repository once it has none left. */
export function repoLost(records: MetadataStore, holds: Holds, r: RepoRef): void {
  const id = repoId(r);
  bump(holds.repoEntries, id, -1);
  if (!holds.repoEntries.has(id)) records.forgetRepo(r.upstream, r.name);
}
