/**
 * CORS for browser UIs (Joxit and our own): explicit origins only (credentials need them),
 * preflights answered without authentication (Distribution's 401 on OPTIONS breaks browsers),
 * and Docker-Content-Digest plus WWW-Authenticate exposed so a UI can read digests and run the
 * token handshake cross-origin.
 *
 * Also the methods no route serves on any path: `TRACE` (and `TRACK`) answer 405, and so does
 * `OPTIONS` unless it is a CORS preflight from a configured origin.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';

const REFUSED = new Set(['TRACE', 'TRACK']);

function methodNotAllowed(reply: FastifyReply, method: string, why: string): FastifyReply {
  reply.request.routeLabel = 'other';
  return reply
    .code(405)
    .header('allow', 'GET, HEAD, POST, PUT, PATCH, DELETE')
    .type('application/json')
    .send({ errors: [{ code: 'UNSUPPORTED', message: `${method} is not supported${why}`, detail: null }] });
}

export function installCors(app: FastifyInstance, origins: string[]): void {
  const allowed = new Set(origins);
  const any = allowed.has('*');
  // A callback hook: it runs on every request, and an async one would cost a promise each. A
  // reply sent here ends the hook chain (no `done`).
  app.addHook('onRequest', (request, reply, done) => {
    if (REFUSED.has(request.method)) {
      methodNotAllowed(reply, request.method, '');
      return;
    }
    const origin = request.headers.origin;
    const corsOrigin = origin !== undefined && allowed.size > 0 && (any || allowed.has(origin));
    if (!corsOrigin) {
      if (request.method === 'OPTIONS') {
        methodNotAllowed(reply, 'OPTIONS', allowed.size > 0 ? ' except as a CORS preflight from an origin in http.cors.origins' : ' (http.cors.origins is empty)');
        return;
      }
      done();
      return;
    }
    reply
      .header('access-control-allow-origin', origin)
      .header('access-control-allow-credentials', 'true')
      .header('access-control-expose-headers', 'Docker-Content-Digest, WWW-Authenticate, Link, Content-Range')
      .header('vary', 'Origin');
    if (request.method === 'OPTIONS') {
      reply
        .header('access-control-allow-methods', 'HEAD, GET, OPTIONS, DELETE')
        .header('access-control-allow-headers', 'Authorization, Accept, Cache-Control, Range, Content-Type')
        .header('access-control-max-age', '1728000');
      reply.code(204).send();
      return;
    }
    done();
  });
}
