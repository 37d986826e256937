/**
 * Hit ratio and bytes since start and over the last hour, for the overview. The figures since
 * start are Berth's own counters (`berth_cache_requests_total`, `berth_served_bytes_total`), read
 * through prom-client, so the UI and /metrics cannot disagree. For the last hour a small ring
 * keeps one snapshot of those counters per minute (61 of them, a few KiB); the hour's figures are
 * now minus the oldest snapshot within the hour. Per process: with several replicas each shows
 * its own, as /metrics does.
 */
import type { Metrics } from '../metrics/metrics.js';

/** Results that were answered from the cache (docs/metrics.md: hit ratio = (hit + revalidated + stale) / all). */
const FROM_CACHE = new Set(['hit', 'revalidated', 'stale']);
const MINUTE_MS = 60_000;
const RING = 61;

export interface Counts {
  manifest: { cached: number; total: number };
  blob: { cached: number; total: number };
  bytes: { cache: number; upstream: number };
}

export interface RatioView {
  manifest: number | null;
  blob: number | null;
  all: number | null;
  lookups: { manifest: number; blob: number };
  bytes: { cache: number; upstream: number };
}

export interface HitFigures {
  sinceStart: RatioView;
  lastHour: RatioView & { minutes: number };
}

export class HitHistory {
  private readonly ring: { at: number; counts: Counts }[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly metrics: Metrics,
    private readonly now: () => number = Date.now,
  ) {}

  /** Take the first snapshot and one every minute after (the timer does not hold the process open). */
  async start(): Promise<void> {
    await this.sample();
    this.timer = setInterval(() => void this.sample().catch(() => undefined), MINUTE_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async sample(): Promise<void> {
    this.ring.push({ at: this.now(), counts: await this.read() });
    while (this.ring.length > RING) this.ring.shift();
  }

  async figures(): Promise<HitFigures> {
    const current = await this.read();
    const t = this.now();
    const base = this.ring.find((s) => s.at >= t - 60 * MINUTE_MS) ?? this.ring[0];
    const hour = base ? minus(current, base.counts) : current;
    const minutes = base ? Math.max(0, Math.round((t - base.at) / MINUTE_MS)) : 0;
    return { sinceStart: view(current), lastHour: { ...view(hour), minutes } };
  }

  private async read(): Promise<Counts> {
    const counts: Counts = { manifest: { cached: 0, total: 0 }, blob: { cached: 0, total: 0 }, bytes: { cache: 0, upstream: 0 } };
    for (const v of (await this.metrics.cacheRequests.get()).values) {
      const kind = v.labels['kind'];
      if (kind !== 'manifest' && kind !== 'blob') continue;
      counts[kind].total += v.value;
      if (FROM_CACHE.has(String(v.labels['result']))) counts[kind].cached += v.value;
    }
    for (const v of (await this.metrics.servedBytes.get()).values) {
      if (v.labels['source'] === 'cache') counts.bytes.cache += v.value;
      else if (v.labels['source'] === 'upstream') counts.bytes.upstream += v.value;
    }
    return counts;
  }
}

function minus(a: Counts, b: Counts): Counts {
  return {
    manifest: { cached: a.manifest.cached - b.manifest.cached, total: a.manifest.total - b.manifest.total },
    blob: { cached: a.blob.cached - b.blob.cached, total: a.blob.total - b.blob.total },
    bytes: { cache: a.bytes.cache - b.bytes.cache, upstream: a.bytes.upstream - b.bytes.upstream },
  };
}

const ratio = (cached: number, total: number): number | null => (total > 0 ? cached / total : null);

function view(c: Counts): RatioView {
  return {
    manifest: ratio(c.manifest.cached, c.manifest.total),
    blob: ratio(c.blob.cached, c.blob.total),
    all: ratio(c.manifest.cached + c.blob.cached, c.manifest.total + c.blob.total),
    lookups: { manifest: c.manifest.total, blob: c.blob.total },
    bytes: c.bytes,
  };
}
