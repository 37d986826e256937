/**
 * The reference graph: which blobs (config, layers) and child manifests each stored manifest
 * names, read from the manifests themselves, so a blob shared by many repositories is counted
 * once and removed only when no kept manifest names it. Digests inside a manifest are parsed
 * here, once; one that does not parse names nothing the store could hold.
 *
 * Held compactly: digests are ids of the DigestTable the usage index shares (digest-table.ts);
 * each manifest's edges (children first, then config and layers) are a run of ids in one
 * Int32Array, and the counts of manifests naming a digest are typed arrays indexed by id. The
 * string-shaped methods (`refs`, `digests`, `entries`) make their answers on the spot; passes
 * over the whole graph use the id methods.
 */
import type { Logger } from 'pino';
import { parseManifest } from '../../oci/media.js';
import { parseDigest, type Digest } from '../../oci/reference.js';
import type { StorageDriver } from '../driver.js';
import { DigestTable, grown } from './digest-table.js';
import type { UsageIndex } from './usage.js';

export interface ManifestRefs {
  /** Child manifests (an index's entries). */
  children: Digest[];
  /** Config and layers. */
  blobs: Digest[];
}

export function bump(m: Map<string, number>, k: string, by: number): void {
  const n = (m.get(k) ?? 0) + by;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

function digests(list: { digest: string }[]): Digest[] {
  const out = new Set<Digest>();
  for (const x of list) {
    const d = parseDigest(x.digest);
    if (d) out.add(d);
  }
  return [...out];
}

/** Edge slots from which holes left by unlearned manifests are squeezed out (when half are holes). */
const COMPACT_FROM = 4096;

export class ReferenceGraph {
  readonly table: DigestTable;
  /** 1 for the id of a known manifest. */
  private manifest = new Uint8Array(0);
  /** A manifest's edges: `children` ids then `blobs` ids, from `edgeAt` in `edges`. */
  private edgeAt = new Int32Array(0);
  private childCount = new Int32Array(0);
  private blobCount = new Int32Array(0);
  /** How many known manifests name an id as config or layer. */
  private blobRefs = new Uint32Array(0);
  /** How many known manifests name an id as a child. */
  private parents = new Uint32Array(0);
  private edges = new Int32Array(1024);
  private edgeEnd = 0;
  private edgeHoles = 0;
  private manifests = 0;
  private readonly learning = new Set<Promise<void>>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly log: Logger,
    /** The digest ids, shared with the usage index (one copy of each digest in memory). */
    table?: DigestTable,
  ) {
    this.table = table ?? new DigestTable();
    this.grow(this.table.capacity);
    this.table.onGrow((cap) => this.grow(cap));
  }

  private grow(cap: number): void {
    this.manifest = grown(this.manifest, cap);
    this.edgeAt = grown(this.edgeAt, cap);
    this.childCount = grown(this.childCount, cap);
    this.blobCount = grown(this.blobCount, cap);
    this.blobRefs = grown(this.blobRefs, cap);
    this.parents = grown(this.parents, cap);
  }

  get size(): number {
    return this.manifests;
  }

  // Lookups take any string (records hold digests as text); keys only ever go in as parsed Digests.
  has(d: string): boolean {
    return this.manifestIdOf(d) >= 0;
  }

  refs(d: string): ManifestRefs | undefined {
    const id = this.manifestIdOf(d);
    if (id < 0) return undefined;
    const children: Digest[] = [];
    const blobs: Digest[] = [];
    this.forEachEdge(id, (t, child) => (child ? children : blobs).push(this.table.digest(t)));
    return { children, blobs };
  }

  digests(): Digest[] {
    const out: Digest[] = [];
    this.forEachManifestId((id) => out.push(this.table.digest(id)));
    return out;
  }

  entries(): [Digest, ManifestRefs][] {
    const out: [Digest, ManifestRefs][] = [];
    this.forEachManifestId((id) => {
      const d = this.table.digest(id);
      out.push([d, this.refs(d) as ManifestRefs]);
    });
    return out;
  }

  parentsOf(d: string): number {
    const id = this.table.idOf(d);
    return id < 0 ? 0 : (this.parents[id] as number);
  }

  /** Named by a known manifest, as a blob or as a child. */
  isReferenced(d: string): boolean {
    const id = this.table.idOf(d);
    return id >= 0 && this.isReferencedId(id);
  }

  // ------------------------------------------------------------------ by id (passes over the graph)

  /** The id of a known manifest, or -1. */
  manifestIdOf(d: string): number {
    const id = this.table.idOf(d);
    return id >= 0 && this.manifest[id] === 1 ? id : -1;
  }

  isManifestId(id: number): boolean {
    return this.manifest[id] === 1;
  }

  isReferencedId(id: number): boolean {
    return (this.blobRefs[id] ?? 0) > 0 || (this.parents[id] ?? 0) > 0;
  }

  parentsOfId(id: number): number {
    return this.parents[id] ?? 0;
  }

  /** Call `fn` with the id of every known manifest (ids handed out before the call). */
  forEachManifestId(fn: (id: number) => void): void {
    const end = this.table.end;
    const manifest = this.manifest;
    for (let id = 0; id < end; id++) if (manifest[id] === 1) fn(id);
  }

  /** Call `fn` with each digest id a manifest names: its children (`child` true), then its blobs. */
  forEachEdge(id: number, fn: (target: number, child: boolean) => void): void {
    if (this.manifest[id] !== 1) return;
    const at = this.edgeAt[id] as number;
    const nc = this.childCount[id] as number;
    const n = nc + (this.blobCount[id] as number);
    const edges = this.edges;
    for (let i = 0; i < n; i++) fn(edges[at + i] as number, i < nc);
  }

  /** Read a manifest off the request path (its refs are needed before the next pass). */
  learnLater(digest: Digest): void {
    const p: Promise<void> = this.learn(digest)
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message, digest }, 'could not read a stored manifest'))
      .finally(() => this.learning.delete(p));
    this.learning.add(p);
  }

  /** Manifests still being read. */
  pending(): Promise<void>[] {
    return [...this.learning];
  }

  /** Resolves once every manifest handed to learnLater has been read. */
  async learned(): Promise<void> {
    while (this.learning.size > 0) await Promise.all([...this.learning]);
  }

  /** Read a stored manifest and note what it names. Unparseable bytes name nothing. */
  async learn(digest: Digest): Promise<void> {
    if (this.has(digest)) return;
    const bytes = await this.driver.readBlobBuffer(digest);
    if (!bytes || this.has(digest)) return;
    let refs: ManifestRefs;
    try {
      const m = parseManifest(bytes);
      refs = { children: digests(m.manifests), blobs: digests(m.blobs) };
    } catch {
      refs = { children: [], blobs: [] };
    }
    const id = this.table.acquire(digest);
    const n = refs.children.length + refs.blobs.length;
    this.reserve(n);
    const at = this.edgeEnd;
    let i = at;
    for (const c of refs.children) {
      const t = this.table.acquire(c);
      this.parents[t] = (this.parents[t] as number) + 1;
      this.edges[i++] = t;
    }
    for (const b of refs.blobs) {
      const t = this.table.acquire(b);
      this.blobRefs[t] = (this.blobRefs[t] as number) + 1;
      this.edges[i++] = t;
    }
    this.edgeEnd = i;
    this.manifest[id] = 1;
    this.edgeAt[id] = at;
    this.childCount[id] = refs.children.length;
    this.blobCount[id] = refs.blobs.length;
    this.manifests += 1;
  }

  unlearn(digest: string): void {
    const id = this.manifestIdOf(digest);
    if (id < 0) return;
    const nc = this.childCount[id] as number;
    const n = nc + (this.blobCount[id] as number);
    const at = this.edgeAt[id] as number;
    this.manifest[id] = 0;
    this.childCount[id] = 0;
    this.blobCount[id] = 0;
    this.edgeAt[id] = 0;
    this.manifests -= 1;
    this.edgeHoles += n;
    for (let i = 0; i < n; i++) {
      const t = this.edges[at + i] as number;
      if (i < nc) this.parents[t] = (this.parents[t] as number) - 1;
      else this.blobRefs[t] = (this.blobRefs[t] as number) - 1;
      this.table.release(t);
    }
    this.table.release(id);
  }

  /** An image's recency: the latest use of its manifest or any child manifest. */
  groupStamp(root: Digest, usage: UsageIndex): { access: number; seq: number } {
    let access = 0;
    let seq = 0;
    const rootId = this.table.idOf(root);
    if (rootId < 0) return { access, seq };
    const seen = new Set<number>();
    const stack = [rootId];
    for (let id = stack.pop(); id !== undefined; id = stack.pop()) {
      if (seen.has(id)) continue;
      seen.add(id);
      if (usage.hasId(id)) {
        access = Math.max(access, usage.accessOf(id));
        seq = Math.max(seq, usage.seqOf(id));
      }
      this.forEachEdge(id, (t, child) => {
        if (child && this.manifest[t] === 1) stack.push(t);
      });
    }
    return { access, seq };
  }

  /** Room for `n` more edges: holes squeezed out first when they are half of the array. */
  private reserve(n: number): void {
    if (this.edgeEnd + n <= this.edges.length) return;
    if (this.edgeHoles >= COMPACT_FROM && this.edgeHoles * 2 >= this.edgeEnd) this.compact();
    if (this.edgeEnd + n <= this.edges.length) return;
    this.edges = grown(this.edges, Math.max(this.edges.length * 2, this.edgeEnd + n));
  }

  private compact(): void {
    const next = new Int32Array(this.edges.length);
    let end = 0;
    this.forEachManifestId((id) => {
      const at = this.edgeAt[id] as number;
      const n = (this.childCount[id] as number) + (this.blobCount[id] as number);
      next.set(this.edges.subarray(at, at + n), end);
      this.edgeAt[id] = end;
      end += n;
    });
    this.edges = next;
    this.edgeEnd = end;
    this.edgeHoles = 0;
  }
}
