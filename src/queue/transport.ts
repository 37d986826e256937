/**
 * The queue seam: one interface, two transports (BullMQ over Redis in bullmq.ts, a timer-driven
 * queue in this process in in-process.ts), one contract suite (test/unit/queue-contract.test.ts).
 *
 * What every transport guarantees:
 *  - schedules: one per entry, by cron pattern; syncing removes the schedules of entries no
 *    longer listed;
 *  - enqueue: an on-demand run; while one for the entry is queued or running, enqueue joins it
 *    (same job id, `queued: false`);
 *  - at most one run of an entry at a time (a second waits for the first to end), at most
 *    `concurrency` runs per worker;
 *  - the processor's failures: PrewarmDeferred → run again at `until`, not counted as an attempt;
 *    PrewarmPermanentError → failed at once; anything else → retried up to `attempts` with
 *    exponential backoff, never sooner than the error's `retryAfter` seconds;
 *  - close: stop taking jobs, let the running ones finish.
 */
import type { PrewarmJobData } from './jobs.js';
import { describeRedisError, redisEndpoint } from './redis-errors.js';

export interface QueueJob {
  id: string;
  data: PrewarmJobData;
  /** 1 for the first try. */
  attempt: number;
  maxAttempts: number;
}

/** Runs one job. Resolves with what to report; throws to defer, fail or retry (see above). */
export type JobProcessor = (job: QueueJob) => Promise<unknown>;

export interface ScheduleSpec {
  entryId: string;
  /** Cron pattern, 5 or 6 fields, in UTC. */
  pattern: string;
  data: PrewarmJobData;
}

export interface EnqueueResult {
  jobId: string;
  /** False when a run of the entry was already queued or running and this request joined it. */
  queued: boolean;
}

export interface RetryPolicy {
  /** Tries per run, the first included. */
  attempts: number;
  /** Delay before the first retry (ms); doubles each time. */
  retryDelayMs: number;
}

export interface PrewarmQueue {
  readonly kind: 'bullmq' | 'in-process';
  /** Make the schedules exactly these: upsert each, remove every other pre-warm schedule. */
  syncSchedules(specs: readonly ScheduleSpec[]): Promise<void>;
  enqueue(data: PrewarmJobData): Promise<EnqueueResult>;
  /** Begin taking jobs (the worker role). */
  startWorker(processor: JobProcessor, concurrency: number): Promise<void>;
  /** How many workers take jobs from this queue (BullMQ: across processes). */
  workerCount(): Promise<number>;
  /** Stop taking jobs; resolves when the running ones have finished. */
  close(): Promise<void>;
}

/** The queue's store (Redis) cannot be reached: the caller answers 503, it does not hang. */
export class QueueUnavailableError extends Error {
  override readonly name = 'QueueUnavailableError';
}

/** Bound on a producer call (add, upsert, status read): past it the caller hears Redis is unavailable. */
export const PRODUCER_TIMEOUT_MS = 5_000;

/**
 * Await a producer call to the Redis at `url` (redis.url) for at most PRODUCER_TIMEOUT_MS; any
 * failure becomes a QueueUnavailableError whose message names redis.url (src/queue/redis-errors.ts).
 */
export async function bounded<T>(what: string, p: Promise<T>, url: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new QueueUnavailableError(`redis at ${redisEndpoint(url)} (redis.url) did not answer ${what} within ${PRODUCER_TIMEOUT_MS} ms`)),
      PRODUCER_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([p, timeout]);
  } catch (err) {
    if (err instanceof QueueUnavailableError) throw err;
    throw new QueueUnavailableError(`${describeRedisError(err, url)} (during ${what})`);
  } finally {
    clearTimeout(timer);
  }
}

/** Seconds an error asks to wait before the next try (an upstream Retry-After), if any. */
export function retryAfterOf(err: unknown): number | undefined {
  const v = (err as { retryAfter?: unknown } | null | undefined)?.retryAfter;
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/** Delay before retrying after the `attempt`-th try failed: base × 2^(attempt-1), at least Retry-After. */
export function retryDelay(attempt: number, baseMs: number, err: unknown): number {
  const exponential = baseMs * 2 ** Math.max(0, attempt - 1);
  const floor = (retryAfterOf(err) ?? 0) * 1000;
  return Math.max(exponential, floor);
}
