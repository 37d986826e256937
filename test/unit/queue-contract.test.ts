// The queue seam's contract (src/queue/transport.ts), one suite run against both transports:
// in-process, and BullMQ on a real redis-server. A fake processor stands in for pre-warm, so
// each behaviour (joining, deferral, retries, per-entry exclusion, schedules, close) is seen
// directly. Every BullMQ test gets its own key prefix.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startRedis, type RedisServer } from '../helpers/index.js';
import { createLogger } from '../../src/log.js';
import { BullmqQueue } from '../../src/queue/bullmq.js';
import { InProcessQueue } from '../../src/queue/in-process.js';
import type { PrewarmJobData } from '../../src/queue/jobs.js';
import type { PrewarmQueue, QueueJob, RetryPolicy } from '../../src/queue/transport.js';
import { PrewarmDeferred, PrewarmPermanentError, PrewarmTransientError } from '../../src/registry/prewarm.js';

const log = createLogger('silent');
let redis: RedisServer;

before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis?.stop();
});

type Factory = (policy: RetryPolicy) => PrewarmQueue;

const transports: [string, Factory][] = [
  ['in-process', (policy) => new InProcessQueue(policy, log)],
  ['bullmq', (policy) => new BullmqQueue({
    url: redis.url, prefix: `t${randomBytes(4).toString('hex')}`, policy, lockDurationMs: 2_000, log,
  })],
];

function data(entryId: string, ref = `example/${entryId}:1`): PrewarmJobData {
  return { entryId, ref, platforms: [], tags: null, pin: true, reason: 'manual' };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string | (() => string), ms = 8_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(20);
  }
}

interface Call {
  job: QueueJob;
  at: number;
}

for (const [name, make] of transports) {
  describe(`pre-warm queue contract: ${name}`, () => {
    const opened: PrewarmQueue[] = [];
    const open = (policy: RetryPolicy = { attempts: 3, retryDelayMs: 50 }): PrewarmQueue => {
      const q = make(policy);
      opened.push(q);
      return q;
    };
    after(async () => {
      await Promise.all(opened.map((q) => q.close()));
    });

    it('runs an on-demand job once; a second request while it waits or runs joins it', async () => {
      const q = open();
      const calls: Call[] = [];
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      await q.startWorker(async (job) => {
        calls.push({ job, at: Date.now() });
        await gate;
      }, 2);
      const first = await q.enqueue(data('a'));
      assert.equal(first.queued, true);
      assert.ok(!first.jobId.includes(':'), 'job ids never contain ":"');
      const second = await q.enqueue(data('a'));
      assert.deepEqual(second, { jobId: first.jobId, queued: false });
      await until(() => calls.length === 1, 'the run to start');
      assert.equal((await q.enqueue(data('a'))).queued, false, 'joins the running job too');
      release();
      await sleep(300);
      assert.equal(calls.length, 1, 'processed once');
      assert.equal(calls[0]?.job.attempt, 1);
      assert.deepEqual(calls[0]?.job.data, data('a'));
      assert.equal((await q.enqueue(data('a'))).queued, true, 'after it ended, a new request queues a new run');
      await until(() => calls.length === 2, 'the second run');
    });

    it('a deferred run comes back at the time it names and does not spend an attempt', async () => {
      const q = open({ attempts: 1, retryDelayMs: 50 });
      const calls: Call[] = [];
      await q.startWorker(async (job) => {
        calls.push({ job, at: Date.now() });
        if (calls.length < 3) throw new PrewarmDeferred(Date.now() + 600, 'budget at the reserve');
      }, 1);
      await q.enqueue(data('d'));
      await until(() => calls.length === 3, () => `the third try (tries so far at ${calls.map((c) => c.at).join(', ')}; now ${Date.now()})`, 10_000);
      const [c0, c1, c2] = calls as [Call, Call, Call];
      assert.ok(c1.at - c0.at >= 550, `second try came ${c1.at - c0.at} ms after the first`);
      assert.ok(c2.at - c1.at >= 550, `third try came ${c2.at - c1.at} ms after the second`);
      assert.deepEqual(calls.map((c) => c.job.attempt), [1, 1, 1], 'deferrals are not attempts');
    });

    it('retries a transient failure with exponential backoff, never sooner than its Retry-After', async () => {
      const q = open({ attempts: 3, retryDelayMs: 50 });
      const calls: Call[] = [];
      await q.startWorker(async (job) => {
        calls.push({ job, at: Date.now() });
        if (calls.length === 1) throw new PrewarmTransientError('upstream 503', 1);
        if (calls.length === 2) throw new Error('connection reset');
      }, 1);
      await q.enqueue(data('t'));
      await until(() => calls.length === 3, 'the third attempt', 10_000);
      const [c0, c1, c2] = calls as [Call, Call, Call];
      assert.ok(c1.at - c0.at >= 950, `retry honoured Retry-After: ${c1.at - c0.at} ms`);
      assert.ok(c2.at - c1.at >= 90, `second retry backed off 2 × 50 ms: ${c2.at - c1.at} ms`);
      assert.deepEqual(calls.map((c) => c.job.attempt), [1, 2, 3]);
      assert.ok(calls.every((c) => c.job.maxAttempts === 3));
    });

    it('gives up after `attempts` tries, and at once on a permanent failure', async () => {
      const q = open({ attempts: 2, retryDelayMs: 30 });
      const calls = new Map<string, number>();
      await q.startWorker(async (job) => {
        calls.set(job.data.entryId, (calls.get(job.data.entryId) ?? 0) + 1);
        if (job.data.entryId === 'perm') throw new PrewarmPermanentError('manifest unknown upstream');
        throw new Error('still failing');
      }, 2);
      await q.enqueue(data('perm'));
      await q.enqueue(data('flaky'));
      await until(() => calls.get('flaky') === 2 && calls.get('perm') === 1, 'both to settle');
      await sleep(500);
      assert.equal(calls.get('perm'), 1, 'a permanent failure is not retried');
      assert.equal(calls.get('flaky'), 2, 'no try beyond attempts');
    });

    it('never runs one entry twice at once, while other entries run side by side', async () => {
      const q = open();
      const runningByEntry = new Map<string, number>();
      let maxSameEntry = 0;
      let maxOverall = 0;
      let running = 0;
      const done: string[] = [];
      await q.startWorker(async (job) => {
        const e = job.data.entryId;
        runningByEntry.set(e, (runningByEntry.get(e) ?? 0) + 1);
        running += 1;
        maxSameEntry = Math.max(maxSameEntry, runningByEntry.get(e) ?? 0);
        maxOverall = Math.max(maxOverall, running);
        await sleep(400);
        runningByEntry.set(e, (runningByEntry.get(e) ?? 1) - 1);
        running -= 1;
        done.push(`${e}/${job.data.reason}`);
      }, 3);
      // A scheduled tick every second and an on-demand run of the same entry, plus another entry.
      await q.syncSchedules([{ entryId: 'same', pattern: '* * * * * *', data: { ...data('same'), reason: 'schedule' } }]);
      await q.enqueue(data('same'));
      await q.enqueue(data('other'));
      await until(() => done.includes('same/schedule') && done.includes('same/manual') && done.includes('other/manual'), 'all three kinds of run', 12_000);
      await q.syncSchedules([]);
      assert.equal(maxSameEntry, 1, 'one run of an entry at a time');
      assert.ok(maxOverall >= 2, 'different entries ran at the same time');
    });

    it('fires schedules on their cron pattern, and a sync without an entry removes its schedule', async () => {
      const q = open();
      const ticks: Call[] = [];
      await q.startWorker(async (job) => {
        ticks.push({ job, at: Date.now() });
      }, 2);
      await q.syncSchedules([{ entryId: 'cron', pattern: '* * * * * *', data: { ...data('cron'), reason: 'schedule' } }]);
      await until(() => ticks.length >= 2, 'two scheduled runs', 5_000);
      assert.ok(ticks.every((t) => t.job.data.reason === 'schedule' && t.job.data.entryId === 'cron'));
      await q.syncSchedules([]);
      await sleep(300);
      const settled = ticks.length;
      await sleep(1_800);
      assert.equal(ticks.length, settled, 'no run after the schedule was removed');
    });

    it('close lets the running job finish and takes no more', async () => {
      const q = open();
      let finished = false;
      let started = 0;
      await q.startWorker(async () => {
        started += 1;
        await sleep(300);
        finished = true;
      }, 1);
      await q.enqueue(data('c1'));
      await until(() => started === 1, 'the run to start');
      await q.close();
      assert.equal(finished, true, 'close waited for the running job');
      assert.equal(started, 1);
    });
  });
}

describe('pre-warm queue: BullMQ across workers', () => {
  it('two workers on one queue run each job exactly once', async () => {
    const prefix = `t${randomBytes(4).toString('hex')}`;
    const policy = { attempts: 3, retryDelayMs: 50 };
    const a = new BullmqQueue({ url: redis.url, prefix, policy, lockDurationMs: 2_000, log });
    const b = new BullmqQueue({ url: redis.url, prefix, policy, lockDurationMs: 2_000, log });
    try {
      const seen: { worker: string; job: string }[] = [];
      const processor = (worker: string) => async (job: QueueJob) => {
        seen.push({ worker, job: job.id });
        await sleep(50);
      };
      await a.startWorker(processor('a'), 2);
      await b.startWorker(processor('b'), 2);
      assert.equal(await a.workerCount(), 2, 'both workers are registered on the queue');
      const ids: string[] = [];
      for (let i = 0; i < 16; i++) ids.push((await a.enqueue(data(`e${i}`))).jobId);
      await until(() => seen.length >= 16, 'every job', 10_000);
      await sleep(300);
      assert.equal(seen.length, 16, 'no job ran twice');
      assert.deepEqual(seen.map((s) => s.job).sort(), [...ids].sort());
    } finally {
      await a.close();
      await b.close();
    }
  });
});
