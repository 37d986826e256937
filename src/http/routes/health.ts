/**
 * Liveness and readiness. /healthz: the process answers. /readyz: storage takes writes, the
 * config loaded, and every registered check (Redis when configured) passes; the JSON body names
 * what is not ready.
 */
import type { FastifyInstance } from 'fastify';

export interface ReadinessCheck {
  name: string;
  check(): Promise<{ ok: boolean; detail?: string }>;
}

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get('/healthz', async (request, reply) => {
    request.routeLabel = 'healthz';
    return reply.send({ status: 'ok' });
  });
  app.get('/readyz', async (request, reply) => {
    request.routeLabel = 'readyz';
    const checks: Record<string, { ok: boolean; detail?: string }> = {
      config: { ok: true },
      storage: (await app.driver.writable()) ? { ok: true } : { ok: false, detail: `storage ${app.driver.name} is not writable` },
    };
    for (const c of app.readiness) {
      try {
        checks[c.name] = await c.check();
      } catch (err) {
        checks[c.name] = { ok: false, detail: (err as Error).message };
      }
    }
    const ready = Object.values(checks).every((c) => c.ok);
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', checks });
  });
  app.get('/metrics', async (request, reply) => {
    request.routeLabel = 'metrics';
    if (!app.config.metrics.enabled) return reply.code(404).send({ errors: [{ code: 'NAME_UNKNOWN', message: 'metrics are disabled' }] });
    return reply.type(app.metrics.registry.contentType).send(await app.metrics.registry.metrics());
  });
}
