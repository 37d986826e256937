// Who may reach what (issues 17.4, 18.8, 18.9) with app.inject(): the admin API fenced by network
// in auth.mode none and JSON-only for state changes, /metrics by network or on its own port,
// OPTIONS/TRACE refused unless a CORS preflight, and the start-up line saying what is open.
// inject() connects from 127.0.0.1; other clients are simulated through a trusted proxy's
// X-Forwarded-For, exactly as a reverse proxy in front of Berth presents them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { createServices, type Services } from '../../src/app/serve.js';
import { describeExposure } from '../../src/http/admin-guard.js';
import { makeTempDir, removeTempDir, freePort } from '../helpers/index.js';

const opened: Array<{ s: Services; root: string }> = [];

after(async () => {
  for (const o of opened) {
    await o.s.close();
    await removeTempDir(o.root);
  }
});

async function mirror(overrides: Record<string, unknown> = {}): Promise<Services> {
  const root = await makeTempDir('exposure');
  const deadPort = await freePort();
  const config = parseConfig({
    overrides: {
      upstreams: [{ name: 'docker.io', url: `http://127.0.0.1:${deadPort}` }],
      log: { level: 'silent' },
      ...overrides,
      storage: { root, ...(overrides['storage'] as object | undefined) },
    },
  });
  const s = await createServices(config, createLogger('silent'));
  opened.push({ s, root });
  return s;
}

const code = (body: string): string | undefined => (JSON.parse(body) as { errors?: Array<{ code: string }> }).errors?.[0]?.code;
const behindProxy = { http: { trustedProxies: ['127.0.0.1/32'] } };
const from = (ip: string) => ({ 'x-forwarded-for': ip });

test('auth.mode none: the admin API answers loopback by default and 403 DENIED to any other network', async () => {
  const s = await mirror(behindProxy);
  assert.equal((await s.app.inject({ method: 'GET', url: '/api/v1/upstreams' })).statusCode, 200, 'loopback administers');
  const remote = await s.app.inject({ method: 'GET', url: '/api/v1/upstreams', headers: from('203.0.113.9') });
  assert.equal(remote.statusCode, 403);
  assert.equal(code(remote.body), 'DENIED');
  assert.match(remote.body, /http\.adminNetworks/);
  const gc = await s.app.inject({ method: 'POST', url: '/api/v1/cache/gc', headers: { ...from('203.0.113.9'), 'content-type': 'application/json' }, payload: '{}' });
  assert.equal(gc.statusCode, 403, 'nor runs GC');
  assert.equal((await s.app.inject({ method: 'GET', url: '/v2/', headers: from('203.0.113.9') })).statusCode, 200, 'pulls stay open to everyone');
});

test('http.adminNetworks lets a listed network in, and a delete rule does not lock read-only admin GETs', async () => {
  const s = await mirror({
    ...behindProxy,
    http: { trustedProxies: ['127.0.0.1/32'], adminNetworks: ['10.20.0.0/16'] },
    storage: { deleteEnabled: true },
    auth: { policy: [{ subjects: ['anonymous'], actions: ['delete'] }] },
  });
  assert.equal((await s.app.inject({ method: 'GET', url: '/api/v1/upstreams', headers: from('10.20.3.4') })).statusCode, 200);
  assert.equal((await s.app.inject({ method: 'GET', url: '/api/v1/upstreams', headers: from('10.21.3.4') })).statusCode, 403);
  assert.equal((await s.app.inject({ method: 'GET', url: '/api/v1/upstreams' })).statusCode, 403, 'loopback is not listed here');
});

test('state-changing admin calls need Content-Type: application/json (415 otherwise); an empty JSON body is fine', async () => {
  const s = await mirror();
  for (const type of [undefined, 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const headers: Record<string, string> = type ? { 'content-type': type } : {};
    const r = await s.app.inject({ method: 'POST', url: '/api/v1/cache/gc', headers, payload: type ? 'x=1' : undefined });
    assert.equal(r.statusCode, 415, `POST with ${type ?? 'no'} content type`);
    assert.match(r.body, /application\/json/);
    const d = await s.app.inject({ method: 'DELETE', url: '/api/v1/cache/docker.io/library/alpine', headers });
    assert.equal(d.statusCode, 415, `DELETE with ${type ?? 'no'} content type`);
  }
  // With JSON (empty or not) the request reaches its route: the collection runs and answers its
  // report (the fence would have answered 415).
  for (const payload of ['', '{}']) {
    const r = await s.app.inject({ method: 'POST', url: '/api/v1/cache/gc', headers: { 'content-type': 'application/json; charset=utf-8' }, payload });
    assert.notEqual(r.statusCode, 415);
    assert.notEqual(r.statusCode, 400, `an empty JSON body is accepted: ${r.body}`);
    assert.equal(r.statusCode, 200, r.body);
    assert.equal((JSON.parse(r.body) as { dryRun?: unknown }).dryRun, false, 'the GC report');
  }
  assert.equal((await s.app.inject({ method: 'GET', url: '/api/v1/upstreams' })).statusCode, 200, 'reads need no content type');
});

test('OPTIONS and TRACE answer 405 on any path without CORS; with CORS an allowed preflight gets 204', async () => {
  const plain = await mirror();
  for (const method of ['OPTIONS', 'TRACE'] as const) {
    for (const url of ['/v2/', '/v2/library/alpine/manifests/latest', '/api/v1/upstreams', '/metrics', '/nowhere']) {
      const r = await plain.app.inject({ method, url });
      assert.equal(r.statusCode, 405, `${method} ${url}`);
      assert.equal(code(r.body), 'UNSUPPORTED');
      assert.ok(!String(r.headers['allow']).includes(method), `Allow does not offer ${method}`);
    }
  }
  const cors = await mirror({ http: { cors: { origins: ['https://ui.example.com'] } } });
  const pre = await cors.app.inject({
    method: 'OPTIONS', url: '/v2/_catalog',
    headers: { origin: 'https://ui.example.com', 'access-control-request-method': 'GET' },
  });
  assert.equal(pre.statusCode, 204);
  assert.equal(pre.headers['access-control-allow-origin'], 'https://ui.example.com');
  const other = await cors.app.inject({ method: 'OPTIONS', url: '/v2/_catalog', headers: { origin: 'https://evil.example.com' } });
  assert.equal(other.statusCode, 405, 'a preflight from an origin not configured');
  assert.equal(other.headers['access-control-allow-origin'], undefined);
  assert.equal((await cors.app.inject({ method: 'TRACE', url: '/v2/', headers: { origin: 'https://ui.example.com' } })).statusCode, 405);
});

test('/metrics can be limited to metrics.networks', async () => {
  const s = await mirror({ http: { trustedProxies: ['127.0.0.1/32'] }, metrics: { networks: ['10.9.0.0/16'] } });
  const inside = await s.app.inject({ method: 'GET', url: '/metrics', headers: from('10.9.8.7') });
  assert.equal(inside.statusCode, 200);
  assert.match(inside.body, /berth_http_requests_total/);
  const outside = await s.app.inject({ method: 'GET', url: '/metrics', headers: from('192.0.2.1') });
  assert.equal(outside.statusCode, 403);
  assert.equal(code(outside.body), 'DENIED');
  assert.equal((await s.app.inject({ method: 'GET', url: '/metrics' })).statusCode, 403, 'loopback is not listed either');
});

test('metrics.port serves /metrics on its own listener only, and the main port no longer does', async () => {
  const s = await mirror({ metrics: { port: 0 } });
  await s.app.ready();
  const port = s.app.metricsPort;
  assert.ok(typeof port === 'number' && port > 0, 'the listener is bound');
  const res = await request(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.statusCode, 200);
  assert.match(await res.body.text(), /berth_http_requests_total/);
  const elsewhere = await request(`http://127.0.0.1:${port}/api/v1/upstreams`);
  await elsewhere.body.dump();
  assert.equal(elsewhere.statusCode, 404, 'that port serves nothing else');
  const main = await s.app.inject({ method: 'GET', url: '/metrics' });
  assert.equal(main.statusCode, 404);
  assert.match(main.body, /metrics\.port/);
});

test('the start-up exposure line says what is open to whom, and warns when the admin API is open beyond loopback', () => {
  const base = parseConfig({ overrides: {} });
  const quiet = describeExposure(base);
  assert.equal(quiet.warn, false);
  assert.match(quiet.exposure.admin, /127\.0\.0\.0\/8, ::1\/128/);
  assert.match(quiet.exposure.pull, /anyone/);
  assert.match(quiet.exposure.delete, /nobody/);
  const wide = describeExposure(parseConfig({ overrides: { http: { adminNetworks: ['0.0.0.0/0'] }, storage: { deleteEnabled: true } } }));
  assert.equal(wide.warn, true);
  assert.match(wide.exposure.delete, /anyone/);
});
