/**
 * Every Prometheus metric Berth exports, defined in one place on one Registry. The names and
 * labels are a contract (ARCHITECTURE.md, dashboards/, the alert rules): change them together.
 * Labels are bounded: no repository names or digests, ever.
 */
import client from 'prom-client';

export type CacheKind = 'manifest' | 'blob';
export type CacheResult = 'hit' | 'miss' | 'stale' | 'coalesced' | 'revalidated';

export class Metrics {
  readonly registry = new client.Registry();

  readonly httpRequests = new client.Counter({
    name: 'berth_http_requests_total',
    help: 'HTTP requests answered, by method, route and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });

  readonly httpDuration = new client.Histogram({
    name: 'berth_http_request_duration_seconds',
    help: 'Time to answer an HTTP request (until the last byte was handed to the socket).',
    labelNames: ['method', 'route'] as const,
    // Manifests answer in well under a millisecond warm; blobs take seconds to minutes.
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [this.registry],
  });

  readonly cacheRequests = new client.Counter({
    name: 'berth_cache_requests_total',
    help: 'Cache lookups by kind and result (hit, miss, stale, coalesced, revalidated).',
    labelNames: ['kind', 'result'] as const,
    registers: [this.registry],
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

  readonly storageBytes = new client.Gauge({
    name: 'berth_storage_bytes',
    help: 'Bytes of blobs (layers, configs, manifests) in the cache.',
    registers: [this.registry],
  });

  readonly storageBlobs = new client.Gauge({
    name: 'berth_storage_blobs',
    help: 'Number of blobs in the cache.',
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

  constructor(opts: { defaults?: boolean } = {}) {
    if (opts.defaults !== false) {
      client.collectDefaultMetrics({ register: this.registry });
    }
  }
}
