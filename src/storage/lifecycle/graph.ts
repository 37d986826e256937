/**
 * The reference graph: which blobs (config, layers) and child manifests each stored manifest
 * names, read from the manifests themselves, so a blob shared by many repositories is counted
 * once and removed only when no kept manifest names it. Digests inside a manifest are parsed
 * here, once; one that does not parse names nothing the store could hold.
 */
import type { Logger } from 'pino';
import { parseManifest } from '../../oci/media.js';
import { parseDigest, type Digest } from '../../oci/reference.js';
import type { StorageDriver } from '../driver.js';
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

function digests(list: { digest: string }[], intern: (d: Digest) => Digest): Digest[] {
  const out = new Set<Digest>();
  for (const x of list) {
    const d = parseDigest(x.digest);
    if (d) out.add(intern(d));
  }
  return [...out];
}

export class ReferenceGraph {
  private readonly manifests = new Map<Digest, ManifestRefs>();
  /** How many known manifests name a digest as config or layer. */
  private readonly blobRefs = new Map<string, number>();
  /** How many known manifests name a digest as a child. */
  private readonly parents = new Map<string, number>();
  private readonly learning = new Set<Promise<void>>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly log: Logger,
    /** The usage index's string for a digest it knows (one copy of each name in memory). */
    private readonly intern: (d: Digest) => Digest = (d) => d,
  ) {}

  get size(): number {
    return this.manifests.size;
  }

  // Lookups take any string (records hold digests as text); keys only ever go in as parsed Digests.
  has(d: string): boolean {
    return this.manifests.has(d as Digest);
  }

  refs(d: string): ManifestRefs | undefined {
    return this.manifests.get(d as Digest);
  }

  digests(): Digest[] {
    return [...this.manifests.keys()];
  }

  entries(): [Digest, ManifestRefs][] {
    return [...this.manifests];
  }

  parentsOf(d: string): number {
    return this.parents.get(d) ?? 0;
  }

  /** Named by a known manifest, as a blob or as a child. */
  isReferenced(d: string): boolean {
    return (this.blobRefs.get(d) ?? 0) > 0 || this.parentsOf(d) > 0;
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
    if (this.manifests.has(digest)) return;
    const bytes = await this.driver.readBlobBuffer(digest);
    if (!bytes || this.manifests.has(digest)) return;
    let refs: ManifestRefs;
    try {
      const m = parseManifest(bytes);
      refs = { children: digests(m.manifests, this.intern), blobs: digests(m.blobs, this.intern) };
    } catch {
      refs = { children: [], blobs: [] };
    }
    this.manifests.set(this.intern(digest), refs);
    for (const b of refs.blobs) bump(this.blobRefs, b, 1);
    for (const c of refs.children) bump(this.parents, c, 1);
  }

  unlearn(digest: string): void {
    const refs = this.manifests.get(digest as Digest);
    if (!refs) return;
    this.manifests.delete(digest as Digest);
    for (const b of refs.blobs) bump(this.blobRefs, b, -1);
    for (const c of refs.children) bump(this.parents, c, -1);
  }

  /** An image's recency: the latest use of its manifest or any child manifest. */
  groupStamp(root: Digest, usage: UsageIndex): { access: number; seq: number } {
    let access = 0;
    let seq = 0;
    const seen = new Set<Digest>();
    const stack = [root];
    for (let d = stack.pop(); d !== undefined; d = stack.pop()) {
      if (seen.has(d)) continue;
      seen.add(d);
      const e = usage.get(d);
      if (e) {
        access = Math.max(access, e.access);
        seq = Math.max(seq, e.seq);
      }
      for (const c of this.manifests.get(d)?.children ?? []) if (this.manifests.has(c)) stack.push(c);
    }
    return { access, seq };
  }
}
