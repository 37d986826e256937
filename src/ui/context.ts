/**
 * What the UI knows about the request it serves, set by the API hook in index.ts (the user, the
 * session, the CSRF token) and read by the routes in api.ts. A WeakMap, so nothing outlives the
 * request.
 */
import type { FastifyRequest } from 'fastify';
import { registryError } from '../errors.js';
import type { LoggedIn } from './oidc.js';
import type { Principal } from './principal.js';

/** The session sealed in the `berth_ui` cookie. */
export interface UiSession extends LoggedIn {
  csrf: string;
  /** When the login happened (ms): the session ends SESSION_TTL_MS after it. */
  since: number;
}

export interface UiRequestContext {
  principal: Principal;
  session: UiSession | null;
  /** The CSRF token the page must send back. */
  csrf: string;
}

const contexts = new WeakMap<FastifyRequest, UiRequestContext>();

export function setUiContext(request: FastifyRequest, ctx: UiRequestContext): void {
  contexts.set(request, ctx);
}

/** The context the API hook built for this request (only /ui/api routes have one). */
export function uiContext(request: FastifyRequest): UiRequestContext {
  const c = contexts.get(request);
  if (!c) throw registryError('UNAUTHORIZED', 'no UI session');
  return c;
}
