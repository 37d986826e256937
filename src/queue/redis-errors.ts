/**
 * Redis failures in words an operator can act on. ioredis reports a refused connection as
 * `connect ECONNREFUSED 10.0.0.7:6379`, a command given up on as `MaxRetriesPerRequestError:
 * Reached the max retries per request limit …`, a command on a dropped connection as `Connection
 * is closed.`; none of those says which setting points where. Every message about Redis that
 * reaches a log line, an API answer or /readyz goes through `describeRedisError`, which names
 * redis.url (password masked) and what to check. Classified by the error's code or name; ioredis
 * gives its closed-connection error neither, so that one is recognised by its fixed text, here only.
 */
import { maskUrlPassword } from '../config/print.js';

/** `host:port` of a redis:// URL for messages (never the password); the masked URL if it does not parse. */
export function redisEndpoint(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '6379'}`;
  } catch {
    return maskUrlPassword(url);
  }
}

/** One sentence for a Redis failure: what happened, at which redis.url, and what to check. */
export function describeRedisError(err: unknown, url: string): string {
  const at = `redis at ${redisEndpoint(url)} (redis.url)`;
  const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; name?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const name = typeof e.name === 'string' ? e.name : '';
  const message = typeof e.message === 'string' ? e.message : String(err);
  switch (code) {
    case 'ECONNREFUSED':
      return `${at} refused the connection (ECONNREFUSED): Redis is not running or not listening there`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${at}: the host name does not resolve (${code}); check redis.url`;
    case 'ETIMEDOUT':
      return `${at} did not answer the connection in time (ETIMEDOUT): check the address and any firewall between`;
    case 'ECONNRESET':
    case 'EPIPE':
      return `${at} dropped the connection (${code})`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${at} cannot be reached from here (${code})`;
    default:
      break;
  }
  if (name === 'MaxRetriesPerRequestError') return `${at} is not reachable: the command was given up after retrying the connection`;
  if (/^Connection is closed\.?$/.test(message) || /Stream isn't writeable/.test(message)) return `${at} is not reachable: the connection is closed`;
  if (/^(NOAUTH|WRONGPASS)\b/.test(message)) return `${at} refused the credentials: check the user and password in redis.url`;
  if (/^READONLY\b/.test(message)) return `${at} is a read-only replica: point redis.url at the primary`;
  if (/^OOM\b/.test(message)) return `${at} is out of memory (maxmemory reached)`;
  return `${at} failed: ${message.split('\n')[0] ?? message}`;
}
