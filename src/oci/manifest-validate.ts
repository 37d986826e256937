/**
 * Is this a manifest? The check a mirror makes before it stores bytes an upstream called a
 * manifest: they parse as JSON, form an object of the shape of the media type the upstream
 * declared (image manifest: `config` and `layers`; index: `manifests`), with `schemaVersion` 2
 * and descriptors whose digests and sizes are valid. A gzip body, an HTML error page or a
 * manifest of another type than declared is refused with a reason, never stored.
 *
 * The media type a valid manifest is stored with: the declared one when it is a manifest type;
 * else (no Content-Type, or a generic one such as application/json) the body's own `mediaType`,
 * else the OCI type its shape says.
 *
 * A leaf: nothing here imports from the rest of Berth except oci/.
 */
import { MediaTypes, isIndexType } from './media.js';
import { checkDigest } from './reference.js';

export type ManifestValidation = { ok: true; mediaType: string } | { ok: false; reason: string };

/** Manifest types the mirror stores: what UPSTREAM_ACCEPT asks for. */
const KNOWN: ReadonlySet<string> = new Set(Object.values(MediaTypes));

/** Content-Types that say nothing about which manifest the body is: decide from the body. */
const GENERIC: ReadonlySet<string> = new Set(['', 'application/json', 'text/plain', 'application/octet-stream']);

type Doc = Record<string, unknown>;

function isObject(v: unknown): v is Doc {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Why a descriptor at `where` is not one, or null when it is. */
function descriptorFault(d: unknown, where: string): string | null {
  if (!isObject(d)) return `${where} is not an object`;
  if (d['mediaType'] !== undefined && typeof d['mediaType'] !== 'string') return `${where}.mediaType is not a string`;
  if (typeof d['digest'] !== 'string') return `${where}.digest is missing`;
  const c = checkDigest(d['digest']);
  if (!c.ok) return `${where}.digest: ${c.reason}`;
  const size = d['size'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return `${where}.size is not a non-negative integer`;
  return null;
}

function descriptorsFault(list: unknown, where: string): string | null {
  if (!Array.isArray(list)) return `${where} is not an array`;
  for (let i = 0; i < list.length; i++) {
    const fault = descriptorFault(list[i], `${where}[${i}]`);
    if (fault) return fault;
  }
  return null;
}

/** The bare media type of a Content-Type header value (`type/subtype`, lower case). */
function bareType(contentType: string | null | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/**
 * Validate manifest bytes against the Content-Type the upstream declared (null: none).
 * Returns the media type to store them with, or why they are not a manifest.
 */
export function validateManifest(bytes: Uint8Array, declared: string | null | undefined): ManifestValidation {
  const declaredType = bareType(declared);
  if (!KNOWN.has(declaredType) && !GENERIC.has(declaredType)) {
    return { ok: false, reason: `media type "${declaredType}" is not a manifest type this mirror serves` };
  }
  let doc: unknown;
  try {
    // fatal: bytes that are not UTF-8 (a gzip body) are refused here rather than replaced with U+FFFD.
    doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return { ok: false, reason: 'the body is not JSON' };
  }
  if (!isObject(doc)) return { ok: false, reason: 'the body is not a JSON object' };
  if (doc['schemaVersion'] !== 2) return { ok: false, reason: 'schemaVersion is not 2' };
  const own = doc['mediaType'];
  if (own !== undefined && typeof own !== 'string') return { ok: false, reason: 'mediaType is not a string' };

  let mediaType: string;
  if (KNOWN.has(declaredType)) {
    if (own !== undefined && own !== declaredType) {
      return { ok: false, reason: `declared ${declaredType}, but the body says mediaType ${own}` };
    }
    mediaType = declaredType;
  } else if (own !== undefined) {
    if (!KNOWN.has(own)) return { ok: false, reason: `mediaType "${own}" is not a manifest type this mirror serves` };
    mediaType = own;
  } else if (doc['manifests'] !== undefined) {
    mediaType = MediaTypes.ociIndex;
  } else if (doc['config'] !== undefined || doc['layers'] !== undefined) {
    mediaType = MediaTypes.ociManifest;
  } else {
    return { ok: false, reason: 'the body is neither an image manifest nor an index' };
  }
  // Docker's schema 2 types carry their mediaType in the body; the OCI ones may leave it out.
  if (own === undefined && (mediaType === MediaTypes.dockerManifest || mediaType === MediaTypes.dockerList)) {
    return { ok: false, reason: `a ${mediaType} must name its mediaType` };
  }

  const fault = isIndexType(mediaType)
    ? (doc['config'] !== undefined || doc['layers'] !== undefined
      ? 'an index has no config or layers'
      : descriptorsFault(doc['manifests'], 'manifests'))
    : (doc['manifests'] !== undefined
      ? 'an image manifest has no manifests list'
      : descriptorFault(doc['config'], 'config') ?? descriptorsFault(doc['layers'], 'layers'))
    ?? (doc['subject'] !== undefined ? descriptorFault(doc['subject'], 'subject') : null);
  return fault ? { ok: false, reason: fault } : { ok: true, mediaType };
}
