// The upstream client against servers that misbehave on the wire in ways no real registry does
// on purpose: endless and dripping bodies (tags, manifests, tokens, error answers), lying
// Content-Length, compressed bodies, huge tokens, paginated tag lists with bad links, and
// credentials or challenges pulled towards other origins. Each test names the defect it guards.
import { test, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo, LookupFunction, Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { UpstreamClient } from '../../src/upstream/client.js';
import { UpstreamError } from '../../src/upstream/errors.js';
import { defaultConfig } from '../../src/config/load.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { createLogger } from '../../src/log.js';
import type { UpstreamConfig } from '../../src/config/types.js';
import { streamRepeated } from '../helpers/hostile-body.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

interface Scripted {
  server: Server;
  port: number;
  origin: string;
  hits: { url: string; authorization: string | undefined; host: string | undefined }[];
  handler: Handler;
  /** Sockets closed so far (the client cut a body by closing its connection). */
  closed: number;
}

async function scripted(): Promise<Scripted> {
  const s = { hits: [], handler: (_req: IncomingMessage, res: ServerResponse) => res.end(), closed: 0 } as unknown as Scripted;
  s.server = createServer((req, res) => {
    s.hits.push({ url: req.url ?? '', authorization: req.headers.authorization, host: req.headers.host });
    res.on('error', () => undefined);
    s.handler(req, res);
  });
  s.server.on('connection', (sock: Socket) => sock.once('close', () => (s.closed += 1)));
  await new Promise<void>((r) => s.server.listen(0, '127.0.0.1', r));
  s.port = (s.server.address() as AddressInfo).port;
  s.origin = `http://127.0.0.1:${s.port}`;
  return s;
}

const a = await scripted();
const b = await scripted();
const clients: UpstreamClient[] = [];
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  for (const s of [a, b]) {
    s.server.closeAllConnections();
    await new Promise<void>((r) => s.server.close(() => r()));
  }
});
beforeEach(() => {
  for (const s of [a, b]) {
    s.hits = [];
    s.handler = (_req, res) => res.end();
  }
});

/** Every name resolves to loopback: lets a test give the servers the host names of a scenario. */
const loopback = ((_h: string, o: { all?: boolean }, cb: (...x: unknown[]) => void) =>
  o.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)) as unknown as LookupFunction;

function client(over: Partial<UpstreamConfig> = {}): UpstreamClient {
  const base = defaultConfig().upstreams[0];
  assert.ok(base);
  const c = new UpstreamClient(
    { ...base, url: a.origin, realmHosts: [], maxFails: 1000, requestDeadline: 1500, headersTimeout: 30_000, bodyTimeout: 30_000, ...over },
    { metrics: new Metrics({ defaults: false }), log: createLogger('silent'), lookup: loopback },
  );
  clients.push(c);
  return c;
}

const manifestGet = { method: 'GET', path: '/v2/library/x/manifests/1', kind: 'manifest', repository: 'library/x' } as const;


const isKind = (kind: string, cause?: string) => (e: unknown): boolean =>
  e instanceof UpstreamError && e.kind === kind && (cause === undefined || e.causeCode === cause);

test('an endless tag list is cut at maxBodySize and its connection closed (was: res.body.text() without a cap)', async () => {
  const c = client({ maxBodySize: 256 * 1024 });
  a.handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"name":"library/x","tags":[');
    streamRepeated(res, '"tag-aaaaaaaaaaaaaaaaaaaaaaaa",');
  };
  const closedBefore = a.closed;
  const t0 = Date.now();
  await assert.rejects(c.listTags('library/x'), isKind('bad-response', 'BODY_TOO_LARGE'));
  assert.ok(Date.now() - t0 < 1500, 'refused as soon as the cap passed, not at the deadline');
  await waitFor(() => a.closed > closedBefore, 'the client closed the connection under the cut body');
});

test('a tag list dripping a byte at a time hits requestDeadline; the error carries Retry-After', async () => {
  const c = client({ requestDeadline: 800, failTimeout: 7000 });
  a.handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    streamRepeated(res, ' ', 100);
  };
  const t0 = Date.now();
  await assert.rejects(c.listTags('library/x'), (e: unknown) => isKind('unavailable', 'UPSTREAM_DEADLINE')(e) && (e as UpstreamError).retryAfter === 7);
  const took = Date.now() - t0;
  assert.ok(took >= 700 && took < 2500, `gave up at the deadline (${took} ms)`);
});

test('a manifest sending a byte every 200 ms (never tripping bodyTimeout) is given up at requestDeadline', async () => {
  const c = client({ requestDeadline: 1000, bodyTimeout: 5000 });
  a.handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': '100000' });
    streamRepeated(res, '{', 200);
  };
  const t0 = Date.now();
  await assert.rejects(c.fetchBuffered(manifestGet), isKind('unavailable', 'UPSTREAM_DEADLINE'));
  assert.ok(Date.now() - t0 < 2500);
});

test('headers that arrive after requestDeadline (but within headersTimeout) are not waited for', async () => {
  const c = client({ requestDeadline: 600, headersTimeout: 30_000 });
  a.handler = (_req, res) => {
    setTimeout(() => res.end('{}'), 3000).unref();
  };
  const t0 = Date.now();
  await assert.rejects(c.request({ ...manifestGet, method: 'HEAD' }), isKind('unavailable', 'UPSTREAM_DEADLINE'));
  assert.ok(Date.now() - t0 < 2000);
});

test('a declared Content-Length over the cap is refused before a byte is read', async () => {
  const c = client({ maxBodySize: 1024 * 1024 });
  a.handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': String(10 * 1024 * 1024) });
    streamRepeated(res, 'x'.repeat(1024), 0, 10 * 1024 * 1024);
  };
  await assert.rejects(c.fetchBuffered(manifestGet), (e: unknown) => isKind('bad-response', 'BODY_TOO_LARGE')(e) && /declares/.test((e as Error).message));
});

test('a Content-Length that promises more than is sent ends at the deadline, not never', async () => {
  const c = client({ requestDeadline: 800 });
  a.handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '5000' });
    res.write('{"tags":[');
  };
  await assert.rejects(c.fetchBuffered(manifestGet), isKind('unavailable', 'UPSTREAM_DEADLINE'));
});

test('a gzip-encoded body (never asked for) is refused, not inflated', async () => {
  const c = client();
  const bomb = gzipSync(Buffer.alloc(50 * 1024 * 1024, 0x20));
  a.handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': String(bomb.length) });
    res.end(bomb);
  };
  await assert.rejects(c.fetchBuffered(manifestGet), isKind('bad-response', 'BODY_ENCODED'));
  await assert.rejects(c.listTags('library/x'), isKind('bad-response', 'BODY_ENCODED'));
});

test('an error answer with an endless body is classified by its status without reading it whole', async () => {
  const c = client();
  a.handler = (_req, res) => {
    res.writeHead(500, { 'content-type': 'application/json' });
    streamRepeated(res, '{"errors":[{"code":"UNKNOWN"}]}');
  };
  const t0 = Date.now();
  await assert.rejects(c.request(manifestGet), (e: unknown) => isKind('unavailable')(e) && (e as UpstreamError).status === 500);
  assert.ok(Date.now() - t0 < 2500, 'discarded in bounded time');
});

/** Answer registry paths with a Bearer challenge naming `realm`, and 200 once a bearer token comes. */
function challenging(realm: string, token: (req: IncomingMessage, res: ServerResponse) => void): Handler {
  return (req, res) => {
    if ((req.url ?? '').startsWith('/token')) return token(req, res);
    if (req.headers.authorization?.startsWith('Bearer ')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end('{"tags":["1"]}');
    }
    res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm}",service="svc"` });
    res.end();
  };
}

test('a token response over maxTokenSize is refused, streamed or declared', async () => {
  const c = client({ maxTokenSize: 16 * 1024 });
  a.handler = challenging(`${a.origin}/token`, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"token":"');
    streamRepeated(res, 'A'.repeat(4096));
  });
  await assert.rejects(c.listTags('library/x'), isKind('bad-response', 'BODY_TOO_LARGE'));
  a.handler = challenging(`${a.origin}/token`, (_req, res) => {
    const body = JSON.stringify({ token: 'A'.repeat(20 * 1024) });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(body.length) });
    res.end(body);
  });
  await assert.rejects(c.listTags('library/x'), isKind('bad-response', 'BODY_TOO_LARGE'));
  const tokenHits = a.hits.filter((h) => h.url.startsWith('/token')).length;
  assert.equal(a.hits.filter((h) => h.authorization?.startsWith('Bearer')).length, 0, 'no oversized token was ever sent');
  assert.ok(tokenHits >= 2);
});

test('a token that is not a header value is refused', async () => {
  const c = client();
  a.handler = challenging(`${a.origin}/token`, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: 'abc\r\nx-injected: 1' }));
  });
  await assert.rejects(c.listTags('library/x'), isKind('bad-response'));
});

test('a token endpoint dripping its answer hits requestDeadline', async () => {
  const c = client({ requestDeadline: 800 });
  a.handler = challenging(`${a.origin}/token`, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    streamRepeated(res, ' ', 100);
  });
  await assert.rejects(c.listTags('library/x'), isKind('unavailable', 'UPSTREAM_DEADLINE'));
});

test('the token cache is bounded however many repositories are pulled', async () => {
  const c = client();
  let n = 0;
  a.handler = challenging(`${a.origin}/token`, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: `t${++n}`, expires_in: 3600 }));
  });
  for (let i = 0; i < 1100; i++) {
    await c.request({ method: 'GET', path: `/v2/r${i}/manifests/1`, kind: 'manifest', repository: `r${i}` }).then((r) => r.body.dump());
  }
  assert.equal(n, 1100, 'one token per scope');
  assert.ok(c.cachedTokens <= 1024, `at most 1024 tokens cached, saw ${c.cachedTokens}`);
  // The most recent scopes are still served from the cache.
  const before = n;
  await c.request({ method: 'GET', path: '/v2/r1099/manifests/1', kind: 'manifest', repository: 'r1099' }).then((r) => r.body.dump());
  assert.equal(n, before);
});

test('a token is sent only to the upstream whose realm issued it', async () => {
  // Two upstreams share one token server and the same repository name.
  const one = client({ name: 'one' });
  const two = client({ name: 'two', url: b.origin });
  a.handler = challenging(`${a.origin}/token`, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: 'issued-for-one', expires_in: 3600 }));
  });
  b.handler = challenging(`${b.origin}/token`, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: 'issued-for-two', expires_in: 3600 }));
  });
  await one.listTags('library/small');
  await two.listTags('library/small');
  assert.ok(b.hits.every((h) => h.authorization !== 'Bearer issued-for-one'), 'the first upstream\'s token never reached the second');
  assert.ok(b.hits.some((h) => h.authorization === 'Bearer issued-for-two'));
});

/** A realm (on server b) that records whether credentials came with the token request. */
function realmOn(srv: Scripted): void {
  srv.handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: 'tok', expires_in: 300 }));
  };
}

const creds = { username: 'bot', password: 'pw-not-for-others' };
const basic = `Basic ${Buffer.from('bot:pw-not-for-others').toString('base64')}`;

for (const [label, upstreamHost, realmHost] of [
  ['myreg.azurecr.io → attacker.azurecr.io', 'myreg.azurecr.io', 'attacker.azurecr.io'],
  ['example.co.uk → evil.co.uk', 'registry.example.co.uk', 'evil.co.uk'],
  ['another port of the same host', '127.0.0.1', '127.0.0.1'],
] as const) {
  test(`credentials do not follow a challenge to another origin: ${label}`, async () => {
    const c = client({ ...creds, url: `http://${upstreamHost}:${a.port}` });
    a.handler = challenging(`http://${realmHost}:${b.port}/token`, () => assert.fail('the realm is on b'));
    realmOn(b);
    await c.listTags('library/x');
    const tokenReq = b.hits.find((h) => h.url.startsWith('/token'));
    assert.ok(tokenReq, 'a token was asked for (anonymously)');
    assert.equal(tokenReq.authorization, undefined, `no credentials to ${realmHost}:${b.port}`);
    assert.doesNotMatch(tokenReq.url, /account=/);
  });
}

test('credentials do go to a realm listed in realmHosts, and to the upstream\'s own origin', async () => {
  const listed = client({ ...creds, url: `http://myreg.azurecr.io:${a.port}`, realmHosts: [`login.example.com:${b.port}`] });
  a.handler = challenging(`http://login.example.com:${b.port}/token`, () => assert.fail('the realm is on b'));
  realmOn(b);
  await listed.listTags('library/x');
  assert.equal(b.hits.find((h) => h.url.startsWith('/token'))?.authorization, basic);
  const own = client({ ...creds });
  a.handler = challenging(`${a.origin}/token`, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"token":"t2"}');
  });
  a.hits = [];
  await own.listTags('library/x');
  assert.equal(a.hits.find((h) => h.url.startsWith('/token'))?.authorization, basic);
});

test('a 401 challenge from a redirect target is not followed: no token request, no credentials', async () => {
  const c = client({ ...creds });
  a.handler = (req, res) => {
    res.writeHead(307, { location: `${b.origin}/cdn${req.url ?? ''}` });
    res.end();
  };
  b.handler = (req, res) => {
    if ((req.url ?? '').startsWith('/token')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end('{"token":"stolen"}');
    }
    res.writeHead(401, { 'www-authenticate': `Bearer realm="${b.origin}/token",service="evil"` });
    res.end();
  };
  await assert.rejects(c.fetchBuffered(manifestGet), isKind('unauthorized'));
  assert.equal(b.hits.filter((h) => h.url.startsWith('/token')).length, 0, 'the redirect target\'s realm was never asked');
  assert.ok(b.hits.every((h) => h.authorization === undefined), 'nothing was sent with credentials to the redirect target');
});

test('redirects to another scheme are not followed', async () => {
  const c = client();
  for (const location of ['file:///etc/passwd', 'ftp://127.0.0.1/x', 'gopher://127.0.0.1:6379/_INFO']) {
    a.handler = (_req, res) => {
      res.writeHead(302, { location });
      res.end();
    };
    await assert.rejects(c.fetchBuffered(manifestGet), isKind('bad-response', 'REDIRECT_REFUSED'), location);
  }
});

test('tags are read page by page with n and Link, under maxTags in all', async () => {
  const all = Array.from({ length: 2500 }, (_, i) => `t${String(i).padStart(4, '0')}`);
  a.handler = (req, res) => {
    const url = new URL(req.url ?? '/', a.origin);
    const n = Number(url.searchParams.get('n'));
    const last = url.searchParams.get('last');
    const start = last === null ? 0 : all.indexOf(last) + 1;
    const page = all.slice(start, start + n);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (start + n < all.length) headers['link'] = `</v2/library/x/tags/list?last=${page[page.length - 1] ?? ''}&n=${n}>; rel="next"`;
    res.writeHead(200, headers);
    res.end(JSON.stringify({ name: 'library/x', tags: page }));
  };
  const tags = await client().listTags('library/x');
  assert.deepEqual(tags, all);
  assert.equal(a.hits.length, 3, 'three pages of 1000');
  assert.ok(a.hits.every((h) => /[?&]n=1000/.test(h.url)));
  a.hits = [];
  await assert.rejects(client({ maxTags: 2000 }).listTags('library/x'), isKind('bad-response', 'TOO_MANY_TAGS'));
  assert.equal(a.hits.length, 3, 'stopped once past the cap');
});

test('tag pages whose next link loops, leaves the repository or the origin are refused', async () => {
  for (const link of ['</v2/library/x/tags/list?n=1000>; rel="next"', '</v2/library/other/tags/list?n=5>; rel="next"', `<${b.origin}/v2/library/x/tags/list?n=5>; rel="next"`]) {
    a.hits = [];
    a.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', link });
      res.end('{"tags":["a"]}');
    };
    await assert.rejects(client().listTags('library/x'), isKind('bad-response'), link);
    assert.ok(a.hits.length <= 2, link);
    assert.equal(b.hits.length, 0);
  }
  a.handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', link: '</v2/library/x/tags/list?last=z&n=1000>; rel="next"' });
    res.end('{"tags":[]}');
  };
  await assert.rejects(client().listTags('library/x'), isKind('bad-response'), 'an empty page that links on');
});

async function waitFor(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
