/**
 * Disk full. A write that fails with ENOSPC puts the cache in a degraded mode: cached content is
 * still served and misses are streamed through uncached (`canStore` says so to the cache), until
 * free space is back (re-measured through the driver's `space()`, or an injected probe).
 */
import type { Logger } from 'pino';
import type { Metrics } from '../../metrics/metrics.js';
import type { SpaceProbe } from '../space.js';
import { LIFECYCLE_DEFAULTS } from './types.js';

export class DiskFullMode {
  private full: { since: number; needed: number; free: number | null } | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly space: SpaceProbe,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly recheckMs: number,
  ) {
    this.metrics.storageFull.set(0);
  }

  /** A write failed with ENOSPC/EDQUOT: serve what is cached, stream misses through, watch for space. */
  enter(err: Error, needed: number | null): void {
    if (this.full) {
      this.full.needed = Math.max(this.full.needed, needed ?? 0);
      return;
    }
    this.full = { since: this.now(), needed: needed ?? 0, free: null };
    this.metrics.storageFull.set(1);
    this.log.warn(
      { code: (err as NodeJS.ErrnoException).code, needed },
      'storage is full: cached content is still served, new blobs are streamed through uncached until space returns',
    );
    this.timer = setInterval(() => void this.check(), this.recheckMs);
    this.timer.unref();
  }

  /** May a blob miss be cached now? false while the disk is full. */
  canStore(): boolean {
    return this.full === null;
  }

  /** Measure free space; leave the mode when there is room again. Returns canStore(). */
  async check(): Promise<boolean> {
    const full = this.full;
    if (!full) return true;
    let info = null;
    try {
      info = await this.space();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not measure free space');
      return false;
    }
    if (info) {
      full.free = info.free;
      const floor = Math.min(info.total * LIFECYCLE_DEFAULTS.resumeFreeFraction, LIFECYCLE_DEFAULTS.resumeFreeMax);
      if (info.free < Math.max(floor, full.needed)) return false;
    }
    // Without a measurement the next write simply tries again.
    this.full = null;
    this.clearTimer();
    this.metrics.storageFull.set(0);
    this.log.info({ free: info?.free ?? null }, 'storage has space again: caching resumes');
    return true;
  }

  /** For /readyz: degraded, not unready (everything is still served). */
  readiness(): { ok: boolean; detail?: string } {
    if (!this.full) return { ok: true };
    const free = this.full.free === null ? '' : ` (${this.full.free} bytes free)`;
    return {
      ok: false,
      detail: `storage full since ${new Date(this.full.since).toISOString()}${free}: cached content is served, new content is streamed through uncached until space returns`,
    };
  }

  /** For stats. */
  state(): { since: number; free: number | null } | null {
    return this.full ? { since: this.full.since, free: this.full.free } : null;
  }

  /** Stop watching for space (the process is stopping). */
  stop(): void {
    this.clearTimer();
  }

  private clearTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
