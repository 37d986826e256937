/**
 * The pre-warm commands, registered in src/wiring.ts:
 *   berth worker [--config FILE] [--port N]   run pre-warm jobs from Redis until SIGTERM
 *   berth prewarm [--config FILE] REF… | --all
 *       with redis.url: queue a run of each now (the workers do them);
 *       without: run each here, now, once, and print what happened.
 * Exit codes for `prewarm`: 0 all done (or queued), 1 a run failed, 2 usage, 75 a run was
 * deferred (the pull budget is at the reserve: try again after the window), 78 bad config.
 */
import { pino } from 'pino';
import { loadConfig } from '../src/config/load.js';
import type { BerthConfig } from '../src/config/types.js';
import { createLogger } from '../src/log.js';
import { stopOnSignals } from '../src/shutdown.js';
import { Metrics } from '../src/metrics/metrics.js';
import { createPrewarmService } from '../src/queue/index.js';
import { MirrorService } from '../src/registry/mirror.js';
import { PrewarmDeferred, PrewarmPermanentError, type PrewarmOutcome } from '../src/registry/prewarm.js';
import { Router } from '../src/registry/routing.js';
import type { Command } from '../src/wiring.js';
import { openStore, startPrewarmWorker } from './prewarm.js';

/** How long `berth worker` lets running jobs finish after SIGTERM before it exits anyway. */
const SHUTDOWN_GRACE_MS = 60_000;

/** Remove `--name VALUE` from args and return VALUE (or null when absent). */
function takeOption(args: string[], name: string): string | null {
  const i = args.indexOf(name);
  if (i < 0) return null;
  const v = args[i + 1];
  args.splice(i, 2);
  return v ?? null;
}

async function load(args: string[]): Promise<BerthConfig> {
  const file = takeOption(args, '--config') ?? process.env['BERTH_CONFIG'] ?? null;
  return loadConfig({ file, env: process.env });
}

export const workerCommand: Command = {
  name: 'worker',
  usage: 'worker [--config F] [--port N]',
  help: 'run pre-warm jobs from the Redis queue (needs redis.url); --port serves /healthz /readyz /metrics',
  async run(args) {
    const port = takeOption(args, '--port');
    const config = await load(args);
    const log = createLogger(config.log.level);
    if (port !== null && !/^\d+$/.test(port)) {
      process.stderr.write(`berth worker: --port takes a port number, got "${port}"\n`);
      return 2;
    }
    const worker = await startPrewarmWorker(config, log, { port: port === null ? null : Number(port) });
    stopOnSignals(log, () => worker.close(), {
      finishing: 'running pre-warm jobs',
      abandoning: 'jobs still running (they will be retried)',
      graceMs: SHUTDOWN_GRACE_MS,
    });
    return -1; // keep running
  },
};

function describe(o: PrewarmOutcome): string {
  const digests = o.resolved.map((r) => (r.tag !== null ? `${r.tag} ${r.digest}` : r.digest)).join(', ');
  return `${o.result}: ${digests} (${o.pulls} pulls, ${o.blobsFetched} blobs fetched, ${o.pinned} digests pinned)`;
}

export const prewarmCommand: Command = {
  name: 'prewarm',
  usage: 'prewarm [--config F] REF…',
  help: 'pre-warm images now (--all: every configured one): queued with redis.url, else run here',
  async run(args) {
    const config = await load(args);
    const all = args.includes('--all');
    const refs = all ? config.prewarm.images.map((i) => i.ref) : args.filter((a) => !a.startsWith('--'));
    if (refs.length === 0) {
      process.stderr.write('usage: berth prewarm [--config FILE] REF…|--all\n');
      return 2;
    }
    // Results go to stdout; the log (warnings and worse) to stderr.
    const log = createLogger(config.log.level === 'info' ? 'warn' : config.log.level, pino.destination(2));
    const metrics = new Metrics({ defaults: false });
    const router = new Router(config.upstreams, config.defaultUpstream);
    const out = (line: string): void => {
      process.stdout.write(`${line}\n`);
    };
    let code = 0;
    if (config.redis.url !== null) {
      const driver = await openStore(config.storage);
      const service = createPrewarmService({ config, router, metrics, log, driver, mirror: null });
      try {
        for (const ref of refs) {
          try {
            const r = await service.enqueue(ref);
            out(`${ref}: ${r.queued ? 'queued' : 'already queued'} as job ${r.jobId}${r.entry.configured ? '' : ' (one-off: not pinned)'}`);
          } catch (err) {
            out(`${ref}: not queued: ${err instanceof Error ? err.message : String(err)}`);
            code = 1;
          }
        }
      } finally {
        await service.close();
      }
      return code;
    }
    const driver = await openStore(config.storage);
    const mirror = new MirrorService({ driver, upstreams: config.upstreams, metrics, log });
    const service = createPrewarmService({ config, router, metrics, log, driver, mirror });
    try {
      for (const ref of refs) {
        let res;
        try {
          res = await service.runHere(ref);
        } catch (err) {
          out(`${ref}: failed: ${err instanceof Error ? err.message : String(err)}`);
          code = 1;
          continue;
        }
        if (res.outcome) out(`${ref}: ${describe(res.outcome)}`);
        else if (res.error instanceof PrewarmDeferred) {
          out(`${ref}: deferred until ${new Date(res.error.until).toISOString()}: ${res.error.message}`);
          if (code === 0) code = 75;
        } else {
          const kind = res.error instanceof PrewarmPermanentError ? 'failed (permanent)' : 'failed';
          out(`${ref}: ${kind}: ${res.error?.message ?? 'unknown error'}`);
          code = 1;
        }
      }
    } finally {
      await service.close();
      await mirror.close();
    }
    return code;
  },
};

export const prewarmCommands: Command[] = [workerCommand, prewarmCommand];
