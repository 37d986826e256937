/**
 * What each pre-warm entry did last: the digests it resolved, when it ran, how it ended, the
 * pulls it spent and when it runs next. Kept where every process that shows or runs pre-warm can
 * see it: in Redis beside the BullMQ queue, or (in-process) in memory backed by a metadata
 * record, so a restart still shows the last run.
 */
import type { Redis } from 'ioredis';
import type { StorageDriver } from '../storage/driver.js';
import type { ResolvedTag } from '../registry/prewarm.js';
import { bounded } from './transport.js';

export type RunResult = 'success' | 'unchanged' | 'failed' | 'deferred';

export interface EntryStatus {
  id: string;
  ref: string;
  /** Digest(s) the last successful run resolved, per tag. */
  resolved: ResolvedTag[];
  lastRunAt: number | null;
  lastResult: RunResult | null;
  /** Why the last run failed or was deferred. */
  lastError: string | null;
  lastSuccessAt: number | null;
  /** Upstream pulls (manifest GETs) the last run spent, and every run so far. */
  pullsSpent: number;
  pullsSpentTotal: number;
  blobsFetched: number;
  /** When a deferred or failed run is tried again (ms since epoch), if it is. */
  retryAt: number | null;
  /** The job of the last run. */
  jobId: string | null;
}

export function emptyStatus(id: string, ref: string): EntryStatus {
  return {
    id, ref, resolved: [], lastRunAt: null, lastResult: null, lastError: null, lastSuccessAt: null,
    pullsSpent: 0, pullsSpentTotal: 0, blobsFetched: 0, retryAt: null, jobId: null,
  };
}

export interface StatusStore {
  get(id: string): Promise<EntryStatus | null>;
  all(): Promise<EntryStatus[]>;
  put(status: EntryStatus): Promise<void>;
  remove(id: string): Promise<void>;
}

function parse(text: string | null): EntryStatus | null {
  if (text === null) return null;
  try {
    return JSON.parse(text) as EntryStatus;
  } catch {
    return null;
  }
}

/** In memory, written through to metadata records (`prewarm/status/<id>`). */
export class MetaStatusStore implements StatusStore {
  private readonly cache = new Map<string, EntryStatus>();
  private loaded: Promise<void> | null = null;
  private static readonly PREFIX = 'prewarm/status/';

  constructor(private readonly driver: StorageDriver) {}

  private load(): Promise<void> {
    this.loaded ??= (async () => {
      for await (const key of this.driver.listMeta(MetaStatusStore.PREFIX)) {
        const buf = await this.driver.getMeta(key);
        const s = parse(buf ? buf.toString('utf8') : null);
        if (s) this.cache.set(s.id, s);
      }
    })();
    return this.loaded;
  }

  async get(id: string): Promise<EntryStatus | null> {
    await this.load();
    return this.cache.get(id) ?? null;
  }

  async all(): Promise<EntryStatus[]> {
    await this.load();
    return [...this.cache.values()];
  }

  async put(status: EntryStatus): Promise<void> {
    await this.load();
    this.cache.set(status.id, status);
    await this.driver.putMeta(`${MetaStatusStore.PREFIX}${encodeURIComponent(status.id)}`, Buffer.from(JSON.stringify(status)));
  }

  async remove(id: string): Promise<void> {
    await this.load();
    this.cache.delete(id);
    await this.driver.deleteMeta(`${MetaStatusStore.PREFIX}${encodeURIComponent(id)}`);
  }
}

/** One Redis hash: field = entry id, value = JSON. Every call is bounded, as producers' are. */
export class RedisStatusStore implements StatusStore {
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
  ) {}

  /** Where the hash lives, for error messages (redis.url's host and port; never its password). */
  private get url(): string {
    return `redis://${this.redis.options.host ?? 'localhost'}:${this.redis.options.port ?? 6379}`;
  }

  async get(id: string): Promise<EntryStatus | null> {
    return parse(await bounded('a status read', this.redis.hget(this.key, id), this.url));
  }

  async all(): Promise<EntryStatus[]> {
    const all = await bounded('a status read', this.redis.hgetall(this.key), this.url);
    return Object.values(all).map((v) => parse(v)).filter((s): s is EntryStatus => s !== null);
  }

  async put(status: EntryStatus): Promise<void> {
    await bounded('a status write', this.redis.hset(this.key, status.id, JSON.stringify(status)), this.url);
  }

  async remove(id: string): Promise<void> {
    await bounded('a status write', this.redis.hdel(this.key, id), this.url);
  }
}
