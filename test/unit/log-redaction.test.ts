// Secrets never reach the log. First the logger itself (src/log.ts) on the shapes secrets take;
// then a whole Berth at trace level: clients send Authorization headers and a token in the
// query, and Berth authenticates upstream with configured credentials (Basic to a token
// endpoint, then a bearer token), through an auth front we control in front of a real
// Distribution. Every captured log line is searched for every secret.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { createLogger } from '../../src/log.js';
import { startDistribution, buildImage, pushImage, fetchManifest, fetchBlob, type Distribution, type BuiltImage } from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';

function capture(level = 'trace') {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { log: createLogger(level, sink), text: () => lines.join('') };
}

test('the logger redacts credentials in headers, nested config, URLs, error messages and message text', () => {
  const { log, text } = capture();
  log.info({ req: { headers: { authorization: 'Bearer hdr-secret-1', cookie: 'sid=cookie-secret-2' } } }, 'request');
  log.info({ headers: { authorization: 'Basic aGRyLXNlY3JldC0z', 'proxy-authorization': 'Basic cHJveHktc2VjcmV0' } }, 'upstream call');
  log.info({ upstream: { name: 'docker.io', username: 'bot', password: 'pw-secret-4' } }, 'config');
  log.info({ config: { upstreams: [{ name: 'ghcr.io', password: 'pw-secret-5' }] } }, 'effective config');
  log.info({ token: 'tok-secret-6', access_token: 'tok-secret-7' }, 'token answer');
  log.info({ url: '/v2/x/blobs/sha256:00?X-Amz-Signature=sig-secret-8&X-Amz-Credential=cred-secret-9&ns=docker.io' }, 'redirect');
  log.info({ location: 'https://robot:pw-secret-10@cdn.example.com/blob?token=tok-secret-11' }, 'following');
  log.error({ err: new Error('GET https://bot:pw-secret-12@registry.example.com/v2/ failed with Bearer tok.secret.13') }, 'upstream error');
  log.warn('retrying with Basic Ym90OnB3LXNlY3JldC0xNA== after 401');
  log.warn('upstream challenged with Bearer realm="https://auth.example.com/token",service="registry"');
  const out = text();
  for (let i = 1; i <= 14; i++) assert.doesNotMatch(out, new RegExp(`secret-${i}\\b|secret\\.${i}\\b`), `secret ${i} leaked:\n${out}`);
  for (const b64 of ['aGRyLXNlY3JldC0z', 'cHJveHktc2VjcmV0', 'Ym90OnB3LXNlY3JldC0xNA==']) assert.ok(!out.includes(b64), `${b64} leaked`);
  // What is not secret stays readable.
  assert.match(out, /"ns=docker\.io|ns=docker\.io/);
  assert.match(out, /registry\.example\.com\/v2\//);
  assert.match(out, /"name":"docker\.io"/);
  assert.match(out, /Bearer realm=\\"https:\/\/auth\.example\.com\/token\\"/, 'a challenge is not a credential');
  assert.match(out, /\[redacted\]/);
});

// ------------------------------------------------------------------------- a live Berth

const USER = 'berth-robot';
const PASSWORD = 'upstream-pw-7f3a9c';
const BASIC = Buffer.from(`${USER}:${PASSWORD}`).toString('base64');
const TOKEN = 'issued-token-5d1e8b2c';
const CLIENT_BEARER = 'client-bearer-91ac44';
const CLIENT_BASIC = Buffer.from('ci:client-pw-2b7d').toString('base64');
const QUERY_TOKEN = 'query-token-c0ffee';

interface AuthFront {
  url: string;
  /** Token requests that carried the configured credentials, and /v2 requests that carried the token. */
  seen: { tokenWithCredentials: number; withToken: number; challenged: number };
  stop(): Promise<void>;
}

/**
 * A registry front that demands what Docker Hub does: a 401 bearer challenge on /v2, a token
 * endpoint that wants the account's Basic credentials, then the token on every request. Authorized
 * requests are passed to the real Distribution behind it.
 */
async function startAuthFront(target: string): Promise<AuthFront> {
  const seen = { tokenWithCredentials: 0, withToken: 0, challenged: 0 };
  let origin = '';
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', origin);
    if (url.pathname === '/token') {
      if (req.headers.authorization !== `Basic ${BASIC}`) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
        return;
      }
      seen.tokenWithCredentials += 1;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: TOKEN, expires_in: 300 }));
      return;
    }
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      seen.challenged += 1;
      const repo = /^\/v2\/(.+)\/(?:manifests|blobs|tags)\//.exec(url.pathname)?.[1] ?? '';
      res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': `Bearer realm="${origin}/token",service="auth-front",scope="repository:${repo}:pull"`,
      }).end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    seen.withToken += 1;
    const up = httpRequest(`${target}${req.url ?? '/'}`, { method: req.method, headers: { accept: req.headers.accept ?? '*/*' } }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.once('error', () => res.destroy());
    up.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: origin,
    seen,
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

let upstream: Distribution;
let front: AuthFront;
let berth: BerthHandle;
let image: BuiltImage;

before(async () => {
  upstream = await startDistribution();
  image = buildImage({ seed: 'log-redaction', layers: [3000] });
  await pushImage(upstream.url, 'library/private', '1.0', image);
  front = await startAuthFront(upstream.url);
  berth = await startBerth({
    log: { level: 'trace' },
    upstreams: [
      upstreamOverride(front.url, { username: USER, password: PASSWORD, tagTtl: '1h' }),
      // Wrong credentials: the token endpoint refuses them, and that failure is logged too.
      { name: 'ghcr.io', url: front.url, username: USER, password: 'wrong-pw-e4e4e4', tagTtl: '1h' },
    ],
  });
});

after(async () => {
  await berth?.stop();
  await front?.stop();
  await upstream?.stop();
});

test('requests with Authorization and upstream calls with configured credentials leave no secret in the log', async () => {
  const auth = { authorization: `Bearer ${CLIENT_BEARER}` };
  const m = await fetchManifest(berth.url, 'library/private', '1.0', { headers: auth });
  assert.equal(m.status, 200, m.body.toString());
  for (const d of [image.configDigest, ...image.layers.map((l) => l.digest)]) {
    const b = await fetchBlob(berth.url, 'library/private', d, { headers: { authorization: `Basic ${CLIENT_BASIC}` } });
    assert.equal(b.status, 200);
  }
  const q = await request(`${berth.url}/v2/library/private/manifests/1.0?ns=docker.io&token=${QUERY_TOKEN}`, { headers: auth });
  await q.body.dump();
  const denied = await fetchManifest(berth.url, 'ghcr.io/team/app', 'v1', { headers: auth });
  assert.ok(denied.status >= 400, 'the upstream refused the wrong credentials');
  const missing = await request(`${berth.url}/v2/nope`, { headers: { authorization: `Bearer ${CLIENT_BEARER}` } });
  await missing.body.dump();

  // The secrets really were used: the token endpoint got the Basic credentials, the registry the token.
  assert.ok(front.seen.tokenWithCredentials >= 1, 'Berth fetched a token with the configured credentials');
  assert.ok(front.seen.withToken >= 3, 'and sent the token on its registry requests');

  await new Promise((r) => setTimeout(r, 100));
  const lines = berth.logs();
  const text = lines.join('\n');
  assert.ok(lines.length >= 5, 'the log was captured');
  assert.match(text, /manifests\/1\.0/, 'the access log names the request');
  assert.match(text, /"ns=docker\.io|ns=docker\.io/, 'harmless query parameters stay');
  for (const secret of [PASSWORD, BASIC, TOKEN, CLIENT_BEARER, CLIENT_BASIC, QUERY_TOKEN, 'wrong-pw-e4e4e4', Buffer.from(`${USER}:wrong-pw-e4e4e4`).toString('base64')]) {
    const hit = lines.find((l) => l.includes(secret));
    assert.equal(hit, undefined, `"${secret}" appears in the log: ${hit}`);
  }
});

test('a logged field named like one pino writes itself is renamed, so no line repeats a key', async () => {
  const { log, text } = capture();
  log.warn({ code: 'UNAVAILABLE', msg: 'upstream down', level: 'x', service: 'y' }, 'request failed');
  log.info({ plain: 1 }, 'untouched');
  const lines = text().trim().split('\n');
  const first = lines[0] ?? '';
  assert.equal((first.match(/"msg":/g) ?? []).length, 1, first);
  const parsed = JSON.parse(first) as Record<string, unknown>;
  assert.equal(parsed['msg'], 'request failed');
  assert.equal(parsed['msg_'], 'upstream down');
  assert.equal(parsed['level_'], 'x');
  assert.equal(parsed['service'], 'berth');
  assert.equal(parsed['service_'], 'y');
  assert.equal((JSON.parse(lines[1] ?? '{}') as Record<string, unknown>)['plain'], 1);
});
