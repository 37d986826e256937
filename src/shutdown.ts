/**
 * Graceful stop on SIGTERM/SIGINT for a long-running command (`berth serve`, `berth worker`):
 * the first signal runs `close` (finish in-flight work, release connections) and exits 0; if that
 * takes longer than the grace period, or fails, the process exits 1.
 */
import type { Logger } from 'pino';

export interface ShutdownOptions {
  /** What the log says is being finished ("in-flight requests and fills"). */
  finishing: string;
  /** What the log says when the grace period runs out. */
  abandoning: string;
  graceMs: number;
}

export function stopOnSignals(log: Logger, close: () => Promise<void>, opts: ShutdownOptions): void {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, `shutting down: finishing ${opts.finishing}`);
    const timer = setTimeout(() => {
      log.warn(`shutdown grace period over; exiting with ${opts.abandoning}`);
      process.exit(1);
    }, opts.graceMs);
    timer.unref();
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
