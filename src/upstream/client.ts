/**
 * One client per upstream registry: an undici Agent (connection cap and timeouts from config),
 * the Docker token-auth challenge flow with tokens cached per scope, redirects followed by hand
 * so `Authorization` never crosses to another host, rate-limit headers recorded from every
 * answer, and a breaker that keeps a dead upstream off the request path.
 * What lives here: transport and auth. What does not: caching policy (src/registry/).
 */
import type { LookupFunction } from 'node:net';
import { Agent, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { UpstreamConfig } from '../config/types.js';
import type { Metrics } from '../metrics/metrics.js';
import { Breaker } from './breaker.js';
import { RateLimitState } from './ratelimit.js';
import { UpstreamError, fromNetworkError, fromStatus, parseRetryAfter } from './errors.js';
import { parseChallenge, credentialsAllowed, type Challenge } from './challenge.js';

export type RequestKind = 'manifest' | 'blob' | 'tags' | 'token';
export type Headers = Record<string, string | string[] | undefined>;

export interface UpstreamRequest {
  method: 'GET' | 'HEAD';
  /** Path below the upstream URL, beginning with /v2/. */
  path: string;
  kind: RequestKind;
  /** Repository the request is for (token scope). */
  repository: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export interface UpstreamResponse {
  status: number;
  headers: Headers;
  /** undici's body stream: a Readable with dump()/text() helpers. */
  body: Dispatcher.ResponseData['body'];
}

/** Manifests are small; anything larger than this is refused rather than buffered. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_REDIRECTS = 5;

interface CachedToken {
  token: string;
  expiresAt: number;
}

export function header(h: Headers, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

export interface UpstreamClientDeps {
  metrics: Metrics;
  log: Logger;
  now?: () => number;
  /**
   * Host-name resolution for new connections; the system resolver when absent. A test seam: a
   * test injects a resolver that fails as getaddrinfo does (ENOTFOUND) instead of touching DNS.
   */
  lookup?: LookupFunction;
}

export class UpstreamClient {
  readonly name: string;
  readonly rateLimit: RateLimitState;
  readonly breaker: Breaker;
  private readonly base: URL;
  private readonly agent: Agent;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly tokenFetches = new Map<string, Promise<string | null>>();
  private challenge: Challenge | null = null;
  private readonly now: () => number;

  constructor(
    readonly config: UpstreamConfig,
    private readonly deps: UpstreamClientDeps,
  ) {
    this.name = config.name;
    this.base = new URL(config.url.replace(/\/+$/, ''));
    this.now = deps.now ?? Date.now;
    this.rateLimit = new RateLimitState(this.now);
    this.breaker = new Breaker(config.maxFails, config.failTimeout, this.now);
    // `connections` caps the sockets of each origin this upstream uses (registry, CDN, token realm).
    this.agent = new Agent({
      connections: config.maxConnections,
      connect: { timeout: config.connectTimeout, ...(deps.lookup ? { lookup: deps.lookup } : {}) },
      headersTimeout: config.headersTimeout,
      bodyTimeout: config.bodyTimeout,
      keepAliveTimeout: 30_000,
    });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /**
   * Send a request, authenticating and following redirects as needed. Resolves only with a 2xx
   * response (whose body the caller must consume or destroy); every failure is an UpstreamError.
   *
   * Two gates come first and cost the upstream nothing: while the pull budget is spent no
   * manifest GET goes out (HEADs still do: they are free and keep the numbers fresh), and while
   * the breaker is open nothing goes out at all.
   */
  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    const what = `${req.method} ${req.path}`;
    if (req.kind === 'manifest' && req.method === 'GET') this.checkPullBudget(what);
    if (!this.breaker.allow()) {
      this.deps.metrics.upstreamUp.set({ upstream: this.name }, 0);
      throw new UpstreamError(this.name, 'unavailable', `${this.name} is failing; breaker open for ${this.breaker.retryIn()}s`, {
        causeCode: 'BREAKER_OPEN',
        retryAfter: this.breaker.retryIn(),
      });
    }
    let res: UpstreamResponse;
    try {
      res = await this.sendAuthenticated(req);
    } catch (err) {
      if (!(err instanceof UpstreamError)) {
        const code = (err as { code?: unknown } | undefined)?.code;
        this.deps.metrics.upstreamRequests.inc({
          upstream: this.name, method: req.method, kind: req.kind, status: typeof code === 'string' ? code : 'error',
        });
      }
      // Socket, DNS and timeout errors, and a token endpoint that is down, are outages.
      const e = fromNetworkError(this.name, err, what);
      this.settle(e.isOutage);
      throw e;
    }
    if (res.status >= 200 && res.status < 300) {
      this.settle(false);
      return res;
    }
    const retryAfter = parseRetryAfter(header(res.headers, 'retry-after'));
    await res.body.dump().catch(() => undefined);
    if (res.status === 429) {
      this.rateLimit.markExhausted(retryAfter);
      this.publishRateLimit();
    }
    // A 429 answers with how long this mirror will now hold back, whatever the upstream said.
    const e = fromStatus(this.name, res.status, what, res.status === 429 ? this.rateLimit.blockedFor() : retryAfter);
    this.settle(e.isOutage);
    throw e;
  }

  /**
   * Throw the rate-limited error (with how long to wait) while the pull budget is spent. The
   * cache policy also asks before work that could only end in a manifest GET.
   */
  checkPullBudget(what: string): void {
    const wait = this.rateLimit.blockedFor();
    if (wait > 0) {
      throw new UpstreamError(this.name, 'rate-limited', `${this.name} pull budget spent; not sending ${what}`, { retryAfter: wait });
    }
  }

  /**
   * Feed one request's outcome to the breaker and `berth_upstream_up`. Every request that got
   * past the breaker settles exactly once, so a half-open probe always resolves the breaker.
   */
  private settle(outage: boolean): void {
    if (outage) this.breaker.failure();
    else this.breaker.success();
    this.deps.metrics.upstreamUp.set({ upstream: this.name }, outage ? 0 : 1);
  }

  private publishRateLimit(): void {
    const s = this.rateLimit.snapshot();
    if (s.limit !== null) this.deps.metrics.rateLimitLimit.set({ upstream: this.name }, s.limit);
    const r = this.rateLimit.remaining();
    if (r !== null) this.deps.metrics.rateLimitRemaining.set({ upstream: this.name }, r);
  }

  private scopeFor(req: UpstreamRequest): string {
    return `repository:${req.repository}:pull`;
  }

  private async sendAuthenticated(req: UpstreamRequest): Promise<UpstreamResponse> {
    const scope = this.scopeFor(req);
    let token = this.cachedToken(scope);
    if (!token && this.challenge) token = await this.fetchToken(this.challenge, scope);
    let res = await this.send(req, token);
    if (res.status === 401) {
      const ch = parseChallenge(header(res.headers, 'www-authenticate'));
      if (ch && ch.scheme === 'bearer') {
        await res.body.dump().catch(() => undefined);
        this.challenge = ch;
        this.tokens.delete(scope);
        const fresh = await this.fetchToken(ch, ch.scope ?? scope);
        if (fresh) res = await this.send(req, fresh);
        else throw new UpstreamError(this.name, 'unauthorized', `${this.name} issued no token for ${scope}`, { status: 401 });
      } else if (ch && ch.scheme === 'basic' && this.config.username) {
        await res.body.dump().catch(() => undefined);
        res = await this.send(req, null, true);
      }
    }
    return res;
  }

  /** One request plus its redirects. Authorization goes only to the upstream's own origin. */
  private async send(req: UpstreamRequest, token: string | null, basic = false): Promise<UpstreamResponse> {
    let url = new URL(this.base.pathname.replace(/\/$/, '') + req.path, this.base);
    for (let hop = 0; ; hop++) {
      const sameOrigin = url.origin === this.base.origin;
      const headers: Record<string, string> = { 'user-agent': 'berth', ...req.headers };
      if (sameOrigin && token) headers.authorization = `Bearer ${token}`;
      else if (sameOrigin && basic) headers.authorization = this.basicAuth() ?? '';
      const res = await this.agent.request({
        origin: url.origin,
        path: url.pathname + url.search,
        method: req.method,
        headers,
        ...(req.signal ? { signal: req.signal } : {}),
      });
      const hdrs = res.headers as Headers;
      this.rateLimit.observe(hdrs);
      this.publishRateLimit();
      this.deps.metrics.upstreamRequests.inc({ upstream: this.name, method: req.method, kind: req.kind, status: String(res.statusCode) });
      const location = header(hdrs, 'location');
      if (res.statusCode >= 300 && res.statusCode < 400 && location) {
        await res.body.dump().catch(() => undefined);
        if (hop >= MAX_REDIRECTS) {
          throw new UpstreamError(this.name, 'bad-response', `${this.name}: too many redirects for ${req.path}`);
        }
        url = new URL(location, url);
        continue;
      }
      return { status: res.statusCode, headers: hdrs, body: res.body };
    }
  }

  private basicAuth(): string | null {
    if (!this.config.username) return null;
    return `Basic ${Buffer.from(`${this.config.username}:${this.config.password ?? ''}`).toString('base64')}`;
  }

  private cachedToken(scope: string): string | null {
    const t = this.tokens.get(scope);
    if (!t) return null;
    if (t.expiresAt <= this.now()) {
      this.tokens.delete(scope);
      return null;
    }
    return t.token;
  }

  /** Fetch (once per scope at a time) a bearer token from the upstream's realm. */
  private fetchToken(ch: Challenge, scope: string): Promise<string | null> {
    const key = `${ch.realm}|${ch.service ?? ''}|${scope}`;
    const running = this.tokenFetches.get(key);
    if (running) return running;
    const p = this.doFetchToken(ch, scope).finally(() => this.tokenFetches.delete(key));
    this.tokenFetches.set(key, p);
    return p;
  }

  private async doFetchToken(ch: Challenge, scope: string): Promise<string | null> {
    let realm: URL;
    try {
      realm = new URL(ch.realm);
    } catch {
      throw new UpstreamError(this.name, 'bad-response', `${this.name}: token realm "${ch.realm}" is not a URL`);
    }
    if (ch.service) realm.searchParams.set('service', ch.service);
    realm.searchParams.set('scope', scope);
    const headers: Record<string, string> = { 'user-agent': 'berth' };
    const basic = this.basicAuth();
    if (basic && credentialsAllowed(this.base, realm)) {
      headers.authorization = basic;
      if (this.config.username) realm.searchParams.set('account', this.config.username);
    }
    let status: number;
    let text: string;
    try {
      const res = await this.agent.request({ origin: realm.origin, path: realm.pathname + realm.search, method: 'GET', headers });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      this.deps.metrics.upstreamRequests.inc({ upstream: this.name, method: 'GET', kind: 'token', status: 'error' });
      throw fromNetworkError(this.name, err, `token from ${realm.origin}`);
    }
    this.deps.metrics.upstreamRequests.inc({ upstream: this.name, method: 'GET', kind: 'token', status: String(status) });
    if (status === 401 || status === 403) {
      throw new UpstreamError(this.name, 'unauthorized', `${this.name}: token endpoint refused the credentials (${status})`, { status });
    }
    if (status === 429) {
      throw new UpstreamError(this.name, 'rate-limited', `${this.name}: token endpoint answered 429`, { status });
    }
    if (status < 200 || status >= 300) {
      throw new UpstreamError(this.name, 'unavailable', `${this.name}: token endpoint answered ${status}`, { status });
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new UpstreamError(this.name, 'unavailable', `${this.name}: token endpoint answered something other than JSON`);
    }
    const token = typeof body.token === 'string' ? body.token : typeof body.access_token === 'string' ? body.access_token : null;
    if (!token) return null;
    // Spec: default 60 s, never less than 60; refresh a little early.
    const expiresIn = Math.max(60, typeof body.expires_in === 'number' ? body.expires_in : 60);
    this.tokens.set(scope, { token, expiresAt: this.now() + (expiresIn - 10) * 1000 });
    return token;
  }
}
