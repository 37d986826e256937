/**
 * The pre-warm commands (listed in src/cli.ts):
 *   berth worker [--config FILE] [--port N]   run pre-warm jobs from Redis until SIGTERM
 *   berth prewarm [--config FILE] [--wait] [--json] REF… | --all
 *       with redis.url: queue a run of each now (the workers do them); with --wait, also wait
 *       for the workers to finish them and report how each ended;
 *       without: run each here, now, once, and print what happened.
 * While runs go on, progress lines go to stderr; results go to stdout (one JSON document with
 * --json). Exit codes for `prewarm`: 0 all done (or queued), 1 a run failed, 2 usage, 75 a run was
 * deferred (the pull budget is at the reserve: try again after the window), 78 bad config.
 */
import { pino } from 'pino';
import { CONFIG_OPTION, UsageError, flagValue, loadCommandConfig, type Command, type Io } from '../src/app/args.js';
import { buildCore } from '../src/app/core.js';
import { audit, cliSubject, createLogger } from '../src/log.js';
import { Metrics } from '../src/metrics/metrics.js';
import type { PrewarmService, PrewarmView } from '../src/queue/service.js';
import { PrewarmDeferred, PrewarmPermanentError, type PrewarmOutcome } from '../src/registry/prewarm.js';
import { stopOnSignals } from '../src/shutdown.js';
import { startPrewarmWorker } from './prewarm.js';

/** How long `berth worker` lets running jobs finish after SIGTERM before it exits anyway. */
const SHUTDOWN_GRACE_MS = 60_000;
/** Between progress lines (and, with --wait, between looks at the run status in Redis). */
const PROGRESS_MS = 1_000;
/** How long `prewarm --wait` waits for the workers before it gives up (exit 1). */
const WAIT_LIMIT_MS = 60 * 60_000;

export const workerCommand: Command = {
  name: 'worker',
  synopsis: '[--config FILE] [--port N]',
  summary: 'run pre-warm jobs from the Redis queue (needs redis.url) until SIGTERM',
  details: [
    'options:',
    '  --port N        also serve /healthz, /readyz (Redis reachable) and /metrics on port N',
    CONFIG_OPTION,
  ].join('\n'),
  flags: { '--config': 'value', '--port': 'value' },
  positionals: { min: 0, max: 0 },
  async run(args, io) {
    const port = flagValue(args, '--port');
    if (port !== null && !/^\d+$/.test(port)) throw new UsageError(workerCommand, `--port takes a port number, got "${port}"`);
    const config = await loadCommandConfig(args, io);
    const log = createLogger(config.log);
    const worker = await startPrewarmWorker(config, log, { port: port === null ? null : Number(port) });
    stopOnSignals(log, () => worker.close(), {
      finishing: 'running pre-warm jobs',
      abandoning: 'jobs still running (they will be retried)',
      graceMs: SHUTDOWN_GRACE_MS,
    });
    return -1; // keep running
  },
};

/** How one ref ended, as --json prints it. */
interface RunReport {
  ref: string;
  result: 'success' | 'unchanged' | 'failed' | 'deferred' | 'queued' | 'already queued' | 'not queued';
  jobId?: string | null;
  digests?: string[];
  pulls?: number;
  blobsFetched?: number;
  pinned?: number;
  permanent?: boolean;
  /** Not a configured entry: cached like a client pull, not pinned. */
  oneOff?: boolean;
  retryAt?: string | null;
  error?: string;
}

function describe(o: PrewarmOutcome): string {
  const digests = o.resolved.map((r) => (r.tag !== null ? `${r.tag} ${r.digest}` : r.digest)).join(', ');
  return `${o.result}: ${digests} (${o.pulls} pulls, ${o.blobsFetched} blobs fetched, ${o.pinned} digests pinned)`;
}

/** The text line for a report (what `prewarm` has always printed for the local runs). */
function line(r: RunReport, outcome: PrewarmOutcome | null): string {
  if (outcome) return `${r.ref}: ${describe(outcome)}`;
  switch (r.result) {
    case 'deferred': return `${r.ref}: deferred until ${r.retryAt ?? '?'}: ${r.error ?? ''}`;
    case 'failed': return `${r.ref}: ${r.permanent ? 'failed (permanent)' : 'failed'}: ${r.error ?? 'unknown error'}`;
    case 'not queued': return `${r.ref}: not queued: ${r.error ?? ''}`;
    default: return `${r.ref}: ${r.result}${r.jobId ? ` as job ${r.jobId}` : ''}${r.oneOff ? ' (one-off: not pinned)' : ''}`;
  }
}

function codeOf(reports: RunReport[]): number {
  if (reports.some((r) => r.result === 'failed' || r.result === 'not queued')) return 1;
  if (reports.some((r) => r.result === 'deferred')) return 75;
  return 0;
}

function bytes(n: number): string {
  return n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export const prewarmCommand: Command = {
  name: 'prewarm',
  synopsis: '[--config FILE] [--wait] [--json] REF… | --all',
  summary: 'pre-warm images now: queued for the workers with redis.url, else run here',
  details: [
    'options:',
    '  --all           every image in prewarm.images',
    '  --wait          with redis.url: wait until the workers have run each one; the exit status',
    '                  then says how they ended (without Redis the runs happen here and are waited for)',
    '  --json          print one JSON document {"runs": [...]} instead of a line per image',
    CONFIG_OPTION,
    '',
    'Progress goes to stderr while runs go on; results go to stdout.',
    'exit status: 0 all done (or queued), 1 a run failed, 2 usage, 75 a run was deferred',
    '(the pull budget is at prewarm.reservePulls: try again later), 78 bad config',
  ].join('\n'),
  flags: { '--config': 'value', '--all': 'boolean', '--wait': 'boolean', '--json': 'boolean' },
  positionals: { min: 0, max: Number.POSITIVE_INFINITY },
  async run(args, io) {
    const all = args.flags.has('--all');
    if (all && args.positionals.length > 0) throw new UsageError(prewarmCommand, 'give references or --all, not both');
    if (!all && args.positionals.length === 0) throw new UsageError(prewarmCommand, 'name at least one image reference, or --all');
    const config = await loadCommandConfig(args, io);
    const refs = all ? config.prewarm.images.map((i) => i.ref) : args.positionals;
    const json = args.flags.has('--json');
    // The log (warnings and worse) to stderr, beside the progress lines.
    const log = createLogger({ ...config.log, level: config.log.level === 'info' ? 'warn' : config.log.level }, pino.destination(2));
    const metrics = new Metrics({ defaults: false });
    const reports: RunReport[] = [];
    const done = (r: RunReport, outcome: PrewarmOutcome | null = null): void => {
      reports.push(r);
      if (!json) io.out.write(`${line(r, outcome)}\n`);
    };
    const queued = config.redis.url !== null;
    for (const ref of refs) audit(log, { action: 'prewarm.trigger', subject: cliSubject(), target: ref, via: 'cli', queued });
    const core = await buildCore(config, log, { store: 'shared', mirror: !queued, prewarm: true, metrics });
    const service = core.prewarm;
    if (!service) throw new Error('prewarm needs the pre-warm service');
    try {
      if (queued) await enqueueAll(service, refs, args.flags.has('--wait'), io, done);
      else await runAll(service, metrics, refs, io, done);
    } finally {
      await core.close();
    }
    if (json) io.out.write(`${JSON.stringify({ runs: reports }, null, 2)}\n`);
    return codeOf(reports);
  },
};

/** Without Redis: run each here, one after another, printing progress while it downloads. */
async function runAll(service: PrewarmService, metrics: Metrics, refs: string[], io: Io, done: (r: RunReport, o?: PrewarmOutcome | null) => void): Promise<void> {
  const downloaded = async (): Promise<number> => (await metrics.upstreamBytes.get()).values.reduce((n, v) => n + v.value, 0);
  for (const ref of refs) {
    const began = Date.now();
    const base = await downloaded();
    const ticker = setInterval(() => {
      void downloaded().then((n) => {
        io.err.write(`berth prewarm: ${ref}: ${bytes(n - base)} downloaded (${Math.round((Date.now() - began) / 1000)} s)\n`);
      });
    }, PROGRESS_MS);
    let res;
    try {
      res = await service.runHere(ref);
    } catch (err) {
      done({ ref, result: 'failed', error: err instanceof Error ? err.message : String(err) });
      continue;
    } finally {
      clearInterval(ticker);
    }
    const o = res.outcome;
    if (o) {
      done({ ref, result: o.result, digests: o.resolved.map((r) => r.digest), pulls: o.pulls, blobsFetched: o.blobsFetched, pinned: o.pinned }, o);
    } else if (res.error instanceof PrewarmDeferred) {
      done({ ref, result: 'deferred', retryAt: new Date(res.error.until).toISOString(), error: res.error.message });
    } else {
      done({ ref, result: 'failed', permanent: res.error instanceof PrewarmPermanentError, error: res.error?.message ?? 'unknown error' });
    }
  }
}

/**
 * With Redis: queue a run of each; with `wait`, then watch the run status the workers record
 * until each queued run has ended (a failure the queue will retry is not an end), printing what
 * is still waiting and whether any worker consumes the queue.
 */
async function enqueueAll(service: PrewarmService, refs: string[], wait: boolean, io: Io, done: (r: RunReport) => void): Promise<void> {
  const pending = new Map<string, { ref: string; jobId: string; entryId: string }>();
  const since = Date.now();
  for (const ref of refs) {
    try {
      const r = await service.enqueue(ref);
      if (wait) pending.set(r.entry.id, { ref, jobId: r.jobId, entryId: r.entry.id });
      else done({ ref, result: r.queued ? 'queued' : 'already queued', jobId: r.jobId, oneOff: !r.entry.configured });
    } catch (err) {
      done({ ref, result: 'not queued', error: err instanceof Error ? err.message : String(err) });
    }
  }
  let lastNote = 0;
  while (pending.size > 0) {
    await new Promise((resolve) => setTimeout(resolve, PROGRESS_MS));
    let listing;
    try {
      listing = await service.list();
    } catch (err) {
      io.err.write(`berth prewarm: cannot read the run status: ${err instanceof Error ? err.message : String(err)}; still waiting\n`);
      continue;
    }
    for (const p of [...pending.values()]) {
      const v = listing.entries.find((e) => e.id === p.entryId);
      const ended = v ? endOf(v, p.jobId, since) : null;
      if (!ended) continue;
      pending.delete(p.entryId);
      done({ ...ended, ref: p.ref });
    }
    const waited = Date.now() - since;
    if (pending.size > 0 && waited - lastNote >= 5 * PROGRESS_MS) {
      lastNote = waited;
      const workers = listing.workers === 0 ? '; no berth worker is consuming the queue' : listing.workers === null ? '' : `; ${listing.workers} worker(s)`;
      io.err.write(`berth prewarm: waiting for ${[...pending.values()].map((p) => p.ref).join(', ')} (${Math.round(waited / 1000)} s${workers})\n`);
    }
    if (pending.size > 0 && waited > WAIT_LIMIT_MS) {
      for (const p of pending.values()) done({ ref: p.ref, result: 'failed', jobId: p.jobId, error: `no result after ${WAIT_LIMIT_MS / 60_000} min of waiting` });
      pending.clear();
    }
  }
}

/** The end of the run `jobId` queued at `since`, from the status its worker recorded; null while it goes on. */
function endOf(v: PrewarmView, jobId: string, since: number): RunReport | null {
  if (v.lastRunAt === null || Date.parse(v.lastRunAt) < since - 1000 || v.lastResult === null) return null;
  if (v.jobId !== null && v.jobId !== jobId) return null;
  const base = { ref: v.ref, jobId, pulls: v.pullsSpent, blobsFetched: v.blobsFetched };
  switch (v.lastResult) {
    case 'success':
    case 'unchanged':
      return { ...base, result: v.lastResult, digests: v.resolved.map((r) => r.digest) };
    case 'deferred':
      return { ...base, result: 'deferred', retryAt: v.retryAt, error: v.lastError ?? '' };
    case 'failed':
      // A failure the queue will try again is not the end of the run.
      return v.retryAt !== null ? null : { ...base, result: 'failed', error: v.lastError ?? 'failed' };
  }
}

export const prewarmCommands: Command[] = [workerCommand, prewarmCommand];
