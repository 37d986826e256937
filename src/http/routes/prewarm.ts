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
 *
 * One-offs are bounded (prewarm.oneOff): at most `perMinute` a minute per process (each may cost
 * an upstream HEAD; beyond it 429 TOOMANYREQUESTS with Retry-After), and at most `maxRecords`
 * status records (the oldest finished one-offs are forgotten; 429 while all of them still wait).
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { registryError } from '../../errors.js';
import type { PrewarmService } from '../../queue/service.js';
import { QueueUnavailableError } from '../../queue/transport.js';
import { PrewarmPermanentError } from '../../registry/prewarm.js';
import { auditRequest } from '../request-log.js';

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

/** A token bucket: `perMinute` tokens, refilled continuously; `take` says how long to wait when empty. */
export class MinuteRate {
  private tokens: number;
  private at: number;

  constructor(
    private readonly perMinute: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = perMinute;
    this.at = now();
  }

  /** 0 when a token was taken; otherwise the seconds until one is available (Infinity when the rate is 0). */
  take(): number {
    if (this.perMinute <= 0) return Infinity;
    const t = this.now();
    this.tokens = Math.min(this.perMinute, this.tokens + ((t - this.at) * this.perMinute) / 60_000);
    this.at = t;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - this.tokens) * 60) / this.perMinute));
  }
}

export async function prewarmRoutes(app: FastifyInstance): Promise<void> {
  const { perMinute, maxRecords } = app.config.prewarm.oneOff;
  const oneOffRate = new MinuteRate(perMinute);
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
      if (s.find(ref) === null) {
        const wait = oneOffRate.take();
        if (wait === Infinity) throw registryError('DENIED', 'one-off pre-warm runs are off (prewarm.oneOff.perMinute is 0); add the image to prewarm.images');
        if (wait > 0) {
          throw registryError('TOOMANYREQUESTS', `at most ${perMinute} one-off pre-warm runs a minute (prewarm.oneOff.perMinute)`, { headers: { 'retry-after': String(wait) } });
        }
        if (!(await s.makeRoomForOneOff(maxRecords))) {
          throw registryError('TOOMANYREQUESTS', `${maxRecords} one-off pre-warm runs are still waiting or running (prewarm.oneOff.maxRecords)`, { headers: { 'retry-after': '60' } });
        }
      }
      const run = await s.enqueue(ref);
      auditRequest(request, 'prewarm.trigger', run.entry.ref, { jobId: run.jobId, queued: run.queued, configured: run.entry.configured });
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
