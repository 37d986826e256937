/**
 * The small records beside the blobs: what a tag pointed at and when it was last checked, each
 * manifest's media type, which repositories a manifest was pulled through (catalog, purge,
 * eviction), pre-warm pins, and persisted access times. Records go through the storage driver;
 * hot ones are also held in memory. This module is the only one that knows the key layout: the
 * registry and the lifecycle layer both go through it.
 *
 * Keys (the `_` components cannot collide with repository names, whose components start with
 * a letter or digit):
 *   manifests/<alg>/<hex>                          ManifestRecord
 *   repos/<upstream>/<name>/_tags/<tag>            TagRecord
 *   repos/<upstream>/<name>/_manifests/<alg>/<hex> LinkRecord
 *   pins/<id>                                      PinRecord (pre-warm: never evicted)
 *   access/<alg>/<xx>                              AccessShard (last access per digest, one
 *                                                  record per first digest byte)
 *
 * Hosted repositories (push; HostedRecords below) have a key space of their own, so no mirror
 * pass (eviction, repair, purge, catalog of cached repositories) ever reads or removes them:
 *   hosted/<name>/_tags/<tag>                      HostedTagRecord
 *   hosted/<name>/_manifests/<alg>/<hex>           HostedManifestRecord (the repository holds it)
 *   hosted/<name>/_blobs/<alg>/<hex>               LinkRecord (a blob pushed or mounted here)
 *   hosted/<name>/_referrers/<alg>/<hex>/<alg>/<hex>  ReferrerRecord (subject → referrer)
 *   uploads/<id>                                   UploadRecord (an upload session)
 *
 * Imports: the driver seam only.
 */
import { LRUCache } from 'lru-cache';
import type { StorageDriver } from './driver.js';

/**
 * Size of every entry in the count-bounded caches below: bounded by `maxSize` in entries rather
 * than `max`, because lru-cache allocates the whole of `max` up front (several MiB for these at
 * idle) while a `maxSize` bound grows with what is cached.
 */
const one = (): number => 1;

export interface TagRecord {
  digest: string;
  mediaType: string;
  size: number;
  /** When the manifest the tag points at was fetched (ms since epoch). */
  fetchedAt: number;
  /** When upstream last confirmed the tag (ms since epoch). */
  checkedAt: number;
}

export interface ManifestRecord {
  mediaType: string;
  size: number;
}

export interface LinkRecord {
  linkedAt: number;
}

/** Content a pre-warm entry keeps: every digest listed here is exempt from eviction. */
export interface PinRecord {
  /** The configured reference (`docker.io/library/alpine:3.20`). */
  ref: string;
  upstream: string;
  name: string;
  /** Manifests (index and children) and blobs, by digest. */
  digests: string[];
  pinnedAt: number;
}

/** Last access (ms since epoch) of every digest of one shard. */
export type AccessShard = Record<string, number>;

/** A tag or a repository link, as listed across every repository (lifecycle passes). */
export type RepoEntry =
  | { kind: 'tag'; upstream: string; name: string; tag: string }
  | { kind: 'link'; upstream: string; name: string; digest: string };

const TAG_KEY = /^repos\/([^/]+)\/(.+?)\/_tags\/([^/]+)$/;
const LINK_KEY = /^repos\/([^/]+)\/(.+?)\/_manifests\/([a-z0-9]+)\/([a-zA-Z0-9=_-]+)$/;

function digestKey(digest: string): string {
  const i = digest.indexOf(':');
  return `${digest.slice(0, i)}/${digest.slice(i + 1)}`;
}

/** A JSON record; one that does not parse is treated as absent (the next write replaces it). */
async function readRecord<T>(driver: StorageDriver, key: string): Promise<T | null> {
  const buf = await driver.getMeta(key);
  if (!buf) return null;
  try {
    return JSON.parse(buf.toString('utf8')) as T;
  } catch {
    return null;
  }
}

function writeRecord(driver: StorageDriver, key: string, value: unknown): Promise<void> {
  return driver.putMeta(key, Buffer.from(JSON.stringify(value)));
}

export function repoKey(upstream: string, name: string): string {
  return `repos/${encodeURIComponent(upstream)}/${name}`;
}

/**
 * A record removed here (purge, delete, eviction, GC): what other processes sharing the store
 * must drop from their in-memory copies (replicas: src/registry/cluster.ts sends it by pub/sub).
 */
export type RecordInvalidation =
  | { kind: 'tag'; upstream: string; name: string; tag: string }
  | { kind: 'manifest'; digest: string }
  | { kind: 'repo'; upstream: string; name: string };

export class MetadataStore {
  private readonly tags = new LRUCache<string, TagRecord>({ maxSize: 10_000, sizeCalculation: one });
  private readonly manifests = new LRUCache<string, ManifestRecord>({ maxSize: 50_000, sizeCalculation: one });
  private repos: Set<string> | null = null;
  /** Told of every removal made through this store (replicas share it); never of `dropCached`. */
  onInvalidate: ((e: RecordInvalidation) => void) | null = null;
  /** The hosted repositories' records (their own key space), on the same driver. */
  readonly hosted: HostedRecords;

  constructor(private readonly driver: StorageDriver) {
    this.hosted = new HostedRecords(driver);
  }

  /** Another process removed this record: forget the in-memory copy (nothing is written). */
  dropCached(e: RecordInvalidation): void {
    if (e.kind === 'tag') this.tags.delete(`${repoKey(e.upstream, e.name)}/_tags/${e.tag}`);
    else if (e.kind === 'manifest') this.manifests.delete(e.digest);
    else this.repos = null;
  }

  /** A tag record as another replica just confirmed it: kept in memory only (the store has it). */
  rememberTag(upstream: string, name: string, tag: string, rec: TagRecord): void {
    this.tags.set(`${repoKey(upstream, name)}/_tags/${tag}`, rec);
  }

  /** The tag record as the store holds it now, past the in-memory copy (another process wrote it). */
  async rereadTag(upstream: string, name: string, tag: string): Promise<TagRecord | null> {
    this.tags.delete(`${repoKey(upstream, name)}/_tags/${tag}`);
    return this.getTag(upstream, name, tag);
  }

  private getJSON<T>(key: string): Promise<T | null> {
    return readRecord<T>(this.driver, key);
  }

  private putJSON(key: string, value: unknown): Promise<void> {
    return writeRecord(this.driver, key, value);
  }

  /** The tag record when it is in memory (no promise: the warm manifest path), else undefined. */
  cachedTag(upstream: string, name: string, tag: string): TagRecord | undefined {
    return this.tags.get(`${repoKey(upstream, name)}/_tags/${tag}`);
  }

  async getTag(upstream: string, name: string, tag: string): Promise<TagRecord | null> {
    const key = `${repoKey(upstream, name)}/_tags/${tag}`;
    const hit = this.tags.get(key);
    if (hit) return hit;
    const rec = await this.getJSON<TagRecord>(key);
    if (rec) this.tags.set(key, rec);
    return rec;
  }

  async putTag(upstream: string, name: string, tag: string, rec: TagRecord): Promise<void> {
    const key = `${repoKey(upstream, name)}/_tags/${tag}`;
    this.tags.set(key, rec);
    await this.putJSON(key, rec);
    this.noteRepo(upstream, name);
  }

  async deleteTag(upstream: string, name: string, tag: string): Promise<boolean> {
    const key = `${repoKey(upstream, name)}/_tags/${tag}`;
    this.tags.delete(key);
    const removed = await this.driver.deleteMeta(key);
    this.onInvalidate?.({ kind: 'tag', upstream, name, tag });
    return removed;
  }

  async listTags(upstream: string, name: string): Promise<string[]> {
    const prefix = `${repoKey(upstream, name)}/_tags/`;
    const out: string[] = [];
    for await (const key of this.driver.listMeta(prefix)) out.push(key.slice(prefix.length));
    return out;
  }

  async getManifest(digest: string): Promise<ManifestRecord | null> {
    const hit = this.manifests.get(digest);
    if (hit) return hit;
    const rec = await this.getJSON<ManifestRecord>(`manifests/${digestKey(digest)}`);
    if (rec) this.manifests.set(digest, rec);
    return rec;
  }

  async putManifest(digest: string, rec: ManifestRecord): Promise<void> {
    this.manifests.set(digest, rec);
    await this.putJSON(`manifests/${digestKey(digest)}`, rec);
  }

  async deleteManifest(digest: string): Promise<void> {
    this.manifests.delete(digest);
    await this.driver.deleteMeta(`manifests/${digestKey(digest)}`);
    this.onInvalidate?.({ kind: 'manifest', digest });
  }

  async link(upstream: string, name: string, digest: string, now: number): Promise<void> {
    await this.putJSON(`${repoKey(upstream, name)}/_manifests/${digestKey(digest)}`, { linkedAt: now } satisfies LinkRecord);
    this.noteRepo(upstream, name);
  }

  async unlink(upstream: string, name: string, digest: string): Promise<boolean> {
    return this.driver.deleteMeta(`${repoKey(upstream, name)}/_manifests/${digestKey(digest)}`);
  }

  /** The link record of one manifest in one repository (when it was linked), or null. */
  async getLink(upstream: string, name: string, digest: string): Promise<LinkRecord | null> {
    return this.getJSON<LinkRecord>(`${repoKey(upstream, name)}/_manifests/${digestKey(digest)}`);
  }

  async linkedManifests(upstream: string, name: string): Promise<string[]> {
    const prefix = `${repoKey(upstream, name)}/_manifests/`;
    const out: string[] = [];
    for await (const key of this.driver.listMeta(prefix)) out.push(key.slice(prefix.length).replace('/', ':'));
    return out;
  }

  /** Pin ids are caller-chosen (pre-warm uses a hash of the ref); characters are kept key-safe. */
  async putPin(id: string, rec: PinRecord): Promise<void> {
    await this.putJSON(`pins/${encodeURIComponent(id)}`, rec);
  }

  async deletePin(id: string): Promise<boolean> {
    return this.driver.deleteMeta(`pins/${encodeURIComponent(id)}`);
  }

  async listPins(): Promise<{ id: string; pin: PinRecord }[]> {
    const out: { id: string; pin: PinRecord }[] = [];
    for await (const key of this.driver.listMeta('pins/')) {
      const pin = await this.getJSON<PinRecord>(key);
      if (pin) out.push({ id: decodeURIComponent(key.slice('pins/'.length)), pin });
    }
    return out;
  }

  /**
   * Every tag and link record of every repository, as the store says now (other processes write
   * them too). Tags are named here; read them with getTag.
   */
  async *repoEntries(): AsyncIterable<RepoEntry> {
    for await (const key of this.driver.listMeta('repos/')) {
      const t = TAG_KEY.exec(key);
      if (t && t[1] !== undefined && t[2] !== undefined && t[3] !== undefined) {
        yield { kind: 'tag', upstream: decodeURIComponent(t[1]), name: t[2], tag: t[3] };
        continue;
      }
      const l = LINK_KEY.exec(key);
      if (l && l[1] !== undefined && l[2] !== undefined) {
        yield { kind: 'link', upstream: decodeURIComponent(l[1]), name: l[2], digest: `${l[3]}:${l[4]}` };
      }
    }
  }

  /** The digest of every manifest record (read none of them). */
  async *manifestDigests(): AsyncIterable<string> {
    for await (const key of this.driver.listMeta('manifests/')) {
      const rest = key.slice('manifests/'.length);
      const slash = rest.indexOf('/');
      if (slash > 0) yield `${rest.slice(0, slash)}:${rest.slice(slash + 1)}`;
    }
  }

  /** The access shard a digest's last access is persisted in. */
  accessShardOf(digest: string): string {
    const i = digest.indexOf(':');
    return `access/${digest.slice(0, i)}/${digest.slice(i + 1, i + 3)}`;
  }

  /** Every persisted access shard; one that does not parse is skipped (rewritten at the next flush). */
  async *accessShards(): AsyncIterable<AccessShard> {
    for await (const key of this.driver.listMeta('access/')) {
      const rec = await this.getJSON<unknown>(key);
      if (typeof rec === 'object' && rec !== null) yield rec as AccessShard;
    }
  }

  /** Write one access shard whole; an empty one is removed. */
  async putAccessShard(shard: string, rec: AccessShard): Promise<void> {
    if (Object.keys(rec).length === 0) await this.driver.deleteMeta(shard);
    else await this.putJSON(shard, rec);
  }

  private noteRepo(upstream: string, name: string): void {
    this.repos?.add(`${upstream}\u0000${name}`);
  }

  forgetRepo(upstream: string, name: string): void {
    this.repos?.delete(`${upstream}\u0000${name}`);
    this.onInvalidate?.({ kind: 'repo', upstream, name });
  }

  /** Every cached repository as [upstream, name], sorted by upstream then name. */
  async repositories(): Promise<[string, string][]> {
    if (!this.repos) {
      const found = new Set<string>();
      for await (const key of this.driver.listMeta('repos/')) {
        const m = /^repos\/([^/]+)\/(.+?)\/_(?:tags|manifests)\//.exec(key);
        if (m && m[1] !== undefined && m[2] !== undefined) found.add(`${decodeURIComponent(m[1])}\u0000${m[2]}`);
      }
      this.repos = found;
    }
    return [...this.repos]
      .map((s) => s.split('\u0000') as [string, string])
      .sort((a, b) => (a[0] === b[0] ? cmp(a[1], b[1]) : cmp(a[0], b[0])));
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Hosted repositories (issue 14). Names are validated repository names (components start with a
// letter or digit), so `_tags` and friends never collide with a component.

export interface HostedTagRecord {
  digest: string;
  /** When the tag was pushed (ms since epoch). */
  pushedAt: number;
}

export interface HostedManifestRecord {
  mediaType: string;
  size: number;
  linkedAt: number;
  /** The `subject` digest, when the manifest refers to another (referrers API). */
  subject?: string;
}

/** A referrer as the referrers API lists it (an OCI descriptor without the digest). */
export interface ReferrerRecord {
  mediaType: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface UploadRecord {
  name: string;
  startedAt: number;
  /** Last write (ms since epoch): the session expires hosted.uploadTtl after it. */
  touchedAt: number;
  /** Bytes received so far. */
  offset: number;
  /** The replica holding the staged bytes (its cluster.advertiseUrl); other replicas forward to it. */
  owner?: string;
}

/** Every hosted tag and manifest link, as the lifecycle's holds read them. */
export type HostedEntry =
  | { kind: 'tag'; name: string; tag: string }
  | { kind: 'manifest'; name: string; digest: string }
  | { kind: 'blob'; name: string; digest: string };

const HOSTED_ENTRY = /^hosted\/(.+?)\/_(tags|manifests|blobs)\/(.+)$/;

export class HostedRecords {
  private repos: Set<string> | null = null;

  constructor(private readonly driver: StorageDriver) {}

  private getJSON<T>(key: string): Promise<T | null> {
    return readRecord<T>(this.driver, key);
  }

  private putJSON(key: string, value: unknown): Promise<void> {
    return writeRecord(this.driver, key, value);
  }

  private base(name: string): string {
    return `hosted/${name}`;
  }

  getTag(name: string, tag: string): Promise<HostedTagRecord | null> {
    return this.getJSON<HostedTagRecord>(`${this.base(name)}/_tags/${tag}`);
  }

  async putTag(name: string, tag: string, rec: HostedTagRecord): Promise<void> {
    await this.putJSON(`${this.base(name)}/_tags/${tag}`, rec);
    this.repos?.add(name);
  }

  deleteTag(name: string, tag: string): Promise<boolean> {
    return this.driver.deleteMeta(`${this.base(name)}/_tags/${tag}`);
  }

  async listTags(name: string): Promise<string[]> {
    const prefix = `${this.base(name)}/_tags/`;
    const out: string[] = [];
    for await (const key of this.driver.listMeta(prefix)) {
      const tag = key.slice(prefix.length);
      if (!tag.includes('/')) out.push(tag);
    }
    return out;
  }

  getManifest(name: string, digest: string): Promise<HostedManifestRecord | null> {
    return this.getJSON<HostedManifestRecord>(`${this.base(name)}/_manifests/${digestKey(digest)}`);
  }

  async putManifest(name: string, digest: string, rec: HostedManifestRecord): Promise<void> {
    await this.putJSON(`${this.base(name)}/_manifests/${digestKey(digest)}`, rec);
    this.repos?.add(name);
  }

  deleteManifest(name: string, digest: string): Promise<boolean> {
    return this.driver.deleteMeta(`${this.base(name)}/_manifests/${digestKey(digest)}`);
  }

  getBlobLink(name: string, digest: string): Promise<LinkRecord | null> {
    return this.getJSON<LinkRecord>(`${this.base(name)}/_blobs/${digestKey(digest)}`);
  }

  async linkBlob(name: string, digest: string, now: number): Promise<void> {
    await this.putJSON(`${this.base(name)}/_blobs/${digestKey(digest)}`, { linkedAt: now } satisfies LinkRecord);
  }

  unlinkBlob(name: string, digest: string): Promise<boolean> {
    return this.driver.deleteMeta(`${this.base(name)}/_blobs/${digestKey(digest)}`);
  }

  async putReferrer(name: string, subject: string, digest: string, rec: ReferrerRecord): Promise<void> {
    await this.putJSON(`${this.base(name)}/_referrers/${digestKey(subject)}/${digestKey(digest)}`, rec);
  }

  deleteReferrer(name: string, subject: string, digest: string): Promise<boolean> {
    return this.driver.deleteMeta(`${this.base(name)}/_referrers/${digestKey(subject)}/${digestKey(digest)}`);
  }

  /** Referrers of `subject` in one repository, by digest. */
  async referrers(name: string, subject: string): Promise<{ digest: string; rec: ReferrerRecord }[]> {
    const prefix = `${this.base(name)}/_referrers/${digestKey(subject)}/`;
    const out: { digest: string; rec: ReferrerRecord }[] = [];
    for await (const key of this.driver.listMeta(prefix)) {
      const rec = await this.getJSON<ReferrerRecord>(key);
      if (rec) out.push({ digest: key.slice(prefix.length).replace('/', ':'), rec });
    }
    return out;
  }

  /** Every tag, manifest link and blob link of every hosted repository, as the store says now. */
  async *entries(): AsyncIterable<HostedEntry> {
    for await (const key of this.driver.listMeta('hosted/')) {
      const m = HOSTED_ENTRY.exec(key);
      if (!m || m[1] === undefined || m[3] === undefined) continue;
      const name = m[1];
      if (m[2] === 'tags') yield { kind: 'tag', name, tag: m[3] };
      else yield { kind: m[2] === 'manifests' ? 'manifest' : 'blob', name, digest: m[3].replace('/', ':') };
    }
  }

  /** Every hosted repository with a tag or a manifest, sorted. */
  async repositories(): Promise<string[]> {
    if (!this.repos) {
      const found = new Set<string>();
      for await (const e of this.entries()) if (e.kind !== 'blob') found.add(e.name);
      this.repos = found;
    }
    return [...this.repos].sort(cmp);
  }

  /** Drop a repository from the catalog once it holds no tag and no manifest. */
  async forgetIfEmpty(name: string): Promise<void> {
    if (!this.repos) return;
    const base = this.base(name);
    for await (const key of this.driver.listMeta(`${base}/`)) {
      if (key.startsWith(`${base}/_tags/`) || key.startsWith(`${base}/_manifests/`)) return;
    }
    this.repos.delete(name);
  }

  getUpload(id: string): Promise<UploadRecord | null> {
    return this.getJSON<UploadRecord>(`uploads/${id}`);
  }

  putUpload(id: string, rec: UploadRecord): Promise<void> {
    return this.putJSON(`uploads/${id}`, rec);
  }

  deleteUpload(id: string): Promise<boolean> {
    return this.driver.deleteMeta(`uploads/${id}`);
  }

  async *uploads(): AsyncIterable<{ id: string; rec: UploadRecord }> {
    for await (const key of this.driver.listMeta('uploads/')) {
      const rec = await this.getJSON<UploadRecord>(key);
      if (rec) yield { id: key.slice('uploads/'.length), rec };
    }
  }
}
