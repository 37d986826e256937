/**
 * Bearer tokens an upstream's realm issued, cached per scope. The cache is bounded (an LRU: a
 * client that walks many repositories cannot grow it without limit) and keyed by everything a
 * token is valid for — the upstream, the realm that issued it, its service and scope — so a
 * token is only ever sent back where it came from. Reading the realm's answer (size caps,
 * validation) lives here too; the HTTP exchange itself is the client's.
 */
import { LRUCache } from 'lru-cache';
import type { Challenge } from './challenge.js';
import { UpstreamError } from './errors.js';

/** Scopes with a live token kept per upstream: far more than the repositories a mirror pulls at once. */
const MAX_CACHED_TOKENS = 1024;
/** Refresh this long before the realm's expiry, so a token never dies in flight. */
const EARLY_MS = 10_000;

export class TokenCache {
  private readonly tokens = new LRUCache<string, { token: string; expiresAt: number }>({ max: MAX_CACHED_TOKENS });
  private readonly running = new Map<string, Promise<string | null>>();

  constructor(
    private readonly upstream: string,
    private readonly now: () => number,
  ) {}

  key(ch: Challenge, scope: string): string {
    return `${this.upstream}|${ch.realm}|${ch.service ?? ''}|${scope}`;
  }

  get(ch: Challenge, scope: string): string | null {
    const k = this.key(ch, scope);
    const t = this.tokens.get(k);
    if (!t) return null;
    if (t.expiresAt <= this.now()) {
      this.tokens.delete(k);
      return null;
    }
    return t.token;
  }

  forget(ch: Challenge, scope: string): void {
    this.tokens.delete(this.key(ch, scope));
  }

  get size(): number {
    return this.tokens.size;
  }

  /** Run `fetch` once per key at a time; store what it returns under the key. */
  fetch(ch: Challenge, scope: string, fetch: () => Promise<{ token: string; expiresIn: number } | null>): Promise<string | null> {
    const k = this.key(ch, scope);
    const running = this.running.get(k);
    if (running) return running;
    const p = fetch()
      .then((got) => {
        if (!got) return null;
        this.tokens.set(k, { token: got.token, expiresAt: this.now() + got.expiresIn * 1000 - EARLY_MS });
        return got.token;
      })
      .finally(() => this.running.delete(k));
    this.running.set(k, p);
    return p;
  }
}

/**
 * Read a realm's JSON answer: `token` (Distribution) or `access_token` (OAuth), `expires_in`
 * defaulting to, and never below, 60 s (the token spec). A token that could not be sent back as a
 * header value, or is longer than `maxBytes`, is refused.
 */
export function parseTokenResponse(upstream: string, text: string, maxBytes: number): { token: string; expiresIn: number } | null {
  let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new UpstreamError(upstream, 'unavailable', `${upstream}: token endpoint answered something other than JSON`);
  }
  if (typeof body !== 'object' || body === null) {
    throw new UpstreamError(upstream, 'unavailable', `${upstream}: token endpoint answered something other than a JSON object`);
  }
  const token = typeof body.token === 'string' && body.token !== '' ? body.token : typeof body.access_token === 'string' ? body.access_token : null;
  if (!token) return null;
  if (token.length > maxBytes) {
    throw new UpstreamError(upstream, 'bad-response', `${upstream}: token of ${token.length} bytes is over the ${maxBytes}-byte cap`, {
      causeCode: 'TOKEN_TOO_LARGE',
    });
  }
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new UpstreamError(upstream, 'bad-response', `${upstream}: token endpoint issued a token that is not a header value`);
  }
  const expiresIn = Math.max(60, typeof body.expires_in === 'number' && Number.isFinite(body.expires_in) ? body.expires_in : 60);
  return { token, expiresIn };
}
