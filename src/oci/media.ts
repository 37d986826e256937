/**
 * Manifest media types and Accept negotiation. Manifests are served byte-exact with the media
 * type they were stored with; negotiation only decides whether a client can take that type.
 */
export const MediaTypes = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
} as const;

export const MANIFEST_TYPES: readonly string[] = Object.values(MediaTypes);

/** What Berth asks upstreams for: every modern type, so the stored bytes are the canonical ones. */
export const UPSTREAM_ACCEPT = MANIFEST_TYPES.join(', ');

export function isIndexType(mediaType: string): boolean {
  return mediaType === MediaTypes.ociIndex || mediaType === MediaTypes.dockerList;
}

export type Negotiation = { ok: true } | { ok: false; reason: string } | { ok: 'platform'; os: string; architecture: string };

/**
 * Can a client that sent `accept` take a manifest of `mediaType`? No Accept, or a wildcard,
 * takes anything. Like Distribution: an OCI manifest or index the client cannot take is a 404;
 * a Docker manifest list asked for by tag by an old client is answered with its linux/amd64 entry.
 */
export function negotiate(mediaType: string, accept: Set<string>, byTag: boolean): Negotiation {
  if (accept.size === 0 || accept.has('*/*') || accept.has(mediaType)) return { ok: true };
  if (mediaType === MediaTypes.ociManifest) return { ok: false, reason: 'OCI manifest found, but accept header does not support OCI manifests' };
  if (mediaType === MediaTypes.ociIndex) return { ok: false, reason: 'OCI index found, but accept header does not support OCI indexes' };
  if (mediaType === MediaTypes.dockerList) {
    if (byTag) return { ok: 'platform', os: 'linux', architecture: 'amd64' };
    return { ok: false, reason: 'manifest list found, but accept header does not support manifest lists' };
  }
  // A Docker schema2 manifest is what every client since 2017 can read; serve it.
  return { ok: true };
}

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
}

export interface ParsedManifest {
  mediaType: string | undefined;
  /** Child manifests of an index. */
  manifests: Descriptor[];
  /** Config and layers of an image manifest. */
  blobs: Descriptor[];
}

/** Read what a manifest references (for pre-warm, eviction, GC). Throws on malformed JSON. */
export function parseManifest(bytes: Buffer): ParsedManifest {
  const doc = JSON.parse(bytes.toString('utf8')) as {
    mediaType?: unknown;
    manifests?: unknown;
    config?: unknown;
    layers?: unknown;
  };
  const asDescs = (v: unknown): Descriptor[] =>
    Array.isArray(v) ? v.filter((d): d is Descriptor => typeof d === 'object' && d !== null && typeof (d as Descriptor).digest === 'string') : [];
  const blobs = asDescs(doc.layers);
  if (doc.config && typeof doc.config === 'object') blobs.unshift(...asDescs([doc.config]));
  return {
    mediaType: typeof doc.mediaType === 'string' ? doc.mediaType : undefined,
    manifests: asDescs(doc.manifests),
    blobs,
  };
}

/** Media type of manifest bytes when no header says it (the `mediaType` field, or the shape). */
export function sniffMediaType(bytes: Buffer): string | undefined {
  try {
    const m = parseManifest(bytes);
    if (m.mediaType) return m.mediaType;
    if (m.manifests.length > 0) return MediaTypes.ociIndex;
    if (m.blobs.length > 0) return MediaTypes.ociManifest;
  } catch {
    return undefined;
  }
  return undefined;
}
