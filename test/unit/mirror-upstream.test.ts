// The pieces under the cache policy, each on its own: the single-flight table, the rate-limit
// state, and the upstream client's gates (pull budget, breaker) and bookkeeping. The client is
// pointed at a tiny local HTTP server whose behaviour each test sets.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SingleFlight } from '../../src/registry/singleflight.js';
import { RateLimitState } from '../../src/upstream/ratelimit.js';
import { UpstreamClient } from '../../src/upstream/client.js';
import { UpstreamError } from '../../src/upstream/errors.js';
import { defaultConfig } from '../../src/config/load.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { createLogger } from '../../src/log.js';
import type { UpstreamConfig } from '../../src/config/types.js';

test('single-flight: callers for one key share one run and learn at once that they joined', async () => {
  const sf = new SingleFlight<string, number>();
  let runs = 0;
  let release!: (n: number) => void;
  const fn = (): Promise<number> => {
    runs += 1;
    return new Promise<number>((r) => (release = r));
  };
  const a = sf.join('k', fn);
  const b = sf.join('k', fn);
  const c = sf.join('other', () => Promise.resolve(7));
  assert.deepEqual([a.shared, b.shared, c.shared], [false, true, false]);
  release(42);
  assert.deepEqual(await Promise.all([a.promise, b.promise, c.promise]), [42, 42, 7]);
  assert.equal(runs, 1);
  assert.equal(sf.size, 0, 'a finished run is forgotten');
});

test('single-flight: a failure reaches every joiner and the next call starts afresh', async () => {
  const sf = new SingleFlight<string, string>();
  let runs = 0;
  const failing = async (): Promise<string> => {
    runs += 1;
    await new Promise((r) => setTimeout(r, 10));
    throw new Error('cut');
  };
  const joined = [sf.run('k', failing), sf.run('k', failing), sf.run('k', failing)];
  for (const j of joined) await assert.rejects(j, /cut/);
  assert.equal(runs, 1);
  assert.equal(sf.has('k'), false);
  const next = await sf.run('k', async () => {
    runs += 1;
    return 'fresh';
  });
  assert.deepEqual(next, { value: 'fresh', shared: false });
  assert.equal(runs, 2);
});

test('rate limit: a 429 with Retry-After holds until then, whatever the upstream reports meanwhile', () => {
  let now = 1_000_000;
  const s = new RateLimitState(() => now);
  s.markExhausted(30);
  s.observe({ 'ratelimit-remaining': '50;w=21600' });
  assert.equal(s.blockedFor(), 30, 'an explicit Retry-After is honoured');
  now += 30_000;
  assert.equal(s.blockedFor(), 0);
});

test('rate limit: a 429 without Retry-After holds for the window, lifted early when the upstream reports pulls left', () => {
  let now = 1_000_000;
  const s = new RateLimitState(() => now);
  s.observe({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '1;w=21600' });
  s.markExhausted(undefined);
  assert.equal(s.blockedFor(), 21600);
  assert.equal(s.remaining(), 0);
  s.observe({ 'ratelimit-remaining': '0;w=21600' });
  assert.equal(s.blockedFor(), 21600, 'still nothing left');
  now += 60_000;
  s.observe({ 'ratelimit-remaining': '12;w=21600' });
  assert.equal(s.blockedFor(), 0, 'pulls are back');
  assert.equal(s.remaining(), 12);
});

test('rate limit: without any figures a 429 holds for a minute', () => {
  const s = new RateLimitState(() => 0);
  s.markExhausted(undefined);
  assert.equal(s.blockedFor(), 60);
});

// ---------------------------------------------------------------------------------------------
// UpstreamClient against a scripted server

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
let handler: Handler = (_req, res) => res.end();
let hits: string[] = [];
const server = createServer((req, res) => {
  hits.push(`${req.method ?? ''} ${req.url ?? ''}`);
  handler(req, res);
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
after(() => new Promise<void>((r) => server.close(() => r())));

function makeClient(over: Partial<UpstreamConfig>, clock: () => number): { client: UpstreamClient; metrics: Metrics } {
  const base = defaultConfig().upstreams[0];
  assert.ok(base);
  const metrics = new Metrics({ defaults: false });
  const client = new UpstreamClient({ ...base, url: origin, ...over }, { metrics, log: createLogger('silent'), now: clock });
  return { client, metrics };
}

async function up(metrics: Metrics): Promise<number | undefined> {
  return (await metrics.upstreamUp.get()).values[0]?.value;
}

const manifestGet = { method: 'GET', path: '/v2/library/x/manifests/1', kind: 'manifest', repository: 'library/x' } as const;
const manifestHead = { ...manifestGet, method: 'HEAD' } as const;

test('client: while the pull budget is spent no manifest GET is sent; HEADs and blob GETs still are', async () => {
  hits = [];
  const { client } = makeClient({}, Date.now);
  handler = (_req, res) => {
    res.writeHead(429, { 'retry-after': '120', 'ratelimit-remaining': '0;w=21600', 'ratelimit-limit': '100;w=21600' });
    res.end();
  };
  await assert.rejects(client.request(manifestGet), (e: unknown) => e instanceof UpstreamError && e.kind === 'rate-limited' && e.retryAfter === 120);
  assert.equal(hits.length, 1);
  handler = (_req, res) => res.end();
  await assert.rejects(client.request(manifestGet), (e: unknown) => e instanceof UpstreamError && e.kind === 'rate-limited' && (e.retryAfter ?? 0) > 100);
  assert.equal(hits.length, 1, 'the blocked GET never left the mirror');
  (await client.request(manifestHead)).body.resume();
  (await client.request({ ...manifestGet, path: `/v2/library/x/blobs/sha256:${'0'.repeat(64)}`, kind: 'blob' })).body.resume();
  assert.equal(hits.length, 3);
  await client.close();
});

test('client: the breaker opens after maxFails outages, sends nothing while open, and one probe decides', async () => {
  hits = [];
  let now = 0;
  const { client, metrics } = makeClient({ maxFails: 2, failTimeout: 10_000 }, () => now);
  handler = (req) => req.socket.destroy();
  for (let i = 0; i < 2; i++) await assert.rejects(client.request(manifestHead), (e: unknown) => e instanceof UpstreamError && e.kind === 'unavailable');
  assert.equal(client.breaker.state, 'open');
  assert.equal(await up(metrics), 0);
  await assert.rejects(client.request(manifestHead), (e: unknown) => e instanceof UpstreamError && e.causeCode === 'BREAKER_OPEN' && e.retryAfter === 10);
  assert.equal(hits.length, 2, 'nothing sent while open');

  now += 10_000;
  handler = (_req, res) => {
    res.writeHead(503);
    res.end();
  };
  await assert.rejects(client.request(manifestHead), (e: unknown) => e instanceof UpstreamError && e.status === 503);
  assert.equal(client.breaker.state, 'open', 'a failed probe re-opens it');
  assert.equal(hits.length, 3);

  now += 10_000;
  handler = (_req, res) => res.end();
  (await client.request(manifestHead)).body.resume();
  assert.equal(client.breaker.state, 'closed');
  assert.equal(await up(metrics), 1);
  await client.close();
});

test('client: a half-open probe that ends in a refusal (not an outage) closes the breaker instead of wedging it', async () => {
  hits = [];
  let now = 0;
  const { client } = makeClient({ maxFails: 1, failTimeout: 10_000 }, () => now);
  handler = (req) => req.socket.destroy();
  await assert.rejects(client.request(manifestHead));
  assert.equal(client.breaker.state, 'open');
  now += 10_000;
  // The probe meets a token challenge whose endpoint refuses the credentials: an answer, not an outage.
  handler = (req, res) => {
    if (req.url?.startsWith('/token')) {
      res.writeHead(401);
      res.end('{"details":"invalid_grant"}');
      return;
    }
    res.writeHead(401, { 'www-authenticate': `Bearer realm="${origin}/token",service="test"` });
    res.end();
  };
  await assert.rejects(client.request(manifestHead), (e: unknown) => e instanceof UpstreamError && e.kind === 'unauthorized');
  assert.equal(client.breaker.state, 'closed');
  const sent = hits.length;
  await client.request(manifestHead).catch(() => undefined);
  assert.ok(hits.length > sent, 'the next request goes out');
  await client.close();
});

test('client: a token endpoint that is down counts as an outage', async () => {
  const { client, metrics } = makeClient({ maxFails: 1, failTimeout: 10_000 }, Date.now);
  handler = (req, res) => {
    if (req.url?.startsWith('/token')) {
      res.writeHead(503);
      res.end();
      return;
    }
    res.writeHead(401, { 'www-authenticate': `Bearer realm="${origin}/token",service="test"` });
    res.end();
  };
  await assert.rejects(client.request(manifestHead), (e: unknown) => e instanceof UpstreamError && e.kind === 'unavailable');
  assert.equal(client.breaker.state, 'open');
  assert.equal(await up(metrics), 0);
  await client.close();
});
