/**
 * Grammar of repository names, tags and digests (OCI distribution-spec §"Pulling", image-spec
 * descriptor.md). A leaf: nothing here imports from the rest of Berth.
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

/**
 * A digest string that has passed `checkDigest`: parsed once at the edge, then trusted by the
 * layers below (storage paths, upstream URLs) without checking the grammar again.
 */
export type Digest = string & { readonly __digest: unique symbol };

export type DigestCheck =
  | { ok: true; digest: Digest; algorithm: 'sha256' | 'sha512'; hex: string }
  | { ok: false; reason: string };

/** Full digest validation: grammar, a supported algorithm, and the algorithm's encoding. */
export function checkDigest(digest: string): DigestCheck {
  if (!DIGEST_RE.test(digest)) return { ok: false, reason: `"${digest}" is not a digest (algorithm:hex)` };
  const idx = digest.indexOf(':');
  const algorithm = digest.slice(0, idx);
  const hex = digest.slice(idx + 1);
  if (algorithm === 'sha256') {
    if (!SHA256_HEX.test(hex)) return { ok: false, reason: 'a sha256 digest has 64 lowercase hex characters' };
    return { ok: true, digest: digest as Digest, algorithm, hex };
  }
  if (algorithm === 'sha512') {
    if (!SHA512_HEX.test(hex)) return { ok: false, reason: 'a sha512 digest has 128 lowercase hex characters' };
    return { ok: true, digest: digest as Digest, algorithm, hex };
  }
  return { ok: false, reason: `unsupported digest algorithm "${algorithm}"` };
}

/** The digest as a typed value, or null when `checkDigest` refuses it. */
export function parseDigest(digest: string): Digest | null {
  const c = checkDigest(digest);
  return c.ok ? c.digest : null;
}
