/**
 * The upstream clients the mirror talks through: one UpstreamClient per configured upstream,
 * picked by the routed request's upstream, and the status view the admin API renders (freshness
 * and failure knobs, breaker, pull budget). The parts of MirrorService (manifests, blobs, tags)
 * and the pre-warm runner all select their client here.
 *
 * Imports: upstream/, config types, metrics. Never Fastify.
 */
import type { LookupFunction } from 'node:net';
import type { Logger } from 'pino';
import type { UpstreamConfig } from '../config/types.js';
import type { Metrics } from '../metrics/metrics.js';
import type { BreakerStatus } from '../upstream/breaker.js';
import { UpstreamClient } from '../upstream/client.js';
import type { RateLimitStatus } from '../upstream/ratelimit.js';

/** One upstream as the mirror sees it now (GET /api/v1/upstreams): plain JSON. */
export interface UpstreamStatus {
  name: string;
  url: string;
  aliases: string[];
  tagTtlSeconds: number;
  staleWhileRevalidateSeconds: number;
  notFoundTtlSeconds: number;
  maxConnections: number;
  breaker: BreakerStatus;
  rateLimit: RateLimitStatus;
}

export interface UpstreamSetDeps {
  metrics: Metrics;
  log: Logger;
  now: () => number;
  lookup?: LookupFunction;
}

export class UpstreamSet {
  private readonly clients = new Map<string, UpstreamClient>();

  constructor(upstreams: readonly UpstreamConfig[], deps: UpstreamSetDeps) {
    for (const u of upstreams) {
      this.clients.set(u.name, new UpstreamClient(u, {
        metrics: deps.metrics, log: deps.log, now: deps.now, ...(deps.lookup ? { lookup: deps.lookup } : {}),
      }));
    }
  }

  /** The client for a routed request's upstream. Routing only yields configured upstreams. */
  client(upstream: UpstreamConfig): UpstreamClient {
    const c = this.clients.get(upstream.name);
    if (!c) throw new Error(`no client for upstream ${upstream.name}`);
    return c;
  }

  /** Every upstream, in configuration order. */
  status(): UpstreamStatus[] {
    return [...this.clients.values()].map((c) => ({
      name: c.name,
      url: c.config.url,
      aliases: c.config.aliases,
      tagTtlSeconds: c.config.tagTtl / 1000,
      staleWhileRevalidateSeconds: c.config.staleWhileRevalidate / 1000,
      notFoundTtlSeconds: c.config.notFoundTtl / 1000,
      maxConnections: c.config.maxConnections,
      breaker: c.breaker.status(),
      rateLimit: c.rateLimit.status(),
    }));
  }

  async close(): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.close()));
  }
}
