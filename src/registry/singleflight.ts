/**
 * Single-flight: while a call for a key runs, later callers for the same key share its result
 * instead of starting their own. An owned object (one per MirrorService), never a module global,
 * so tests and several services in one process never see each other's work.
 *
 * A run is forgotten the moment it settles, success or failure: a failed fetch is never handed
 * to a later caller, who starts afresh.
 */
export class SingleFlight<K, V> {
  private readonly running = new Map<K, Promise<V>>();

  /**
   * Join the run under way for `key`, or start `fn`. `shared` is known at once (before the
   * result), so a caller can count a coalesced request even when the run then fails.
   */
  join(key: K, fn: () => Promise<V>): { promise: Promise<V>; shared: boolean } {
    const existing = this.running.get(key);
    if (existing) return { promise: existing, shared: true };
    const p = fn().finally(() => {
      if (this.running.get(key) === p) this.running.delete(key);
    });
    this.running.set(key, p);
    // Whoever awaits `promise` sees the failure; the table itself must not leave it unhandled.
    p.catch(() => undefined);
    return { promise: p, shared: false };
  }

  /** Run `fn` for `key`, or join the run already under way. `shared` tells which happened. */
  async run(key: K, fn: () => Promise<V>): Promise<{ value: V; shared: boolean }> {
    const { promise, shared } = this.join(key, fn);
    return { value: await promise, shared };
  }

  get size(): number {
    return this.running.size;
  }

  has(key: K): boolean {
    return this.running.has(key);
  }
}
