/**
 * Pre-warm beside `berth serve`. Without Redis: the in-process scheduler and worker, sharing the
 * server's MirrorService (a client pull and a pre-warm of one layer share one download). With
 * Redis: this process only keeps the job schedulers in step with its config and answers the API;
 * `berth worker` processes run the jobs. Redis being down never holds up serving: the scheduler
 * sync is retried in the background until it succeeds.
 */
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/types.js';
import type { BackgroundService, Services } from '../http/server.js';
import { createPrewarmService } from './index.js';
import type { PrewarmService } from './service.js';

/** Between scheduler-sync attempts while Redis is unreachable. */
const SYNC_RETRY_MS = 10_000;

export class PrewarmBackground implements BackgroundService {
  readonly name = 'prewarm';
  private service: PrewarmService | null = null;
  private services: Services | null = null;
  private sync: { stop(): void } | null = null;

  constructor(
    private readonly config: BerthConfig,
    private readonly log: Logger,
  ) {}

  async start(services: Services): Promise<void> {
    const service = createPrewarmService({
      config: this.config, router: services.app.router, metrics: services.metrics, log: this.log, driver: services.driver, mirror: services.mirror,
    });
    this.service = service;
    this.services = services;
    services.app.prewarm = service;
    if (service.queue.kind === 'in-process') {
      await service.syncSchedules();
      await service.startWorker();
      await service.queueNeverRun();
      return;
    }
    this.sync = keepSchedulesInStep(service, this.log);
  }

  async stop(): Promise<void> {
    this.sync?.stop();
    if (this.services) this.services.app.prewarm = null;
    await this.service?.close();
  }
}

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
      log.warn({ err: err instanceof Error ? err.message : String(err), retryInSeconds: SYNC_RETRY_MS / 1000 },
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
