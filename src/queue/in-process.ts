/**
 * The in-process transport: used when `redis.url` is not set. The same schedules (cron, UTC, as
 * BullMQ reads them), the same processor, the same retry and deferral rules as the BullMQ
 * transport, with the queue held in memory. A restart forgets queued runs; the schedules come
 * back from the config, and entries that never ran are queued at boot by the service.
 *
 * A scheduled tick that finds a run of the same entry already waiting is folded into it: two
 * waiting runs of one entry would only do the same work twice.
 */
import type { Logger } from 'pino';
import { PrewarmDeferred, PrewarmPermanentError } from '../registry/prewarm.js';
import { runJobId, scheduledJobId, type PrewarmJobData } from './jobs.js';
import { nextCronRun } from './cron.js';
import { retryDelay, type EnqueueResult, type JobProcessor, type PrewarmQueue, type RetryPolicy, type ScheduleSpec } from './transport.js';

interface Waiting {
  id: string;
  data: PrewarmJobData;
  attempt: number;
  /** Not before this time (ms since epoch): a deferral or a retry backoff. */
  notBefore: number;
}

interface Schedule {
  spec: ScheduleSpec;
  cancel: () => void;
}

/** setTimeout that survives delays beyond 2^31-1 ms (a monthly cron) and never holds the process open. */
function later(ms: number, fn: () => void): () => void {
  const MAX = 2 ** 31 - 1;
  let timer: NodeJS.Timeout;
  const step = (left: number): void => {
    timer = setTimeout(() => (left > MAX ? step(left - MAX) : fn()), Math.min(Math.max(0, left), MAX));
    timer.unref();
  };
  step(ms);
  return () => clearTimeout(timer);
}

export class InProcessQueue implements PrewarmQueue {
  readonly kind = 'in-process';
  private readonly waiting: Waiting[] = [];
  private readonly running = new Map<string, Promise<void>>();
  private readonly runningEntries = new Set<string>();
  private readonly schedules = new Map<string, Schedule>();
  private processor: JobProcessor | null = null;
  private concurrency = 1;
  private closed = false;
  private cancelWake: (() => void) | null = null;
  private readonly now: () => number;

  constructor(
    private readonly policy: RetryPolicy,
    private readonly log: Logger,
    now?: () => number,
  ) {
    this.now = now ?? Date.now;
  }

  async syncSchedules(specs: readonly ScheduleSpec[]): Promise<void> {
    const wanted = new Map(specs.map((s) => [s.entryId, s]));
    for (const [id, s] of this.schedules) {
      const w = wanted.get(id);
      if (!w || w.pattern !== s.spec.pattern) {
        s.cancel();
        this.schedules.delete(id);
      }
    }
    for (const spec of specs) {
      const existing = this.schedules.get(spec.entryId);
      if (existing) existing.spec = spec;
      else this.arm(spec);
    }
  }

  private arm(spec: ScheduleSpec): void {
    if (this.closed) return;
    const at = nextCronRun(spec.pattern, this.now());
    const schedule: Schedule = {
      spec,
      cancel: later(at - this.now(), () => this.tick(spec.entryId, at)),
    };
    this.schedules.set(spec.entryId, schedule);
  }

  private tick(entryId: string, at: number): void {
    const s = this.schedules.get(entryId);
    if (!s || this.closed) return;
    if (!this.waiting.some((w) => w.data.entryId === entryId)) {
      this.waiting.push({ id: scheduledJobId(entryId, at), data: { ...s.spec.data, reason: 'schedule' }, attempt: 1, notBefore: 0 });
    }
    this.arm(s.spec);
    this.pump();
  }

  async enqueue(data: PrewarmJobData): Promise<EnqueueResult> {
    if (this.closed) throw new Error('the pre-warm queue is closed');
    const jobId = runJobId(data.entryId);
    if (this.running.has(jobId) || this.waiting.some((w) => w.id === jobId)) return { jobId, queued: false };
    this.waiting.push({ id: jobId, data, attempt: 1, notBefore: 0 });
    this.pump();
    return { jobId, queued: true };
  }

  async startWorker(processor: JobProcessor, concurrency: number): Promise<void> {
    this.processor = processor;
    this.concurrency = Math.max(1, concurrency);
    this.pump();
  }

  async workerCount(): Promise<number> {
    return this.processor && !this.closed ? 1 : 0;
  }

  /** Start every due job that has a free slot and whose entry is not already running. */
  private pump(): void {
    if (!this.processor || this.closed) return;
    const now = this.now();
    while (this.running.size < this.concurrency) {
      const i = this.waiting.findIndex((w) => w.notBefore <= now && !this.runningEntries.has(w.data.entryId));
      if (i < 0) break;
      const [job] = this.waiting.splice(i, 1);
      if (job) this.start(job, this.processor);
    }
    this.armWake();
  }

  /** One timer for the earliest job that waits on a deferral or a backoff. */
  private armWake(): void {
    this.cancelWake?.();
    this.cancelWake = null;
    const future = this.waiting.filter((w) => w.notBefore > this.now()).map((w) => w.notBefore);
    if (future.length === 0 || this.closed) return;
    this.cancelWake = later(Math.min(...future) - this.now(), () => this.pump());
  }

  private start(job: Waiting, processor: JobProcessor): void {
    this.runningEntries.add(job.data.entryId);
    const done = (async () => {
      try {
        await processor({ id: job.id, data: job.data, attempt: job.attempt, maxAttempts: this.policy.attempts });
      } catch (err) {
        this.settleFailure(job, err);
      } finally {
        this.running.delete(job.id);
        this.runningEntries.delete(job.data.entryId);
        this.pump();
      }
    })();
    this.running.set(job.id, done);
  }

  private settleFailure(job: Waiting, err: unknown): void {
    if (this.closed) return;
    if (err instanceof PrewarmDeferred) {
      this.waiting.push({ ...job, notBefore: err.until });
      return;
    }
    if (err instanceof PrewarmPermanentError || job.attempt >= this.policy.attempts) {
      this.log.warn({ job: job.id, ref: job.data.ref, attempt: job.attempt, err: (err as Error).message }, 'pre-warm run failed');
      return;
    }
    const delay = retryDelay(job.attempt, this.policy.retryDelayMs, err);
    this.waiting.push({ ...job, attempt: job.attempt + 1, notBefore: this.now() + delay });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.schedules.values()) s.cancel();
    this.schedules.clear();
    this.cancelWake?.();
    this.cancelWake = null;
    this.waiting.length = 0;
    await Promise.allSettled([...this.running.values()]);
  }
}
