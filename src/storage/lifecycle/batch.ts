/**
 * Pacing for passes over the whole store (the index build, GC, eviction): I/O in bounded
 * batches instead of one round trip after another, and CPU-bound loops that hand the event loop
 * back every few thousand items, so a pass over 100,000 blobs never stalls the requests being
 * served meanwhile.
 */

/** Items handled between two returns to the event loop in CPU-bound loops. */
export const YIELD_EVERY = 2048;

/** A pass over the store gave up because the lifecycle is stopping (nothing was changed by it). */
export class PassStopped extends Error {
  constructor() {
    super('stopped: the pass over the store ended early');
  }
}

/** Let queued I/O callbacks and requests run (a macrotask turn, not a microtask). */
export function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Run `fn` over `items`, at most `limit` at a time; rejects with the first error once all settled. */
export async function eachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  let failed: unknown = null;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failed !== null) throw failed;
}

/** Counts items of a CPU-bound loop and yields to the event loop every YIELD_EVERY of them. */
export class Pacer {
  private n = 0;

  /** Call once per item: `await pacer.tick()`; cheap when it does not yield. */
  tick(): Promise<void> | undefined {
    this.n += 1;
    return this.n % YIELD_EVERY === 0 ? yieldToLoop() : undefined;
  }
}

let fullGc: (() => void) | null | undefined;

/**
 * After a pass over the whole store (the index build, a GC): one full collection, so the heap
 * the pass grew for its transient lists (tens of MiB at 100,000 blobs) is given back to the OS
 * instead of staying in the process's RSS (V8 does not shrink it by itself while the server
 * idles: measured 238 MiB idle after a build at 100,000 blobs). The collector is reached through
 * V8's own flag, once; a pause of tens of ms, once per pass. Returns its duration (ms), or null
 * when the runtime does not allow it.
 */
export async function releaseMemory(): Promise<number | null> {
  if (fullGc === undefined) {
    fullGc = null;
    try {
      const v8 = await import('node:v8');
      const vm = await import('node:vm');
      v8.setFlagsFromString('--expose-gc');
      const fn: unknown = vm.runInNewContext('gc');
      if (typeof fn === 'function') fullGc = fn as () => void;
    } catch {
      fullGc = null;
    }
  }
  if (!fullGc) return null;
  const t = performance.now();
  fullGc();
  return performance.now() - t;
}
