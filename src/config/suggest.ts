/**
 * "Did you mean …?" for unknown keys and variables: the known name closest to a misspelt one
 * (`tagTTL` → `tagTtl`, `prot` → `port`), or nothing when no known name is close enough to be a
 * plausible typo. Pure and bounded: names longer than MAX_COMPARED are not compared at all, so a
 * hostile file with a megabyte-long key costs nothing here.
 */

const MAX_COMPARED = 64;

/** The known name closest to `wanted`, ignoring case, within a typo's distance; else undefined. */
export function nearestName(wanted: string, known: readonly string[]): string | undefined {
  const w = wanted.toLowerCase();
  if (w === '' || w.length > MAX_COMPARED) return undefined;
  const sameIgnoringCase = known.find((k) => k.toLowerCase() === w);
  if (sameIgnoringCase !== undefined) return sameIgnoringCase;
  // One edit per three characters, at most three: `prot`→`port` and `storge`→`storage` pass,
  // while `db`→`http` or `version`→`prewarm` are not offered as typos.
  const limit = Math.min(3, Math.max(1, Math.floor(w.length / 3)));
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const k of known) {
    const d = editDistance(w, k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

/** `; did you mean "x"?` for the end of a message; empty when no known name is close. */
export function didYouMean(wanted: string, known: readonly string[]): string {
  const hit = nearestName(wanted, known);
  return hit === undefined ? '' : `; did you mean "${hit}"?`;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps. */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return Number.POSITIVE_INFINITY;
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  const at = (i: number, j: number): number => d[i * cols + j] ?? 0;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, at(i - 2, j - 2) + 1);
      d[i * cols + j] = v;
    }
  }
  return at(a.length, b.length);
}
