/**
 * A blob streamed straight from upstream to one client without being stored (the degraded mode
 * used while the disk is full). The bytes are hashed as they pass; the last chunk is held back
 * until the digest and length check out, so a client never receives a complete body whose bytes
 * are wrong: on a mismatch or a short body its response is cut instead, exactly as for a fill.
 *
 * A range that ends before the blob's last byte is served as it arrives (the rest of the blob is
 * not fetched just to verify it), which is what a joined fill reader gets too.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

export interface VerifyOptions {
  digest: string;
  /** Length announced by the upstream, when it announced one. */
  size: number | null;
  /** Inclusive first and last byte wanted; the whole blob when absent. */
  range?: { start: number; end: number };
  /** Builds the error a mismatch or cut fails the stream with. */
  mismatch(reason: string): Error;
  /** Called with the byte count of every chunk received. */
  onBytes?(n: number): void;
}

export function verifiedStream(source: AsyncIterable<Buffer>, o: VerifyOptions): Readable {
  const algorithm = o.digest.slice(0, o.digest.indexOf(':'));
  const start = o.range?.start ?? 0;
  const end = o.range?.end ?? null;
  // Only a read that reaches the blob's end can be verified before its last byte goes out.
  const verify = end === null || o.size === null || end >= o.size - 1;

  async function* pass(): AsyncGenerator<Buffer> {
    const hash = createHash(algorithm);
    let pos = 0;
    let held: Buffer | null = null;
    for await (const chunk of source) {
      const at = pos;
      pos += chunk.length;
      o.onBytes?.(chunk.length);
      if (o.size !== null && pos > o.size) throw o.mismatch(`upstream sent more than the announced ${o.size} bytes`);
      if (verify) hash.update(chunk);
      const lo = Math.max(start, at);
      const hi = end === null ? pos : Math.min(end + 1, pos);
      if (hi > lo) {
        const part = chunk.subarray(lo - at, hi - at);
        if (!verify) {
          yield part;
          if (end !== null && hi === end + 1) return;
          continue;
        }
        if (held) yield held;
        held = part;
      }
    }
    if (o.size !== null && pos !== o.size) throw o.mismatch(`upstream stream ended after ${pos} of ${o.size} bytes`);
    if (!verify) return;
    const got = `${algorithm}:${hash.digest('hex')}`;
    if (got !== o.digest) throw o.mismatch(`upstream bytes hash to ${got}`);
    if (held) yield held;
  }

  return Readable.from(pass(), { objectMode: false });
}
