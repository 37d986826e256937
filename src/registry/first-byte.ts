/**
 * The first-byte deadline of a blob served from upstream. Until a byte has been sent, a client
 * can still be told why it gets nothing (503 UNAVAILABLE with Retry-After); after the status
 * line it can only be cut. So the blob path opens a stream from a fill (or a stream-through)
 * and waits here for its first byte before the route writes a status line. An upstream that
 * sent its headers and then stalls makes no progress for `ms`, and the client is answered 503
 * instead of an empty reply when the body timeout finally fires.
 *
 * The deadline counts time without upstream progress, not time to this client's first byte: a
 * Range request far into a download that is still moving waits as long as it keeps moving.
 *
 * Imports: upstream/ errors only. Never Fastify.
 */
import type { Readable } from 'node:stream';
import { UpstreamError } from '../upstream/errors.js';

export interface FirstByteOptions {
  /** How long the upstream may make no progress before the client is answered 503. */
  ms: number;
  /** Upstream bytes received so far (by the fill, or by this stream-through). */
  progress: () => number;
  upstream: string;
  digest: string;
}

/**
 * Resolves with `stream` once it has a byte to read (or has ended); rejects with the stream's
 * error, or with an `unavailable` UpstreamError (and destroys the stream, which only lets go of
 * this client's reader) when the upstream made no progress for `ms`.
 */
export function firstByte(stream: Readable, o: FirstByteOptions): Promise<Readable> {
  if (stream.readableLength > 0 || stream.readableEnded) return Promise.resolve(stream);
  return new Promise<Readable>((resolve, reject) => {
    let seen = o.progress();
    let timer: NodeJS.Timeout;
    const cleanup = (): void => {
      clearTimeout(timer);
      stream.off('readable', onReadable);
      stream.off('error', onError);
    };
    const onReadable = (): void => {
      cleanup();
      resolve(stream);
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const check = (): void => {
      const now = o.progress();
      if (now > seen) {
        seen = now;
        timer = setTimeout(check, o.ms);
        return;
      }
      cleanup();
      stream.destroy();
      const seconds = Math.max(1, Math.ceil(o.ms / 1000));
      reject(new UpstreamError(o.upstream, 'unavailable',
        `${o.upstream} sent no bytes of blob ${o.digest} for ${seconds}s after its headers`, { causeCode: 'FIRST_BYTE_TIMEOUT', retryAfter: seconds }));
    };
    timer = setTimeout(check, o.ms);
    stream.once('readable', onReadable);
    stream.once('error', onError);
  });
}
