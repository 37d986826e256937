/**
 * Reading upstream bodies that are buffered whole (manifests, tag-list pages, token responses) and
 * throwing away the ones nobody reads (error answers, redirects). An upstream decides how much it
 * sends and how slowly, so every such read has a byte cap and an absolute deadline; a breach
 * destroys the body (undici then closes the socket: an HTTP/1.1 response cannot be abandoned
 * half-read) and becomes an UpstreamError the callers already map: too large → 'bad-response'
 * (502), too slow → 'unavailable' with Retry-After (stale content or 503).
 *
 * Blobs are never read here: they stream to disk under blob-fill's own checks.
 */
import type { Readable } from 'node:stream';
import { UpstreamError } from './errors.js';

/** Longest an unread body (an error answer, a redirect) may take to be drained for connection reuse. */
const DISCARD_MS = 2_000;
/** Drained for reuse up to this size; anything larger costs a new connection instead. */
const DISCARD_BYTES = 64 * 1024;

export interface ReadLimits {
  /** Upstream name, for the error. */
  upstream: string;
  /** What is being read, for messages: `manifest library/alpine:3.20`. */
  what: string;
  maxBytes: number;
  /** Absolute time (ms since epoch, on `now`) by which the last byte must have arrived. */
  deadlineAt: number;
  now?: () => number;
  /** Seconds to suggest in Retry-After when the deadline passes. */
  retryAfter?: number;
}

type HeaderValue = string | string[] | undefined;

/**
 * Refuse before reading a byte what the headers already condemn: a declared length over the cap,
 * or a content coding this client never asked for (it sends no Accept-Encoding, so a gzip body
 * is one it would have to inflate to use — a decompression bomb is the classic way to turn a
 * capped read into an unbounded one).
 */
export function checkBodyHeaders(headers: Record<string, HeaderValue>, limits: Pick<ReadLimits, 'upstream' | 'what' | 'maxBytes'>): void {
  const first = (v: HeaderValue): string | undefined => (Array.isArray(v) ? v[0] : v);
  const encoding = first(headers['content-encoding'])?.trim().toLowerCase();
  if (encoding && encoding !== 'identity') {
    throw new UpstreamError(limits.upstream, 'bad-response', `${limits.what}: upstream sent a "${encoding}"-encoded body, which was not asked for`, {
      causeCode: 'BODY_ENCODED',
    });
  }
  const declared = Number(first(headers['content-length']));
  if (Number.isFinite(declared) && declared > limits.maxBytes) {
    throw tooLarge(limits, `declares ${declared} bytes`);
  }
}

function tooLarge(limits: Pick<ReadLimits, 'upstream' | 'what' | 'maxBytes'>, detail: string): UpstreamError {
  return new UpstreamError(limits.upstream, 'bad-response', `${limits.what}: body ${detail}, over the ${limits.maxBytes}-byte cap`, {
    causeCode: 'BODY_TOO_LARGE',
  });
}

/** The error for an exchange that outlived its deadline (headers or body). */
export function deadlineError(upstream: string, what: string, ms: number, retryAfter?: number): UpstreamError {
  return new UpstreamError(upstream, 'unavailable', `${what}: upstream did not finish within ${ms} ms`, {
    causeCode: 'UPSTREAM_DEADLINE',
    ...(retryAfter !== undefined ? { retryAfter } : {}),
  });
}

/**
 * Read a whole body under a byte cap and a deadline. Resolves with exactly the bytes received;
 * on any failure the body is destroyed, nothing read is kept, and the error is an UpstreamError.
 */
export async function readCapped(body: Readable, headers: Record<string, HeaderValue>, limits: ReadLimits): Promise<Buffer> {
  const now = limits.now ?? Date.now;
  // A body destroyed before it is iterated still emits its abort error: give it a listener.
  body.on('error', () => undefined);
  try {
    checkBodyHeaders(headers, limits);
  } catch (err) {
    body.destroy();
    throw err;
  }
  const left = limits.deadlineAt - now();
  const late = deadlineError(limits.upstream, limits.what, Math.max(0, left), limits.retryAfter);
  if (left <= 0) {
    body.destroy();
    throw late;
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    body.destroy(late);
  }, left);
  timer.unref();
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > limits.maxBytes) {
        const err = tooLarge(limits, `passed ${total} bytes`);
        body.destroy(err);
        throw err;
      }
      chunks.push(chunk);
    }
  } catch (err) {
    chunks.length = 0;
    if (timedOut) throw late;
    if (err instanceof UpstreamError) throw err;
    const code = (err as { code?: unknown } | undefined)?.code;
    throw new UpstreamError(limits.upstream, 'unavailable', `${limits.what}: body cut: ${(err as Error | undefined)?.message ?? String(err)}`, {
      ...(typeof code === 'string' ? { causeCode: code } : {}),
    });
  } finally {
    clearTimeout(timer);
  }
  return Buffer.concat(chunks, total);
}

/**
 * Let go of a body nobody reads. A small one is drained so its connection can be reused; an
 * endless, huge or dripping one is cut (the socket closes) instead of being waited on.
 */
export async function discard(body: { dump(opts?: { limit?: number; signal?: AbortSignal }): Promise<unknown> }): Promise<void> {
  await body.dump({ limit: DISCARD_BYTES, signal: AbortSignal.timeout(DISCARD_MS) }).catch(() => undefined);
}
