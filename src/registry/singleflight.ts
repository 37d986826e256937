/**
 * Single-flight: while a call for a key runs, later callers for the same key share its result
 * instead of starting their own. An owned object (one per fill coordinator), never a module
 * global, so tests and several services in one process never see each other's work.
 *
 * A run is forgotten the moment it settles, success or failure: a failed fetch is never handed
 * to a later caller, who starts afresh. A run whose value is itself still working (a blob fill
 * whose promise resolves once the download has started) can stay joinable longer: `until`
 * names what it waits for before the key is forgotten.
 */
export interface Flight<V> {
  promise: Promise<V>;
  /** Joined a run already under way (known at once, before the result). */
  shared: boolean;
}

/** A run under way, as `entries()` lists it. */
export interface RunningFlight<K, V> {
  key: K;
  /** When the run started (ms since epoch, by the table's clock). */
  startedAt: number;
  /** The run's value once its promise has resolved (it may still be working: see `until`). */
  value: V | undefined;
}

interface Entry<V> {
  promise: Promise<V>;
  startedAt: number;
  value: V | undefined;
}

export class SingleFlight<K, V> {
  private readonly running = new Map<K, Entry<V>>();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * Join the run under way for `key`, or start `fn`. `shared` is known at once (before the
   * result), so a caller can count a coalesced request even when the run then fails. With
   * `until`, a run that resolved stays joinable until `until(value)` settles.
   */
  join(key: K, fn: () => Promise<V>, until?: (value: V) => Promise<unknown>): Flight<V> {
    const existing = this.running.get(key);
    if (existing) return { promise: existing.promise, shared: true };
    const entry: Entry<V> = { promise: fn(), startedAt: this.now(), value: undefined };
    const forget = (): void => this.forget(key, entry.promise);
    entry.promise.then((value) => {
      entry.value = value;
      if (until) until(value).then(forget, forget);
      else forget();
    }, forget);
    this.running.set(key, entry);
    return { promise: entry.promise, shared: false };
  }

  /** Run `fn` for `key`, or join the run already under way. `shared` tells which happened. */
  async run(key: K, fn: () => Promise<V>): Promise<{ value: V; shared: boolean }> {
    const { promise, shared } = this.join(key, fn);
    return { value: await promise, shared };
  }

  /** The run under way for `key`, without joining or starting one. */
  peek(key: K): Promise<V> | undefined {
    return this.running.get(key)?.promise;
  }

  /** Drop `key` if it is still the run `promise` (a caller found it failed before its end). */
  forget(key: K, promise: Promise<V>): void {
    if (this.running.get(key)?.promise === promise) this.running.delete(key);
  }

  /** Every run under way, oldest first. */
  entries(): RunningFlight<K, V>[] {
    return [...this.running].map(([key, e]) => ({ key, startedAt: e.startedAt, value: e.value }));
  }

  /** The promises of every run under way (to wait for them on close). */
  promises(): Promise<V>[] {
    return [...this.running.values()].map((e) => e.promise);
  }

  get size(): number {
    return this.running.size;
  }

  has(key: K): boolean {
    return this.running.has(key);
  }
}
