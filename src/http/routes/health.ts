/**
 * Liveness, readiness and the Prometheus endpoint.
 *  - /healthz: the process answers (200 `{"status":"ok"}` while it runs).
 *  - /readyz: storage takes writes, the config loaded, and every registered check (Redis when
 *    configured, disk-full from the lifecycle layer…) passes. 200 when ready, 503 when not; the
 *    JSON body names every check and lists what is not ready (`failing`) and what is degraded but
 *    still serving (`degraded`: a check registered with `required: false`). Readiness follows what
 *    serving pulls needs: Redis is a degraded check for `serve` (pulls go on without it; it is
 *    required by `berth worker`, whose own /readyz says so).
 *  - /metrics: the one Registry, in Prometheus text format; limited to `metrics.networks` when
 *    set, or served only on its own listener (`metrics.port`, see metrics-listener.ts).
 */
import type { FastifyInstance } from 'fastify';
import { registryError } from '../../errors.js';
import { describeRedisError } from '../../queue/redis-errors.js';
import { compileNetworks } from '../networks.js';

export interface CheckResult {
  ok: boolean;
  /** What is wrong (or, when ok, a fact worth showing), in words an operator can act on. */
  detail?: string;
}

export interface ReadinessCheck {
  /** Short key in the body: `redis`, `disk-full`… */
  name: string;
  /**
   * Whether a failure makes the instance not ready (503). Default true. A check that describes a
   * degraded but serving state (disk full: cached content is still served) sets false, so the
   * load balancer keeps sending traffic while the body still says what is wrong.
   */
  required?: boolean;
  check(): Promise<CheckResult>;
}

export interface ReadinessReport {
  status: 'ready' | 'degraded' | 'not ready';
  checks: Record<string, CheckResult & { required: boolean }>;
  /** Names of required checks that failed. */
  failing: string[];
  /** Names of optional checks that failed. */
  degraded: string[];
}

/** How long one check may take before it counts as failed: a probe must answer quickly. */
const CHECK_TIMEOUT_MS = 2_000;

async function runCheck(c: ReadinessCheck): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<CheckResult>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, detail: `${c.name} check did not answer within ${CHECK_TIMEOUT_MS} ms` }), CHECK_TIMEOUT_MS);
  });
  try {
    return await Promise.race([c.check(), timeout]);
  } catch (err) {
    return { ok: false, detail: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

export async function readiness(app: FastifyInstance): Promise<ReadinessReport> {
  const all: ReadinessCheck[] = [
    // Reaching this code means the configuration loaded and validated.
    { name: 'config', check: async () => ({ ok: true }) },
    {
      name: 'storage',
      check: async () =>
        (await app.driver.writable())
          ? { ok: true }
          : {
            ok: false,
            detail: app.driver.name === 's3'
              ? 'storage (the s3 bucket) does not answer: check storage.s3.endpoint, the bucket and its credentials'
              : `storage (${app.driver.name} at storage.root) does not take writes: check the volume and its permissions`,
          },
    },
    ...app.readiness,
  ];
  const results = await Promise.all(all.map(async (c) => [c, await runCheck(c)] as const));
  const report: ReadinessReport = { status: 'ready', checks: {}, failing: [], degraded: [] };
  for (const [c, r] of results) {
    const required = c.required !== false;
    report.checks[c.name] = { ...r, required };
    if (!r.ok) (required ? report.failing : report.degraded).push(c.name);
  }
  report.status = report.failing.length > 0 ? 'not ready' : report.degraded.length > 0 ? 'degraded' : 'ready';
  return report;
}

/**
 * Redis answers PING. A short-lived connection per check: no connection to keep or close, and
 * a Redis that went away and came back is seen at once. Used when `redis.url` is set and no
 * other component registered a `redis` check. Not required by default: `serve` pulls without
 * Redis (the pre-warm queue and shared coordination wait for it), so a Redis outage must not take
 * every replica out of the load balancer at once.
 */
export function redisCheck(url: string, opts: { required?: boolean } = {}): ReadinessCheck {
  const required = opts.required ?? false;
  const consequence = required ? '' : '; pulls are still served, pre-warm and shared coordination wait for it';
  return {
    name: 'redis',
    required,
    async check() {
      // ioredis loads only when a Redis check runs (a config with redis.url): issue 16.
      const { Redis } = await import('ioredis');
      const client = new Redis(url, {
        lazyConnect: true,
        connectTimeout: CHECK_TIMEOUT_MS,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
        retryStrategy: () => null,
      });
      // Without a listener ioredis would print errors. connect() may reject with a bare "Connection
      // is closed." when the socket closes first; the socket's own error (ECONNREFUSED…) says more.
      let cause: unknown;
      client.on('error', (err: unknown) => {
        cause ??= err;
      });
      try {
        await client.connect();
        const pong = await client.ping();
        return pong === 'PONG' ? { ok: true } : { ok: false, detail: `redis answered PING with ${pong}` };
      } catch (err) {
        return { ok: false, detail: `${describeRedisError(cause ?? err, url)}${consequence}` };
      } finally {
        client.disconnect();
      }
    },
  };
}

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get('/healthz', async (request, reply) => {
    request.routeLabel = 'healthz';
    return reply.send({ status: 'ok' });
  });
  app.get('/readyz', async (request, reply) => {
    request.routeLabel = 'readyz';
    const report = await readiness(app);
    return reply.code(report.status === 'not ready' ? 503 : 200).send(report);
  });
  const { metrics } = app.config;
  const scrapers = compileNetworks(metrics.networks, 'metrics.networks');
  app.get('/metrics', async (request, reply) => {
    request.routeLabel = 'metrics';
    if (!metrics.enabled) return reply.code(404).send({ errors: [{ code: 'NAME_UNKNOWN', message: 'metrics are disabled (metrics.enabled)' }] });
    if (metrics.port !== null) {
      return reply.code(404).send({ errors: [{ code: 'NAME_UNKNOWN', message: `metrics are served on their own port (metrics.port ${metrics.port})` }] });
    }
    if (metrics.networks.length > 0 && !scrapers.has(request.clientIp)) {
      throw registryError('DENIED', `/metrics answers only clients in metrics.networks; ${request.clientIp || 'this client'} is not one`);
    }
    return reply.type(app.metrics.registry.contentType).send(await app.metrics.registry.metrics());
  });
}
