/**
 * Cross-cutting HTTP behaviour: the headers every response carries, the request metrics and the
 * access line (its fields: src/http/request-log.ts), and the one error handler that renders every
 * failure in the OCI envelope — never a stack trace.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isRegistryError, registryError, type RegistryError } from '../errors.js';
import { installRequestLog, logRequest, openRequestNote } from './request-log.js';

export const API_VERSION_HEADER = 'docker-distribution-api-version';

/** Headers already set on the reply (common ones, OCI-Namespace) for a hijacked response. */
export function commonHeaders(_app: FastifyInstance, reply: FastifyReply): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(reply.getHeaders())) {
    if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : String(v);
  }
  return out;
}

/** Methods kept as metric labels; anything else a client sends is counted as `other`. */
const METHOD_LABELS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Already counted. A hijacked reply (blobs) is recorded by its route when the stream ends,
     * and Fastify still runs onResponse for it: without this each blob counted twice.
     */
    metricsRecorded: boolean | undefined;
  }
}

/**
 * Count the request and write its access line, once. Body bytes are counted by the blob route
 * for a hijacked reply as it writes, else read from the reply (request-log.ts `bodyBytes`).
 */
export function recordRequest(app: FastifyInstance, request: FastifyRequest, reply: FastifyReply, status: number): void {
  if (request.metricsRecorded === true) return;
  request.metricsRecorded = true;
  const started = request.startedAt;
  const seconds = started !== undefined ? Number(process.hrtime.bigint() - started) / 1e9 : 0;
  app.metrics.httpRequest(METHOD_LABELS.has(request.method) ? request.method : 'other', request.routeLabel ?? 'other', status, started !== undefined ? seconds : null);
  // The access log: one line per request; headers (Authorization) are never logged.
  logRequest(request, reply, status, Math.round(seconds * 1e4) / 10);
}

export function installHooks(app: FastifyInstance, extraHeaders: Record<string, string>): void {
  installRequestLog(app);
  app.decorateRequest('routeLabel', undefined);
  app.decorateRequest('startedAt', undefined);
  app.decorateRequest('metricsRecorded', undefined);
  // Callback hooks, not async ones: an async hook costs a promise (and the request note's
  // AsyncLocalStorage hook on it) per request for work that never waits. One hook for the start
  // time, the common headers and the request note: each hook is a run of Fastify's hook runner.
  const extra = Object.entries(extraHeaders);
  app.addHook('onRequest', (request, reply, done) => {
    request.startedAt = process.hrtime.bigint();
    reply.header(API_VERSION_HEADER, 'registry/2.0');
    for (const [k, v] of extra) reply.header(k, v);
    openRequestNote(request, done);
  });
  app.addHook('onResponse', (request, reply, done) => {
    try {
      recordRequest(app, request, reply, reply.statusCode);
    } catch (err) {
      done(err as Error);
      return;
    }
    done();
  });

  app.setNotFoundHandler(async (request, reply) => {
    request.routeLabel = 'other';
    const err = registryError('NAME_UNKNOWN', `no route for ${request.method} ${request.url.split('?')[0]}`);
    return sendError(reply, err, request);
  });

  app.setErrorHandler(async (error: FastifyError | RegistryError | Error, request, reply) => {
    if (isRegistryError(error)) return sendError(reply, error, request);
    const status = (error as FastifyError).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      // Fastify's own 4xx (bad content type, body too large, bad URL…): keep the status, OCI body.
      const code = status === 401 ? 'UNAUTHORIZED' : status === 404 ? 'NAME_UNKNOWN' : status === 405 ? 'UNSUPPORTED' : 'UNSUPPORTED';
      return reply.code(status).type('application/json').send(envelope(code, error.message));
    }
    request.log.error({ err: error }, 'request failed');
    return reply.code(500).type('application/json').send(envelope('UNKNOWN', 'internal error; see the server log'));
  });
}

function envelope(code: string, message: string, detail?: unknown): string {
  return JSON.stringify({ errors: [{ code, message, detail: detail ?? null }] });
}

function sendError(reply: FastifyReply, err: RegistryError, request: FastifyRequest) {
  if (err.headers) for (const [k, v] of Object.entries(err.headers)) reply.header(k, v);
  // `reason`, not `msg`: pino writes the message as `msg` too, and a repeated key loses one of them.
  if (err.statusCode >= 500) request.log.warn({ code: err.code, reason: err.message }, 'request failed');
  const body = request.method === 'HEAD' ? undefined : envelope(err.code, err.message, err.detail);
  reply.code(err.statusCode).type('application/json');
  return body === undefined ? reply.send() : reply.send(body);
}
