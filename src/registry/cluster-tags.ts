/**
 * Tag freshness shared by replicas. The tag record in the store says when this tag was last
 * confirmed upstream, but each replica keeps records in memory; Redis holds one key per
 * (upstream, name, tag) with the digest and time of the cluster's last check, so a tag one replica
 * revalidated is fresh for all of them within `tagTtl`. A short lock per tag lets one
 * revalidation HEAD run at a time across the cluster: the others wait for its check to appear
 * (or the lock to go), then answer from the store.
 *
 * Every call degrades to "nothing shared" when Redis is down: the replica then checks its tags
 * on its own, as a single process does.
 *
 * Imports: registry/cluster-redis. Never Fastify.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClusterRedis } from './cluster-redis.js';

/** A revalidation lock lives this long unreleased (a replica that died holding it). */
const LOCK_MS = 5_000;
/** How often a waiter looks for the lock holder's result. */
const WAIT_POLL_MS = 25;

export interface TagCheck {
  digest: string;
  checkedAt: number;
}

/** What the manifest path asks (mirror-manifests.ts); null in a single process. */
export interface TagChecks {
  /** The cluster's last check of this tag, or null (none within tagTtl, or Redis unreachable). */
  last(upstream: string, name: string, tag: string): Promise<TagCheck | null>;
  /** Publish a check this replica made; kept for `ttlMs`. Fire and forget. */
  note(upstream: string, name: string, tag: string, check: TagCheck, ttlMs: number): void;
  /**
   * Be the one replica revalidating this tag: `mine` (release it after), `theirs` (another is at
   * it: wait with `waitFor`), `none` (no Redis: go ahead alone).
   */
  lock(upstream: string, name: string, tag: string): Promise<{ kind: 'mine'; release(): void } | { kind: 'theirs' } | { kind: 'none' }>;
  /** The tag was removed (purge, delete): its check no longer stands. Fire and forget. */
  forget(upstream: string, name: string, tag: string): void;
  /** Wait up to `ms` for a check newer than `after`; null when none came (or the lock went without one). */
  waitFor(upstream: string, name: string, tag: string, after: number, ms: number): Promise<TagCheck | null>;
}

/** The part of a tag's Redis keys after `tag:` / `tag-lock:` (also what `berth cluster rebuild` seeds). */
export function tagCheckId(upstream: string, name: string, tag: string): string {
  return `${encodeURIComponent(upstream)}/${name}:${tag}`;
}

const RELEASE_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

export class RedisTagChecks implements TagChecks {
  constructor(private readonly redis: ClusterRedis, private readonly replicaId: string) {}

  private keys(upstream: string, name: string, tag: string): { check: string; lock: string } {
    const id = tagCheckId(upstream, name, tag);
    return { check: this.redis.key('tag', id), lock: this.redis.key('tag-lock', id) };
  }

  async last(upstream: string, name: string, tag: string): Promise<TagCheck | null> {
    const text = await this.redis.try('tag check', (c) => c.get(this.keys(upstream, name, tag).check));
    return text ? parseCheck(text) : null;
  }

  note(upstream: string, name: string, tag: string, check: TagCheck, ttlMs: number): void {
    if (ttlMs <= 0) return;
    const key = this.keys(upstream, name, tag).check;
    void this.redis.try('tag check', (c) => c.set(key, JSON.stringify(check), 'PX', Math.ceil(ttlMs)));
  }

  forget(upstream: string, name: string, tag: string): void {
    const key = this.keys(upstream, name, tag).check;
    void this.redis.try('tag check', (c) => c.del(key));
  }

  async lock(upstream: string, name: string, tag: string): Promise<{ kind: 'mine'; release(): void } | { kind: 'theirs' } | { kind: 'none' }> {
    const key = this.keys(upstream, name, tag).lock;
    const value = `${this.replicaId}:${process.pid}:${Date.now()}:${Math.random()}`;
    const got = await this.redis.try('tag lock', async (c) => (await c.set(key, value, 'PX', LOCK_MS, 'NX')) ?? 'held');
    if (got === null) return { kind: 'none' };
    if (got === 'held') return { kind: 'theirs' };
    return {
      kind: 'mine',
      release: () => void this.redis.try('tag lock release', (c) => c.eval(RELEASE_SCRIPT, 1, key, value)),
    };
  }

  async waitFor(upstream: string, name: string, tag: string, after: number, ms: number): Promise<TagCheck | null> {
    const { check, lock } = this.keys(upstream, name, tag);
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const got = await this.redis.try('tag wait', (c) => c.mget(check, lock));
      if (got === null) return null;
      const [text, holder] = got;
      const seen = text ? parseCheck(text) : null;
      if (seen && seen.checkedAt > after) return seen;
      if (!holder) return null;
      await sleep(WAIT_POLL_MS);
    }
    return null;
  }
}

function parseCheck(text: string): TagCheck | null {
  try {
    const v = JSON.parse(text) as Partial<TagCheck>;
    return typeof v.digest === 'string' && typeof v.checkedAt === 'number' ? { digest: v.digest, checkedAt: v.checkedAt } : null;
  } catch {
    return null;
  }
}
