/**
 * Single-flight: while a call for a key runs, later callers for the same key share its result
 * instead of starting their own. An owned object (one per MirrorService), never a module global,
 * so tests and several services in one process never see each other's work.
 */
export class SingleFlight<K, V> {
  private readonly running = new Map<K, Promise<V>>();

  /** Run `fn` for `key`, or join the run already under way. `shared` tells which happened. */
  async run(key: K, fn: () => Promise<V>): Promise<{ value: V; shared: boolean }> {
    const existing = this.running.get(key);
    if (existing) return { value: await existing, shared: true };
    const p = fn().finally(() => this.running.delete(key));
    this.running.set(key, p);
    return { value: await p, shared: false };
  }

  get size(): number {
    return this.running.size;
  }

  has(key: K): boolean {
    return this.running.has(key);
  }
}
