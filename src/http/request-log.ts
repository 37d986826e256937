/**
 * The access log and the audit lines of the HTTP layer.
 *
 * One line per request, at info, written when the response ends (hooks.ts `recordRequest`, or the
 * blob route by hand for a hijacked reply): method, url (credentials scrubbed by src/log.ts),
 * route, status, the cache's answer, the upstream, body bytes sent, duration, client address,
 * user-agent and the authenticated subject. The cache result and the subject come from below
 * through the request note (src/log.ts), which this file opens for every request; the upstream is
 * the `OCI-Namespace` the /v2 route already echoes.
 *
 * `auditRequest` writes the audit line for a state change made through the API, with the
 * subject this request authenticated as.
 */
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { audit, requestNote, withRequestNote, type RequestNote } from '../log.js';
import type { AccessController, Grant } from '../auth/access.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** This request's note (cache result, subject), shared with the layers below. */
    logNote: RequestNote | undefined;
    /**
     * Body bytes sent, counted as they go by a route that hijacks its reply; otherwise left unset
     * and read from the reply when the access line is written (`bodyBytes`).
     */
    bytesSent: number | undefined;
  }
}

/** The subject an access line names when no credential was checked or accepted. */
export const ANONYMOUS = 'anonymous';

/** Longest user-agent kept on a line (a hostile client may send kilobytes). */
const MAX_USER_AGENT = 256;

/**
 * The request logger and the request's fields. The note itself is opened by hooks.ts's onRequest
 * hook (`openRequestNote`), the first hook of the /v2 path, so every later hook and the handler
 * run inside it.
 */
export function installRequestLog(app: FastifyInstance): void {
  // Only over a pino logger: an app built without one (Fastify's no-op logger) keeps its own.
  if (typeof (app.log as Partial<Logger>).isLevelEnabled === 'function') {
    app.setChildLoggerFactory((logger, bindings, opts) => new RequestLogger(logger as Logger, bindings, opts) as unknown as FastifyBaseLogger);
  }
  app.decorateRequest('logNote', undefined);
  app.decorateRequest('bytesSent', undefined);
}

/** Open this request's note and go on (`next`) inside it. */
export function openRequestNote(request: FastifyRequest, next: () => void): void {
  const note: RequestNote = { reqId: String(request.id) };
  request.logNote = note;
  withRequestNote(note, next);
}

/**
 * Body bytes of a reply that was not hijacked, once it is sent: none for HEAD, 304 and 204;
 * otherwise the content-length Fastify set for a string or Buffer body (its exact byte length)
 * or a stream announced; unknown (undefined) for a stream that announced none. Read here
 * instead of in an onSend hook, which cost a hook run on every request for the same figure.
 */
export function bodyBytes(request: FastifyRequest, reply: FastifyReply, status: number): number | undefined {
  if (request.bytesSent !== undefined) return request.bytesSent;
  if (request.method === 'HEAD' || status === 304 || status === 204) return 0;
  const len = reply.getHeader('content-length');
  if (typeof len === 'number') return len;
  return typeof len === 'string' && /^\d+$/.test(len) ? Number(len) : undefined;
}

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type LogArgs = [unknown, ...unknown[]];

/**
 * A request's logger (`request.log`) that makes pino's child logger only when it needs one.
 * Fastify makes a child per request to bind `reqId`; with our redaction that child cost about 3 %
 * of a warm manifest request (pino serialises and redacts the bindings at creation) although most
 * requests write nothing but the access line, or nothing at all below `info`. A line whose first
 * argument is a plain object is written by the parent with `reqId` as the object's first key:
 * the same JSON, key for key, as the child would write. Anything else (an Error first, a
 * message alone, `child`, a level change, route-level options) makes the real child and hands it
 * over.
 */
export class RequestLogger {
  private real: Logger | null = null;
  constructor(
    private readonly parent: Logger,
    private readonly bindings: Record<string, unknown>,
    private readonly opts: object,
  ) {
    if (Object.keys(opts).length > 0) this.real = parent.child(bindings, opts);
  }

  private get actual(): Logger {
    return (this.real ??= this.parent.child(this.bindings, this.opts));
  }

  get level(): string {
    return this.real ? this.real.level : this.parent.level;
  }

  set level(level: string) {
    this.actual.level = level;
  }

  isLevelEnabled(level: string): boolean {
    return this.real ? this.real.isLevelEnabled(level) : this.parent.isLevelEnabled(level);
  }

  child(bindings: Record<string, unknown>, opts?: object): FastifyBaseLogger {
    return this.actual.child(bindings, opts);
  }

  silent(): void {}
  fatal(...args: LogArgs): void { this.write('fatal', args); }
  error(...args: LogArgs): void { this.write('error', args); }
  warn(...args: LogArgs): void { this.write('warn', args); }
  info(...args: LogArgs): void { this.write('info', args); }
  debug(...args: LogArgs): void { this.write('debug', args); }
  trace(...args: LogArgs): void { this.write('trace', args); }

  private write(level: Level, args: LogArgs): void {
    const call = (log: Logger, a: unknown[]): void => (log[level] as (...x: unknown[]) => void).apply(log, a);
    if (this.real) return call(this.real, args);
    if (!this.parent.isLevelEnabled(level)) return;
    const [first, ...rest] = args;
    if (first !== null && typeof first === 'object' && Object.getPrototypeOf(first) === Object.prototype) {
      return call(this.parent, [{ ...this.bindings, ...first }, ...rest]);
    }
    return call(this.actual, args);
  }
}

/** The authenticated subject of this request, or `anonymous`. */
export function subjectOf(request: FastifyRequest): string {
  return request.logNote?.subject ?? ANONYMOUS;
}

/** The access line. */
export function logRequest(request: FastifyRequest, reply: FastifyReply, status: number, ms: number): void {
  if ((request.log as Partial<Pick<Logger, 'isLevelEnabled'>>).isLevelEnabled?.('info') === false) return;
  const note = request.logNote;
  const upstream = reply.getHeader('oci-namespace');
  const ua = request.headers['user-agent'];
  request.log.info({
    method: request.method,
    url: request.url,
    route: request.routeLabel ?? 'other',
    status,
    ...(note?.cache !== undefined ? { cache: note.cache } : {}),
    ...(typeof upstream === 'string' ? { upstream } : {}),
    bytes: bodyBytes(request, reply, status) ?? null,
    ms,
    ip: request.clientIp,
    userAgent: typeof ua === 'string' ? ua.slice(0, MAX_USER_AGENT) : null,
    subject: subjectOf(request),
  }, 'request');
}

/** The audit line for a state change this request made. */
export function auditRequest(request: FastifyRequest, action: string, target: string, details: Record<string, unknown> = {}): void {
  audit(request.log, { action, subject: subjectOf(request), target, ip: request.clientIp, ...details });
}

/**
 * The access controller, with each grant's subject noted on the current request (so the access
 * line and audit lines name who it was). A proxy: answers, errors and every other member pass
 * through unchanged, whatever the controller grows.
 */
export function notingSubjects(access: AccessController): AccessController {
  const note = (g: Grant): Grant => {
    const n = requestNote();
    if (n && g.subject) n.subject = g.subject;
    return g;
  };
  // The wrapped functions are made once per member (and again only if the member changes), not
  // on every call: `authorize` runs for every request.
  const wrapped = new Map<PropertyKey, { fn: unknown; out: unknown }>();
  return new Proxy(access, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      const known = wrapped.get(prop);
      if (known !== undefined && known.fn === v) return known.out;
      const fn = v as (...args: unknown[]) => unknown;
      const out = prop === 'authorize' || prop === 'authorizeAdmin'
        ? (...args: unknown[]): Promise<Grant> => {
          // As an async wrapper would: a synchronous throw becomes a rejection.
          try {
            return Promise.resolve(fn.apply(target, args) as Grant | Promise<Grant>).then(note);
          } catch (err) {
            return Promise.reject(err as Error);
          }
        }
        : fn.bind(target);
      wrapped.set(prop, { fn: v, out });
      return out;
    },
  });
}
