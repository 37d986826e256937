/**
 * Pre-warm in the admin API (registered inside apiRoutes, so /api/v1 and its authorization hook
 * apply):
 *   GET  /api/v1/prewarm               every entry: resolved digest, last run and result, pulls
 *                                      spent, next run; plus the transport and its worker count,
 *                                      and `warnings`: sentences for an operator (with Redis and
 *                                      no worker consuming the queue, nothing runs).
 *   POST /api/v1/prewarm {"ref": "…"}  run now → 202 {jobId, queued, …}. A configured ref (any
 *                                      spelling of it) runs its entry; any other ref the mirror
 *                                      serves runs once as a one-off: cached, not pinned, not
 *                                      scheduled. `queued: false` means a run was already waiting
 *                                      or running and this request joined it.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { registryError } from '../../errors.js';
import type { PrewarmService } from '../../queue/service.js';
import { QueueUnavailableError } from '../../queue/transport.js';
import { PrewarmPermanentError } from '../../registry/prewarm.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Set by the pre-warm background service once it runs; null until then (and after). */
    prewarm: PrewarmService | null;
  }
}

/** The warning for a Redis queue that no `berth worker` consumes (also logged by `serve`). */
export function noWorkerWarning(): string {
  return 'no berth worker is consuming the pre-warm queue: with redis.url set, pre-warm runs happen only in `berth worker` processes, so scheduled and requested runs wait until one starts';
}

/**
 * The queue's store is unreachable: 503 UNAVAILABLE in the usual envelope, with its own words
 * (the catalogue's UNAVAILABLE text speaks of upstream registries).
 */
function sendUnavailable(reply: FastifyReply, err: QueueUnavailableError): FastifyReply {
  return reply.code(503).type('application/json').send({ errors: [{ code: 'UNAVAILABLE', message: `pre-warm queue unavailable: ${err.message}`, detail: null }] });
}

export async function prewarmRoutes(app: FastifyInstance): Promise<void> {
  const service = (): PrewarmService => {
    if (!app.prewarm) throw registryError('UNAVAILABLE', 'pre-warm is not running in this process');
    return app.prewarm;
  };

  app.get('/prewarm', async (_request, reply) => {
    const s = service();
    try {
      const listing = await s.list();
      const warnings = listing.transport === 'bullmq' && listing.workers === 0 ? [noWorkerWarning()] : [];
      return { ...listing, warnings };
    } catch (err) {
      if (err instanceof QueueUnavailableError) return sendUnavailable(reply, err);
      throw err;
    }
  });

  app.post('/prewarm', async (request, reply) => {
    const body = request.body as { ref?: unknown } | null | undefined;
    const ref = typeof body === 'object' && body !== null && typeof body.ref === 'string' ? body.ref.trim() : '';
    if (ref === '') throw registryError('NAME_INVALID', 'send a JSON body like {"ref": "docker.io/library/alpine:3.20"}');
    const s = service();
    try {
      const run = await s.enqueue(ref);
      return reply.code(202).send({
        jobId: run.jobId,
        queued: run.queued,
        id: run.entry.id,
        ref: run.entry.ref,
        configured: run.entry.configured,
        upstream: run.entry.upstream,
        name: run.entry.name,
      });
    } catch (err) {
      if (err instanceof PrewarmPermanentError) throw registryError('NAME_INVALID', err.message);
      if (err instanceof QueueUnavailableError) return sendUnavailable(reply, err);
      throw err;
    }
  });
}
