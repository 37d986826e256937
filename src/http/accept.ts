/** `Accept` header parsing for manifest negotiation (the decision itself is in oci/media.ts). */
/** Parse Accept header values (possibly several headers) into bare media types. */
export function parseAccept(accept: string | string[] | undefined): Set<string> {
  const out = new Set<string>();
  const values = Array.isArray(accept) ? accept : accept ? [accept] : [];
  for (const v of values) {
    for (const part of v.split(',')) {
      const t = part.split(';')[0]?.trim().toLowerCase();
      if (t) out.add(t);
    }
  }
  return out;
}
