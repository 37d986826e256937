/**
 * The replicas' Redis connection: coordination, never truth. Every command has a short deadline
 * (`COMMAND_MS`) and is refused at once while the connection is down (no offline queue), so a dead
 * Redis costs a pull a few milliseconds, never a stall: each caller treats a failed command as
 * "no coordination now" and carries on per replica. ioredis reconnects by itself; a second
 * connection carries the pub/sub channel (a subscribed connection takes no other commands) and
 * resubscribes when it comes back.
 *
 * ioredis is imported dynamically (only a config with redis.url reaches this module), so a
 * single-process Berth never loads it.
 *
 * Imports: queue/redis-errors (messages). Never Fastify.
 */
import type { Logger } from 'pino';
import type { Redis as RedisClient } from 'ioredis';
import { describeRedisError } from '../queue/redis-errors.js';

/** A command that takes longer than this counts as failed: a pull never waits on Redis longer. */
const COMMAND_MS = 500;
/** Reconnect back-off: 100 ms more per attempt, never more than this between two attempts. */
const RECONNECT_MAX_MS = 2_000;

export type EventHandler = (message: Record<string, unknown>) => void;

export class ClusterRedis {
  private downSince: number | null = null;
  private readonly handlers: EventHandler[] = [];

  private constructor(
    readonly client: RedisClient,
    private readonly sub: RedisClient,
    /** Every key and channel starts with this (`<redis.prefix>:cluster:`). */
    readonly prefix: string,
    private readonly url: string,
    private readonly log: Logger,
  ) {
    const onError = (err: unknown): void => {
      if (this.downSince === null) {
        this.downSince = Date.now();
        this.log.warn({ reason: describeRedisError(err, this.url) }, 'redis unreachable; replicas coordinate nothing until it returns (each serves and fills on its own)');
      }
    };
    client.on('error', onError);
    sub.on('error', () => undefined);
    client.on('ready', () => {
      if (this.downSince !== null) this.log.info({ downMs: Date.now() - this.downSince }, 'redis reachable again; replica coordination resumes');
      this.downSince = null;
    });
    sub.on('message', (_channel: string, text: string) => {
      let msg: unknown;
      try {
        msg = JSON.parse(text);
      } catch {
        return;
      }
      if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return;
      for (const h of this.handlers) {
        try {
          h(msg as Record<string, unknown>);
        } catch (err) {
          this.log.warn({ err }, 'cluster event handler failed');
        }
      }
    });
  }

  /** Connect (in the background: a Redis that is down now is retried, never awaited). */
  static async open(url: string, prefix: string, log: Logger): Promise<ClusterRedis> {
    const { Redis } = await import('ioredis');
    const options = {
      lazyConnect: false,
      connectTimeout: 2_000,
      commandTimeout: COMMAND_MS,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: (times: number) => Math.min(times * 100, RECONNECT_MAX_MS),
    };
    const client = new Redis(url, options);
    // The subscriber must queue its SUBSCRIBE until connected, and keep it across reconnects.
    const sub = new Redis(url, { ...options, commandTimeout: undefined, enableOfflineQueue: true, autoResubscribe: true });
    const redis = new ClusterRedis(client, sub, `${prefix}:cluster:`, url, log);
    sub.subscribe(redis.channel).catch(() => undefined);
    return redis;
  }

  get channel(): string {
    return `${this.prefix}events`;
  }

  /** Is the command connection up right now? (/readyz has its own check.) */
  get up(): boolean {
    return this.client.status === 'ready';
  }

  key(...parts: string[]): string {
    return this.prefix + parts.join(':');
  }

  /** Run a command; null (logged at debug) when Redis is down or slow. Never throws. */
  async try<T>(what: string, run: (c: RedisClient) => Promise<T>): Promise<T | null> {
    if (!this.up) return null;
    try {
      return await run(this.client);
    } catch (err) {
      this.log.debug({ what, reason: describeRedisError(err, this.url) }, 'redis command failed; going on without it');
      return null;
    }
  }

  /** Tell every replica (this one too: handlers skip their own `from`). Fire and forget. */
  publish(message: Record<string, unknown>): void {
    void this.try('publish', (c) => c.publish(this.channel, JSON.stringify(message)));
  }

  onEvent(handler: EventHandler): void {
    this.handlers.push(handler);
  }

  async close(): Promise<void> {
    this.sub.disconnect();
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}
