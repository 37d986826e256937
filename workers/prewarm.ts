/**
 * The pre-warm worker process (`berth worker`): takes pre-warm jobs from the BullMQ queue and
 * runs them against the shared cache through its own MirrorService (built by the composition
 * root, src/app/core.ts). It also keeps the job schedulers in step with its config, as `berth
 * serve` does. With `--port`, it answers /healthz, /readyz (Redis reachable) and /metrics (the
 * berth_prewarm_* figures are counted where the runs happen: here).
 *
 * Imports: src/ only. Never the HTTP app: a worker reaches the cache through registry/.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { buildCore } from '../src/app/core.js';
import { ConfigError } from '../src/config/errors.js';
import type { BerthConfig } from '../src/config/types.js';
import type { Metrics } from '../src/metrics/metrics.js';
import { keepSchedulesInStep } from '../src/queue/background.js';
import type { BullmqQueue, PrewarmService } from '../src/queue/index.js';

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
  const core = await buildCore(config, log, { store: 'shared', prewarm: true });
  const service = core.prewarm;
  if (!service) throw new Error('the worker needs the pre-warm service');
  const { metrics } = core;
  let server: Server | null = null;
  try {
    server = opts.port !== undefined && opts.port !== null ? await listen(config.http.host, opts.port, service, metrics) : null;
    await service.startWorker();
  } catch (err) {
    server?.close();
    await core.close();
    throw err;
  }
  const sync = keepSchedulesInStep(service, log);
  log.info({ concurrency: config.prewarm.concurrency, entries: service.entries.length, pid: process.pid }, 'pre-warm worker ready');
  return {
    service,
    metrics,
    port: server ? (server.address() as AddressInfo).port : null,
    async close() {
      sync.stop();
      if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
      await core.close();
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
      // By kind, not instanceof: BullMQ is imported only when redis.url is set (src/queue/index.ts).
      const ping = queue.kind === 'bullmq' ? (queue as BullmqQueue).ping() : Promise.resolve(true);
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
