/**
 * What the mirror knows about an upstream's pull budget. Docker Hub reports it on every manifest
 * GET and HEAD as `ratelimit-limit: 100;w=21600` / `ratelimit-remaining: 76;w=21600`; no headers
 * means unlimited. A 429 marks the upstream exhausted until Retry-After or the window's end.
 *
 * A 429 without Retry-After falls back to the reported window, which on Docker Hub is six hours.
 * Such a block is lifted early as soon as the upstream itself reports pulls left again (the free
 * HEADs of tag revalidation keep reporting it), so one abuse-limit 429 cannot stall pulls for
 * the whole window. A Retry-After is the upstream's explicit instruction and is always honoured.
 */
export interface RateLimitSnapshot {
  limit: number | null;
  remaining: number | null;
  /** Window in seconds, as the upstream reported it. */
  window: number | null;
  /** When the numbers were last seen (ms since epoch). */
  observedAt: number | null;
  /** While in the future, send no GETs: the budget is spent (ms since epoch). */
  exhaustedUntil: number | null;
}

/** The pull budget as operators see it (admin API): plain JSON, times as ISO strings. */
export interface RateLimitStatus {
  limit: number | null;
  remaining: number | null;
  windowSeconds: number | null;
  observedAt: string | null;
  /** GETs are held back until `exhaustedUntil`. */
  exhausted: boolean;
  exhaustedUntil: string | null;
  retryAfterSeconds: number;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** `N;w=S` → {value, window}. Returns null for anything else. */
export function parseRateLimitHeader(v: string | string[] | undefined): { value: number; window: number | null } | null {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return null;
  const m = /^\s*(\d+)\s*(?:;\s*w\s*=\s*(\d+))?/.exec(s);
  if (!m || m[1] === undefined) return null;
  return { value: Number(m[1]), window: m[2] !== undefined ? Number(m[2]) : null };
}

/** The state as replicas share it (src/registry/cluster.ts): the snapshot and whether its block is firm. */
export interface SharedRateLimit extends RateLimitSnapshot {
  firm: boolean;
}

export class RateLimitState {
  private snap: RateLimitSnapshot = { limit: null, remaining: null, window: null, observedAt: null, exhaustedUntil: null };
  /** The current block came from an explicit Retry-After: nothing lifts it early. */
  private firm = false;
  /**
   * Told after each change this process saw for itself (numbers observed, a 429), so replicas
   * and workers sharing the upstream can adopt it; never called for an adopted state.
   */
  onChange: ((s: SharedRateLimit) => void) | null = null;

  constructor(private readonly now: () => number = Date.now) {}

  /** The state to share with other processes. */
  shared(): SharedRateLimit {
    return { ...this.snap, firm: this.firm };
  }

  /**
   * Take in what another process saw: its numbers when they are newer than ours, and its block
   * when it lasts longer than ours (a 429 anywhere holds back GETs everywhere). A newer report of
   * pulls left lifts a block that was not firm, as `observe` does.
   */
  adopt(s: SharedRateLimit): void {
    if (s.observedAt !== null && (this.snap.observedAt === null || s.observedAt > this.snap.observedAt)) {
      this.snap = { ...this.snap, limit: s.limit ?? this.snap.limit, remaining: s.remaining, window: s.window ?? this.snap.window, observedAt: s.observedAt };
      if (s.exhaustedUntil === null && s.remaining !== null && s.remaining > 0 && !this.firm) this.snap.exhaustedUntil = null;
    }
    if (s.exhaustedUntil !== null && s.exhaustedUntil > this.now() && (this.snap.exhaustedUntil === null || s.exhaustedUntil > this.snap.exhaustedUntil)) {
      this.snap = { ...this.snap, remaining: 0, exhaustedUntil: s.exhaustedUntil };
      this.firm = s.firm;
    }
  }

  /** Record the headers of any upstream response. */
  observe(headers: Record<string, string | string[] | undefined>): void {
    const limit = parseRateLimitHeader(headers['ratelimit-limit']);
    const remaining = parseRateLimitHeader(headers['ratelimit-remaining']);
    if (!limit && !remaining) return;
    const t = this.now();
    this.snap = {
      ...this.snap,
      limit: limit?.value ?? this.snap.limit,
      remaining: remaining?.value ?? this.snap.remaining,
      window: remaining?.window ?? limit?.window ?? this.snap.window,
      observedAt: t,
    };
    if (remaining && remaining.value > 0 && this.snap.exhaustedUntil !== null && (this.snap.exhaustedUntil <= t || !this.firm)) {
      this.snap.exhaustedUntil = null;
      this.firm = false;
    }
    this.onChange?.(this.shared());
  }

  /** A 429: no GETs until Retry-After, or the reported window, or a minute. */
  markExhausted(retryAfterSeconds: number | undefined): void {
    const t = this.now();
    const seconds = retryAfterSeconds ?? this.snap.window ?? 60;
    this.snap = { ...this.snap, remaining: 0, exhaustedUntil: t + seconds * 1000 };
    this.firm = retryAfterSeconds !== undefined;
    this.onChange?.(this.shared());
  }

  /** Seconds until GETs may be sent again; 0 when they may be sent now. */
  blockedFor(): number {
    const until = this.snap.exhaustedUntil;
    if (until === null) return 0;
    const left = until - this.now();
    return left > 0 ? Math.ceil(left / 1000) : 0;
  }

  /** Pulls left in the current window, or null when the upstream reports no limit. */
  remaining(): number | null {
    if (this.blockedFor() > 0) return 0;
    return this.snap.remaining;
  }

  /** When the budget is expected back (ms since epoch), for deferring pre-warm work. */
  resetAt(): number | null {
    if (this.snap.exhaustedUntil !== null && this.snap.exhaustedUntil > this.now()) return this.snap.exhaustedUntil;
    if (this.snap.observedAt !== null && this.snap.window !== null) return this.snap.observedAt + this.snap.window * 1000;
    return null;
  }

  snapshot(): RateLimitSnapshot {
    return { ...this.snap };
  }

  status(): RateLimitStatus {
    const blocked = this.blockedFor();
    return {
      limit: this.snap.limit,
      remaining: this.remaining(),
      windowSeconds: this.snap.window,
      observedAt: iso(this.snap.observedAt),
      exhausted: blocked > 0,
      exhaustedUntil: blocked > 0 ? iso(this.snap.exhaustedUntil) : null,
      retryAfterSeconds: blocked,
    };
  }
}
