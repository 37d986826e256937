/**
 * Hosted repositories (pushed to Berth, src/registry/hosted.ts) as the UI shows them: the
 * repositories with their tag count and size, a repository's tags (pushed-at, no upstream
 * check), whether a repository holds a manifest or blob, the referrers of a manifest, and tag /
 * manifest deletes that follow the hosted registry's own rules. Reads go through the hosted
 * records and the store, never anything upstream.
 *
 * In the UI's JSON a hosted repository's `upstream` is HOSTED (the hosted route's sentinel
 * name, which no configured upstream can have), so the page links and posts it like any other.
 *
 * Imports: registry/ (hosted), storage/ types, oci/, manifest-view.ts. Never Fastify.
 */
import { isRegistryError, registryError } from '../errors.js';
import { HOSTED_UPSTREAM, type HostedService } from '../registry/hosted-service.js';
import { checkDigest, looksLikeDigest, type Digest } from '../oci/reference.js';
import type { StorageDriver } from '../storage/driver.js';
import { manifestShape } from './manifest-view.js';

/** The `upstream` the UI gives hosted repositories. */
export const HOSTED = HOSTED_UPSTREAM.name;

/** Largest manifest read to size it. */
const MAX_READ = 4 * 1024 * 1024;
/** An index's child manifests read to size it. */
const MAX_CHILDREN = 64;

export interface HostedTagView {
  tag: string;
  digest: string;
  mediaType: string;
  /** The manifest's own length. */
  size: number;
  pushedAt: string | null;
}

export interface HostedSummary {
  repository: string;
  tags: number;
  tagNames: string[];
  manifests: number;
  /** Distinct blobs and manifests the tags hold (config, layers, child manifests), in bytes. */
  bytes: number;
  blobs: number;
  lastPushed: string | null;
}

export interface ReferrerView {
  digest: string;
  mediaType: string;
  artifactType: string | null;
  size: number;
  annotations: Record<string, string>;
}

export interface HostedDeletePlan {
  deletes: number;
  unknown: string[];
  kept: { reference: string; digest: string; reasons: string[] }[];
}

const iso = (ms: number | null | undefined): string | null => (typeof ms === 'number' ? new Date(ms).toISOString() : null);

export class HostedView {
  constructor(private readonly hosted: HostedService, private readonly driver: Pick<StorageDriver, 'readBlobBuffer'>) {}

  /** Is `name` (as a client sends it) a hosted repository? */
  isHosted(name: string): boolean {
    return this.hosted.rules.modeOf(name) === 'hosted';
  }

  /** Hosted repositories with a tag or a manifest, sorted. */
  repositories(): Promise<string[]> {
    return this.hosted.registry.catalog();
  }

  /** Every tag of `name` with the manifest it names, sorted by tag. */
  async tags(name: string): Promise<HostedTagView[]> {
    const records = this.hosted.registry.records;
    const names = [...new Set(await records.listTags(name))].sort();
    const out: HostedTagView[] = [];
    for (const tag of names) {
      const t = await records.getTag(name, tag);
      if (!t) continue;
      const m = await records.getManifest(name, t.digest);
      out.push({ tag, digest: t.digest, mediaType: m?.mediaType ?? '', size: m?.size ?? 0, pushedAt: iso(t.pushedAt) });
    }
    return out;
  }

  /** Tag count, size and last push of one hosted repository; null when it holds nothing. */
  async summary(name: string): Promise<HostedSummary | null> {
    const tags = await this.tags(name);
    if (tags.length === 0 && !(await this.repositories()).includes(name)) return null;
    const sizes = new Map<string, number>();
    for (const d of new Set(tags.map((t) => t.digest))) await this.collect(d, sizes, 0);
    const pushed = tags.map((t) => (t.pushedAt === null ? 0 : Date.parse(t.pushedAt)));
    return {
      repository: name, tags: tags.length, tagNames: tags.slice(0, 5).map((t) => t.tag), manifests: new Set(tags.map((t) => t.digest)).size,
      bytes: [...sizes.values()].reduce((a, b) => a + b, 0), blobs: sizes.size,
      lastPushed: pushed.length > 0 ? new Date(Math.max(...pushed)).toISOString() : null,
    };
  }

  /** Add a manifest, and what it names, to `sizes` (digest → bytes), each once. */
  private async collect(digest: string, sizes: Map<string, number>, depth: number): Promise<void> {
    if (sizes.has(digest) || depth > 2) return;
    const c = checkDigest(digest);
    const bytes = c.ok ? await this.driver.readBlobBuffer(c.digest).catch(() => null) : null;
    if (!bytes || bytes.length > MAX_READ) return;
    sizes.set(digest, bytes.length);
    const shape = manifestShape(bytes, null);
    for (const p of shape.platforms.slice(0, MAX_CHILDREN)) await this.collect(p.digest, sizes, depth + 1);
    for (const b of [...(shape.config ? [shape.config] : []), ...shape.layers]) if (!sizes.has(b.digest)) sizes.set(b.digest, b.size);
  }

  /** Does `name` hold this manifest (pushed there)? Its media type when it does. */
  async manifest(name: string, digest: string): Promise<{ mediaType: string } | null> {
    const m = await this.hosted.registry.records.getManifest(name, digest);
    return m ? { mediaType: m.mediaType } : null;
  }

  /** Does `name` hold this blob (pushed or mounted there, and in the store)? */
  async holdsBlob(name: string, digest: Digest): Promise<boolean> {
    return (await this.hosted.registry.blobSize(name, digest)) !== null;
  }

  /** The manifests in `name` whose `subject` is `digest`, as the referrers API lists them. */
  async referrers(name: string, digest: string): Promise<ReferrerView[]> {
    const found = await this.hosted.registry.records.referrers(name, digest);
    return found
      .map(({ digest: d, rec }) => ({ digest: d, mediaType: rec.mediaType, artifactType: rec.artifactType ?? null, size: rec.size, annotations: rec.annotations ?? {} }))
      .sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  }

  /**
   * What deleting `refs` (tags, or manifest digests) from `name` would do, as the hosted registry
   * deletes: a tag delete removes only the tag; a manifest delete removes the manifest from the
   * repository with every tag naming it. Nothing upstream brings it back.
   */
  async plan(name: string, refs: readonly string[]): Promise<HostedDeletePlan> {
    const tags = await this.tags(name);
    const chosen = new Set(refs);
    const gone = new Set(refs.filter((r) => looksLikeDigest(r)));
    const kept: HostedDeletePlan['kept'] = [];
    const unknown: string[] = [];
    for (const r of refs) {
      if (looksLikeDigest(r)) {
        if (!(await this.manifest(name, r))) unknown.push(r);
        continue;
      }
      const t = tags.find((x) => x.tag === r);
      if (!t) {
        unknown.push(r);
        continue;
      }
      if (gone.has(t.digest)) continue;
      const others = tags.filter((o) => o.digest === t.digest && !chosen.has(o.tag)).map((o) => o.tag);
      const reasons = [others.length > 0
        ? `its manifest stays: tag${others.length > 1 ? 's' : ''} ${others.join(', ')} still point${others.length > 1 ? '' : 's'} at it`
        : 'its manifest stays in the repository, untagged, reachable by digest; garbage collection removes it once nothing references it'];
      const referrers = await this.referrers(name, t.digest);
      if (referrers.length > 0) reasons.push(`${referrers.length} referrer${referrers.length > 1 ? 's' : ''} (signatures, SBOMs…) of it stay`);
      kept.push({ reference: r, digest: t.digest, reasons });
    }
    return { deletes: refs.length - unknown.length, unknown, kept };
  }

  /** Delete one tag or manifest through the hosted registry; false when `name` did not hold it. */
  async delete(name: string, ref: string): Promise<boolean> {
    const registry = this.hosted.registry;
    try {
      if (looksLikeDigest(ref)) {
        const c = checkDigest(ref);
        if (!c.ok) throw registryError('DIGEST_INVALID', c.reason);
        await registry.deleteManifest(name, { kind: 'digest', digest: c.digest });
      } else {
        await registry.deleteManifest(name, { kind: 'tag', tag: ref });
      }
      return true;
    } catch (err) {
      if (isRegistryError(err) && err.code === 'MANIFEST_UNKNOWN') return false;
      throw err;
    }
  }
}
