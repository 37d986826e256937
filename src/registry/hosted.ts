/**
 * Hosted repositories: the names `repositories` rules mark `hosted` (src/registry/hosted-rules.ts)
 * are a registry of their own on the same store and auth as the mirror, never forwarded upstream,
 * never revalidated, never evicted by the cap (src/storage/lifecycle/hosted.ts holds them). This
 * is the pull side (the Repository seam, src/registry/repository.ts) and the push side the HTTP
 * routes call (src/http/routes/v2-push.ts): blob links, manifest PUT with its references checked,
 * tag, manifest and blob delete, cross-repository mount, and the referrers index.
 *
 * What a hosted repository holds is its own records (src/storage/records.ts, `hosted/…`): a blob
 * is served through it only when it was pushed or mounted there, a manifest only when it was
 * pushed there. Bytes are shared with everything else by digest. Manifests are stored byte-exact
 * and also get the shared manifest record, so the lifecycle's reference graph reads them.
 * Uploads (src/registry/uploads.ts) stream blobs in.
 *
 * Imports: storage seam and records, oci/, errors, config types. Never Fastify.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/types.js';
import { registryError } from '../errors.js';
import { MANIFEST_TYPES, MediaTypes, isIndexType, negotiate } from '../oci/media.js';
import { validateManifest } from '../oci/manifest-validate.js';
import { checkDigest, parseDigest, type Digest } from '../oci/reference.js';
import type { StorageDriver } from '../storage/driver.js';
import type { CacheEventsPort } from '../storage/ports.js';
import type { HostedRecords, MetadataStore, ReferrerRecord } from '../storage/records.js';
import { TagGlobs } from './hosted-rules.js';
import type { BlobHandle, BlobInfo, ManifestRef, ManifestResult, Repository } from './repository.js';
import type { Routed } from './routing.js';
import { Uploads, type UploadMetrics } from './uploads.js';

export interface HostedOptions {
  driver: StorageDriver;
  /** The shared manifest records (media type and size by digest): the mirror's store. */
  meta: MetadataStore;
  records: HostedRecords;
  hosted: BerthConfig['hosted'];
  metrics: UploadMetrics;
  log: Logger;
  events?: Pick<CacheEventsPort, 'accessed' | 'stored' | 'removalsDone'>;
  now?: () => number;
  /** This replica's cluster.advertiseUrl: upload sessions name it as their owner. */
  uploadOwner?: string | null;
}

/** What a manifest PUT stored. */
export interface PushedManifest {
  digest: Digest;
  /** The `subject` it names, for the OCI-Subject header. */
  subject: string | null;
  tags: string[];
}

/** A referrers index (application/vnd.oci.image.index.v1+json), and whether a filter applied. */
export interface ReferrersResult {
  body: Buffer;
  filtered: boolean;
}

type Doc = Record<string, unknown>;

function isObject(v: unknown): v is Doc {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class HostedRegistry implements Repository {
  readonly uploads: Uploads;
  readonly records: HostedRecords;
  private readonly immutable: TagGlobs;
  private readonly now: () => number;

  constructor(private readonly o: HostedOptions) {
    this.records = o.records;
    this.now = o.now ?? Date.now;
    this.immutable = new TagGlobs(o.hosted.immutableTags);
    this.uploads = new Uploads({
      driver: o.driver, records: o.records, ttl: o.hosted.uploadTtl, metrics: o.metrics, log: o.log,
      ...(o.events ? { events: o.events } : {}), ...(o.now ? { now: o.now } : {}), owner: o.uploadOwner ?? null,
    });
  }

  get maxManifestSize(): number {
    return this.o.hosted.maxManifestSize;
  }

  // ------------------------------------------------------------------ pull side (Repository)

  async getManifest(r: Routed, ref: ManifestRef, accept: Set<string>): Promise<ManifestResult> {
    const name = r.name;
    const digest = ref.kind === 'digest' ? ref.digest : await this.tagTarget(name, ref.tag);
    let m = await this.readManifest(name, digest);
    const n = negotiate(m.mediaType, accept, ref.kind === 'tag');
    if (n.ok === false) throw registryError('MANIFEST_UNKNOWN', n.reason);
    if (n.ok === 'platform') {
      // An old client asked for a Docker manifest list by tag: its linux/amd64 entry, as the mirror does.
      const child = platformChild(m.bytes, n.os, n.architecture);
      if (!child) throw registryError('MANIFEST_UNKNOWN', `the manifest list has no ${n.os}/${n.architecture} entry and the client cannot take a list`);
      m = await this.readManifest(name, child);
    }
    this.o.events?.accessed(m.digest);
    return { ...m, stale: false };
  }

  async statBlob(r: Routed, digest: Digest): Promise<BlobInfo> {
    const size = await this.blobSize(r.name, digest);
    if (size === null) throw registryError('BLOB_UNKNOWN', `${digest} is not in ${r.name}`, { detail: { digest } });
    return { size, source: 'cache' };
  }

  async getBlob(r: Routed, digest: Digest): Promise<BlobHandle> {
    const size = await this.blobSize(r.name, digest);
    if (size === null) throw registryError('BLOB_UNKNOWN', `${digest} is not in ${r.name}`, { detail: { digest } });
    this.o.events?.accessed(digest);
    const driver = this.o.driver;
    return {
      digest, size, source: 'cache',
      async open(range) {
        const b = await driver.readBlob(digest, range);
        if (!b) throw registryError('BLOB_UNKNOWN', `${digest} was removed`, { detail: { digest } });
        return b.stream;
      },
    };
  }

  async listTags(r: Routed): Promise<string[]> {
    const tags = [...new Set(await this.records.listTags(r.name))].sort();
    if (tags.length === 0 && !(await this.records.repositories()).includes(r.name)) {
      throw registryError('NAME_UNKNOWN', `hosted repository ${r.name} holds nothing yet`, { detail: { name: r.name } });
    }
    return tags;
  }

  /** Hosted repositories with a tag or a manifest, sorted (for `_catalog`). */
  catalog(): Promise<string[]> {
    return this.records.repositories();
  }

  // ------------------------------------------------------------------ push side

  /** The blob's size when `name` holds it (pushed or mounted there) and the store has it; else null. */
  async blobSize(name: string, digest: Digest): Promise<number | null> {
    if (!(await this.records.getBlobLink(name, digest))) {
      // A manifest pushed here is also readable through the blob route, as Distribution allows.
      const m = await this.records.getManifest(name, digest);
      if (!m) return null;
    }
    const s = await this.o.driver.statBlob(digest);
    return s ? s.size : null;
  }

  /**
   * Cross-repository mount of a blob the caller may pull from elsewhere (the HTTP layer checked
   * that): link it here. The blob's last use becomes now, so GC's grace period covers it until
   * the manifest that names it arrives. False when the store does not have it (then a normal
   * upload follows).
   */
  async mount(name: string, digest: Digest): Promise<boolean> {
    const s = await this.o.driver.statBlob(digest);
    if (!s) return false;
    this.o.events?.accessed(digest);
    await this.records.linkBlob(name, digest, this.now());
    return true;
  }

  /**
   * Store a pushed manifest byte-exact, after checking it: a manifest the size cap allowed (the
   * HTTP layer reads at most hosted.maxManifestSize), valid for its media type, whose digest is
   * the one asked for, whose config and layers this repository holds (MANIFEST_BLOB_UNKNOWN), and
   * whose index entries of a manifest type are manifests this repository holds. Other index
   * entries (BuildKit cache configs, attestations, artifacts) are accepted as they are. Tags
   * matching hosted.immutableTags are never moved (DENIED).
   */
  async putManifest(name: string, ref: ManifestRef, extraTags: readonly string[], bytes: Buffer, contentType: string | undefined): Promise<PushedManifest> {
    const v = validateManifest(bytes, contentType ?? null);
    if (!v.ok) throw registryError('MANIFEST_INVALID', v.reason);
    const sha = `sha256:${createHash('sha256').update(bytes).digest('hex')}` as Digest;
    let digest = sha;
    if (ref.kind === 'digest') {
      const algorithm = ref.digest.slice(0, ref.digest.indexOf(':'));
      const got = algorithm === 'sha256' ? sha : `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
      if (got !== ref.digest) throw registryError('DIGEST_INVALID', `the manifest hashes to ${got}, not ${ref.digest}`, { detail: { digest: ref.digest } });
      digest = ref.digest;
    }
    const tags = [...new Set([...(ref.kind === 'tag' ? [ref.tag] : []), ...extraTags])];
    const doc = JSON.parse(bytes.toString('utf8')) as Doc;
    const refs = await this.checkReferences(name, v.mediaType, doc);
    for (const tag of tags) {
      if (!this.immutable.matches(tag)) continue;
      const existing = await this.records.getTag(name, tag);
      if (existing && existing.digest !== digest) {
        throw registryError('DENIED', `tag ${name}:${tag} is immutable (hosted.immutableTags) and already names ${existing.digest}`, { detail: { tag, digest: existing.digest } });
      }
    }
    const subject = isObject(doc['subject']) && typeof doc['subject']['digest'] === 'string' ? doc['subject']['digest'] : null;

    // Bytes first, then the shared record, then this repository's link, referrer and tags: a
    // crash at any point leaves no record naming missing bytes.
    if (!(await this.o.driver.statBlob(digest))) await this.o.driver.putBlobBuffer(digest, bytes);
    await this.o.meta.putManifest(digest, { mediaType: v.mediaType, size: bytes.length });
    this.o.events?.stored(digest, bytes.length, 'manifest');
    const at = this.now();
    await this.records.putManifest(name, digest, { mediaType: v.mediaType, size: bytes.length, linkedAt: at, ...(subject ? { subject } : {}) });
    if (subject) await this.records.putReferrer(name, subject, digest, referrerRecord(v.mediaType, bytes.length, doc));
    for (const tag of tags) await this.records.putTag(name, tag, { digest, pushedAt: at });
    // A GC pass that read the holds before these records were written, and found this manifest
    // or one of its blobs unreferenced and past the grace period, may have removed it meanwhile.
    // Marked used now (a pass spares what was used since it began), and once any removal GC had
    // already started has ended, each is checked: one that is gone fails the push as if it had
    // never been there, and nothing the push wrote stays.
    const all = [digest, ...refs];
    for (const d of all) this.o.events?.accessed(d);
    await this.o.events?.removalsDone?.(all);
    for (const d of all) {
      const present = d === digest
        ? (await this.o.meta.getManifest(digest)) !== null && (await this.o.driver.statBlob(digest)) !== null
        : (await this.o.driver.statBlob(d)) !== null;
      if (present) continue;
      for (const tag of tags) {
        const t = await this.records.getTag(name, tag);
        if (t?.digest === digest) await this.records.deleteTag(name, tag);
      }
      if (subject) await this.records.deleteReferrer(name, subject, digest);
      await this.records.deleteManifest(name, digest);
      throw registryError('MANIFEST_BLOB_UNKNOWN', `blob ${d} was removed while the manifest was stored; push it again`, { detail: { digest: d } });
    }
    return { digest, subject, tags };
  }

  /**
   * Check what a manifest references and mark each as used now (so a GC pass running meanwhile
   * leaves it for its grace period). Returns the digests the manifest needs.
   */
  private async checkReferences(name: string, mediaType: string, doc: Doc): Promise<Digest[]> {
    const needed: Digest[] = [];
    if (isIndexType(mediaType)) {
      const entries = Array.isArray(doc['manifests']) ? doc['manifests'] : [];
      for (const e of entries) {
        if (!isObject(e)) continue;
        const d = parseDigest(String(e['digest']));
        if (!d) continue;
        const type = typeof e['mediaType'] === 'string' ? e['mediaType'] : undefined;
        if (type !== undefined && !MANIFEST_TYPES.includes(type)) continue;
        this.o.events?.accessed(d);
        const held = (await this.records.getManifest(name, d)) !== null || (type === undefined && (await this.blobSize(name, d)) !== null);
        if (!held) {
          throw registryError('MANIFEST_BLOB_UNKNOWN', `the index names manifest ${d}, which ${name} does not hold`, { detail: { digest: d } });
        }
        needed.push(d);
      }
      return needed;
    }
    const descriptors = [doc['config'], ...(Array.isArray(doc['layers']) ? doc['layers'] : [])];
    for (const e of descriptors) {
      if (!isObject(e)) continue;
      // Foreign layers (with urls) live elsewhere by design.
      if (Array.isArray(e['urls']) && e['urls'].length > 0) continue;
      const d = parseDigest(String(e['digest']));
      if (!d) continue;
      this.o.events?.accessed(d);
      if ((await this.blobSize(name, d)) === null) {
        throw registryError('MANIFEST_BLOB_UNKNOWN', `the manifest names blob ${d}, which ${name} does not hold`, { detail: { digest: d } });
      }
      needed.push(d);
    }
    return needed;
  }

  /** DELETE of a tag (removes only the tag) or of a manifest by digest (its link, tags and referrer entry). */
  async deleteManifest(name: string, ref: ManifestRef): Promise<void> {
    if (ref.kind === 'tag') {
      if (!(await this.records.deleteTag(name, ref.tag))) throw registryError('MANIFEST_UNKNOWN', `${name}:${ref.tag} is not a tag`);
      await this.records.forgetIfEmpty(name);
      return;
    }
    const m = await this.records.getManifest(name, ref.digest);
    if (!m) throw registryError('MANIFEST_UNKNOWN', `${name} does not hold ${ref.digest}`, { detail: { digest: ref.digest } });
    for (const tag of await this.records.listTags(name)) {
      const t = await this.records.getTag(name, tag);
      if (t?.digest === ref.digest) await this.records.deleteTag(name, tag);
    }
    if (m.subject) await this.records.deleteReferrer(name, m.subject, ref.digest);
    await this.records.deleteManifest(name, ref.digest);
    await this.records.forgetIfEmpty(name);
  }

  /** DELETE of a blob: the repository stops holding it (GC removes the bytes once nothing names them). */
  async deleteBlob(name: string, digest: Digest): Promise<void> {
    if (!(await this.records.unlinkBlob(name, digest))) throw registryError('BLOB_UNKNOWN', `${name} does not hold ${digest}`, { detail: { digest } });
  }

  /** The referrers of `subject` in `name` as an OCI index; never a 404 for an unknown subject. */
  async referrers(name: string, subject: Digest, artifactType: string | undefined): Promise<ReferrersResult> {
    const all = await this.records.referrers(name, subject);
    const filtered = artifactType !== undefined && artifactType !== '';
    const manifests = all
      .filter((r) => !filtered || r.rec.artifactType === artifactType)
      .sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0))
      .map((r) => ({
        mediaType: r.rec.mediaType, digest: r.digest, size: r.rec.size,
        ...(r.rec.artifactType !== undefined ? { artifactType: r.rec.artifactType } : {}),
        ...(r.rec.annotations !== undefined ? { annotations: r.rec.annotations } : {}),
      }));
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests }));
    return { body, filtered };
  }

  private async tagTarget(name: string, tag: string): Promise<Digest> {
    const t = await this.records.getTag(name, tag);
    const d = t ? parseDigest(t.digest) : null;
    if (!d) throw registryError('MANIFEST_UNKNOWN', `${name}:${tag} is not a tag`, { detail: { tag } });
    return d;
  }

  private async readManifest(name: string, digest: Digest): Promise<{ bytes: Buffer; mediaType: string; digest: Digest }> {
    const link = await this.records.getManifest(name, digest);
    const bytes = link ? await this.o.driver.readBlobBuffer(digest) : null;
    if (!link || !bytes) throw registryError('MANIFEST_UNKNOWN', `${name} does not hold ${digest}`, { detail: { digest } });
    return { bytes, mediaType: link.mediaType, digest };
  }
}

function platformChild(bytes: Buffer, os: string, architecture: string): Digest | null {
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as Doc;
    const list = Array.isArray(doc['manifests']) ? doc['manifests'] : [];
    for (const e of list) {
      if (!isObject(e) || !isObject(e['platform'])) continue;
      if (e['platform']['os'] === os && e['platform']['architecture'] === architecture) {
        const c = checkDigest(String(e['digest']));
        if (c.ok) return c.digest;
      }
    }
  } catch {
    return null;
  }
  return null;
}

/** The descriptor the referrers API lists for a manifest: artifactType, else an image's config type. */
function referrerRecord(mediaType: string, size: number, doc: Doc): ReferrerRecord {
  let artifactType: string | undefined;
  if (typeof doc['artifactType'] === 'string') artifactType = doc['artifactType'];
  else if (isObject(doc['config']) && typeof doc['config']['mediaType'] === 'string') artifactType = doc['config']['mediaType'];
  const annotations = isObject(doc['annotations'])
    ? Object.fromEntries(Object.entries(doc['annotations']).filter((e): e is [string, string] => typeof e[1] === 'string'))
    : undefined;
  return { mediaType, size, ...(artifactType !== undefined ? { artifactType } : {}), ...(annotations ? { annotations } : {}) };
}
