/**
 * Every Prometheus metric Berth exports, defined in one place on one Registry. The names and
 * labels are a contract (ARCHITECTURE.md, dashboards/, the alert rules): change them together.
 * Labels are bounded: no repository names or digests, ever.
 */
import client from 'prom-client';

export type CacheKind = 'manifest' | 'blob';
export type CacheResult = 'hit' | 'miss' | 'stale' | 'coalesced' | 'revalidated';

export const CACHE_KINDS: readonly CacheKind[] = ['manifest', 'blob'];
export const CACHE_RESULTS: readonly CacheResult[] = ['hit', 'miss', 'stale', 'coalesced', 'revalidated'];
export const SERVED_SOURCES = ['cache', 'upstream'] as const;
export const PREWARM_RESULTS = ['success', 'unchanged', 'failed'] as const;

/**
 * Request durations: a warm manifest answers in a fraction of a millisecond, a cold blob takes
 * seconds to minutes, so the buckets run from 100 µs to 10 min (roughly ×2.5 per step).
 */
const STORAGE_MAX_BYTES = 'berth_storage_max_bytes';

export const DURATION_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
];


/** The store's size as the component that tracks it (the lifecycle layer) knows it. */
export interface StorageFigures {
  bytes: number;
  blobs: number;
}

/** What `prepare` needs from the configuration: the series that should exist before any event. */
export interface MetricsSetup {
  upstreams: readonly string[];
  /** storage.maxSize in bytes; null when there is no cap. */
  storageMaxBytes: number | null;
  /**
   * The store's own space figures (the driver's `space()`): without a cap, berth_storage_max_bytes
   * is the size of the volume the blobs live on, measured at each scrape.
   */
  storageSpace?: StorageSpace | null;
}

/** Free and total bytes where the blobs live; null when the store cannot say. */
export type StorageSpace = () => Promise<{ free: number; total: number } | null>;

/** Cache figures with `freeBytes` filled from the store when the lifecycle layer left it null (GET /api/v1/cache). */
export async function withFreeBytes<T extends { freeBytes: number | null }>(stats: T, space: StorageSpace): Promise<T> {
  if (stats.freeBytes !== null) return stats;
  return { ...stats, freeBytes: (await space().catch(() => null))?.free ?? null };
}

/**
 * One counter series bound to its labels once, for code that runs on every request. `inc` adds
 * to a plain number; the counter takes what was added at each read (its `collect`, which
 * prom-client runs before every scrape and every `get()`), so the exported figures are the same.
 * prom-client's own `inc(labels)` hashes the label object on every call (its `labels()` child
 * too): about 1 µs of a warm manifest request's ~50, for three counters.
 */
export interface BoundCounter {
  inc(value?: number): void;
}

class PendingSeries implements BoundCounter {
  value = 0;
  constructor(readonly labels: Record<string, string>) {}
  inc(value = 1): void {
    this.value += value;
  }
}

export class Metrics {
  readonly registry = new client.Registry();

  /** Bound series per counter, added to the counter at each read (see BoundCounter). */
  private readonly pending = new Map<client.Counter<string>, Map<string, PendingSeries>>();

  readonly httpRequests = new client.Counter({
    name: 'berth_http_requests_total',
    help: 'HTTP requests answered, by method, route and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
    collect: () => {
      this.flush(this.httpRequests as client.Counter<string>);
    },
  });

  readonly httpDuration = new client.Histogram({
    name: 'berth_http_request_duration_seconds',
    help: 'Time to answer an HTTP request (until the last byte was handed to the socket).',
    labelNames: ['method', 'route'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  readonly cacheRequests = new client.Counter({
    name: 'berth_cache_requests_total',
    help: 'Cache lookups by kind and result (hit, miss, stale, coalesced, revalidated).',
    labelNames: ['kind', 'result'] as const,
    registers: [this.registry],
    collect: () => {
      this.flush(this.cacheRequests as client.Counter<string>);
    },
  });

  readonly upstreamRequests = new client.Counter({
    name: 'berth_upstream_requests_total',
    help: 'Requests sent to upstream registries, by upstream, method, kind and status (or error code).',
    labelNames: ['upstream', 'method', 'kind', 'status'] as const,
    registers: [this.registry],
  });

  readonly upstreamBytes = new client.Counter({
    name: 'berth_upstream_bytes_total',
    help: 'Body bytes received from upstream registries.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });

  readonly servedBytes = new client.Counter({
    name: 'berth_served_bytes_total',
    help: 'Body bytes sent to clients, by where they came from (cache or an upstream fill).',
    labelNames: ['source'] as const,
    registers: [this.registry],
    collect: () => {
      this.flush(this.servedBytes as client.Counter<string>);
    },
  });

  readonly rateLimitRemaining = new client.Gauge({
    name: 'berth_upstream_ratelimit_remaining',
    help: 'Pulls left in the upstream rate-limit window, as last reported by the upstream.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });

  readonly rateLimitLimit = new client.Gauge({
    name: 'berth_upstream_ratelimit_limit',
    help: 'Size of the upstream rate-limit window, as last reported by the upstream.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });

  readonly upstreamUp = new client.Gauge({
    name: 'berth_upstream_up',
    help: '1 when the upstream answered its last request, 0 when it failed or its breaker is open.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });

  /** Set by `reportStorageFrom`; read at each scrape so the figures are never computed twice. */
  private storageSource: (() => StorageFigures | null) | null = null;

  readonly storageBytes = new client.Gauge({
    name: 'berth_storage_bytes',
    help: 'Bytes of blobs (layers, configs, manifests) in the cache.',
    registers: [this.registry],
    collect: () => {
      const f = this.storageSource?.();
      if (f) this.storageBytes.set(f.bytes);
    },
  });

  readonly storageBlobs = new client.Gauge({
    name: 'berth_storage_blobs',
    help: 'Number of blobs in the cache.',
    registers: [this.registry],
    collect: () => {
      const f = this.storageSource?.();
      if (f) this.storageBlobs.set(f.blobs);
    },
  });

  /**
   * The cap, or (no cap) the size of the store's volume; both set by `prepare`, which
   * registers the gauge only when one of them is known: a made-up 0 would read as "full".
   */
  private storageCap: number | null = null;
  private storageSpace: StorageSpace | null = null;

  readonly storageMaxBytes = new client.Gauge({
    name: STORAGE_MAX_BYTES,
    help: 'The storage cap (storage.maxSize) in bytes, or the size of the storage volume when there is no cap.',
    registers: [],
    collect: async () => {
      if (this.storageCap !== null) this.storageMaxBytes.set(this.storageCap);
      else if (this.storageSpace !== null) {
        const v = await this.storageSpace().catch(() => null);
        if (v) this.storageMaxBytes.set(v.total);
      }
    },
  });

  /** Open client connections, read from the server at each scrape (src/http/limits.ts). */
  private connectionSource: (() => Promise<number>) | null = null;

  readonly connections = new client.Gauge({
    name: 'berth_http_connections',
    help: 'Client connections open now.',
    registers: [this.registry],
    collect: async () => {
      if (this.connectionSource) this.connections.set(await this.connectionSource());
    },
  });

  readonly connectionsDropped = new client.Counter({
    name: 'berth_http_connections_dropped_total',
    help: 'Client connections closed on arrival because http.maxConnections were open.',
    registers: [this.registry],
  });

  readonly evictions = new client.Counter({
    name: 'berth_evictions_total',
    help: 'Blobs removed from the cache by eviction or garbage collection.',
    registers: [this.registry],
  });

  readonly evictedBytes = new client.Counter({
    name: 'berth_evicted_bytes_total',
    help: 'Bytes removed from the cache by eviction or garbage collection.',
    registers: [this.registry],
  });

  /** Set by the lifecycle layer (src/storage/lifecycle.ts) when a write fails with ENOSPC, cleared when space returns. */
  readonly storageFull = new client.Gauge({
    name: 'berth_storage_full',
    help: '1 while the disk is full: cached content is served, misses are streamed through uncached; 0 otherwise.',
    registers: [this.registry],
  });

  readonly prewarmRuns = new client.Counter({
    name: 'berth_prewarm_runs_total',
    help: 'Pre-warm runs by result (success, unchanged, failed).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly prewarmLastSuccess = new client.Gauge({
    name: 'berth_prewarm_last_success_timestamp_seconds',
    help: 'When each pinned image last pre-warmed successfully (unix seconds).',
    labelNames: ['image'] as const,
    registers: [this.registry],
  });

  readonly prewarmPullsSpent = new client.Counter({
    name: 'berth_prewarm_pulls_spent_total',
    help: 'Upstream manifest GETs (the requests Docker Hub counts as pulls) spent by pre-warm.',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });

  // Replicas (src/registry/cluster-fills.ts): a blob miss that joined a fill instead of starting
  // one, in this replica (`local`) or streamed from the replica that leads it (`remote`).
  readonly clusterFillJoins = new client.Counter({
    name: 'berth_cluster_fill_joins_total',
    help: 'Blob misses that joined a fill under way: in this replica (local) or streamed from the replica leading it (remote).',
    labelNames: ['where'] as const,
    registers: [this.registry],
  });

  // Hosted repositories (issue 14).
  readonly pushBytes = new client.Counter({
    name: 'berth_push_bytes_total',
    help: 'Blob bytes clients pushed into hosted repositories (upload bodies, before verification).',
    registers: [this.registry],
  });

  readonly uploadsInProgress = new client.Gauge({
    name: 'berth_uploads_in_progress',
    help: 'Blob upload sessions open in this process (started, neither finished, cancelled nor expired).',
    registers: [this.registry],
  });

  constructor(opts: { defaults?: boolean } = {}) {
    if (opts.defaults !== false) {
      client.collectDefaultMetrics({ register: this.registry });
      dropInvalidDefaults(this.registry);
    }
    // Every bounded label set starts at zero, so ratios and increase() see the first event too.
    for (const kind of CACHE_KINDS) for (const result of CACHE_RESULTS) this.cacheRequests.inc({ kind, result }, 0);
    for (const source of SERVED_SOURCES) this.servedBytes.inc({ source }, 0);
    for (const result of PREWARM_RESULTS) this.prewarmRuns.inc({ result }, 0);
    for (const where of ['local', 'remote']) this.clusterFillJoins.inc({ where }, 0);
    // The pull routes' latency series too: a series that first appears with its final count
    // shows no rate, so a burst of pulls between two scrapes would be missing from p50/p99.
    for (const method of ['GET', 'HEAD']) for (const route of ['manifest', 'blob']) this.httpDuration.zero({ method, route });
  }

  /**
   * The series of `counter` with these labels, bound once (see BoundCounter). Keep what it
   * returns, or call it with a bounded set of label values: each distinct set is kept for good.
   */
  bind<T extends string>(counter: client.Counter<T>, labels: Record<T, string>): BoundCounter {
    const c = counter as unknown as client.Counter<string>;
    let series = this.pending.get(c);
    if (series === undefined) {
      series = new Map();
      this.pending.set(c, series);
    }
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    let s = series.get(key);
    if (s === undefined) {
      s = new PendingSeries(labels);
      series.set(key, s);
    }
    return s;
  }

  /** Per method/route/status (a bounded set): the bound request counter and the histogram's labels. */
  private readonly requestSeries = new Map<string, { count: BoundCounter; labels: { method: string; route: string } }>();

  /**
   * One answered HTTP request: berth_http_requests_total, and its duration when known. The
   * caller keeps the labels bounded (methods, route labels, status codes).
   */
  httpRequest(method: string, route: string, status: number, seconds: number | null): void {
    const key = `${method} ${route} ${status}`;
    let s = this.requestSeries.get(key);
    if (s === undefined) {
      s = { count: this.bind(this.httpRequests, { method, route, status: String(status) }), labels: { method, route } };
      this.requestSeries.set(key, s);
    }
    s.count.inc();
    if (seconds !== null) this.httpDuration.observe(s.labels, seconds);
  }

  private readonly cacheSeries = new Map<string, BoundCounter>();

  /** One client request's cache result (berth_cache_requests_total), through a bound series. */
  countCache(kind: CacheKind, result: CacheResult): void {
    const key = `${kind} ${result}`;
    let s = this.cacheSeries.get(key);
    if (s === undefined) {
      s = this.bind(this.cacheRequests, { kind, result });
      this.cacheSeries.set(key, s);
    }
    s.inc();
  }

  private readonly servedSeries: Record<(typeof SERVED_SOURCES)[number], BoundCounter> = {
    cache: this.bind(this.servedBytes, { source: 'cache' }),
    upstream: this.bind(this.servedBytes, { source: 'upstream' }),
  };

  /** Body bytes sent to a client (berth_served_bytes_total), through a bound series. */
  served(source: (typeof SERVED_SOURCES)[number], bytes: number): void {
    this.servedSeries[source].inc(bytes);
  }

  /** Hand what the bound series of `counter` counted since the last read to the counter. */
  private flush(counter: client.Counter<string>): void {
    const series = this.pending.get(counter);
    if (series === undefined) return;
    for (const s of series.values()) {
      if (s.value === 0) continue;
      const v = s.value;
      s.value = 0;
      counter.inc(s.labels, v);
    }
  }

  /**
   * Create the series the configuration implies before any traffic: per configured upstream the
   * byte and pull counters at zero and `berth_upstream_up` at 1 (no failure seen yet; the client
   * sets 0 on a failure), and the storage cap (or volume size). Rate-limit gauges stay absent until an upstream
   * reports a limit: most registries never do, and a made-up number would trip the alerts.
   */
  prepare(setup: MetricsSetup): void {
    for (const upstream of setup.upstreams) {
      this.upstreamBytes.inc({ upstream }, 0);
      this.prewarmPullsSpent.inc({ upstream }, 0);
      this.upstreamUp.set({ upstream }, 1);
    }
    this.storageCap = setup.storageMaxBytes;
    this.storageSpace = setup.storageSpace ?? null;
    const known = this.storageCap !== null || this.storageSpace !== null;
    const shown = this.registry.getSingleMetric(STORAGE_MAX_BYTES) !== undefined;
    if (known && !shown) this.registry.registerMetric(this.storageMaxBytes);
    else if (!known && shown) this.registry.removeSingleMetric(STORAGE_MAX_BYTES);
  }

  /**
   * The one component that tracks the store's size (src/storage/lifecycle.ts) registers here;
   * `berth_storage_bytes` and `berth_storage_blobs` read it at each scrape. A component may
   * instead set those gauges itself; without either they stay 0.
   */
  reportStorageFrom(source: () => StorageFigures | null): void {
    this.storageSource = source;
  }

  /** The HTTP server reports its open connections here (src/http/limits.ts). */
  reportConnectionsFrom(source: () => Promise<number>): void {
    this.connectionSource = source;
  }
}

/**
 * promtool (like the OpenMetrics rules) keeps the `_total` suffix for counters, and prom-client 15
 * exports three gauges with it (nodejs_active_handles_total, _requests_total, _resources_total).
 * Their per-type siblings (`nodejs_active_handles{type}` …) sum to the same figures, so the
 * invalid ones are dropped rather than renamed. Every other default collector is kept.
 */
function dropInvalidDefaults(registry: client.Registry): void {
  for (const { name } of registry.getMetricsAsArray()) {
    if (name.endsWith('_total') && !(registry.getSingleMetric(name) instanceof client.Counter)) {
      registry.removeSingleMetric(name);
    }
  }
}
