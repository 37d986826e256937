/**
 * The BullMQ transport: used when `redis.url` is set. Replicas and `berth worker` processes share
 * one queue (`<redis.prefix>:prewarm`), so each run happens once however many processes there are.
 *
 * Following BullMQ's production advice: producers (the HTTP API, `berth prewarm`, scheduler
 * upserts) fail fast — no offline queue, one retry, and a bound on every call — so an API request
 * never hangs on a Redis that is down; workers wait (`maxRetriesPerRequest: null`) and pick up
 * again when Redis returns. Schedulers are upserted on every boot, deterministic ids keep a
 * repeated "run now" from queueing twice, permanent failures are UnrecoverableError, deferrals
 * move the job to delayed without spending an attempt, and close() lets running jobs finish.
 *
 * One run per entry at a time across processes: a worker holds `<prefix>:prewarm-lock:<entry>`
 * (renewed while it runs, expiring `prewarm.lockDuration` after a crash); a run that finds the
 * entry busy is delayed briefly and looks again. Running the same entry twice at once would
 * only spend the same pulls twice.
 */
import { DelayedError, Queue, UnrecoverableError, Worker, type Job, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { PrewarmDeferred, PrewarmPermanentError } from '../registry/prewarm.js';
import { JOB_NAME, QUEUE_NAME, entryIdOfScheduler, runJobId, schedulerIdFor, type PrewarmJobData } from './jobs.js';
import { describeRedisError, redisEndpoint } from './redis-errors.js';
import { PRODUCER_TIMEOUT_MS, QueueUnavailableError, bounded, retryDelay, type EnqueueResult, type JobProcessor, type PrewarmQueue, type RetryPolicy, type ScheduleSpec } from './transport.js';

/** An entry already running elsewhere: look again after this long. */
const BUSY_RETRY_MS = 2_000;
/** The backoff type our jobs carry; the worker's strategy computes it (exponential, Retry-After floor). */
const BACKOFF_TYPE = 'prewarm';

/** Take the entry lock when free, or when the holder is an earlier try of this same job (it crashed). */
const LOCK_SCRIPT = `
local v = redis.call('get', KEYS[1])
if (not v) or v == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`;
const RENEW_SCRIPT = `
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0`;
const UNLOCK_SCRIPT = `
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0`;

export interface BullmqQueueOptions {
  url: string;
  /** Key namespace (`redis.prefix`). */
  prefix: string;
  /** Defaults to QUEUE_NAME; tests use their own. */
  queueName?: string;
  policy: RetryPolicy;
  /** BullMQ job lock, stalled-check interval and entry lock lifetime (prewarm.lockDuration). */
  lockDurationMs: number;
  log: Logger;
}

export class BullmqQueue implements PrewarmQueue {
  readonly kind = 'bullmq';
  /** Fail-fast connection for producing and for status reads. */
  readonly producer: Redis;
  readonly queueName: string;
  private readonly queue: Queue<PrewarmJobData>;
  private worker: Worker<PrewarmJobData> | null = null;
  private workerRedis: Redis | null = null;
  private readonly lockMs: number;
  private lastError = '';

  constructor(private readonly opts: BullmqQueueOptions) {
    this.queueName = opts.queueName ?? QUEUE_NAME;
    this.lockMs = Math.max(1_000, opts.lockDurationMs);
    this.producer = new Redis(opts.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: PRODUCER_TIMEOUT_MS });
    this.producer.on('error', (err: Error) => this.noteError('producer', err));
    this.queue = new Queue<PrewarmJobData>(this.queueName, { connection: this.producer, prefix: opts.prefix });
    this.queue.on('error', (err: Error) => this.noteError('queue', err));
  }

  /** Log a connection error once per distinct reason (ioredis repeats them on every reconnect). */
  private noteError(source: string, err: Error): void {
    const reason = describeRedisError(err, this.opts.url);
    if (reason === this.lastError) return;
    this.lastError = reason;
    this.opts.log.warn({ source, reason }, 'redis connection problem (pre-warm queue)');
  }

  /**
   * Fail fast: a producer connection that is down (between reconnects) fails the call at once; one
   * still making its first connection gets until the producer bound to become ready.
   */
  private async connected(): Promise<void> {
    const p = this.producer;
    if (p.status === 'ready') return;
    if (p.status === 'reconnecting' || p.status === 'close' || p.status === 'end') {
      throw new QueueUnavailableError(`redis at ${redisEndpoint(this.opts.url)} (redis.url) is not reachable (the connection is ${p.status === 'reconnecting' ? 'reconnecting' : 'closed'})`);
    }
    await bounded('the connection', new Promise<void>((resolve, reject) => {
      const ready = (): void => {
        p.off('error', failed);
        resolve();
      };
      const failed = (err: Error): void => {
        p.off('ready', ready);
        reject(err);
      };
      p.once('ready', ready);
      p.once('error', failed);
    }), this.opts.url);
  }

  /** A key of ours beside BullMQ's (never under `<prefix>:<queue>:`, where job ids live). */
  key(suffix: string): string {
    return `${this.opts.prefix}:${this.queueName}-${suffix}`;
  }

  private jobOptions(): JobsOptions {
    return { attempts: this.opts.policy.attempts, backoff: { type: BACKOFF_TYPE, delay: this.opts.policy.retryDelayMs } };
  }

  async syncSchedules(specs: readonly ScheduleSpec[]): Promise<void> {
    await this.connected();
    await bounded('the scheduler sync', (async () => {
      for (const s of specs) {
        await this.queue.upsertJobScheduler(schedulerIdFor(s.entryId), { pattern: s.pattern }, {
          name: JOB_NAME,
          data: s.data,
          opts: { ...this.jobOptions(), removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } },
        });
      }
      const wanted = new Set(specs.map((s) => schedulerIdFor(s.entryId)));
      for (const existing of await this.queue.getJobSchedulers(0, -1)) {
        const id = existing.key;
        if (!wanted.has(id) && entryIdOfScheduler(id) !== null) await this.queue.removeJobScheduler(id);
      }
    })(), this.opts.url);
  }

  async enqueue(data: PrewarmJobData): Promise<EnqueueResult> {
    const jobId = runJobId(data.entryId);
    await this.connected();
    return bounded('the enqueue', (async () => {
      const existing = await this.queue.getJob(jobId);
      if (existing) {
        const state = await existing.getState();
        if (state !== 'completed' && state !== 'failed' && state !== 'unknown') return { jobId, queued: false };
        await existing.remove().catch(() => undefined);
      }
      await this.queue.add(JOB_NAME, data, { ...this.jobOptions(), jobId, removeOnComplete: true, removeOnFail: true });
      return { jobId, queued: true };
    })(), this.opts.url);
  }

  async startWorker(processor: JobProcessor, concurrency: number): Promise<void> {
    const redis = new Redis(this.opts.url, { maxRetriesPerRequest: null });
    redis.on('error', (err: Error) => this.noteError('worker', err));
    this.workerRedis = redis;
    const base = this.opts.policy.retryDelayMs;
    this.worker = new Worker<PrewarmJobData>(this.queueName, (job, token) => this.process(job, token, processor), {
      connection: redis,
      prefix: this.opts.prefix,
      concurrency: Math.max(1, concurrency),
      lockDuration: this.lockMs,
      stalledInterval: this.lockMs,
      maxStalledCount: 2,
      settings: { backoffStrategy: (attemptsMade: number, _type?: string, err?: Error) => retryDelay(attemptsMade, base, err) },
    });
    this.worker.on('error', (err: Error) => this.noteError('worker', err));
    this.worker.on('failed', (job, err) => {
      this.opts.log.warn({ job: job?.id, ref: job?.data.ref, attempt: job?.attemptsMade, err: err.message }, 'pre-warm run failed');
    });
    await this.worker.waitUntilReady();
  }

  private async process(job: Job<PrewarmJobData>, token: string | undefined, processor: JobProcessor): Promise<unknown> {
    const redis = this.workerRedis;
    if (!redis) throw new Error('worker connection missing');
    const jobId = job.id ?? '';
    const lockKey = this.key(`lock:${job.data.entryId}`);
    const took = await redis.eval(LOCK_SCRIPT, 1, lockKey, jobId, String(this.lockMs));
    if (took !== 1) {
      await job.moveToDelayed(Date.now() + BUSY_RETRY_MS, token);
      throw new DelayedError(`a run of ${job.data.ref} is in progress elsewhere`);
    }
    const renew = setInterval(() => {
      redis.eval(RENEW_SCRIPT, 1, lockKey, jobId, String(this.lockMs)).catch(() => undefined);
    }, Math.floor(this.lockMs / 2));
    renew.unref();
    try {
      return await processor({ id: jobId, data: job.data, attempt: job.attemptsMade + 1, maxAttempts: job.opts.attempts ?? 1 });
    } catch (err) {
      if (err instanceof PrewarmDeferred) {
        await job.moveToDelayed(err.until, token);
        throw new DelayedError(err.message);
      }
      if (err instanceof PrewarmPermanentError) throw new UnrecoverableError(err.message);
      throw err;
    } finally {
      clearInterval(renew);
      await redis.eval(UNLOCK_SCRIPT, 1, lockKey, jobId).catch(() => undefined);
    }
  }

  async workerCount(): Promise<number> {
    await this.connected();
    return bounded('the worker count', this.queue.getWorkersCount(), this.opts.url);
  }

  /** PING over the producer connection (readiness, `berth worker`'s /readyz). */
  async ping(): Promise<boolean> {
    try {
      return (await bounded('PING', this.producer.ping(), this.opts.url)) === 'PONG';
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    // The worker first: it waits for running jobs, which still write status and release locks.
    await this.worker?.close().catch((err: unknown) => this.opts.log.warn({ err }, 'closing the pre-warm worker'));
    await this.queue.close().catch(() => undefined);
    this.workerRedis?.disconnect();
    this.producer.disconnect();
  }
}
