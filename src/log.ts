/**
 * The one logger factory, the audit line, and the request note. pino, structured, with secrets
 * kept out wherever they can appear:
 *  - known fields are redacted by path (request headers such as Authorization and cookies,
 *    upstream credentials, tokens, passwords), at the top level and one or two levels down;
 *  - URLs (the access log's `url`, any `location`) lose their userinfo and the query parameters
 *    that carry credentials (presigned-URL signatures, tokens);
 *  - error messages and stacks are scrubbed of `Basic …` / `Bearer …` credentials and of URL
 *    userinfo before they are written.
 * No line repeats a key (jq, Loki and Elasticsearch keep only the last): a field named like one
 * pino writes itself (`msg`, `level`, `time`, `pid`, `hostname`, `service`) is renamed `<key>_`.
 *
 * Formats (`log.format`): `json` (one object a line, `time` in ISO 8601) or `pretty`, which is
 * pino's own `pino-pretty` transport, not a formatter of ours; `auto` is pretty on a terminal.
 *
 * The request note: an AsyncLocalStorage the HTTP layer opens per request, so what the layers
 * below decide (the cache result, the subject a token named) reaches that request's access line
 * without passing a holder through every signature. Imports nothing from src/.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { userInfo } from 'node:os';
import { pino, stdSerializers, type Logger, type DestinationStream, type LoggerOptions } from 'pino';
import type PinoPretty from 'pino-pretty';
import { createRequire } from 'node:module';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  'headers["proxy-authorization"]',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["proxy-authorization"]',
  'authorization',
  '*.authorization',
  'password',
  '*.password',
  '*.*.password',
  'token',
  '*.token',
  'access_token',
  '*.access_token',
  'refresh_token',
  '*.refresh_token',
  'secret',
  '*.secret',
  'config.upstreams[*].password',
  'upstreams[*].password',
];

export const CENSOR = '[redacted]';

/** Query parameters whose values are credentials: S3/GCS/Azure presigned URLs, tokens. */
const SECRET_PARAMS = /^(x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential|signature|sig|token|access_token|refresh_token|password|secret|key|client_secret)$/i;

/** A URL (absolute or a path with a query) with userinfo and credential-bearing parameters masked. */
export function scrubUrl(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const q = value.indexOf('?');
  let head = q >= 0 ? value.slice(0, q) : value;
  head = head.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, `$1${CENSOR}@`);
  if (q < 0) return head;
  const query = value
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq >= 0 ? pair.slice(0, eq) : pair;
      let decoded = name;
      try {
        decoded = decodeURIComponent(name);
      } catch {
        // keep the raw name
      }
      return eq >= 0 && SECRET_PARAMS.test(decoded) ? `${name}=${CENSOR}` : pair;
    })
    .join('&');
  return `${head}?${query}`;
}

/** Credentials that can end up inside free text (error messages from libraries, stacks). */
export function scrubText(text: string): string {
  return text
    // A credential, not a challenge (`Bearer realm="…"` stays readable).
    .replace(/\b(Basic|Bearer)\s+(?!(?:realm|service|scope|error)=)[A-Za-z0-9._~+/-]{4,}=*/gi, `$1 ${CENSOR}`)
    .replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, `$1${CENSOR}@`)
    .replace(/([?&](?:x-amz-signature|x-amz-credential|signature|token|access_token|password)=)[^&\s"']+/gi, `$1${CENSOR}`);
}

/** Keys pino writes on every line (with `base`); a logged object must not repeat them. */
const OWN_KEYS = ['msg', 'level', 'time', 'pid', 'hostname', 'service'] as const;

function withoutOwnKeys(obj: Record<string, unknown>): Record<string, unknown> {
  if (!OWN_KEYS.some((k) => Object.hasOwn(obj, k))) return obj;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) out[(OWN_KEYS as readonly string[]).includes(k) ? `${k}_` : k] = v;
  return out;
}

function scrubError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const out = stdSerializers.err(err) as unknown as Record<string, unknown>;
  for (const k of ['message', 'stack']) {
    const v = out[k];
    if (typeof v === 'string') out[k] = scrubText(v);
  }
  return out;
}

export type LogFormat = 'auto' | 'json' | 'pretty';

export interface LogOptions {
  level: string;
  /** Default `auto`: pretty when the output is a terminal, JSON otherwise. */
  format?: LogFormat;
}

/** pino-pretty's options: one line per record, the ISO time as pino wrote it, no pid/hostname noise. */
const PRETTY = { translateTime: false, ignore: 'pid,hostname,service', singleLine: true } as const;

/** Whether `format` means pino-pretty here: `auto` does on a terminal, never into a given destination. */
export function prettyWanted(format: LogFormat, stdoutIsTTY: boolean, hasDestination: boolean): boolean {
  return format === 'pretty' || (format === 'auto' && !hasDestination && stdoutIsTTY);
}

/**
 * A logger at `level` (or `{ level, format }`), to stdout unless a destination is given. With a
 * destination, `auto` means JSON (a test sink or a pipe is no terminal); `pretty` renders into it.
 */
export function createLogger(options: string | LogOptions, destination?: DestinationStream): Logger {
  const { level, format = 'auto' } = typeof options === 'string' ? { level: options } : options;
  const opts: LoggerOptions = {
    level,
    redact: { paths: REDACT_PATHS, censor: CENSOR },
    serializers: { err: scrubError, error: scrubError, url: scrubUrl, location: scrubUrl },
    base: { service: 'berth' },
    timestamp: pino.stdTimeFunctions.isoTime,
    hooks: {
      // The message text itself (the last string argument) is free text too.
      logMethod(this: Logger, args: unknown[], method: (...a: unknown[]) => void) {
        method.apply(this, args.map((a, i) => {
          if (typeof a === 'string') return scrubText(a);
          // The merging object (first argument), unless it is an Error, which pino serializes as `err`.
          if (i === 0 && typeof a === 'object' && a !== null && !(a instanceof Error) && !Array.isArray(a)) return withoutOwnKeys(a as Record<string, unknown>);
          return a;
        }));
      },
    },
  };
  if (!prettyWanted(format, process.stdout.isTTY === true, destination !== undefined)) return destination ? pino(opts, destination) : pino(opts);
  if (destination) {
    // Rendered in this thread, straight into the given stream (tests, a command's stderr).
    // Loaded here, only when pretty output is wanted (issue 16: no formatter in a JSON server's memory).
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    return pino(opts, pretty({ ...PRETTY, colorize: false, sync: true, destination: destination as NodeJS.WritableStream }));
  }
  // pino's transport: pino-pretty in a worker thread, flushed by pino on exit.
  return pino({ ...opts, transport: { target: 'pino-pretty', options: { ...PRETTY, colorize: process.stdout.isTTY === true, destination: 1 } } });
}

// ------------------------------------------------------------------------------ request note

/** What the layers below tell a request's access line. Fields are set at most by the layer that knows. */
export interface RequestNote {
  /** Fastify's request id, so debug lines from below can be matched to the access line. */
  readonly reqId: string;
  /** The cache's answer: hit, miss, coalesced, stale or revalidated (the last decision wins). */
  cache?: string;
  /** The authenticated subject; unset means anonymous. */
  subject?: string | null;
}

const notes = new AsyncLocalStorage<RequestNote>();

/** Run `fn` (and everything it starts) with `note` as the current request's note. */
export function withRequestNote<T>(note: RequestNote, fn: () => T): T {
  return notes.run(note, fn);
}

/** The current request's note, or undefined outside a request (pre-warm, GC, start-up). */
export function requestNote(): RequestNote | undefined {
  return notes.getStore();
}

/** The cache result for the current request's access line (a no-op outside a request). */
export function noteCacheResult(result: string): void {
  const n = notes.getStore();
  if (n) n.cache = result;
}

// ------------------------------------------------------------------------------ audit

export interface AuditEntry {
  /** What changed: `cache.purge`, `manifest.delete`, `cache.gc`, `prewarm.trigger`, later `push`. */
  action: string;
  /** Who: a token's subject, `anonymous`, or `cli:<user>` for a command. */
  subject: string;
  /** What it changed: `<upstream>/<name>[:<tag>|@<digest>]`, a reference, or the store. */
  target: string;
  [detail: string]: unknown;
}

/**
 * One audit line (`audit: true`) for a state change. Written at info even when the logger's
 * level is above it (a command that keeps its chatter to warnings still records who did what);
 * only `silent` drops it.
 */
export function audit(log: AuditLogger, entry: AuditEntry): void {
  if (log.level === 'silent') return;
  const enabled = (pino.levels.values[log.level] ?? 0) <= (pino.levels.values['info'] ?? 30);
  const out = enabled ? log : log.child({}, { level: 'info' });
  out.info({ audit: true, ...entry }, `audit: ${entry.action} ${entry.target}`);
}

/** What `audit` needs of a logger: a pino Logger, or Fastify's request logger. */
export interface AuditLogger {
  level: string;
  info(obj: object, msg: string): void;
  child(bindings: Record<string, never>, options: { level: string }): AuditLogger;
}

/** The subject of a command run from a shell: `cli:<user name>` (or the uid when it has none). */
export function cliSubject(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return `cli:uid-${process.getuid?.() ?? 'unknown'}`;
  }
}
