/**
 * CORS for browser UIs (Joxit and our own): explicit origins only (credentials need them),
 * preflights answered without authentication (Distribution's 401 on OPTIONS breaks browsers),
 * and Docker-Content-Digest plus WWW-Authenticate exposed so a UI can read digests and run the
 * token handshake cross-origin.
 */
import type { FastifyInstance } from 'fastify';

export function installCors(app: FastifyInstance, origins: string[]): void {
  if (origins.length === 0) return;
  const allowed = new Set(origins);
  const any = allowed.has('*');
  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin;
    if (!origin || (!any && !allowed.has(origin))) return;
    reply
      .header('access-control-allow-origin', origin)
      .header('access-control-allow-credentials', 'true')
      .header('access-control-expose-headers', 'Docker-Content-Digest, WWW-Authenticate, Link, Content-Range')
      .header('vary', 'Origin');
    if (request.method === 'OPTIONS') {
      reply
        .header('access-control-allow-methods', 'HEAD, GET, OPTIONS, DELETE')
        .header('access-control-allow-headers', 'Authorization, Accept, Cache-Control, Range')
        .header('access-control-max-age', '1728000');
      return reply.code(204).send();
    }
  });
  app.options('/*', async (_req, reply) => reply.code(204).send());
}
