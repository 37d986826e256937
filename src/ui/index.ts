/**
 * The web UI at /ui/ (issue 15), mounted by src/http/app.ts when `ui.enabled`:
 *
 *  - GET  /ui/                     the page (assets.ts); GET /ui/assets/<hashed file>
 *  - GET  /ui/login                start the OpenID Connect login (oidc.ts); ?returnTo=#/…
 *  - GET  /ui/callback             the provider sends the browser back here
 *  - POST /ui/logout               end the session (CSRF-checked); answers where to go next
 *  - /ui/api/…                     the JSON the page reads and the actions it takes (api.ts)
 *
 * Sessions (login mode) are sealed cookies (session.ts): no server-side state, any replica
 * serves any request. Who may do what is decided by `auth.policy` (principal.ts); every
 * state-changing request is CSRF-checked (csrf.ts). The folder imports http/ helpers, auth/,
 * registry/, storage/ types, metrics/ and config/; nothing imports it but src/http/app.ts.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { registryError } from '../errors.js';
import { SECURITY_HEADERS, loadAssets } from './assets.js';
import { clearCookie, readCookies, setCookie } from './cookies.js';
import { STATE_CHANGING, csrfProblem } from './csrf.js';
import { HitHistory } from './hit-history.js';
import type { LoginState } from './oidc.js';
import { UiPolicy, type Principal } from './principal.js';
import { CookieSealer, randomToken } from './session.js';
import { uiApiRoutes } from './api.js';
import { setUiContext, type UiSession } from './context.js';

export const SESSION_COOKIE = 'berth_ui';
export const LOGIN_COOKIE = 'berth_ui_login';
export const CSRF_COOKIE = 'berth_ui_csrf';
/** A session lasts at most this long, refreshed or not; then the user logs in again. */
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;
/** Time allowed between the redirect to the provider and the callback. */
export const LOGIN_TTL_MS = 10 * 60 * 1000;

export interface UiOptions {
  now?: () => number;
}

export async function uiRoutes(app: FastifyInstance, opts: UiOptions = {}): Promise<void> {
  const now = opts.now ?? Date.now;
  const { config } = app;
  const policy = new UiPolicy(config);
  const sealer = config.ui.sessionSecret !== null ? new CookieSealer(config.ui.sessionSecret, now) : null;
  // openid-client (and the login code) only load with ui.oidc: ~5 MiB RSS less on every other start.
  const oidc = policy.mode === 'login' ? await import('./oidc.js') : null;
  const login = oidc ? new oidc.OidcLogin(config.ui.oidc, app.log, now) : null;
  const assets = await loadAssets();
  const hits = new HitHistory(app.metrics, now);
  await hits.start();
  app.addHook('onClose', async () => hits.stop());
  // The repository index is built on first use by a scan of every record; start it now, off the
  // request path, so the first Repositories page waits for (at most) this one scan, not a second.
  let repoIndex: Promise<unknown> | null = null;
  const repositoriesReady = (): Promise<unknown> => {
    repoIndex ??= app.mirror.meta.repositories().catch(() => undefined);
    return repoIndex;
  };
  app.addHook('onReady', async () => {
    void repositoriesReady();
  });

  const publicBase = (request: FastifyRequest): string => config.http.publicUrl ?? `${request.protocol}://${request.host}`;
  const secure = (request: FastifyRequest): boolean => publicBase(request).startsWith('https:');

  app.addHook('onRequest', async (request, reply) => {
    request.routeLabel = 'ui';
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) reply.header(k, v);
  });
  // The UI is same-origin only: whatever http.cors.origins grants the registry API, no other
  // site may read the UI's answers (its CSRF token among them).
  app.addHook('onSend', async (_request, reply, payload) => {
    for (const h of Object.keys(reply.getHeaders())) if (h.startsWith('access-control-')) reply.removeHeader(h);
    return payload;
  });

  const sendPage = (reply: FastifyReply): FastifyReply =>
    reply.header('cache-control', 'no-cache').type('text/html; charset=utf-8').send(assets.html);
  app.get('/', async (_request, reply) => sendPage(reply));
  app.get('/index.html', async (_request, reply) => sendPage(reply));
  app.get('/assets/:file', async (request, reply) => {
    const asset = assets.byPath.get((request.params as { file: string }).file);
    if (!asset) throw registryError('NOT_FOUND', 'no such UI asset (the page may be from an older release: reload it)');
    return reply.header('cache-control', 'public, max-age=31536000, immutable').type(asset.type).send(asset.body);
  });

  /** The session in the request's cookie, refreshed with the provider when its tokens expired. */
  const currentSession = async (request: FastifyRequest, reply: FastifyReply): Promise<UiSession | null> => {
    if (!sealer || !login) return null;
    const session = sealer.open<UiSession>('session', SESSION_COOKIE, readCookies(request).get(SESSION_COOKIE));
    if (!session) return null;
    if (session.refreshAt > now()) return session;
    const next = await login.refresh(session);
    if (!next) {
      clearCookie(reply, SESSION_COOKIE, secure(request));
      return null;
    }
    const renewed: UiSession = { ...next, csrf: session.csrf, since: session.since };
    writeSession(request, reply, renewed);
    return renewed;
  };

  const writeSession = (request: FastifyRequest, reply: FastifyReply, session: UiSession): void => {
    if (!sealer) return;
    const ttl = session.since + SESSION_TTL_MS - now();
    let value = sealer.seal('session', SESSION_COOKIE, stripExp(session), ttl);
    // Browsers keep about 4 KiB a cookie: without the ID token (only a logout hint) it fits.
    if (value.length > 3800) value = sealer.seal('session', SESSION_COOKIE, { ...stripExp(session), idToken: null }, ttl);
    setCookie(reply, SESSION_COOKIE, value, { maxAge: ttl / 1000, secure: secure(request) });
  };

  app.get('/login', async (request, reply) => {
    if (!login || !sealer) return reply.redirect('/ui/');
    const raw = (request.query as Record<string, unknown>)['returnTo'];
    const returnTo = typeof raw === 'string' && /^#\/[^\s]*$/.test(raw) && raw.length < 512 ? raw : '#/';
    try {
      const started = await login.start(`${publicBase(request)}/ui/callback`, returnTo);
      setCookie(reply, LOGIN_COOKIE, sealer.seal('login', LOGIN_COOKIE, started.state, LOGIN_TTL_MS), { maxAge: LOGIN_TTL_MS / 1000, secure: secure(request) });
      return reply.header('cache-control', 'no-store').redirect(started.url.href);
    } catch (err) {
      request.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'UI login could not start');
      return loginPage(reply, 503, 'The login provider could not be reached. Try again in a moment.');
    }
  });

  app.get('/callback', async (request, reply) => {
    if (!login || !sealer) return reply.redirect('/ui/');
    const state = sealer.open<LoginState>('login', LOGIN_COOKIE, readCookies(request).get(LOGIN_COOKIE));
    clearCookie(reply, LOGIN_COOKIE, secure(request));
    if (!state) return loginPage(reply, 400, 'This login was not started here, or took too long. Start again.');
    const query = request.url.includes('?') ? request.url.slice(request.url.indexOf('?')) : '';
    try {
      const user = await login.finish(new URL(`${state.redirectUri}${query}`), state);
      writeSession(request, reply, { ...user, csrf: randomToken(), since: now() });
      request.log.info({ subject: user.subject, roles: user.roles }, 'UI login');
      return reply.header('cache-control', 'no-store').redirect(`/ui/${state.returnTo}`);
    } catch (err) {
      if (oidc && err instanceof oidc.LoginRefused) {
        request.log.info({ reason: err.message }, 'UI login refused');
        return loginPage(reply, 400, `The login was refused: ${err.message}`);
      }
      request.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'UI login failed');
      return loginPage(reply, 503, 'The login provider could not be reached. Try again in a moment.');
    }
  });

  app.post('/logout', async (request, reply) => {
    const session = sealer ? sealer.open<UiSession>('session', SESSION_COOKIE, readCookies(request).get(SESSION_COOKIE)) : null;
    const problem = csrfProblem(request, session?.csrf ?? null);
    if (problem) throw registryError('DENIED', problem);
    clearCookie(reply, SESSION_COOKIE, secure(request));
    let next = '/ui/';
    if (login && session) next = (await login.logoutUrl(session.idToken, `${publicBase(request)}/ui/`).catch(() => null)) ?? next;
    return { redirect: next };
  });

  await app.register(async (api) => {
    api.addHook('onRequest', async (request, reply) => {
      if (policy.mode === 'closed') {
        throw registryError('DENIED', 'the UI needs a login when auth.mode is token: configure ui.oidc (see docs/ui.md)');
      }
      let session: UiSession | null = null;
      let csrf: string;
      if (policy.mode === 'login') {
        session = await currentSession(request, reply);
        if (!session) throw registryError('UNAUTHORIZED', 'log in first', { detail: { login: '/ui/login' } });
        csrf = session.csrf;
      } else {
        const cookie = readCookies(request).get(CSRF_COOKIE);
        csrf = cookie !== undefined && /^[A-Za-z0-9_-]{43}$/.test(cookie) ? cookie : randomToken();
        if (cookie !== csrf) setCookie(reply, CSRF_COOKIE, csrf, { maxAge: SESSION_TTL_MS / 1000, secure: secure(request), sameSite: 'Strict' });
      }
      if (STATE_CHANGING.has(request.method)) {
        const problem = csrfProblem(request, policy.mode === 'login' ? csrf : readCookies(request).get(CSRF_COOKIE) ?? null);
        if (problem) throw registryError('DENIED', problem);
      }
      const principal: Principal = { subject: session?.subject ?? null, roles: session?.roles ?? [], ip: request.clientIp };
      setUiContext(request, { principal, session, csrf });
      reply.header('cache-control', 'no-store');
    });
    await api.register(uiApiRoutes, { policy, hits, now, repositoriesReady });
  }, { prefix: '/api' });

  app.setNotFoundHandler(async (request) => {
    request.routeLabel = 'ui';
    throw registryError('NOT_FOUND', `no UI route for ${request.method} ${request.url.split('?')[0]}`);
  });
}


function stripExp(v: UiSession & { exp?: number }): UiSession {
  const { exp: _exp, ...rest } = v;
  return rest;
}

/** A small page for login problems (no script; styled by the UI's sheet would need a hashed link, so plain). */
function loginPage(reply: FastifyReply, status: number, message: string): FastifyReply {
  const esc = message.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return reply
    .code(status)
    .header('cache-control', 'no-store')
    .type('text/html; charset=utf-8')
    .send(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Berth login</title></head><body><main><h1>Login</h1><p id="login-error">${esc}</p><p><a href="/ui/login">Log in again</a> · <a href="/ui/">Back to the UI</a></p></main></body></html>`);
}
