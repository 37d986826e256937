/**
 * The admin JSON API under /api/v1: upstreams and their rate-limit and breaker state, cache
 * figures. Later features (pre-warm, purge) add their routes here. Views are rendered from the
 * services' own `status()` objects, never from their internals.
 */
import type { FastifyInstance } from 'fastify';
import { registryError } from '../../errors.js';
import { prewarmRoutes } from './prewarm.js';
import { cacheRoutes } from './cache.js';

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
   * pull budget the upstream last reported (`exhausted` while manifest GETs are held back). Built
   * from the mirror's own status view; this route only marks the default upstream.
   */
  app.get('/upstreams', async () => {
    const upstreams = app.mirror.status().upstreams.map(({ name, url, aliases, ...rest }) => ({
      name, url, aliases, default: name === app.router.default.name, ...rest,
    }));
    return { upstreams };
  });
  /**
   * Fills in progress in this process: manifest, tag and blob fetches from upstream, a blob's
   * bytes done / announced, and `clients`, how many clients read a blob fill now.
   */
  app.get('/fills', async () => ({ fills: app.mirror.status().fills }));
  // Pre-warm entries and "run now" (src/http/routes/prewarm.ts), inside this scope so the hooks above apply.
  await app.register(prewarmRoutes);
  // Cache figures, GC and purge (src/http/routes/cache.ts), likewise under the admin policy.
  await app.register(cacheRoutes);
  // A mistyped admin path is a route error, not a repository unknown to the registry (the /v2 404).
  app.setNotFoundHandler(async (request) => {
    request.routeLabel = 'api';
    throw registryError('NOT_FOUND', `no admin API route for ${request.method} ${request.url.split('?')[0]}`);
  });
}
