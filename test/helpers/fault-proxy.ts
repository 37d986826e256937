// The "counting proxy" / "fault-injecting upstream" of the tests: an HTTP proxy in front of a
// real registry (Distribution) that records every request and can inject the faults real
// registries make rarely or never on demand: fixed statuses (Docker Hub's 429), rate-limit
// headers, latency, cut or corrupted bodies, reset connections and blob redirects to a CDN
// that refuses Authorization headers.
//
// Everything else passes through untouched: status, headers (WWW-Authenticate included, so a
// token flow works with whatever realm the target names) and streamed bodies. Only a Location
// header that points at the target is rewritten to point at the proxy.
import { createServer, request as httpRequest, Agent, type IncomingMessage, type IncomingHttpHeaders, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type RequestKind = 'base' | 'manifest' | 'blob' | 'upload' | 'tags' | 'catalog' | 'referrers' | 'token' | 'other';

/** Classifies a request path (without query) by Distribution API endpoint. */
export function classifyPath(pathname: string): RequestKind {
  if (pathname === '/v2' || pathname === '/v2/') return 'base';
  if (pathname.startsWith('/v2/')) {
    if (pathname === '/v2/_catalog') return 'catalog';
    if (/\/blobs\/uploads(\/|$)/.test(pathname)) return 'upload';
    if (/\/blobs\/[^/]+$/.test(pathname)) return 'blob';
    if (/\/manifests\/[^/]+$/.test(pathname)) return 'manifest';
    if (/\/tags\/list$/.test(pathname)) return 'tags';
    if (/\/referrers\/[^/]+$/.test(pathname)) return 'referrers';
    return 'other';
  }
  if (/(^|\/)(token|auth)(\/|$)/.test(pathname)) return 'token';
  return 'other';
}

export interface RequestMatcher {
  /** Upper-case HTTP method(s). */
  method?: string | readonly string[];
  kind?: RequestKind | readonly RequestKind[];
  /** Substring of the path including the query string. */
  pathIncludes?: string;
  /** Tested against the path including the query string. */
  pathMatches?: RegExp;
}

export interface CountFilter extends RequestMatcher {
  /** Response status sent to the client (0 = no response: refused, cut before headers, or still pending). */
  status?: number;
  /** Only requests on which a rule with this action fired. */
  fault?: FaultAction;
}

/** Which requests a rule applies to. `times`/`after` count requests that reach this rule and match it. */
export interface RuleWindow {
  match?: RequestMatcher;
  /** Fire on at most this many matching requests (after skipping `after`). */
  times?: number;
  /** Skip the first N matching requests. */
  after?: number;
}

export type FaultRule = RuleWindow &
  (
    | { action: 'status'; status: number; headers?: Record<string, string>; body?: Buffer | string }
    | { action: 'refuse' }
    | { action: 'latency'; ms: number }
    | { action: 'cutAfter'; bytes: number }
    | { action: 'stallAfter'; bytes: number }
    | { action: 'flipByte'; offset: number }
    | { action: 'headers'; set: Record<string, string | null> }
    | {
        action: 'rateLimitHeaders';
        limit: number;
        /** A number, or a function of n = how many requests this rule has fired on (1-based). */
        remaining: number | ((n: number) => number);
        window: number;
        source: string;
      }
    | { action: 'redirectBlobs'; toUrl: string; status: number }
    | { action: 'drip'; bytes: number; everyMs: number }
  );

export type FaultAction = FaultRule['action'];

export interface RecordedRequest {
  /** 1-based arrival order. */
  seq: number;
  method: string;
  /** Path with query string, as received. */
  path: string;
  pathname: string;
  kind: RequestKind;
  /** Request headers as received from the client. */
  headers: IncomingHttpHeaders;
  /** Status sent to the client; 0 while pending or when no response was sent. */
  status: number;
  /** Actions of the rules that fired on this request, in order. */
  faults: FaultAction[];
  /** Body bytes written to the client. */
  bytesSent: number;
  /** True once the exchange is over (completed, cut, refused or aborted). */
  done: boolean;
}

export interface RequestCounts {
  /** Requests matching the filter (all when omitted). */
  count(filter?: CountFilter): number;
  total(): number;
  byKind(): Record<RequestKind, number>;
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  target: string;
  counts: RequestCounts;
  /** Same as counts.count. */
  count(filter?: CountFilter): number;
  /** Every request so far (live objects: status/bytesSent/done update as responses go out). */
  requests: RecordedRequest[];
  /** Resolves once count(filter) >= n; rejects after timeoutMs (default 5000). */
  waitForCount(filter: CountFilter, n: number, timeoutMs?: number): Promise<void>;
  /** Replaces the rule list and re-arms every rule's times/after counter. */
  setRules(rules: readonly FaultRule[]): void;
  /** Forgets recorded requests and re-arms rule counters; keeps the rules. */
  reset(): void;
  /** Closes the server and every open connection. Idempotent. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Rule builders

/** Answer a fixed status. An object body is sent as JSON (content-type application/json unless given). */
export function status(
  code: number,
  opts: { headers?: Record<string, string>; body?: Buffer | string | object } = {},
  on: RuleWindow = {},
): FaultRule {
  const headers = { ...(opts.headers ?? {}) };
  let body: Buffer | string | undefined;
  if (opts.body === undefined || typeof opts.body === 'string' || Buffer.isBuffer(opts.body)) {
    body = opts.body;
  } else {
    body = JSON.stringify(opts.body);
    if (!Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
  }
  return { ...on, action: 'status', status: code, headers, body };
}

export const DOCKER_HUB_RATE_LIMIT_MESSAGE =
  'You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limits';

/**
 * Docker Hub's pull-limit answer: 429, `ratelimit-limit: <limit>;w=<window>`,
 * `ratelimit-remaining: <remaining>;w=<window>`, `docker-ratelimit-source`, `Retry-After`
 * (omitted when retryAfter is null) and `{"errors":[{"code":"TOOMANYREQUESTS","message":…}]}`.
 * Defaults: limit 100, remaining 0, window 21600, retryAfter 60, source 127.0.0.1.
 */
export function dockerHubRateLimit(
  opts: { retryAfter?: number | null; limit?: number; remaining?: number; window?: number; source?: string; message?: string } = {},
  on: RuleWindow = {},
): FaultRule {
  const window = opts.window ?? 21600;
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'ratelimit-limit': `${opts.limit ?? 100};w=${window}`,
    'ratelimit-remaining': `${opts.remaining ?? 0};w=${window}`,
    'docker-ratelimit-source': opts.source ?? '127.0.0.1',
  };
  const retryAfter = opts.retryAfter === undefined ? 60 : opts.retryAfter;
  if (retryAfter !== null) headers['retry-after'] = String(retryAfter);
  const body = JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: opts.message ?? DOCKER_HUB_RATE_LIMIT_MESSAGE }] });
  return { ...on, action: 'status', status: 429, headers, body };
}

/** Pass through, adding Docker Hub's ratelimit-* and docker-ratelimit-source headers to the response. */
export function rateLimitHeaders(
  opts: { limit?: number; remaining?: number | ((n: number) => number); window?: number; source?: string } = {},
  on: RuleWindow = {},
): FaultRule {
  return {
    ...on,
    action: 'rateLimitHeaders',
    limit: opts.limit ?? 100,
    remaining: opts.remaining ?? ((n: number) => Math.max(0, (opts.limit ?? 100) - n)),
    window: opts.window ?? 21600,
    source: opts.source ?? '127.0.0.1',
  };
}

/** Delay the request by ms before it is answered or forwarded (latencies of several rules add up). */
export function latency(ms: number, on: RuleWindow = {}): FaultRule {
  return { ...on, action: 'latency', ms };
}

/** Send headers (with the full Content-Length), then `bytes` body bytes, then destroy the socket. */
export function cutAfter(bytes: number, on: RuleWindow = {}): FaultRule {
  return { ...on, action: 'cutAfter', bytes };
}

/**
 * Send the body `bytes` at a time with `everyMs` between pieces: an upstream that is never idle
 * long enough to trip a body timeout but never finishes either (headers go out at once).
 */
export function drip(bytes: number, everyMs: number, on: RuleWindow = {}): FaultRule {
  return { ...on, action: 'drip', bytes: Math.max(1, bytes), everyMs };
}

/**
 * Send headers (with the full Content-Length), then `bytes` body bytes, then nothing more: the
 * connection stays open, silent, until the client gives up (or the proxy stops).
 */
export function stallAfter(bytes: number, on: RuleWindow = {}): FaultRule {
  return { ...on, action: 'stallAfter', bytes };
}

/** Corrupt (XOR 0xff) the body byte at `offset`; length unchanged. */
export function flipByte(offset: number, on: RuleWindow = {}): FaultRule {
  return { ...on, action: 'flipByte', offset };
}

/** Destroy the client socket at once, without any response. */
export function refuse(on: RuleWindow = {}): FaultRule {
  return { ...on, action: 'refuse' };
}

/** Set (string) or remove (null) response headers on passed-through or fixed responses. */
export function responseHeaders(set: Record<string, string | null>, on: RuleWindow = {}): FaultRule {
  return { ...on, action: 'headers', set };
}

/**
 * Answer blob GETs (only GET /v2/<repo>/blobs/<digest>; other requests are not matched) with
 * `status` (default 307) and `Location: <toUrl>/cdn/<repo>/blobs/<digest>?expires=<n>`, as
 * Docker Hub redirects to its CDN. Pair with startBlobCdn(target).url.
 */
export function redirectBlobs(toUrl: string, on: RuleWindow & { status?: number } = {}): FaultRule {
  const { status: code, ...window } = on;
  return { ...window, action: 'redirectBlobs', toUrl: toUrl.replace(/\/+$/, ''), status: code ?? 307 };
}

// ---------------------------------------------------------------------------------------------
// Matching and recording

function matches(m: RequestMatcher | undefined, r: { method: string; kind: RequestKind; path: string }): boolean {
  if (m === undefined) return true;
  if (m.method !== undefined) {
    const methods = typeof m.method === 'string' ? [m.method] : m.method;
    if (!methods.some((x) => x.toUpperCase() === r.method)) return false;
  }
  if (m.kind !== undefined) {
    const kinds: readonly RequestKind[] = typeof m.kind === 'string' ? [m.kind] : (m.kind as readonly RequestKind[]);
    if (!kinds.includes(r.kind)) return false;
  }
  if (m.pathIncludes !== undefined && !r.path.includes(m.pathIncludes)) return false;
  if (m.pathMatches !== undefined && !m.pathMatches.test(r.path)) return false;
  return true;
}

function filterRecords(records: readonly RecordedRequest[], f: CountFilter | undefined): RecordedRequest[] {
  return records.filter(
    (r) =>
      matches(f, r) &&
      (f?.status === undefined || r.status === f.status) &&
      (f?.fault === undefined || r.faults.includes(f.fault)),
  );
}

const ALL_KINDS: readonly RequestKind[] = ['base', 'manifest', 'blob', 'upload', 'tags', 'catalog', 'referrers', 'token', 'other'];

function makeCounts(records: () => readonly RecordedRequest[]): RequestCounts {
  return {
    count: (filter) => filterRecords(records(), filter).length,
    total: () => records().length,
    byKind: () => {
      const out = Object.fromEntries(ALL_KINDS.map((k) => [k, 0])) as Record<RequestKind, number>;
      for (const r of records()) out[r.kind] += 1;
      return out;
    },
  };
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Writes a chunk; under backpressure waits for drain. False if the client went away. */
async function writeChunk(res: ServerResponse, chunk: Buffer): Promise<boolean> {
  if (res.destroyed) return false;
  if (res.write(chunk)) return true;
  return new Promise((resolve) => {
    const onDrain = (): void => {
      res.removeListener('close', onClose);
      resolve(true);
    };
    const onClose = (): void => {
      res.removeListener('drain', onDrain);
      resolve(false);
    };
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

/**
 * Ends the connection under a response that has not sent all it promised: FIN after whatever is
 * already queued (headers and the partial body reach the client), then a hard destroy in case
 * the client keeps its side open.
 */
function cutConnection(res: ServerResponse): void {
  const socket = res.socket;
  if (socket === null) return;
  socket.end();
  setTimeout(() => socket.destroy(), 1000).unref();
}

interface BodyMods {
  cut: number | undefined;
  stall: number | undefined;
  flips: number[];
  drip?: { bytes: number; everyMs: number };
}

/** Streams `source` to `res` applying flips and the cut; ends (or destroys, when cut) the response. */
async function sendBody(
  res: ServerResponse,
  source: AsyncIterable<Buffer> | Iterable<Buffer>,
  mods: BodyMods,
  record: RecordedRequest,
): Promise<void> {
  let offset = 0;
  for await (const whole of source) {
    for (const raw of pieces(whole, mods.drip)) {
      if (mods.drip !== undefined) {
        res.flushHeaders();
        await sleep(mods.drip.everyMs);
      }
      let chunk = raw;
      const hits = mods.flips.filter((f) => f >= offset && f < offset + chunk.length);
      if (hits.length > 0) {
        chunk = Buffer.from(chunk);
        for (const f of hits) chunk[f - offset] = (chunk[f - offset] ?? 0) ^ 0xff;
      }
      if (mods.stall !== undefined && offset + chunk.length >= mods.stall) {
        const part = chunk.subarray(0, mods.stall - offset);
        res.flushHeaders();
        if (part.length > 0 && (await writeChunk(res, part))) record.bytesSent += part.length;
        if (!res.destroyed) await new Promise<void>((resolve) => res.once('close', () => resolve()));
        record.done = true;
        return; // leaving the loop destroys the upstream body
      }
      if (mods.cut !== undefined && offset + chunk.length >= mods.cut) {
        const part = chunk.subarray(0, mods.cut - offset);
        res.flushHeaders();
        if (part.length > 0 && (await writeChunk(res, part))) record.bytesSent += part.length;
        cutConnection(res);
        record.done = true;
        return; // leaving the loop destroys the upstream body
      }
      if (!(await writeChunk(res, chunk))) {
        record.done = true;
        return;
      }
      record.bytesSent += chunk.length;
      offset += chunk.length;
    }
  }
  if (mods.cut !== undefined && mods.cut <= offset) {
    res.flushHeaders();
    cutConnection(res);
    record.done = true;
    return;
  }
  await new Promise<void>((resolve) => res.end(resolve));
  record.done = true;
}

/** A chunk as the drip rule sends it: whole, or cut into `drip.bytes` pieces. */
function pieces(chunk: Buffer, drip: BodyMods['drip']): Buffer[] {
  if (drip === undefined) return [chunk];
  const out: Buffer[] = [];
  for (let i = 0; i < chunk.length; i += drip.bytes) out.push(chunk.subarray(i, i + drip.bytes));
  return out;
}

function headerPairs(raw: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i] as string, raw[i + 1] as string]);
  return out;
}

function applyHeaderSets(pairs: [string, string][], sets: Record<string, string | null>[]): [string, string][] {
  let out = pairs;
  for (const set of sets) {
    for (const [name, value] of Object.entries(set)) {
      out = out.filter(([k]) => k.toLowerCase() !== name.toLowerCase());
      if (value !== null) out.push([name, value]);
    }
  }
  return out;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      // A proxy a test forgot to stop must not keep the test process alive.
      server.unref();
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: Server, sockets: Set<Socket>): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    for (const s of sockets) s.destroy();
    server.closeAllConnections();
  });
}

function trackSockets(server: Server): Set<Socket> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  return sockets;
}

// ---------------------------------------------------------------------------------------------
// The proxy

interface ArmedRule {
  rule: FaultRule;
  seen: number;
  fired: number;
}

/** Starts a proxy on 127.0.0.1:0 forwarding to `targetUrl` (an origin: http://host:port). */
export async function startFaultProxy(targetUrl: string): Promise<FaultProxy> {
  const target = new URL(targetUrl);
  if (target.protocol !== 'http:') throw new Error(`startFaultProxy: only http targets are supported, got ${targetUrl}`);
  const targetOrigin = target.origin;
  const agent = new Agent({ keepAlive: true });
  let records: RecordedRequest[] = [];
  let armed: ArmedRule[] = [];
  let seq = 0;
  let proxyOrigin = '';

  const server = createServer((req, res) => {
    void handle(req, res).catch(() => {
      if (!res.headersSent) {
        res.statusCode = 502;
        res.end();
      } else {
        res.destroy();
      }
    });
  });
  const sockets = trackSockets(server);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = req.url ?? '/';
    const pathname = path.split('?')[0] ?? path;
    const method = (req.method ?? 'GET').toUpperCase();
    const record: RecordedRequest = {
      seq: ++seq,
      method,
      path,
      pathname,
      kind: classifyPath(pathname),
      headers: req.headers,
      status: 0,
      faults: [],
      bytesSent: 0,
      done: false,
    };
    records.push(record);
    res.once('close', () => {
      record.done = true;
    });

    let delay = 0;
    const mods: BodyMods = { cut: undefined, stall: undefined, flips: [] };
    const headerSets: Record<string, string | null>[] = [];
    let terminal: FaultRule | undefined;
    for (const a of armed) {
      const r = a.rule;
      if (!matches(r.match, record)) continue;
      if (r.action === 'redirectBlobs' && !(method === 'GET' && record.kind === 'blob')) continue;
      a.seen += 1;
      if (a.seen <= (r.after ?? 0)) continue;
      if (r.times !== undefined && a.fired >= r.times) continue;
      a.fired += 1;
      record.faults.push(r.action);
      if (r.action === 'latency') delay += r.ms;
      else if (r.action === 'cutAfter') mods.cut = Math.min(mods.cut ?? Infinity, r.bytes);
      else if (r.action === 'stallAfter') mods.stall = Math.min(mods.stall ?? Infinity, r.bytes);
      else if (r.action === 'flipByte') mods.flips.push(r.offset);
      else if (r.action === 'drip') mods.drip = { bytes: r.bytes, everyMs: r.everyMs };
      else if (r.action === 'headers') headerSets.push(r.set);
      else if (r.action === 'rateLimitHeaders') {
        const remaining = typeof r.remaining === 'function' ? r.remaining(a.fired) : r.remaining;
        headerSets.push({
          'ratelimit-limit': `${r.limit};w=${r.window}`,
          'ratelimit-remaining': `${remaining};w=${r.window}`,
          'docker-ratelimit-source': r.source,
        });
      } else {
        terminal = r;
        break;
      }
    }
    if (delay > 0) await sleep(delay);

    if (terminal?.action === 'refuse') {
      req.socket.destroy();
      record.done = true;
      return;
    }
    if (terminal?.action === 'status') {
      req.resume();
      const body = terminal.body === undefined ? Buffer.alloc(0) : Buffer.from(terminal.body);
      const pairs = applyHeaderSets(
        [...Object.entries(terminal.headers ?? {}), ['content-length', String(body.length)]],
        headerSets,
      );
      res.writeHead(terminal.status, pairs.flat());
      record.status = terminal.status;
      await sendBody(res, method === 'HEAD' ? [] : [body], mods, record);
      return;
    }
    if (terminal?.action === 'redirectBlobs') {
      req.resume();
      const m = /^\/v2\/(.+)\/blobs\/([^/]+)$/.exec(pathname);
      const location = `${terminal.toUrl}/cdn/${m?.[1] ?? ''}/blobs/${m?.[2] ?? ''}?expires=${Date.now() + 600_000}&n=${seq}`;
      const pairs = applyHeaderSets([['location', location], ['content-length', '0']], headerSets);
      res.writeHead(terminal.status, pairs.flat());
      record.status = terminal.status;
      await new Promise<void>((resolve) => res.end(resolve));
      record.done = true;
      return;
    }
    await forward(req, res, record, mods, headerSets);
  }

  async function forward(
    req: IncomingMessage,
    res: ServerResponse,
    record: RecordedRequest,
    mods: BodyMods,
    headerSets: Record<string, string | null>[],
  ): Promise<void> {
    const outHeaders: string[] = [];
    for (const [k, v] of headerPairs(req.rawHeaders)) {
      const lk = k.toLowerCase();
      if (lk === 'host' || HOP_BY_HOP.has(lk)) continue;
      outHeaders.push(k, v);
    }
    outHeaders.push('Host', target.host);
    const upReq = httpRequest({
      host: target.hostname,
      port: target.port === '' ? 80 : Number(target.port),
      method: record.method,
      path: record.path,
      headers: outHeaders,
      agent,
    });
    res.once('close', () => {
      if (!res.writableFinished) upReq.destroy();
    });
    req.pipe(upReq);
    let up: IncomingMessage;
    try {
      up = await new Promise<IncomingMessage>((resolve, reject) => {
        upReq.once('response', resolve);
        upReq.once('error', reject);
      });
    } catch (err) {
      if (res.headersSent || res.destroyed) return;
      const message = err instanceof Error ? err.message : String(err);
      const body = JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: `fault proxy: target unreachable: ${message}` }] });
      res.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      record.status = 502;
      await new Promise<void>((resolve) => res.end(body, resolve));
      record.done = true;
      return;
    }
    up.on('error', () => undefined);
    let pairs = headerPairs(up.rawHeaders).filter(([k]) => !HOP_BY_HOP.has(k.toLowerCase()));
    pairs = pairs.map(([k, v]) => {
      if (k.toLowerCase() !== 'location') return [k, v];
      try {
        const loc = new URL(v, `${targetOrigin}/`);
        if (/^[a-z][a-z0-9+.-]*:/i.test(v) && loc.origin === targetOrigin) return [k, `${proxyOrigin}${loc.pathname}${loc.search}${loc.hash}`];
      } catch {
        // not a URL: pass through
      }
      return [k, v];
    });
    pairs = applyHeaderSets(pairs, headerSets);
    res.sendDate = false;
    const statusCode = up.statusCode ?? 502;
    res.writeHead(statusCode, up.statusMessage, pairs.flat());
    record.status = statusCode;
    await sendBody(res, up, mods, record);
  }

  const port = await listen(server);
  proxyOrigin = `http://127.0.0.1:${port}`;
  let stopped = false;
  const counts = makeCounts(() => records);
  return {
    url: proxyOrigin,
    port,
    target: targetOrigin,
    counts,
    count: (filter) => counts.count(filter),
    get requests() {
      return records;
    },
    async waitForCount(filter, n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (counts.count(filter) < n) {
        if (Date.now() > deadline) {
          throw new Error(`waitForCount: ${counts.count(filter)} < ${n} matching ${JSON.stringify(filter)} after ${timeoutMs} ms`);
        }
        await sleep(10);
      }
    },
    setRules(rules) {
      armed = rules.map((rule) => ({ rule, seen: 0, fired: 0 }));
    },
    reset() {
      records = [];
      seq = 0;
      for (const a of armed) {
        a.seen = 0;
        a.fired = 0;
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await closeServer(server, sockets);
      agent.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The CDN that redirected blob GETs land on

export interface CdnRequest {
  method: string;
  path: string;
  /** The Authorization header the request carried, if any (such requests are rejected with 400). */
  authorization: string | undefined;
  /** Range header, if any (forwarded to the target). */
  range: string | undefined;
  status: number;
}

export interface BlobCdn {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  requests: CdnRequest[];
  /** How many requests arrived with an Authorization header (each was answered 400). */
  readonly authorizationRejections: number;
  reset(): void;
  stop(): Promise<void>;
}

/**
 * A stand-in for Docker Hub's blob CDN: serves GET/HEAD `/cdn/<repo>/blobs/<digest>` (query
 * ignored) by fetching `<targetUrl>/v2/<repo>/blobs/<digest>` (forwarding Range, adding
 * `fetchHeaders`, e.g. credentials the target needs). Any request carrying Authorization gets
 * 400 and is counted, since a client must not forward credentials across hosts.
 */
export async function startBlobCdn(targetUrl: string, opts: { fetchHeaders?: Record<string, string> } = {}): Promise<BlobCdn> {
  const target = new URL(targetUrl);
  const agent = new Agent({ keepAlive: true });
  let requests: CdnRequest[] = [];
  let rejections = 0;

  const server = createServer((req, res) => {
    const method = (req.method ?? 'GET').toUpperCase();
    const path = req.url ?? '/';
    const record: CdnRequest = {
      method,
      path,
      authorization: req.headers.authorization,
      range: req.headers.range,
      status: 0,
    };
    requests.push(record);
    req.resume();
    const answer = (code: number, body: string): void => {
      record.status = code;
      res.writeHead(code, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.headers.authorization !== undefined) {
      rejections += 1;
      answer(400, 'Authorization header not allowed on the CDN (presigned URL only)\n');
      return;
    }
    const m = /^\/cdn\/(.+)\/blobs\/([^/?]+)(\?.*)?$/.exec(path);
    if (m === null || (method !== 'GET' && method !== 'HEAD')) {
      answer(404, 'not found\n');
      return;
    }
    const headers: Record<string, string> = { ...(opts.fetchHeaders ?? {}) };
    if (req.headers.range !== undefined) headers['range'] = req.headers.range;
    const upReq = httpRequest(
      {
        host: target.hostname,
        port: target.port === '' ? 80 : Number(target.port),
        method,
        path: `/v2/${m[1] ?? ''}/blobs/${m[2] ?? ''}`,
        headers,
        agent,
      },
      (up) => {
        const pass: Record<string, string> = {};
        for (const name of ['content-length', 'content-type', 'content-range', 'accept-ranges', 'etag', 'docker-content-digest']) {
          const v = up.headers[name];
          if (typeof v === 'string') pass[name] = v;
        }
        record.status = up.statusCode ?? 502;
        res.writeHead(record.status, pass);
        up.pipe(res);
      },
    );
    upReq.once('error', () => {
      if (!res.headersSent) answer(502, 'target unreachable\n');
      else res.destroy();
    });
    res.once('close', () => {
      if (!res.writableFinished) upReq.destroy();
    });
    upReq.end();
  });
  const sockets = trackSockets(server);
  const port = await listen(server);
  let stopped = false;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get requests() {
      return requests;
    },
    get authorizationRejections() {
      return rejections;
    },
    reset() {
      requests = [];
      rejections = 0;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await closeServer(server, sockets);
      agent.destroy();
    },
  };
}
