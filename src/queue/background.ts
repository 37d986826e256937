/**
 * Keeping the BullMQ job schedulers in step with the config, for `berth serve` and `berth worker`
 * with Redis (src/app/ starts it). Redis being down never holds up serving: the scheduler sync is
 * retried in the background until it succeeds.
 */
import type { Logger } from 'pino';
import type { PrewarmService } from './service.js';

/** Between scheduler-sync attempts while Redis is unreachable. */
const SYNC_RETRY_MS = 10_000;

/**
 * Sync the schedulers (and queue first runs) now, and again every SYNC_RETRY_MS until it has
 * worked once: producers fail fast, so a Redis that is down costs a log line, not a hang.
 */
export function keepSchedulesInStep(service: PrewarmService, log: Logger): { stop(): void } {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const attempt = async (): Promise<void> => {
    try {
      await service.syncSchedules();
      await service.queueNeverRun();
      log.info({ entries: service.entries.length }, 'pre-warm schedules are in step with the config');
    } catch (err) {
      if (stopped) return;
      // QueueUnavailableError's message already names redis.url (src/queue/redis-errors.ts).
      log.warn({ reason: err instanceof Error ? err.message : String(err), retryInSeconds: SYNC_RETRY_MS / 1000 },
        'could not sync pre-warm schedules with Redis; retrying');
      timer = setTimeout(() => void attempt(), SYNC_RETRY_MS);
      timer.unref();
    }
  };
  void attempt();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
