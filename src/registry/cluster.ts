/**
 * Replicas: several Berth processes sharing one store and one Redis (docs/scale-out.md#replicas).
 * Built by the composition root when `redis.url` is set; Redis holds coordination only, never
 * content, so losing it degrades each replica to what a single process does.
 *
 *  - Tag checks (cluster-tags.ts): a tag one replica revalidated is fresh for all within tagTtl;
 *    one revalidation HEAD at a time per tag across the cluster.
 *  - Rate limits: every change an upstream client sees for itself (ratelimit headers, a 429 and
 *    its Retry-After) is stored in Redis and published; every replica and worker adopts it, so a
 *    429 seen by one holds back GETs on all, and pre-warm's reservePulls is a cluster-wide reserve.
 *  - Invalidation: a record removed on one replica (purge, delete, eviction, GC) is dropped from
 *    the in-memory copies of every other one, by pub/sub, within milliseconds.
 *  - Blob fills (cluster-fills.ts): with cluster.advertiseUrl, one upstream download per blob
 *    across replicas, joined over the internal endpoint.
 *
 * Imports: registry/, storage/ types, upstream/ types, config types, metrics. Never Fastify.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { BerthConfig, UpstreamConfig } from '../config/types.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Digest } from '../oci/reference.js';
import type { StorageDriver } from '../storage/driver.js';
import type { RecordInvalidation } from '../storage/records.js';
import type { RateLimitState, SharedRateLimit } from '../upstream/ratelimit.js';
import { ClusterFills } from './cluster-fills.js';
import { ClusterRedis } from './cluster-redis.js';
import { RedisTagChecks, type TagChecks } from './cluster-tags.js';
import type { MirrorService } from './mirror.js';

/** Removals are sent in batches: a purge of many repositories is a few messages, not thousands. */
const INVALIDATE_BATCH_MS = 20;
/** A shared rate-limit state outlives any window an upstream reports (Docker Hub: 6 h). */
const RATE_LIMIT_KEEP_MS = 24 * 3600_000;

export interface ClusterDeps {
  driver: StorageDriver;
  metrics: Metrics;
  log: Logger;
  /** A blob copied from another replica is stored (the lifecycle's `stored` hook). */
  stored?: (digest: Digest, size: number) => void;
}

export class Cluster {
  readonly tagChecks: TagChecks;
  /** Cross-replica blob fills; null without cluster.advertiseUrl (this process cannot be joined). */
  readonly fills: ClusterFills | null;
  private pending: RecordInvalidation[] = [];
  private flush: NodeJS.Timeout | null = null;
  private readonly detach: Array<() => void> = [];

  private constructor(
    readonly redis: ClusterRedis,
    readonly replicaId: string,
    config: BerthConfig,
    private readonly deps: ClusterDeps,
  ) {
    this.tagChecks = new RedisTagChecks(redis, replicaId);
    const { advertiseUrl, secret } = config.cluster;
    this.fills = advertiseUrl !== null && secret !== null
      ? new ClusterFills({
        redis, driver: deps.driver, metrics: deps.metrics, log: deps.log, replicaId, advertiseUrl, secret,
        ...(deps.stored ? { stored: deps.stored } : {}),
      })
      : null;
  }

  /** Connect to redis.url (in the background: a Redis that is down is retried, never awaited). */
  static async open(config: BerthConfig, deps: ClusterDeps): Promise<Cluster> {
    const url = config.redis.url;
    if (url === null) throw new Error('replica coordination needs redis.url');
    const replicaId = config.cluster.replicaId ?? `${hostname()}-${process.pid}`;
    const log = deps.log.child({ component: 'cluster', replica: replicaId });
    const redis = await ClusterRedis.open(url, config.redis.prefix, log);
    return new Cluster(redis, replicaId, config, { ...deps, log });
  }

  /**
   * Share the mirror's rate-limit state and record removals with the other replicas, and take in
   * theirs. Called once, when the mirror is built.
   */
  attach(mirror: MirrorService, upstreams: readonly UpstreamConfig[]): void {
    const { redis, replicaId } = this;
    const states = new Map(upstreams.map((u) => [u.name, mirror.client(u).rateLimit] as const));
    const { metrics } = this.deps;
    // What another process saw shows in this one's gauges too (the client sets them for its own).
    const adopt = (name: string, state: RateLimitState, s: SharedRateLimit): void => {
      state.adopt(s);
      const { limit } = state.snapshot();
      const remaining = state.remaining();
      if (limit !== null) metrics.rateLimitLimit.set({ upstream: name }, limit);
      if (remaining !== null) metrics.rateLimitRemaining.set({ upstream: name }, remaining);
    };
    for (const [name, state] of states) {
      const key = redis.key('ratelimit', encodeURIComponent(name));
      state.onChange = (s) => {
        void redis.try('rate limit', (c) => c.set(key, JSON.stringify(s), 'PX', RATE_LIMIT_KEEP_MS));
        redis.publish({ type: 'ratelimit', from: replicaId, upstream: name, state: s });
      };
      this.detach.push(() => {
        state.onChange = null;
      });
    }
    // What was shared before this replica started (or while it could not hear the channel).
    const load = async (): Promise<void> => {
      for (const [name, state] of states) {
        const text = await redis.try('rate limit', (c) => c.get(redis.key('ratelimit', encodeURIComponent(name))));
        const s = text ? parseRateLimit(text) : null;
        if (s) adopt(name, state, s);
      }
    };
    redis.client.on('ready', () => void load());
    void load();

    mirror.meta.onInvalidate = (e) => {
      if (e.kind === 'tag') this.tagChecks.forget(e.upstream, e.name, e.tag);
      this.pending.push(e);
      this.flush ??= setTimeout(() => this.sendInvalidations(), INVALIDATE_BATCH_MS);
    };
    this.detach.push(() => {
      mirror.meta.onInvalidate = null;
    });

    redis.onEvent((msg) => {
      if (msg['from'] === replicaId) return;
      if (msg['type'] === 'ratelimit' && typeof msg['upstream'] === 'string') {
        const s = parseRateLimit(JSON.stringify(msg['state']));
        const state = states.get(msg['upstream']);
        if (s && state) adopt(msg['upstream'], state, s);
      } else if (msg['type'] === 'invalidate' && Array.isArray(msg['events'])) {
        for (const e of msg['events'] as unknown[]) {
          const inv = parseInvalidation(e);
          if (!inv) continue;
          mirror.meta.dropCached(inv);
          if (inv.kind === 'manifest') mirror.forget(inv.digest);
        }
      }
    });
  }

  private sendInvalidations(): void {
    this.flush = null;
    const events = this.pending;
    this.pending = [];
    if (events.length > 0) this.redis.publish({ type: 'invalidate', from: this.replicaId, events });
  }

  async close(): Promise<void> {
    for (const d of this.detach) d();
    if (this.flush) {
      clearTimeout(this.flush);
      this.sendInvalidations();
    }
    await this.fills?.close();
    await this.redis.close();
  }
}

function parseRateLimit(text: string): SharedRateLimit | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const num = (k: string): number | null => (typeof o[k] === 'number' ? o[k] : null);
  return {
    limit: num('limit'), remaining: num('remaining'), window: num('window'), observedAt: num('observedAt'),
    exhaustedUntil: num('exhaustedUntil'), firm: o['firm'] === true,
  };
}

function parseInvalidation(v: unknown): RecordInvalidation | null {
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const str = (k: string): string | null => (typeof o[k] === 'string' ? o[k] : null);
  const upstream = str('upstream');
  const name = str('name');
  if (o['kind'] === 'manifest') {
    const digest = str('digest');
    return digest ? { kind: 'manifest', digest } : null;
  }
  if (o['kind'] === 'tag') {
    const tag = str('tag');
    return upstream && name && tag ? { kind: 'tag', upstream, name, tag } : null;
  }
  if (o['kind'] === 'repo') return upstream && name ? { kind: 'repo', upstream, name } : null;
  return null;
}
