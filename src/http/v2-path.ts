/**
 * The `/v2/` path grammar. Repository names contain '/', so the route is found from the right.
 */
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
