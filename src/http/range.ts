/**
 * Single-range `Range: bytes=…` parsing (RFC 9110 §14). containerd resumes with `bytes=N-`.
 * Other units and multi-range requests are ignored (a full 200 is a valid answer to them); a
 * malformed or unsatisfiable byte range is refused with 416 and `Content-Range: bytes *\/size`.
 */
import type { ByteRange } from '../storage/driver.js';

export type RangeResult =
  | { kind: 'none' }
  | { kind: 'range'; range: ByteRange }
  | { kind: 'unsatisfiable'; reason: string };

export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: 'none' };
  const h = header.trim();
  if (!/^bytes=/i.test(h)) return { kind: 'none' };
  const spec = h.slice(6).trim();
  if (spec.includes(',')) return { kind: 'none' };
  const m = /^(\d*)-(\d*)$/.exec(spec);
  if (!m || (m[1] === '' && m[2] === '')) return { kind: 'unsatisfiable', reason: `malformed range "${header}"` };
  const first = m[1] ?? '';
  const second = m[2] ?? '';
  if (first === '') {
    // Suffix range: the last N bytes.
    const n = Number(second);
    if (n === 0 || size === 0) return { kind: 'unsatisfiable', reason: `range "${header}" selects no bytes of ${size}` };
    return { kind: 'range', range: { start: Math.max(0, size - n), end: size - 1 } };
  }
  const start = Number(first);
  let end = second === '' ? size - 1 : Number(second);
  if (second !== '' && end < start) return { kind: 'unsatisfiable', reason: `range "${header}" ends before it starts` };
  if (start >= size) return { kind: 'unsatisfiable', reason: `range "${header}" starts beyond the blob's ${size} bytes` };
  if (end >= size) end = size - 1;
  return { kind: 'range', range: { start, end } };
}
