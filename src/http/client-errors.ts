/**
 * Requests refused before any route or hook of ours sees them, answered in the OCI error envelope
 * like every other refusal instead of Fastify's or Node's own bodies:
 *
 * - frameworkErrors: Fastify's router gives up on the URL — a path whose percent-encoding decodes
 *   to invalid UTF-8 (FST_ERR_BAD_URL), a parameter over maxParamLength — → 400 / 414 NAME_INVALID.
 * - clientErrorHandler: Node's HTTP parser cannot read the request at all (a raw 0xA0 byte in the
 *   target, a bad method or header, headers too large, a request that timed out while arriving).
 *   There is no request or reply object then, only the socket: a minimal HTTP/1.1 response is
 *   written to it and the connection closed, since the parser cannot find the next request.
 *
 * Neither path runs the onRequest hooks, so the headers every response carries are set here.
 */
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { API_VERSION_HEADER } from './hooks.js';

function envelope(code: string, message: string): string {
  return JSON.stringify({ errors: [{ code, message, detail: null }] });
}

/** Fastify's `frameworkErrors` option: the router's own refusals as OCI errors. */
export function frameworkErrorHandler(extraHeaders: Record<string, string>) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    let status = 400;
    let code = 'NAME_INVALID';
    let message = 'invalid repository name: the path is not valid percent-encoded UTF-8';
    if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
      status = 414;
      message = 'invalid repository name: the path is too long';
    } else if (error.code !== 'FST_ERR_BAD_URL') {
      // FST_ERR_ASYNC_CONSTRAINT: no route of ours has one; should it ever happen, it is ours.
      status = 500;
      code = 'UNKNOWN';
      message = 'internal error; see the server log';
      request.log.error({ err: error }, 'request failed in the router');
    }
    request.log.debug({ code: error.code, status }, 'request refused by the router');
    reply.header(API_VERSION_HEADER, 'registry/2.0');
    for (const [k, v] of Object.entries(extraHeaders)) reply.header(k, v);
    void reply.code(status).type('application/json').send(envelope(code, message));
  };
}

/** What Node's parser error means for the client: status, OCI code, message. */
function describe(err: NodeJS.ErrnoException & { reason?: unknown }): { status: number; code: string; message: string } {
  const reason = typeof err.reason === 'string' ? err.reason : err.code ?? 'unreadable request';
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, code: 'UNKNOWN', message: 'the request did not arrive in time' };
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, code: 'UNKNOWN', message: 'the request headers are too large' };
    case 'HPE_INVALID_URL':
      return { status: 400, code: 'NAME_INVALID', message: `invalid repository name: the request target is not a valid URL path (${reason})` };
    default:
      return { status: 400, code: 'UNKNOWN', message: `malformed HTTP request (${reason})` };
  }
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

/**
 * Fastify's `clientErrorHandler`: write a minimal OCI error response to the socket and close it.
 * Nothing is written into a response already under way (its headers are out: the socket is
 * simply closed), nor to a socket that is gone.
 */
export function clientErrorHandler(log: Logger, extraHeaders: Record<string, string>) {
  return (err: NodeJS.ErrnoException & { rawPacket?: unknown }, socket: Socket): void => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    const { status, code, message } = describe(err);
    log.debug({ code: err.code, status }, 'unreadable request refused');
    if (socket.writable && inFlight?.headersSent !== true) {
      const body = envelope(code, message);
      // A HEAD answer has no body (its length is still told); the method is all the parser read.
      const head = Buffer.isBuffer(err.rawPacket) && err.rawPacket.subarray(0, 5).toString('latin1') === 'HEAD ';
      const extra = Object.entries(extraHeaders)
        .filter(([k, v]) => !/[\r\n]/.test(k + v))
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      socket.end(
        `HTTP/1.1 ${status} ${REASONS[status] ?? 'Bad Request'}\r\n` +
          `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
          `${API_VERSION_HEADER}: registry/2.0\r\n${extra}connection: close\r\n\r\n${head ? '' : body}`,
      );
      // end() flushes then closes; a peer that never reads must not keep the socket.
      socket.setTimeout(5_000, () => socket.destroy());
      return;
    }
    socket.destroy();
  };
}
