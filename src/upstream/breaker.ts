/**
 * Per-upstream circuit breaker: after `maxFails` consecutive outages the upstream is skipped for
 * `failTimeout`, so a dead upstream costs no timeouts on the request path; then one probe is let
 * through (half-open) and its outcome closes or re-opens the breaker.
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

/** The breaker as operators see it (admin API): plain JSON. */
export interface BreakerStatus {
  state: BreakerState;
  failures: number;
  maxFails: number;
  failTimeoutSeconds: number;
  retryInSeconds: number;
}

export class Breaker {
  private fails = 0;
  private openedAt: number | null = null;
  private probing = false;

  constructor(
    private readonly maxFails: number,
    private readonly failTimeout: number,
    private readonly now: () => number = Date.now,
  ) {}

  get state(): BreakerState {
    if (this.openedAt === null) return 'closed';
    return this.now() - this.openedAt >= this.failTimeout ? 'half-open' : 'open';
  }

  /** May a request go out now? In half-open, exactly one probe may. */
  allow(): boolean {
    const s = this.state;
    if (s === 'closed') return true;
    if (s === 'open') return false;
    if (this.probing) return false;
    this.probing = true;
    return true;
  }

  success(): void {
    this.fails = 0;
    this.openedAt = null;
    this.probing = false;
  }

  failure(): void {
    this.probing = false;
    this.fails += 1;
    if (this.openedAt !== null || this.fails >= this.maxFails) this.openedAt = this.now();
  }

  /** Consecutive outages seen so far (0 after any answer that is not an outage). */
  get failures(): number {
    return this.fails;
  }

  /** Seconds until a probe is allowed. */
  retryIn(): number {
    if (this.openedAt === null) return 0;
    return Math.max(0, Math.ceil((this.failTimeout - (this.now() - this.openedAt)) / 1000));
  }

  status(): BreakerStatus {
    return {
      state: this.state,
      failures: this.fails,
      maxFails: this.maxFails,
      failTimeoutSeconds: this.failTimeout / 1000,
      retryInSeconds: this.retryIn(),
    };
  }
}
