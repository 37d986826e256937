/**
 * CSRF protection for every state-changing UI request (POST, PUT, PATCH, DELETE under /ui/):
 *  - the request must carry `X-CSRF-Token` equal to the token bound to the session (login mode:
 *    a random value sealed inside the session cookie) or, without a login, to the random value in
 *    the `berth_ui_csrf` cookie (double submit). A page on another site can neither read the token
 *    nor set the header without a CORS preflight, which /ui/ never grants;
 *  - when the browser says where the request comes from (`Origin`, or `Sec-Fetch-Site`), it must
 *    be this same origin.
 */
import type { FastifyRequest } from 'fastify';
import { sameToken } from './session.js';

export const CSRF_HEADER = 'x-csrf-token';
export const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Why the request is refused, or null when it passes. `expected`: the token bound to this client (null: none issued). */
export function csrfProblem(request: FastifyRequest, expected: string | null): string | null {
  const site = request.headers['sec-fetch-site'];
  if (typeof site === 'string' && site !== 'same-origin' && site !== 'none') return `a ${site} request may not change anything here`;
  const origin = request.headers.origin;
  if (typeof origin === 'string' && origin !== 'null') {
    const host = request.headers.host;
    let originHost: string | null = null;
    try {
      originHost = new URL(origin).host;
    } catch {
      originHost = null;
    }
    if (originHost === null || originHost !== host) return `requests from ${origin} may not change anything here`;
  }
  const sent = request.headers[CSRF_HEADER];
  if (typeof sent !== 'string' || sent === '') return `the ${CSRF_HEADER} header is missing (reload the page)`;
  if (expected === null || !sameToken(sent, expected)) return `the ${CSRF_HEADER} header does not match this session (reload the page)`;
  return null;
}
