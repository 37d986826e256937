/**
 * Cookie headers by hand (Berth takes no cookie plugin for two cookies): parse `Cookie`, and write
 * `Set-Cookie` with the attributes the UI always wants (HttpOnly, SameSite=Lax, Path=/ui/, and
 * Secure whenever the UI is reached over HTTPS).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

/** The cookies a request carries; the first of a repeated name wins (as browsers send the most specific first). */
export function readCookies(request: FastifyRequest): Map<string, string> {
  const out = new Map<string, string>();
  const header = request.headers.cookie;
  if (typeof header !== 'string') return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!out.has(name)) out.set(name, value);
  }
  return out;
}

export interface CookieOptions {
  /** Seconds; 0 removes the cookie. */
  maxAge: number;
  secure: boolean;
  path?: string;
  sameSite?: 'Lax' | 'Strict';
}

/** Add a Set-Cookie header (several may be set on one reply). Values are base64url, so they need no quoting. */
export function setCookie(reply: FastifyReply, name: string, value: string, opts: CookieOptions): void {
  const attrs = [
    `${name}=${value}`,
    `Path=${opts.path ?? '/ui/'}`,
    `Max-Age=${Math.max(0, Math.floor(opts.maxAge))}`,
    'HttpOnly',
    `SameSite=${opts.sameSite ?? 'Lax'}`,
  ];
  if (opts.secure) attrs.push('Secure');
  const prior = reply.getHeader('set-cookie');
  const list = prior === undefined ? [] : Array.isArray(prior) ? prior.map(String) : [String(prior)];
  reply.header('set-cookie', [...list, attrs.join('; ')]);
}

export function clearCookie(reply: FastifyReply, name: string, secure: boolean): void {
  setCookie(reply, name, '', { maxAge: 0, secure });
}
