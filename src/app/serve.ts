/**
 * `berth serve` assembled: the core (core.ts) with the lifecycle and pre-warm, the access
 * controller for `auth.mode`, the readiness checks, and the Fastify app (src/http/app.ts), every
 * service handed to `buildApp` up front. Then what runs beside the server for the life of the
 * process: the lifecycle (index, GC every storage.gcInterval), pre-warm (in-process scheduler and
 * worker, or the BullMQ schedulers kept in step with Redis, with a warning while no `berth worker`
 * consumes the queue), and the TLS reloader when http.tls is set (src/http/tls.ts). `createServices` does all of that without listening, so tests start a whole
 * mirror on port 0; `runServe` adds the listener (src/http/server.ts) for the CLI.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { OpenAccess, type AccessController } from '../auth/access.js';
import { tokenAuthOptions } from '../auth/token.js';
import type { BerthConfig } from '../config/types.js';
import { buildApp } from '../http/app.js';
import { redisCheck, type ReadinessCheck } from '../http/routes/health.js';
import { noWorkerWarning } from '../http/routes/prewarm.js';
import { serve } from '../http/server.js';
import { TlsReloader, describePair, loadTls } from '../http/tls.js';
import { Server as TlsServer } from 'node:tls';
import type { Metrics } from '../metrics/metrics.js';
import { keepSchedulesInStep } from '../queue/background.js';
import type { PrewarmService } from '../queue/service.js';
import type { MirrorService } from '../registry/mirror.js';
import type { StorageDriver } from '../storage/driver.js';
import type { CacheLifecycle } from '../storage/lifecycle.js';
import { buildCore, type Core, type LifecycleTunables } from './core.js';
import { StartupError } from './errors.js';

/** How often `serve` with Redis checks that some `berth worker` consumes the pre-warm queue. */
const WORKER_CHECK_MS = 60_000;

export interface Services {
  config: BerthConfig;
  app: FastifyInstance;
  mirror: MirrorService;
  driver: StorageDriver;
  metrics: Metrics;
  access: AccessController;
  lifecycle: CacheLifecycle | null;
  prewarm: PrewarmService | null;
  log: Logger;
  close(): Promise<void>;
}

export interface ServiceOptions {
  /** The cache lifecycle and its tunables; false: none (a bare mirror for tests). Default: on. */
  lifecycle?: false | LifecycleTunables;
  /** Pre-warm (scheduler, worker or BullMQ producer). Default: on. */
  prewarm?: boolean;
  /** Build an access controller for `auth.mode` other than none (default: from src/auth/token.ts). */
  accessFactory?: (config: BerthConfig, log: Logger) => Promise<AccessController>;
  /** Extra readiness checks, after the ones the config implies. */
  readiness?: ReadinessCheck[];
  metrics?: Metrics;
  now?: () => number;
  /** A driver built elsewhere (tests: the in-memory one); createDriver(config.storage) by default. */
  driver?: StorageDriver;
}

/** Everything `berth serve` runs, built and started, not listening. */
export async function createServices(config: BerthConfig, log: Logger, opts: ServiceOptions = {}): Promise<Services> {
  // Read before anything starts: a pair that does not load stops serve with the key to fix.
  const tls = await loadTls(config.http);
  const core = await buildCore(config, log, {
    store: 'own',
    lifecycle: opts.lifecycle ?? {},
    prewarm: opts.prewarm ?? true,
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.driver ? { driver: opts.driver } : {}),
  });
  const mirror = core.mirror;
  if (!mirror) throw new Error('serve needs the mirror');
  const token = tokenAuthOptions(config);
  const accessFactory = opts.accessFactory ?? token.accessFactory;
  let access: AccessController;
  try {
    access = config.auth.mode === 'none' || !accessFactory ? new OpenAccess(config.auth.policy) : await accessFactory(config, log);
  } catch (err) {
    await core.close();
    throw err;
  }
  if (config.auth.mode !== 'none' && access.mode === 'none') {
    throw new Error(`auth.mode ${config.auth.mode} needs an access controller, and none was wired`);
  }
  const readiness: ReadinessCheck[] = [...(opts.accessFactory ? [] : (token.readiness ?? [])), ...(opts.readiness ?? [])];
  if (config.redis.url && !readiness.some((c) => c.name === 'redis')) readiness.push(redisCheck(config.redis.url));
  // Replicas (cluster.advertiseUrl): this replica's own coordination connection, which reconnects
  // on its own with back-off, beside the redis check's fresh PING.
  const cluster = core.cluster;
  if (cluster?.fills) {
    readiness.push({
      name: 'cluster',
      required: false,
      check: async () => cluster.redis.up
        ? { ok: true, detail: `replica ${cluster.replicaId}: coordinating through redis` }
        : { ok: false, detail: `replica ${cluster.replicaId}: redis unreachable; tag checks, rate limits, purges and blob fills are per replica until it returns` },
    });
  }
  const lifecycle = core.lifecycle;
  if (lifecycle && !readiness.some((c) => c.name === 'disk-full')) {
    readiness.push({ name: 'disk-full', required: false, check: async () => lifecycle.diskCheck() });
  }
  const app = await buildApp({
    config, mirror, router: core.router, access, metrics: core.metrics, driver: core.driver, logger: log, readiness,
    lifecycle, prewarm: core.prewarm, tls, hosted: core.hosted,
    // Replicas: the internal endpoint other replicas join this one's blob fills through.
    ...(core.cluster?.fills && config.cluster.secret !== null ? { clusterFills: { fills: core.cluster.fills, secret: config.cluster.secret } } : {}),
  });
  const server = app.server;
  const reloader = tls && server instanceof TlsServer ? new TlsReloader({ server, http: config.http, current: tls, log }) : null;
  await reloader?.start();
  if (tls) log.info({ ...describePair(tls), reloadInterval: config.http.tls.reloadInterval }, 'HTTPS with this certificate; the files are re-read when they change');
  const background = await startBackground(core);
  return {
    config, app, mirror, driver: core.driver, metrics: core.metrics, access, lifecycle, prewarm: core.prewarm, log,
    async close() {
      reloader?.stop();
      // Node closes only the connections idle at the moment of close(); a keep-alive connection
      // whose last response finishes later would hold the process until its timeout. Sweep them.
      const sweep = setInterval(() => app.server.closeIdleConnections(), 100);
      try {
        await app.close();
      } finally {
        clearInterval(sweep);
      }
      await background.stop().catch((err: unknown) => log.error({ err }, 'background work failed to stop'));
      await core.close();
      await access.close?.();
    },
  };
}

/**
 * Start what runs beside the server: the lifecycle first (its index is built before pre-warm
 * pins anything), then pre-warm. Stopped in reverse order.
 */
async function startBackground(core: Core): Promise<{ stop(): Promise<void> }> {
  const { config, log, lifecycle, prewarm } = core;
  const timers: NodeJS.Timeout[] = [];
  const stops: Array<() => void> = [];
  if (lifecycle) {
    // The index builds while serve already answers (issue 16): pulls never wait for it; eviction,
    // GC and purges queue behind it.
    lifecycle.startInBackground();
    const gc = setInterval(() => {
      lifecycle.gc().catch((err: unknown) => log.error({ err }, 'garbage collection failed'));
    }, config.storage.gcInterval);
    gc.unref();
    timers.push(gc);
  }
  if (prewarm) {
    if (prewarm.queue.kind === 'in-process') {
      await prewarm.syncSchedules();
      await prewarm.startWorker();
      await prewarm.queueNeverRun();
    } else {
      // Redis being down never holds up serving: the sync is retried in the background.
      stops.push(keepSchedulesInStep(prewarm, log).stop);
      stops.push(watchWorkers(prewarm, log).stop);
    }
  }
  return {
    async stop() {
      for (const s of stops.reverse()) s();
      for (const t of timers) clearInterval(t);
      // The hooks stay attached: fills that finish during shutdown are ignored by a stopped
      // lifecycle, and their blobs' commit times stand in for their last access at the next start.
      await lifecycle?.stop();
    },
  };
}

/**
 * With Redis, the jobs are run by `berth worker` processes; a serve whose queue nobody consumes
 * schedules pre-warm runs that never happen. Say so in the log when that starts (and when a
 * worker appears), checking now and every WORKER_CHECK_MS. GET /api/v1/prewarm says it too.
 */
function watchWorkers(prewarm: PrewarmService, log: Logger): { stop(): void } {
  let last: number | null = null;
  const check = async (): Promise<void> => {
    let n: number;
    try {
      n = await prewarm.queue.workerCount();
    } catch {
      return; // Redis down: keepSchedulesInStep and /readyz already say so
    }
    if (n === 0 && last !== 0) log.warn({ workers: 0 }, noWorkerWarning());
    else if (n > 0 && last === 0) log.info({ workers: n }, 'a berth worker now consumes the pre-warm queue');
    last = n;
  };
  void check();
  const timer = setInterval(() => void check(), WORKER_CHECK_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** `berth serve`: build, listen, and stop gracefully on SIGTERM/SIGINT. */
export async function runServe(config: BerthConfig, log: Logger): Promise<void> {
  const services = await createServices(config, log);
  try {
    await serve(services);
  } catch (err) {
    await services.close().catch(() => undefined);
    throw StartupError.fromListen(config.http.host, config.http.port, err) ?? err;
  }
}
