/**
 * Wires the services together and listens. `createServices` builds everything `berth serve`
 * runs (storage, metrics, upstream clients, the mirror, access control, the Fastify app) without
 * listening, so tests can start a full mirror on port 0. `serve` adds the listener and a graceful
 * shutdown: stop accepting, let in-flight responses and fills finish (bounded), then exit.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/types.js';
import { Metrics } from '../metrics/metrics.js';
import { MirrorService } from '../registry/mirror.js';
import { Router } from '../registry/routing.js';
import { FilesystemDriver } from '../storage/filesystem.js';
import type { StorageDriver } from '../storage/driver.js';
import { OpenAccess, type AccessController } from '../auth/access.js';
import { buildApp } from './app.js';
import { stopOnSignals } from '../shutdown.js';
import { redisCheck, type ReadinessCheck } from './routes/health.js';
import { logExposure } from './admin-guard.js';

export interface Services {
  config: BerthConfig;
  app: FastifyInstance;
  mirror: MirrorService;
  driver: StorageDriver;
  metrics: Metrics;
  access: AccessController;
  log: Logger;
  close(): Promise<void>;
}

/**
 * Something that runs beside the HTTP server for the life of the process (the lifecycle sweeper,
 * the in-process pre-warm scheduler…). Started after the services are built, stopped on close.
 */
export interface BackgroundService {
  name: string;
  start(services: Services): Promise<void>;
  stop(): Promise<void>;
}

export interface ServiceOptions {
  /** Started in order after the app is built; stopped in reverse order on close. */
  background?: BackgroundService[];
  /** Build an access controller for `auth.mode` other than none (src/auth/). */
  accessFactory?: (config: BerthConfig, log: Logger) => Promise<AccessController>;
  readiness?: ReadinessCheck[];
  metrics?: Metrics;
  now?: () => number;
}

export async function createServices(config: BerthConfig, log: Logger, opts: ServiceOptions = {}): Promise<Services> {
  const driver = new FilesystemDriver(config.storage.root);
  await driver.init();
  const metrics = opts.metrics ?? new Metrics();
  metrics.prepare({ upstreams: config.upstreams.map((u) => u.name), storageMaxBytes: config.storage.maxSize, storageRoot: config.storage.root });
  const router = new Router(config.upstreams, config.defaultUpstream);
  const mirror = new MirrorService({ driver, upstreams: config.upstreams, metrics, log, ...(opts.now ? { now: opts.now } : {}) });
  const access: AccessController = config.auth.mode === 'none' || !opts.accessFactory ? new OpenAccess(config.auth.policy) : await opts.accessFactory(config, log);
  if (config.auth.mode !== 'none' && access.mode === 'none') {
    throw new Error(`auth.mode ${config.auth.mode} needs an access controller, and none was wired`);
  }
  const readiness = [...(opts.readiness ?? [])];
  if (config.redis.url && !readiness.some((c) => c.name === 'redis')) readiness.push(redisCheck(config.redis.url));
  const app = await buildApp({ config, mirror, router, access, metrics, driver, logger: log, readiness });
  const background = opts.background ?? [];
  const started: BackgroundService[] = [];
  const services: Services = {
    config, app, mirror, driver, metrics, access, log,
    async close() {
      // Node closes only the connections idle at the moment of close(); a keep-alive connection
      // whose last response finishes later would hold the process until its timeout. Sweep them.
      const sweep = setInterval(() => app.server.closeIdleConnections(), 100);
      try {
        await app.close();
      } finally {
        clearInterval(sweep);
      }
      for (const b of [...started].reverse()) {
        await b.stop().catch((err: unknown) => log.error({ err, service: b.name }, 'background service failed to stop'));
      }
      await mirror.close();
      await access.close?.();
    },
  };
  for (const b of background) {
    await b.start(services);
    started.push(b);
  }
  return services;
}

/** Listen, and shut down gracefully on SIGTERM/SIGINT. Resolves with the bound address. */
export async function serve(services: Services, shutdownGraceMs = 30_000): Promise<string> {
  const { app, config, log } = services;
  const address = await app.listen({ host: config.http.host, port: config.http.port });
  log.info({ address, storage: config.storage.root, upstreams: config.upstreams.map((u) => u.name), auth: config.auth.mode }, 'berth is serving');
  logExposure(log, config);
  stopOnSignals(log, () => services.close(), {
    finishing: 'in-flight requests and fills',
    abandoning: 'work still in flight',
    graceMs: shutdownGraceMs,
  });
  return address;
}
