/**
 * The pre-warm worker process (`berth worker`): takes pre-warm jobs from the BullMQ queue and
 * runs them against the shared cache through its own MirrorService (src/registry/). It also
 * keeps the job schedulers in step with its config, as `berth serve` does. With `--port`, it
 * answers /healthz, /readyz (Redis reachable) and /metrics (the berth_prewarm_* figures are
 * counted where the runs happen: here).
 *
 * Imports: src/ only. Never the HTTP app: a worker reaches the cache through registry/.
 */
import { createServer, type Server } from 'node:http';
import { access } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { ConfigError } from '../src/config/errors.js';
import type { BerthConfig } from '../src/config/types.js';
import { Metrics } from '../src/metrics/metrics.js';
import { keepSchedulesInStep } from '../src/queue/background.js';
import { BullmqQueue, createPrewarmService, type PrewarmService } from '../src/queue/index.js';
import { MirrorService } from '../src/registry/mirror.js';
import { Router } from '../src/registry/routing.js';
import { FilesystemDriver } from '../src/storage/filesystem.js';

/**
 * The store, prepared without disturbing another process that uses it: a store that already
 * exists is used as it is, because init() clears the spool folder, and on a root shared with a
 * running `berth serve` that would cut the downloads it has in flight. A new store is initialised.
 */
export async function openStore(root: string): Promise<FilesystemDriver> {
  const driver = new FilesystemDriver(root);
  try {
    await access(driver.spoolRoot);
  } catch {
    await driver.init();
  }
  return driver;
}

export interface PrewarmWorker {
  service: PrewarmService;
  metrics: Metrics;
  /** The bound port of the health/metrics listener, when one was asked for. */
  port: number | null;
  close(): Promise<void>;
}

export async function startPrewarmWorker(config: BerthConfig, log: Logger, opts: { port?: number | null } = {}): Promise<PrewarmWorker> {
  if (config.redis.url === null) {
    throw new ConfigError('redis.url', 'berth worker takes its jobs from Redis: set redis.url (BERTH_REDIS_URL). Without Redis, berth serve runs pre-warm itself.');
  }
  const driver = await openStore(config.storage.root);
  const metrics = new Metrics();
  metrics.prepare({ upstreams: config.upstreams.map((u) => u.name), storageMaxBytes: config.storage.maxSize, storageRoot: config.storage.root });
  const router = new Router(config.upstreams, config.defaultUpstream);
  const mirror = new MirrorService({ driver, upstreams: config.upstreams, metrics, log });
  const service = createPrewarmService({ config, router, metrics, log, driver, mirror });
  const server = opts.port !== undefined && opts.port !== null ? await listen(config.http.host, opts.port, service, metrics) : null;
  await service.startWorker();
  const sync = keepSchedulesInStep(service, log);
  log.info({ concurrency: config.prewarm.concurrency, entries: service.entries.length, pid: process.pid }, 'pre-warm worker ready');
  return {
    service,
    metrics,
    port: server ? (server.address() as AddressInfo).port : null,
    async close() {
      sync.stop();
      if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
      await service.close();
      await mirror.close();
    },
  };
}

function listen(host: string, port: number, service: PrewarmService, metrics: Metrics): Promise<Server> {
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown, type = 'application/json'): void => {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') return send(405, { status: 'method not allowed' });
    if (path === '/healthz') return send(200, { status: 'ok' });
    if (path === '/readyz') {
      const queue = service.queue;
      const ping = queue instanceof BullmqQueue ? queue.ping() : Promise.resolve(true);
      void ping.then((ok) => send(ok ? 200 : 503, { status: ok ? 'ready' : 'not ready', checks: { redis: { ok } } }));
      return;
    }
    if (path === '/metrics') {
      void metrics.registry.metrics().then((text) => send(200, text, metrics.registry.contentType));
      return;
    }
    send(404, { status: 'not found' });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
