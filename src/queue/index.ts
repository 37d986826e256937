/**
 * src/queue: pre-warm job types and ids (jobs.ts), the queue seam (transport.ts) with its two
 * transports — BullMQ when `redis.url` is set (bullmq.ts), in this process otherwise
 * (in-process.ts) — run status (status.ts), and PrewarmService (service.ts), which ties the
 * configured entries, a transport and the processor in src/registry/prewarm.ts together.
 *
 * May import: registry/, storage/ (status records), config, metrics. Not http/ (the HTTP layer
 * and the commands in workers/ call into this folder, never the reverse).
 */
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/types.js';
import type { Metrics } from '../metrics/metrics.js';
import type { MirrorService } from '../registry/mirror.js';
import type { Router } from '../registry/routing.js';
import type { StorageDriver } from '../storage/driver.js';
import type { BullmqQueue } from './bullmq.js';
import { InProcessQueue } from './in-process.js';
import { PrewarmService } from './service.js';
import { MetaStatusStore, RedisStatusStore } from './status.js';

export { PrewarmService } from './service.js';
export type { BullmqQueue } from './bullmq.js';
export { QueueUnavailableError } from './transport.js';
export { InProcessQueue } from './in-process.js';

export interface PrewarmWiring {
  config: BerthConfig;
  router: Router;
  metrics: Metrics;
  log: Logger;
  driver: StorageDriver;
  mirror: MirrorService | null;
  /** The BullMQ transport's class, from loadBullmq(): needed when `redis.url` is set. */
  bullmq?: typeof BullmqQueue | null;
}

/**
 * BullMQ and ioredis load only when a config names Redis (issue 16: together they are most of an
 * idle server's start-up time and a good part of its memory). Call before createPrewarmService.
 */
export async function loadBullmq(config: BerthConfig): Promise<typeof BullmqQueue | null> {
  if (config.redis.url === null) return null;
  return (await import('./bullmq.js')).BullmqQueue;
}

/** The service on the transport the config asks for: BullMQ with `redis.url`, in-process without. */
export function createPrewarmService(w: PrewarmWiring): PrewarmService {
  const { config, log } = w;
  const policy = { attempts: config.prewarm.attempts, retryDelayMs: config.prewarm.retryDelay };
  if (config.redis.url !== null) {
    const BullmqQueue = w.bullmq;
    if (!BullmqQueue) throw new Error('redis.url is set: load the BullMQ transport first (loadBullmq)');
    const queue = new BullmqQueue({ url: config.redis.url, prefix: config.redis.prefix, policy, lockDurationMs: config.prewarm.lockDuration, log });
    const status = new RedisStatusStore(queue.producer, queue.key('status'));
    try {
      return new PrewarmService({ ...w, queue, status });
    } catch (err) {
      // A bad entry stops the start: do not leave the Redis connections behind.
      void queue.close();
      throw err;
    }
  }
  const queue = new InProcessQueue(policy, log);
  return new PrewarmService({ ...w, queue, status: new MetaStatusStore(w.driver) });
}
