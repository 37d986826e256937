/**
 * Bounds on what client connections may hold: timeouts that cut a client which stalls while
 * sending (headers, a request body, or nothing at all on an open socket) and a cap on open
 * connections below the process's file-descriptor limit, so a flood of stalled sockets cannot
 * take the descriptors that blob reads, spool files and upstream connections need.
 *
 * What is deliberately not bounded: the time a response takes. A 10 KiB/s reader of a 100 MiB
 * layer is a legitimate client; it keeps its socket busy, so the inactivity timeout never fires.
 *
 *  - headersTimeout: all request headers within this long of the first byte;
 *  - requestTimeout: the whole request (headers and body) within this long (0 = off);
 *  - idleTimeout: the socket is closed after this long with no byte either way (Fastify's
 *    connectionTimeout, i.e. socket.setTimeout); it also covers a request body that stalls;
 *  - keepAliveTimeout: how long an idle keep-alive connection waits for its next request;
 *  - maxConnections: connections beyond it are closed at once, counted in
 *    berth_http_connections_dropped_total and logged (at most one line per LOG_EVERY_MS).
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/types.js';
import type { Metrics } from '../metrics/metrics.js';

/** Node checks header and request deadlines on a timer; this bounds how late a cut may come. */
const MAX_CHECK_INTERVAL_MS = 1_000;
/** At most one "connection cap reached" line per this long, with the count since the last. */
export const LOG_EVERY_MS = 10_000;
/** Assumed soft limit where /proc/self/limits cannot be read (the usual default). */
const DEFAULT_FD_LIMIT = 1024;
/** Descriptors kept out of the cap for the process itself: files, upstream sockets, Redis, logs. */
const FD_RESERVE_FRACTION = 0.2;
const FD_RESERVE_MIN = 128;

type HttpConfig = BerthConfig['http'];

/** The open-files soft limit of this process, from /proc/self/limits (Linux); null elsewhere. */
export function fdSoftLimit(limits?: string): number | null {
  let text = limits;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return null;
    }
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  if (!m || m[1] === undefined) return null;
  return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}

/** http.maxConnections, or derived from the fd soft limit: what is left after a reserve for the process. */
export function connectionCap(configured: number | null, softLimit: number | null = fdSoftLimit()): number {
  if (configured !== null) return configured;
  const soft = Math.min(softLimit ?? DEFAULT_FD_LIMIT, 1_000_000);
  const reserve = Math.max(FD_RESERVE_MIN, Math.ceil(soft * FD_RESERVE_FRACTION));
  return Math.max(16, soft - reserve);
}

/** The Fastify options that carry the timeouts (spread into `Fastify({...})`). */
export function serverTimeoutOptions(http: HttpConfig): {
  connectionTimeout: number;
  keepAliveTimeout: number;
  requestTimeout: number;
  http: { headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number };
} {
  // Node insists headersTimeout <= requestTimeout when the latter is on.
  const headers = http.requestTimeout > 0 ? Math.min(http.headersTimeout, http.requestTimeout) : http.headersTimeout;
  const shortest = Math.min(headers, http.requestTimeout > 0 ? http.requestTimeout : headers);
  return {
    connectionTimeout: http.idleTimeout,
    keepAliveTimeout: http.keepAliveTimeout,
    requestTimeout: http.requestTimeout,
    http: {
      headersTimeout: headers,
      requestTimeout: http.requestTimeout,
      connectionsCheckingInterval: Math.max(100, Math.min(MAX_CHECK_INTERVAL_MS, Math.floor(shortest / 4))),
    },
  };
}

/** Set the connection cap on the listening server; count and log what it drops. Returns the cap. */
export function applyServerLimits(server: Server, http: HttpConfig, deps: { log: Logger; metrics: Metrics; now?: () => number }): number {
  const cap = connectionCap(http.maxConnections);
  server.maxConnections = cap;
  const now = deps.now ?? Date.now;
  let lastLog = -Infinity;
  let since = 0;
  server.on('drop', () => {
    deps.metrics.connectionsDropped.inc();
    since += 1;
    const t = now();
    if (t - lastLog < LOG_EVERY_MS) return;
    deps.log.warn({ maxConnections: cap, dropped: since }, 'connection cap reached (http.maxConnections): new connections are being closed');
    lastLog = t;
    since = 0;
  });
  deps.metrics.reportConnectionsFrom(
    () => new Promise<number>((resolve) => server.getConnections((err, n) => resolve(err ? 0 : n))),
  );
  return cap;
}
