/**
 * One client per upstream registry: an undici Agent (connection cap and timeouts from config),
 * the Docker token-auth challenge flow with tokens cached per scope (tokens.ts), redirects
 * followed by hand under the origin rules (origin.ts: credentials only to their origin, no hop to
 * an internal address), rate-limit headers recorded from every answer, a breaker that keeps a
 * dead upstream off the request path, and caps and deadlines on everything buffered (body.ts).
 * What lives here: transport and auth. What does not: caching policy (src/registry/).
 *
 * The folder: client.ts (this), challenge.ts (WWW-Authenticate), tokens.ts, origin.ts, body.ts,
 * tags.ts (paginated tag lists), errors.ts (the one classification of failures), breaker.ts,
 * ratelimit.ts. Imports config/ types, metrics/ and errors.ts; nothing from registry/, storage/
 * or http/.
 */
import type { LookupFunction } from 'node:net';
import { Agent, type Dispatcher } from 'undici';
import type { Logger } from 'pino';
import type { UpstreamConfig } from '../config/types.js';
import type { Metrics } from '../metrics/metrics.js';
import { requestNote } from '../log.js';
import { Breaker } from './breaker.js';
import { RateLimitState } from './ratelimit.js';
import { UpstreamError, fromNetworkError, fromStatus, parseRetryAfter } from './errors.js';
import { parseChallenge, type Challenge } from './challenge.js';
import { OriginPolicy } from './origin.js';
import { TokenCache, parseTokenResponse } from './tokens.js';
import { deadlineError, discard, readCapped } from './body.js';
import { listTags } from './tags.js';

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

/** A whole answer read under the upstream's caps (manifests, tag-list pages). */
export interface BufferedResponse {
  status: number;
  headers: Headers;
  bytes: Buffer;
}

/** The default of `maxBodySize`, for callers that hold no upstream config. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_REDIRECTS = 5;

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

/** A running deadline over one exchange: aborts it when it passes. Real time, never the injected clock. */
interface Deadline {
  at: number;
  signal: AbortSignal;
  clear(): void;
}

export class UpstreamClient {
  readonly name: string;
  readonly rateLimit: RateLimitState;
  readonly breaker: Breaker;
  private readonly base: URL;
  private readonly agent: Agent;
  private readonly origins: OriginPolicy;
  private readonly tokens: TokenCache;
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
    this.origins = new OriginPolicy(this.base, config.realmHosts);
    this.tokens = new TokenCache(this.name, this.now);
    // `connections` caps the sockets of each origin this upstream uses (registry, CDN, token realm).
    this.agent = new Agent({
      connections: config.maxConnections,
      connect: { timeout: config.connectTimeout, lookup: this.origins.guardLookup(deps.lookup) },
      headersTimeout: config.headersTimeout,
      bodyTimeout: config.bodyTimeout,
      keepAliveTimeout: 30_000,
    });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** Scopes with a cached token (bounded). */
  get cachedTokens(): number {
    return this.tokens.size;
  }

  /**
   * Send a request, authenticating and following redirects as needed. Resolves only with a 2xx
   * response (whose body the caller must consume or destroy); every failure is an UpstreamError.
   * Manifest and tag-list exchanges run under `requestDeadline` (headers and body together); a
   * blob's body is the fill's to police.
   *
   * Two gates come first and cost the upstream nothing: while the pull budget is spent no
   * manifest GET goes out (HEADs still do: they are free and keep the numbers fresh), and while
   * the breaker is open nothing goes out at all.
   */
  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    const deadline = req.kind === 'blob' ? null : this.startDeadline(`${req.method} ${req.path}`);
    try {
      const res = await this.exchange(req, deadline);
      if (deadline) res.body.once('close', deadline.clear);
      return res;
    } catch (err) {
      deadline?.clear();
      throw err;
    }
  }

  /**
   * A request whose whole body is read here under `maxBodySize` and `requestDeadline`: nothing
   * is kept from a body that breaks either, and the connection under it is closed.
   */
  async fetchBuffered(req: UpstreamRequest): Promise<BufferedResponse> {
    const what = `${req.method} ${req.path}`;
    const deadline = this.startDeadline(what);
    try {
      const res = await this.exchange(req, deadline);
      let bytes: Buffer;
      try {
        bytes = await readCapped(res.body, res.headers, {
          upstream: this.name, what, maxBytes: this.config.maxBodySize, deadlineAt: deadline.at, retryAfter: this.retrySeconds(),
        });
      } catch (err) {
        if (err instanceof UpstreamError) this.settle(err.isOutage);
        throw err;
      }
      this.deps.metrics.upstreamBytes.inc({ upstream: this.name }, bytes.length);
      return { status: res.status, headers: res.headers, bytes };
    } finally {
      deadline.clear();
    }
  }

  /** Every tag of a repository, page by page, under `maxTags` in all. */
  listTags(repository: string): Promise<string[]> {
    return listTags(this, this.base, repository, this.config.maxTags);
  }

  private startDeadline(what: string): Deadline {
    const ms = this.config.requestDeadline;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(deadlineError(this.name, what, ms, this.retrySeconds())), ms);
    timer.unref();
    return { at: Date.now() + ms, signal: controller.signal, clear: () => clearTimeout(timer) };
  }

  /** What a client is told to wait after a deadline: as long as an opened breaker would hold. */
  private retrySeconds(): number {
    return Math.max(1, Math.ceil(this.config.failTimeout / 1000));
  }

  private async exchange(req: UpstreamRequest, deadline: Deadline | null): Promise<UpstreamResponse> {
    const what = `${req.method} ${req.path}`;
    if (req.kind === 'manifest' && req.method === 'GET') this.checkPullBudget(what);
    if (!this.breaker.allow()) {
      this.deps.metrics.upstreamUp.set({ upstream: this.name }, 0);
      throw new UpstreamError(this.name, 'unavailable', `${this.name} is failing; breaker open for ${this.breaker.retryIn()}s`, {
        causeCode: 'BREAKER_OPEN',
        retryAfter: this.breaker.retryIn(),
      });
    }
    const signals = [req.signal, deadline?.signal].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    let res: UpstreamResponse;
    try {
      res = await this.sendAuthenticated(req, signal);
    } catch (err) {
      const reason = deadline?.signal.aborted ? (deadline.signal.reason as unknown) : err;
      if (!(reason instanceof UpstreamError)) {
        const code = (reason as { code?: unknown } | undefined)?.code;
        this.deps.metrics.upstreamRequests.inc({
          upstream: this.name, method: req.method, kind: req.kind, status: typeof code === 'string' ? code : 'error',
        });
      }
      // Socket, DNS and timeout errors, and a token endpoint that is down, are outages.
      const e = fromNetworkError(this.name, reason, what);
      this.settle(e.isOutage);
      throw e;
    }
    if (res.status >= 200 && res.status < 300) {
      this.settle(false);
      return res;
    }
    const retryAfter = parseRetryAfter(header(res.headers, 'retry-after'));
    await discard(res.body);
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

  private async sendAuthenticated(req: UpstreamRequest, signal: AbortSignal | undefined): Promise<UpstreamResponse> {
    const scope = this.scopeFor(req);
    const known = this.challenge;
    let token = known ? this.tokens.get(known, scope) : null;
    if (!token && known) token = await this.fetchToken(known, scope, signal);
    const first = await this.send(req, token, false, signal);
    let res = first.res;
    // Only the upstream's own origin may ask for credentials: a 401 from a redirect target (a CDN,
    // or anywhere a redirect led) is an answer, never a realm to send anything to.
    if (res.status === 401 && first.from.origin === this.base.origin) {
      const ch = parseChallenge(header(res.headers, 'www-authenticate'));
      if (ch && ch.scheme === 'bearer') {
        await discard(res.body);
        this.challenge = ch;
        this.tokens.forget(ch, scope);
        // The upstream's own scope when it names one for this repository; ours otherwise.
        const fresh = await this.fetchToken(ch, ch.scope ?? scope, signal);
        if (fresh) ({ res } = await this.send(req, fresh, false, signal));
        else throw new UpstreamError(this.name, 'unauthorized', `${this.name} issued no token for ${scope}`, { status: 401 });
      } else if (ch && ch.scheme === 'basic' && this.config.username) {
        await discard(res.body);
        ({ res } = await this.send(req, null, true, signal));
      }
    }
    return res;
  }

  /**
   * One request plus its redirects. Authorization goes only to the upstream's own origin; a
   * redirect is followed only where origin.ts allows. Returns the answer and the URL it came from.
   */
  private async send(req: UpstreamRequest, token: string | null, basic: boolean, signal: AbortSignal | undefined): Promise<{ res: UpstreamResponse; from: URL }> {
    let url = new URL(this.base.pathname.replace(/\/$/, '') + req.path, this.base);
    for (let hop = 0; ; hop++) {
      const sameOrigin = url.origin === this.base.origin;
      const headers: Record<string, string> = { 'user-agent': 'berth', ...req.headers };
      if (sameOrigin && token) headers.authorization = `Bearer ${token}`;
      else if (sameOrigin && basic) headers.authorization = this.basicAuth() ?? '';
      const began = performance.now();
      let res: Dispatcher.ResponseData;
      try {
        res = await this.agent.request({
          origin: url.origin,
          path: url.pathname + url.search,
          method: req.method,
          headers,
          ...(signal ? { signal } : {}),
        });
      } catch (err) {
        this.debugExchange(req.method, url, (err as { code?: unknown }).code ?? 'error', began);
        throw err;
      }
      this.debugExchange(req.method, url, res.statusCode, began);
      const hdrs = res.headers as Headers;
      this.rateLimit.observe(hdrs);
      this.publishRateLimit();
      this.deps.metrics.upstreamRequests.inc({ upstream: this.name, method: req.method, kind: req.kind, status: String(res.statusCode) });
      const location = header(hdrs, 'location');
      if (res.statusCode >= 300 && res.statusCode < 400 && location) {
        await discard(res.body);
        if (hop >= MAX_REDIRECTS) {
          throw new UpstreamError(this.name, 'bad-response', `${this.name}: too many redirects for ${req.path}`);
        }
        const next = URL.canParse(location, url.href) ? new URL(location, url) : null;
        const refused = next ? this.origins.refusal(next) : 'not a URL';
        if (next === null || refused !== null) {
          throw new UpstreamError(this.name, 'bad-response', `${this.name}: redirect for ${req.path} not followed: ${refused ?? ''}`, {
            causeCode: 'REDIRECT_REFUSED',
          });
        }
        url = next;
        continue;
      }
      return { res: { status: res.statusCode, headers: hdrs, body: res.body }, from: url };
    }
  }

  /**
   * At debug, one line per upstream exchange (each redirect hop, each token request): method,
   * URL (userinfo and credential parameters scrubbed by the logger's `url` serializer), status or
   * error code, milliseconds to the response headers. Headers are never logged.
   */
  private debugExchange(method: string, url: URL, status: unknown, began: number): void {
    if (!this.deps.log.isLevelEnabled('debug')) return;
    const reqId = requestNote()?.reqId;
    this.deps.log.debug({
      ...(reqId !== undefined ? { reqId } : {}), upstream: this.name, method, url: url.href, status, ms: Math.round((performance.now() - began) * 10) / 10,
    }, 'upstream request');
  }

  private basicAuth(): string | null {
    if (!this.config.username) return null;
    return `Basic ${Buffer.from(`${this.config.username}:${this.config.password ?? ''}`).toString('base64')}`;
  }

  /** Fetch (once per scope at a time) a bearer token from the upstream's realm. */
  private fetchToken(ch: Challenge, scope: string, signal: AbortSignal | undefined): Promise<string | null> {
    return this.tokens.fetch(ch, scope, () => this.doFetchToken(ch, scope, signal));
  }

  private async doFetchToken(ch: Challenge, scope: string, signal: AbortSignal | undefined): Promise<{ token: string; expiresIn: number } | null> {
    const realm = URL.canParse(ch.realm) ? new URL(ch.realm) : null;
    if (realm === null) {
      throw new UpstreamError(this.name, 'bad-response', `${this.name}: token realm "${ch.realm}" is not a URL`);
    }
    const refused = this.origins.refusal(realm);
    if (refused !== null) {
      throw new UpstreamError(this.name, 'bad-response', `${this.name}: token realm ${realm.origin} refused: ${refused}`, { causeCode: 'REALM_REFUSED' });
    }
    if (ch.service) realm.searchParams.set('service', ch.service);
    realm.searchParams.set('scope', scope);
    const headers: Record<string, string> = { 'user-agent': 'berth' };
    const basic = this.basicAuth();
    if (basic && this.origins.credentialsAllowed(realm)) {
      headers.authorization = basic;
      if (this.config.username) realm.searchParams.set('account', this.config.username);
    }
    // The token exchange has its own deadline too: a realm that drips must not hold a pull.
    const deadline = this.startDeadline(`token from ${realm.origin}`);
    const signals = [signal, deadline.signal].filter((s): s is AbortSignal => s !== undefined);
    const what = `token from ${realm.origin}`;
    let status: number;
    let text: string;
    const began = performance.now();
    try {
      const res = await this.agent.request({
        origin: realm.origin, path: realm.pathname + realm.search, method: 'GET', headers, signal: AbortSignal.any(signals),
      });
      status = res.statusCode;
      this.debugExchange('GET', realm, status, began);
      if (status < 200 || status >= 300) {
        await discard(res.body);
        text = '';
      } else {
        text = (await readCapped(res.body, res.headers as Headers, {
          upstream: this.name, what, maxBytes: this.config.maxTokenSize, deadlineAt: deadline.at, retryAfter: this.retrySeconds(),
        })).toString('utf8');
      }
    } catch (err) {
      const reason: unknown = deadline.signal.aborted ? deadline.signal.reason : err;
      this.debugExchange('GET', realm, (err as { code?: unknown }).code ?? 'error', began);
      this.deps.metrics.upstreamRequests.inc({ upstream: this.name, method: 'GET', kind: 'token', status: 'error' });
      throw fromNetworkError(this.name, reason, what);
    } finally {
      deadline.clear();
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
    return parseTokenResponse(this.name, text, this.config.maxTokenSize);
  }
}
