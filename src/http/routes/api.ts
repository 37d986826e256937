/**
 * The admin JSON API under /api/v1: upstreams and their rate-limit and breaker state, cache
 * figures. Later features (pre-warm, purge) add their routes here.
 */
import type { FastifyInstance } from 'fastify';

export async function apiRoutes(app: FastifyInstance): Promise<void> {
  app.addHook('onRequest', async (request) => {
    request.routeLabel = 'api';
  });
  app.get('/upstreams', async () => {
    const upstreams = [...app.mirror.clients.values()].map((c) => {
      const rl = c.rateLimit.snapshot();
      return {
        name: c.name,
        url: c.config.url,
        aliases: c.config.aliases,
        default: c.name === app.router.default.name,
        tagTtlSeconds: c.config.tagTtl / 1000,
        breaker: { state: c.breaker.state, retryInSeconds: c.breaker.retryIn() },
        rateLimit: {
          limit: rl.limit,
          remaining: c.rateLimit.remaining(),
          windowSeconds: rl.window,
          observedAt: rl.observedAt ? new Date(rl.observedAt).toISOString() : null,
          exhausted: c.rateLimit.blockedFor() > 0,
          retryAfterSeconds: c.rateLimit.blockedFor(),
        },
      };
    });
    return { upstreams };
  });
}
