/**
 * The admin JSON API under /api/v1: upstreams and their rate-limit and breaker state, cache
 * figures. Later features (pre-warm, purge) add their routes here.
 */
import type { FastifyInstance } from 'fastify';
import { prewarmRoutes } from './prewarm.js';
import { cacheRoutes } from './cache.js';

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

export async function apiRoutes(app: FastifyInstance): Promise<void> {
  app.addHook('onRequest', async (request) => {
    request.routeLabel = 'api';
  });
  // Every admin route is gated by the access policy's `admin` action (src/auth/).
  app.addHook('onRequest', async (request) => {
    await app.access.authorizeAdmin?.({ authorization: request.headers.authorization, ip: request.clientIp });
  });
  /**
   * Each upstream as the mirror sees it now: its freshness and failure knobs, the breaker, and the
   * pull budget the upstream last reported (`exhausted` while manifest GETs are held back).
   */
  app.get('/upstreams', async () => {
    const upstreams = [...app.mirror.clients.values()].map((c) => {
      const rl = c.rateLimit.snapshot();
      const blocked = c.rateLimit.blockedFor();
      return {
        name: c.name,
        url: c.config.url,
        aliases: c.config.aliases,
        default: c.name === app.router.default.name,
        tagTtlSeconds: c.config.tagTtl / 1000,
        staleWhileRevalidateSeconds: c.config.staleWhileRevalidate / 1000,
        notFoundTtlSeconds: c.config.notFoundTtl / 1000,
        maxConnections: c.config.maxConnections,
        breaker: {
          state: c.breaker.state,
          failures: c.breaker.failures,
          maxFails: c.config.maxFails,
          failTimeoutSeconds: c.config.failTimeout / 1000,
          retryInSeconds: c.breaker.retryIn(),
        },
        rateLimit: {
          limit: rl.limit,
          remaining: c.rateLimit.remaining(),
          windowSeconds: rl.window,
          observedAt: iso(rl.observedAt),
          exhausted: blocked > 0,
          exhaustedUntil: blocked > 0 ? iso(rl.exhaustedUntil) : null,
          retryAfterSeconds: blocked,
        },
      };
    });
    return { upstreams };
  });
  // Pre-warm entries and "run now" (src/http/routes/prewarm.ts), inside this scope so the hooks above apply.
  await app.register(prewarmRoutes);
  // Cache figures, GC and purge (src/http/routes/cache.ts), likewise under the admin policy.
  await app.register(cacheRoutes);
}
