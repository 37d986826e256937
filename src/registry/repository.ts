/**
 * The seam between /v2 and the policy behind it. A `Repository` answers the pull side of the OCI
 * Distribution API for one routed name: a manifest by tag or digest (GET and HEAD alike), a
 * blob's size or bytes (with Range), the tag list. MirrorService implements it (local first,
 * upstream on a miss); hosted (push) repositories will implement it too.
 *
 * A `RepositoryResolver` picks the Repository for each request from its routed (upstream, name),
 * so a router can send `ci/**` to a hosted repository and everything else to the mirror. Today
 * every name resolves to the mirror (`MirrorOnly`).
 *
 * References are parsed once, at the edge (`manifestRef`): the layers below take a typed tag or
 * `Digest` and never check the grammar of the same string again.
 *
 * Imports: oci/, errors, storage types. Never Fastify.
 */
import type { Readable } from 'node:stream';
import { registryError } from '../errors.js';
import { checkDigest, isValidTag, looksLikeDigest, type Digest } from '../oci/reference.js';
import type { ByteRange } from '../storage/driver.js';
import type { Routed } from './routing.js';

/** A manifest reference, parsed: a valid tag or a valid digest. */
export type ManifestRef = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: Digest };

/**
 * Parse a manifest reference from a request. A bad digest is DIGEST_INVALID; a bad tag is
 * MANIFEST_UNKNOWN (what the conformance suite expects of a registry that cannot hold it).
 */
export function manifestRef(reference: string): ManifestRef {
  if (looksLikeDigest(reference)) {
    const c = checkDigest(reference);
    if (!c.ok) throw registryError('DIGEST_INVALID', c.reason);
    return { kind: 'digest', digest: c.digest };
  }
  if (!isValidTag(reference)) throw registryError('MANIFEST_UNKNOWN', `"${reference}" is not a valid tag`);
  return { kind: 'tag', tag: reference };
}

/** Parse a blob digest from a request: DIGEST_INVALID when it is not one. */
export function blobDigest(digest: string): Digest {
  const c = checkDigest(digest);
  if (!c.ok) throw registryError('DIGEST_INVALID', c.reason);
  return c.digest;
}

export interface ManifestResult {
  bytes: Buffer;
  mediaType: string;
  digest: Digest;
  /** Served from cache because upstream could not be reached: add a Warning header. */
  stale: boolean;
}

export interface BlobHandle {
  digest: Digest;
  /** Total length, when known (always for cached blobs; from Content-Length for fills). */
  size: number | null;
  source: 'cache' | 'upstream';
  /** Open the bytes (or a range of them). Call once; a HEAD never calls it. */
  open(range?: ByteRange): Promise<Readable>;
}

/** A blob's size without its bytes (HEAD). */
export interface BlobInfo {
  size: number | null;
  source: 'cache' | 'upstream';
}

/**
 * The pull side of one repository. Every method throws catalogued registry errors (the OCI code
 * and status come from src/errors.ts), never a bare upstream failure.
 */
export interface Repository {
  /** A manifest, negotiated against the client's Accept (bare media types). */
  getManifest(r: Routed, ref: ManifestRef, accept: Set<string>): Promise<ManifestResult>;
  /** A blob's size: no download for a HEAD. */
  statBlob(r: Routed, digest: Digest): Promise<BlobInfo>;
  /** A handle on a blob's bytes. */
  getBlob(r: Routed, digest: Digest): Promise<BlobHandle>;
  /** The repository's tags, sorted, without duplicates. */
  listTags(r: Routed): Promise<string[]>;
}

/** Who lists repositories for `_catalog`: (upstream, name) pairs as the store knows them. */
export interface CatalogSource {
  /** Repositories, named as a client reaches them (`publicName`), sorted. */
  catalog(publicName: (upstream: string, name: string) => string): Promise<string[]>;
}

/** Picks the Repository that answers a request, and lists every repository for `_catalog`. */
export interface RepositoryResolver extends CatalogSource {
  resolve(r: Routed): Repository;
}

/** Today's resolver: every name is mirrored. Hosted repositories add a rule match before it. */
export class MirrorOnly implements RepositoryResolver {
  constructor(private readonly mirror: Repository & CatalogSource) {}

  resolve(_r: Routed): Repository {
    return this.mirror;
  }

  catalog(publicName: (upstream: string, name: string) => string): Promise<string[]> {
    return this.mirror.catalog(publicName);
  }
}
