/**
 * Grammar of repository names, tags and digests (OCI distribution-spec §"Pulling", image-spec
 * descriptor.md). Every request path is checked here before anything touches storage or upstream.
 */

const NAME_COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME_RE = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`);
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const SHA256_HEX = /^[a-f0-9]{64}$/;
const SHA512_HEX = /^[a-f0-9]{128}$/;

/** Longest repository name accepted; clients cap host + "/" + name at 255. */
export const MAX_NAME_LENGTH = 255;

export function isValidName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && NAME_RE.test(name);
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** Looks like a digest at all (algorithm ":" encoded): such a reference is never a tag. */
export function looksLikeDigest(ref: string): boolean {
  return ref.includes(':');
}

export type DigestCheck = { ok: true; algorithm: 'sha256' | 'sha512'; hex: string } | { ok: false; reason: string };

/** Full digest validation: grammar, a supported algorithm, and the algorithm's encoding. */
export function checkDigest(digest: string): DigestCheck {
  if (!DIGEST_RE.test(digest)) return { ok: false, reason: `"${digest}" is not a digest (algorithm:hex)` };
  const idx = digest.indexOf(':');
  const algorithm = digest.slice(0, idx);
  const hex = digest.slice(idx + 1);
  if (algorithm === 'sha256') {
    if (!SHA256_HEX.test(hex)) return { ok: false, reason: 'a sha256 digest has 64 lowercase hex characters' };
    return { ok: true, algorithm, hex };
  }
  if (algorithm === 'sha512') {
    if (!SHA512_HEX.test(hex)) return { ok: false, reason: 'a sha512 digest has 128 lowercase hex characters' };
    return { ok: true, algorithm, hex };
  }
  return { ok: false, reason: `unsupported digest algorithm "${algorithm}"` };
}

export type V2Route =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'tags'; name: string }
  | { kind: 'upload'; name: string; rest: string }
  | { kind: 'referrers'; name: string; digest: string }
  | { kind: 'unknown' };

/**
 * Split the part of a path after `/v2/` into a route. Names contain '/', so the route is found
 * from the right: the last `/manifests/`, `/blobs/`, `/tags/list` or `/referrers/` segment.
 */
export function parseV2Path(rest: string): V2Route {
  if (rest === '' ) return { kind: 'base' };
  if (rest === '_catalog') return { kind: 'catalog' };
  if (rest.endsWith('/tags/list')) return { kind: 'tags', name: rest.slice(0, -'/tags/list'.length) };
  const up = rest.indexOf('/blobs/uploads');
  if (up > 0) return { kind: 'upload', name: rest.slice(0, up), rest: rest.slice(up + '/blobs/uploads'.length) };
  // The right-most marker wins: `a/manifests/x/blobs/<d>` is a blob of repository `a/manifests/x`.
  let best: { i: number; marker: string; kind: 'manifest' | 'blob' | 'referrers' } | null = null;
  for (const [marker, kind] of [['/manifests/', 'manifest'], ['/blobs/', 'blob'], ['/referrers/', 'referrers']] as const) {
    const i = rest.lastIndexOf(marker);
    if (i > 0 && (best === null || i > best.i)) best = { i, marker, kind };
  }
  if (best) {
    const name = rest.slice(0, best.i);
    const ref = rest.slice(best.i + best.marker.length);
    if (ref === '' || ref.includes('/')) return { kind: 'unknown' };
    if (best.kind === 'manifest') return { kind: 'manifest', name, reference: ref };
    return { kind: best.kind, name, digest: ref };
  }
  return { kind: 'unknown' };
}
