/**
 * PrewarmService: the configured pre-warm entries, the queue that runs them (either transport),
 * and what each did last. It is what the HTTP API, `berth serve`, `berth worker` and
 * `berth prewarm` talk to.
 *
 *  - entries come from `prewarm.images`; a ref that names no configured upstream, or a bad cron
 *    pattern, stops the start with the key named (ConfigError);
 *  - syncSchedules: one schedule per entry; schedules, status records and pins of entries no
 *    longer configured are removed (so an image dropped from the list becomes evictable);
 *  - a run (the processor both transports call) goes through the Prewarmer (src/registry/) and
 *    records its result, pulls spent and next try in the status store and the metrics;
 *  - enqueue: "run now" for a configured ref, or a one-off for any ref the mirror serves — a
 *    one-off fills the cache like a client pull but pins nothing and is not scheduled.
 */
import type { Logger } from 'pino';
import { ConfigError } from '../config/errors.js';
import type { BerthConfig } from '../config/types.js';
import type { Metrics } from '../metrics/metrics.js';
import type { MirrorService } from '../registry/mirror.js';
import {
  PrewarmDeferred, PrewarmPermanentError, Prewarmer, newProgress, parseImageRef, type PrewarmOutcome, type ResolvedTag,
} from '../registry/prewarm.js';
import type { Router } from '../registry/routing.js';
import { nextCronRun } from './cron.js';
import { entryIdFor, type PrewarmJobData, type RunReason } from './jobs.js';
import { emptyStatus, type EntryStatus, type RunResult, type StatusStore } from './status.js';
import { retryDelay, type EnqueueResult, type PrewarmQueue, type QueueJob } from './transport.js';

export interface PrewarmEntry {
  id: string;
  ref: string;
  platforms: string[];
  tags: string | null;
  /** Cron pattern; null for a one-off. */
  schedule: string | null;
  configured: boolean;
  upstream: string;
  name: string;
  /** `<upstream>/<name>:<tag>` or `…@<digest>`: how two spellings of one ref are matched. */
  canonical: string;
}

/** One entry as GET /api/v1/prewarm shows it. */
export interface PrewarmView {
  id: string;
  ref: string;
  configured: boolean;
  upstream: string;
  name: string;
  tags: string | null;
  platforms: string[];
  schedule: string | null;
  /** The digest the ref resolved to last (the first tag's, for a pattern). */
  digest: string | null;
  resolved: ResolvedTag[];
  lastRunAt: string | null;
  lastResult: RunResult | null;
  lastError: string | null;
  lastSuccessAt: string | null;
  pullsSpent: number;
  pullsSpentTotal: number;
  blobsFetched: number;
  nextRunAt: string | null;
  /** When a failed or deferred run is tried again (null: it is not; a failed run with null has ended). */
  retryAt: string | null;
  jobId: string | null;
}

export interface PrewarmListing {
  transport: PrewarmQueue['kind'];
  /** Processes taking pre-warm jobs now (null when the queue cannot say). */
  workers: number | null;
  reservePulls: number;
  entries: PrewarmView[];
}

export interface EnqueuedRun extends EnqueueResult {
  entry: PrewarmEntry;
}

export interface PrewarmServiceDeps {
  config: BerthConfig;
  router: Router;
  queue: PrewarmQueue;
  status: StatusStore;
  metrics: Metrics;
  log: Logger;
  /** Needed to run jobs and to unpin dropped entries; a producer-only process may have none. */
  mirror: MirrorService | null;
  now?: () => number;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

export class PrewarmService {
  readonly entries: PrewarmEntry[];
  readonly queue: PrewarmQueue;
  private readonly now: () => number;
  private readonly prewarmer: Prewarmer | null;

  constructor(private readonly deps: PrewarmServiceDeps) {
    this.queue = deps.queue;
    this.now = deps.now ?? Date.now;
    this.entries = this.configuredEntries();
    this.prewarmer = deps.mirror
      ? new Prewarmer({ mirror: deps.mirror, router: deps.router, reservePulls: deps.config.prewarm.reservePulls, log: deps.log, now: this.now })
      : null;
  }

  private configuredEntries(): PrewarmEntry[] {
    const seen = new Map<string, number>();
    return this.deps.config.prewarm.images.map((image, i) => {
      const key = `prewarm.images[${i}]`;
      let entry: PrewarmEntry;
      try {
        entry = this.entryFor(image.ref, image.tags, image.platforms, image.schedule, true);
      } catch (err) {
        throw new ConfigError(`${key}.ref`, err instanceof Error ? err.message : String(err));
      }
      try {
        nextCronRun(image.schedule, this.now());
      } catch (err) {
        throw new ConfigError(`${key}.schedule`, `"${image.schedule}" is not a cron pattern: ${err instanceof Error ? err.message : String(err)}`);
      }
      const earlier = seen.get(entry.id);
      if (earlier !== undefined) throw new ConfigError(`${key}.ref`, `"${image.ref}" is listed twice (also prewarm.images[${earlier}])`);
      seen.set(entry.id, i);
      return entry;
    });
  }

  /** Throws PrewarmPermanentError for a ref the mirror cannot serve. */
  private entryFor(ref: string, tags: string | null, platforms: string[], schedule: string | null, configured: boolean): PrewarmEntry {
    const p = parseImageRef(ref, this.deps.router);
    const suffix = tags !== null ? `:${tags}` : p.digest !== null ? `@${p.digest}` : `:${p.tag ?? 'latest'}`;
    return {
      id: entryIdFor(ref, tags),
      ref, platforms, tags, schedule, configured,
      upstream: p.routed.upstream.name,
      name: p.routed.name,
      canonical: `${p.routed.upstream.name}/${p.routed.name}${suffix}`,
    };
  }

  private dataFor(entry: PrewarmEntry, reason: RunReason): PrewarmJobData {
    return { entryId: entry.id, ref: entry.ref, platforms: entry.platforms, tags: entry.tags, pin: entry.configured, reason };
  }

  /** The configured entry a ref names (by its spelling, its id or its canonical form), if any. */
  find(ref: string): PrewarmEntry | null {
    const exact = this.entries.find((e) => e.ref === ref || e.id === ref);
    if (exact) return exact;
    try {
      const c = this.entryFor(ref, null, [], null, false).canonical;
      return this.entries.find((e) => e.canonical === c) ?? null;
    } catch {
      return null;
    }
  }

  /**
   * Make the queue's schedules the configured ones, and forget entries that are gone: their
   * schedules, status records and pins (what they kept becomes evictable like anything else).
   */
  async syncSchedules(): Promise<void> {
    await this.queue.syncSchedules(
      this.entries.map((e) => ({ entryId: e.id, pattern: e.schedule ?? this.deps.config.prewarm.schedule, data: this.dataFor(e, 'schedule') })),
    );
    const ids = new Set(this.entries.map((e) => e.id));
    for (const s of await this.deps.status.all()) if (!ids.has(s.id)) await this.deps.status.remove(s.id);
    if (this.deps.mirror) {
      for (const { id, pin } of await this.deps.mirror.meta.listPins()) {
        if (!ids.has(id)) {
          await this.deps.mirror.meta.deletePin(id);
          this.deps.log.info({ ref: pin.ref }, 'pre-warm entry no longer configured; unpinned');
        }
      }
    }
  }

  /** Queue a first run of every entry that has never run, so a new entry is warm without waiting for its schedule. */
  async queueNeverRun(): Promise<void> {
    for (const e of this.entries) {
      const s = await this.deps.status.get(e.id);
      if (!s || s.lastRunAt === null) await this.queue.enqueue(this.dataFor(e, 'boot'));
    }
  }

  async startWorker(): Promise<void> {
    await this.queue.startWorker((job) => this.process(job), this.deps.config.prewarm.concurrency);
  }

  /** Run now: a configured entry, or a one-off. Throws PrewarmPermanentError for a ref the mirror cannot serve. */
  async enqueue(ref: string): Promise<EnqueuedRun> {
    const entry = this.find(ref) ?? this.entryFor(ref, null, [], null, false);
    const result = await this.queue.enqueue(this.dataFor(entry, 'manual'));
    await this.update(entry.id, entry.ref, (s) => ({ ...s, jobId: result.jobId }));
    return { ...result, entry };
  }

  /**
   * Make room for one more one-off status record under `max`: forget the oldest finished one-offs
   * (configured entries are never touched). False when every kept one-off is still waiting or
   * running, so the caller refuses the new one rather than grow the records or the queue.
   */
  async makeRoomForOneOff(max: number): Promise<boolean> {
    const configured = new Set(this.entries.map((e) => e.id));
    const oneOffs = (await this.deps.status.all()).filter((s) => !configured.has(s.id));
    const excess = oneOffs.length - (max - 1);
    if (excess <= 0) return true;
    const finished = oneOffs.filter((s) => s.lastRunAt !== null).sort((a, b) => (a.lastRunAt ?? 0) - (b.lastRunAt ?? 0));
    if (finished.length < excess) return false;
    for (const s of finished.slice(0, excess)) await this.deps.status.remove(s.id);
    return true;
  }

  /**
   * Run a ref in this process, now, once (`berth prewarm` without Redis). Resolves with the
   * outcome, or the error that ended the run (deferred, permanent or transient).
   */
  async runHere(ref: string): Promise<{ entry: PrewarmEntry; outcome: PrewarmOutcome | null; error: Error | null }> {
    const entry = this.find(ref) ?? this.entryFor(ref, null, [], null, false);
    try {
      const outcome = await this.process({ id: `cli-${entry.id}`, data: this.dataFor(entry, 'manual'), attempt: 1, maxAttempts: 1 });
      return { entry, outcome, error: null };
    } catch (err) {
      return { entry, outcome: null, error: err instanceof Error ? err : new Error(String(err)) };
    }
  }

  async list(): Promise<PrewarmListing> {
    const statuses = new Map((await this.deps.status.all()).map((s) => [s.id, s]));
    const now = this.now();
    const view = (e: PrewarmEntry, s: EntryStatus | undefined): PrewarmView => {
      const retry = s && s.retryAt !== null && s.retryAt > now ? s.retryAt : null;
      const scheduled = e.schedule !== null ? nextCronRun(e.schedule, now) : null;
      const next = retry !== null && scheduled !== null ? Math.min(retry, scheduled) : (retry ?? scheduled);
      return {
        id: e.id, ref: e.ref, configured: e.configured, upstream: e.upstream, name: e.name, tags: e.tags,
        platforms: e.platforms, schedule: e.schedule,
        digest: s?.resolved[0]?.digest ?? null,
        resolved: s?.resolved ?? [],
        lastRunAt: iso(s?.lastRunAt ?? null),
        lastResult: s?.lastResult ?? null,
        lastError: s?.lastError ?? null,
        lastSuccessAt: iso(s?.lastSuccessAt ?? null),
        pullsSpent: s?.pullsSpent ?? 0,
        pullsSpentTotal: s?.pullsSpentTotal ?? 0,
        blobsFetched: s?.blobsFetched ?? 0,
        nextRunAt: iso(next),
        retryAt: iso(s?.retryAt ?? null),
        jobId: s?.jobId ?? null,
      };
    };
    const entries = this.entries.map((e) => view(e, statuses.get(e.id)));
    for (const s of statuses.values()) {
      if (this.entries.some((e) => e.id === s.id)) continue;
      try {
        entries.push(view(this.entryFor(s.ref, null, [], null, false), s));
      } catch {
        // A one-off whose upstream has left the config since: nothing to show.
      }
    }
    const workers = await this.queue.workerCount().catch(() => null);
    return { transport: this.queue.kind, workers, reservePulls: this.deps.config.prewarm.reservePulls, entries };
  }

  /** The processor both transports run. Records the run, then resolves or rethrows. */
  private async process(job: QueueJob): Promise<PrewarmOutcome> {
    if (!this.prewarmer) throw new Error('this process cannot run pre-warm jobs (no cache)');
    const { data } = job;
    const progress = newProgress();
    const startedAt = this.now();
    const { metrics, log } = this.deps;
    log.info({ job: job.id, ref: data.ref, attempt: job.attempt, reason: data.reason, pid: process.pid }, 'pre-warm run started');
    try {
      const outcome = await this.prewarmer.run({ id: data.entryId, ref: data.ref, platforms: data.platforms, tags: data.tags, pin: data.pin }, progress);
      metrics.prewarmRuns.inc({ result: outcome.result });
      if (data.pin) metrics.prewarmLastSuccess.set({ image: data.ref }, Math.floor(this.now() / 1000));
      await this.update(data.entryId, data.ref, (s) => ({
        ...s,
        resolved: outcome.resolved,
        lastRunAt: startedAt,
        lastResult: outcome.result,
        lastError: null,
        lastSuccessAt: this.now(),
        pullsSpent: progress.pulls,
        pullsSpentTotal: s.pullsSpentTotal + progress.pulls,
        blobsFetched: progress.blobsFetched,
        retryAt: null,
        jobId: job.id,
      }));
      return outcome;
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      const deferred = e instanceof PrewarmDeferred;
      const willRetry = !deferred && !(e instanceof PrewarmPermanentError) && job.attempt < job.maxAttempts;
      const retryAt = deferred ? e.until : willRetry ? this.now() + retryDelay(job.attempt, this.deps.config.prewarm.retryDelay, e) : null;
      if (!deferred) metrics.prewarmRuns.inc({ result: 'failed' });
      log[deferred ? 'info' : 'warn']({ job: job.id, ref: data.ref, attempt: job.attempt, retryAt: iso(retryAt), err: e.message },
        deferred ? 'pre-warm run deferred' : 'pre-warm run failed');
      await this.update(data.entryId, data.ref, (s) => ({
        ...s,
        lastRunAt: startedAt,
        lastResult: deferred ? 'deferred' : 'failed',
        lastError: e.message,
        pullsSpent: progress.pulls,
        pullsSpentTotal: s.pullsSpentTotal + progress.pulls,
        blobsFetched: progress.blobsFetched,
        retryAt,
        jobId: job.id,
      }));
      throw e;
    } finally {
      if (progress.pulls > 0 && progress.upstream !== null) metrics.prewarmPullsSpent.inc({ upstream: progress.upstream }, progress.pulls);
    }
  }

  /** Read-modify-write one status record; a status store that fails never fails the run itself. */
  private async update(id: string, ref: string, change: (s: EntryStatus) => EntryStatus): Promise<void> {
    try {
      const current = (await this.deps.status.get(id)) ?? emptyStatus(id, ref);
      await this.deps.status.put(change({ ...current, ref }));
    } catch (err) {
      this.deps.log.warn({ ref, err: err instanceof Error ? err.message : String(err) }, 'could not record pre-warm status');
    }
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
