/**
 * The one place upstream failures are classified. Everything the upstream client can meet —
 * a status, a socket error, a timeout, an open breaker — becomes an UpstreamError with a `kind`
 * the cache policy branches on (never on messages), and each kind maps to one OCI error.
 */
import { registryError, type RegistryError } from '../errors.js';
import { REFUSED_ADDRESS } from './origin.js';

export type UpstreamFailureKind =
  | 'not-found' // 404: the upstream does not have it
  | 'unauthorized' // 401 after the token dance: credentials wrong or missing
  | 'denied' // 403
  | 'rate-limited' // 429, or the mirror knows the budget is spent
  | 'unavailable' // 5xx, refused, reset, DNS, timeout, breaker open, token endpoint down
  | 'bad-response' // unexpected status or malformed answer
  | 'integrity'; // bytes did not match their digest, or were cut short

/** Upstream statuses that mean "cannot serve anyone now" rather than "not this request". */
const OUTAGE_STATUSES = new Set([502, 503, 504]);

export class UpstreamError extends Error {
  readonly kind: UpstreamFailureKind;
  readonly status: number | undefined;
  /** Seconds the upstream asked us to wait (429 / 503 Retry-After). */
  readonly retryAfter: number | undefined;
  readonly upstream: string;
  /** Low-level cause code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, …) for logs and metrics. */
  readonly causeCode: string | undefined;

  constructor(
    upstream: string,
    kind: UpstreamFailureKind,
    message: string,
    opts: { status?: number; retryAfter?: number; causeCode?: string } = {},
  ) {
    super(message);
    this.name = 'UpstreamError';
    this.upstream = upstream;
    this.kind = kind;
    this.status = opts.status;
    this.retryAfter = opts.retryAfter;
    this.causeCode = opts.causeCode;
  }

  /**
   * Failures that say the upstream itself is unwell: they count towards the breaker. An outage is
   * what no client's choice of request causes — a connection refused, reset or timed out, DNS, a
   * deadline passed, a body cut, and the statuses a registry or its proxy gives when it cannot
   * serve anyone (502, 503, 504). A 500 (or another 5xx) answers one request's content: Distribution
   * answers 500 to a manifest GET by a blob's digest, so counting it let any anonymous client open
   * the breaker, and with it refuse every cold pull of every repository, with maxFails requests.
   * Such an answer is still 'unavailable' for the request that got it (stale content, or 503).
   */
  get isOutage(): boolean {
    return this.kind === 'unavailable' && (this.status === undefined || OUTAGE_STATUSES.has(this.status));
  }
}

/** Parse a Retry-After header (seconds or an HTTP date) into seconds, if present and sane. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim());
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, Math.ceil((t - now) / 1000));
}

/** Classify a non-success HTTP status from the upstream. */
export function fromStatus(upstream: string, status: number, what: string, retryAfter?: number): UpstreamError {
  const msg = `${upstream} answered ${status} for ${what}`;
  if (status === 404) return new UpstreamError(upstream, 'not-found', msg, { status });
  if (status === 401) return new UpstreamError(upstream, 'unauthorized', msg, { status });
  if (status === 403) return new UpstreamError(upstream, 'denied', msg, { status });
  if (status === 429) return new UpstreamError(upstream, 'rate-limited', msg, { status, retryAfter });
  if (status >= 500) return new UpstreamError(upstream, 'unavailable', msg, { status, retryAfter });
  return new UpstreamError(upstream, 'bad-response', msg, { status });
}

/** Socket, DNS and timeout errors from undici or node:net become 'unavailable'. */
export function fromNetworkError(upstream: string, err: unknown, what: string): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const code = (err as { code?: string } | undefined)?.code ?? 'UNKNOWN';
  const reason = (err as Error | undefined)?.message ?? String(err);
  // The origin rules refused a connection (a redirect or realm resolving to an internal address):
  // the upstream sent us somewhere it must not, which is a bad answer, not an outage.
  if (code === REFUSED_ADDRESS) return new UpstreamError(upstream, 'bad-response', `${upstream}: ${what} refused: ${reason}`, { causeCode: code });
  return new UpstreamError(upstream, 'unavailable', `${upstream} unreachable for ${what}: ${code} ${reason}`, {
    causeCode: code,
  });
}

/** What a client sees when an upstream failure cannot be absorbed by the cache. */
export function toRegistryError(err: UpstreamError, notFound: 'MANIFEST_UNKNOWN' | 'BLOB_UNKNOWN' | 'NAME_UNKNOWN'): RegistryError {
  switch (err.kind) {
    case 'not-found':
      return registryError(notFound, `not found upstream at ${err.upstream}`);
    case 'unauthorized':
    case 'denied':
      return registryError('DENIED', `upstream ${err.upstream} refused access (${err.status ?? ''})`.trim());
    case 'rate-limited': {
      const retry = String(err.retryAfter ?? 60);
      return registryError('TOOMANYREQUESTS', `upstream ${err.upstream} pull rate limit reached; retry after ${retry}s`, {
        headers: { 'retry-after': retry },
      });
    }
    case 'unavailable':
      return registryError('UNAVAILABLE', `${err.upstream}: ${err.message}`, {
        headers: err.retryAfter !== undefined ? { 'retry-after': String(err.retryAfter) } : {},
      });
    case 'integrity':
    case 'bad-response':
      return registryError('BAD_GATEWAY', err.message);
  }
}
