/**
 * The admin API's outer fence, in front of the access policy that api.ts applies:
 *  - with `auth.mode: none` nobody is authenticated, so who may use /api/v1 is decided by the
 *    client's network: `http.adminNetworks` (default loopback), `403 DENIED` for anyone else;
 *  - a state-changing call (POST, PUT, PATCH, DELETE) must say `Content-Type: application/json`,
 *    else `415`: a cross-site form or `fetch` without a preflight can only send text/plain,
 *    form encodings or no type at all, so it can no longer run GC or purge from a browser tab.
 *    An empty body with that type is accepted (`curl -X POST -H 'content-type: application/json'`).
 * It also writes the start-up line saying what is open to whom.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/types.js';
import { registryError } from '../errors.js';
import { compileNetworks, loopbackOnly } from './networks.js';

export const ADMIN_PREFIX = '/api/v1';

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export function isAdminRequest(request: FastifyRequest): boolean {
  const url = request.url;
  const route = request.routeOptions.url ?? '';
  // Every other request (all of /v2) leaves here without splitting its URL.
  if (!url.startsWith(ADMIN_PREFIX) && !route.startsWith(ADMIN_PREFIX)) return false;
  const path = url.split('?')[0] ?? '';
  return path === ADMIN_PREFIX || path.startsWith(`${ADMIN_PREFIX}/`) || route.startsWith(`${ADMIN_PREFIX}/`);
}

/** `application/json`, with or without parameters (`; charset=utf-8`). */
export function isJsonType(header: string | string[] | undefined): boolean {
  if (typeof header !== 'string') return false;
  return (header.split(';')[0] ?? '').trim().toLowerCase() === 'application/json';
}

function unsupportedMediaType(reply: FastifyReply, method: string): FastifyReply {
  const message = `${method} on the admin API needs Content-Type: application/json (send {} when there is nothing to say)`;
  return reply.code(415).type('application/json').send({ errors: [{ code: 'UNSUPPORTED', message, detail: null }] });
}

/** Install on the root instance, after the hook that sets `request.clientIp`. */
export function installAdminGuard(app: FastifyInstance, config: BerthConfig): void {
  const open = config.auth.mode === 'none';
  const networks = compileNetworks(config.http.adminNetworks, 'http.adminNetworks');
  // A callback hook: it runs on every request, and an async one would cost a promise each.
  app.addHook('onRequest', (request, reply, done) => {
    if (!isAdminRequest(request)) {
      done();
      return;
    }
    if (open && !networks.has(request.clientIp)) {
      const allowed = networks.cidrs.length > 0 ? networks.cidrs.join(', ') : 'no network';
      done(registryError('DENIED', `with auth.mode none the admin API answers only clients in http.adminNetworks (${allowed}); ${request.clientIp || 'this client'} is not one`));
      return;
    }
    // Answered here: the hook chain ends without `done`.
    if (STATE_CHANGING.has(request.method) && !isJsonType(request.headers['content-type'])) {
      unsupportedMediaType(reply, request.method);
      return;
    }
    done();
  });

  // Fastify refuses an empty body sent as JSON (400); a body-less admin call is a normal one.
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text === '') {
      done(null, undefined);
      return;
    }
    json(request, text, done);
  });
}

export interface Exposure {
  pull: string;
  delete: string;
  admin: string;
  metrics: string;
}

/** What is open to whom, in words, for the start-up log. `warn` when the admin API is open beyond loopback without auth. */
export function describeExposure(config: BerthConfig): { exposure: Exposure; warn: boolean } {
  const none = config.auth.mode === 'none';
  const anon = config.auth.anonymous;
  const rules = config.auth.policy;
  const names = (action: string): boolean => rules.some((r) => r.actions.includes(action) || r.actions.includes('*'));
  const adminNets = config.http.adminNetworks;
  const exposure: Exposure = {
    pull: none ? 'anyone who can reach the port' : anon.pull ? `token holders, and anonymous clients in ${anon.networks.join(', ') || 'no network'}` : 'token holders (auth.policy)',
    delete: !config.storage.deleteEnabled
      ? 'nobody (storage.deleteEnabled is false)'
      : none && !names('delete') ? 'anyone who can reach the port (storage.deleteEnabled, no delete rule)' : 'subjects with a delete rule (auth.policy)',
    admin: none
      ? adminNets.length > 0 ? `clients in ${adminNets.join(', ')} (http.adminNetworks)` : 'nobody (http.adminNetworks is empty)'
      : 'subjects with an admin rule (auth.policy)',
    metrics: !config.metrics.enabled
      ? 'off'
      : `${config.metrics.networks.length > 0 ? `clients in ${config.metrics.networks.join(', ')}` : 'anyone who can reach the port'}${config.metrics.port !== null ? ` on port ${config.metrics.port}` : ''}`,
  };
  const warn = none && adminNets.length > 0 && !loopbackOnly(adminNets);
  return { exposure, warn };
}

export function logExposure(log: Logger, config: BerthConfig): void {
  const { exposure, warn } = describeExposure(config);
  if (warn) log.warn({ exposure }, 'the admin API (purge, GC, pre-warm) is open without authentication to http.adminNetworks beyond this host');
  else log.info({ exposure }, 'access: who may pull, delete, administer and scrape');
}
