// /healthz and /readyz: 200 while ready, 503 when not, and a JSON body that names what is wrong
// (storage, redis, config, and checks other features register, such as disk-full). Services are
// built with createServices without the optional features (no lifecycle, no pre-warm), against a
// real redis-server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { createServices, type Services, type ServiceOptions } from '../../src/app/serve.js';
import { redisCheck } from '../../src/http/routes/health.js';
import { startRedis, freePort, makeTempDir, removeTempDir, type RedisServer } from '../helpers/index.js';

let redis: RedisServer;
const opened: Array<{ services: Services; root: string }> = [];

before(async () => {
  redis = await startRedis();
});

after(async () => {
  for (const o of opened) {
    await o.services.close();
    await removeTempDir(o.root);
  }
  await redis?.stop();
});

async function services(overrides: Record<string, unknown> = {}, opts: ServiceOptions = {}): Promise<{ services: Services; root: string }> {
  const root = await makeTempDir('berth-health');
  const config = await loadConfig({ file: null, env: {}, overrides: { ...overrides, storage: { root }, http: { host: '127.0.0.1', port: 0 } } });
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const s = { services: await createServices(config, createLogger('warn', sink), { lifecycle: false, prewarm: false, ...opts }), root };
  opened.push(s);
  return s;
}

interface Report {
  status: string;
  checks: Record<string, { ok: boolean; required: boolean; detail?: string }>;
  failing: string[];
  degraded: string[];
}

async function readyz(s: Services): Promise<{ status: number; body: Report }> {
  const res = await s.app.inject({ method: 'GET', url: '/readyz' });
  return { status: res.statusCode, body: res.json<Report>() };
}

test('/healthz answers 200 while the process runs', async () => {
  const { services: s } = await services();
  const res = await s.app.inject({ method: 'GET', url: '/healthz' });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.json(), { status: 'ok' });
});

test('/readyz is 200 and lists config, storage and redis as ok when Redis answers', async () => {
  const { services: s } = await services({ redis: { url: redis.url } });
  const r = await readyz(s);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.status, 'ready');
  assert.deepEqual(r.body.failing, []);
  for (const name of ['config', 'storage', 'redis']) assert.equal(r.body.checks[name]?.ok, true, name);
});

test('/readyz stays 200 with Redis unreachable: serve pulls without it, so Redis shows as degraded', async () => {
  const closed = await freePort();
  const { services: s } = await services({ redis: { url: `redis://127.0.0.1:${closed}` } });
  const started = Date.now();
  const r = await readyz(s);
  assert.ok(Date.now() - started < 3000, 'a dead Redis does not hang the probe');
  assert.equal(r.status, 200, 'a Redis outage must not take every replica out of the load balancer');
  assert.equal(r.body.status, 'degraded');
  assert.deepEqual(r.body.failing, []);
  assert.deepEqual(r.body.degraded, ['redis']);
  assert.equal(r.body.checks['redis']?.ok, false);
  assert.equal(r.body.checks['redis']?.required, false);
  assert.match(r.body.checks['redis']?.detail ?? '', /redis\.url/);
  assert.match(r.body.checks['redis']?.detail ?? '', /pulls are still served/);
  assert.equal(r.body.checks['storage']?.ok, true);
});

test('a Redis check registered as required (as berth worker needs it) still makes /readyz 503', async () => {
  const closed = await freePort();
  const { services: s } = await services({}, { readiness: [redisCheck(`redis://127.0.0.1:${closed}`, { required: true })] });
  const r = await readyz(s);
  assert.equal(r.status, 503);
  assert.deepEqual(r.body.failing, ['redis']);
  assert.doesNotMatch(r.body.checks['redis']?.detail ?? '', /pulls are still served/);
});

test('the /readyz example in docs/metrics.md has the shape /readyz sends', async () => {
  const closed = await freePort();
  const { services: s } = await services({ redis: { url: `redis://127.0.0.1:${closed}` } });
  const sent = (await readyz(s)).body;
  const doc = await readFile('docs/metrics.md', 'utf8');
  const block = /GET \/readyz[\s\S]*?```json\n([\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(block, 'docs/metrics.md has a JSON example after the /readyz section');
  const example = JSON.parse(block) as Report;
  assert.deepEqual(Object.keys(example).sort(), Object.keys(sent).sort());
  assert.equal(example.status, sent.status);
  assert.deepEqual(example.failing, sent.failing);
  assert.deepEqual(example.degraded, sent.degraded);
  for (const [name, check] of Object.entries(sent.checks)) {
    assert.deepEqual(Object.keys(example.checks[name] ?? {}).sort(), Object.keys(check).sort(), `checks.${name} keys`);
    assert.equal(example.checks[name]?.ok, check.ok, `checks.${name}.ok`);
    assert.equal(example.checks[name]?.required, check.required, `checks.${name}.required`);
  }
  // The example is what a refused connection reads like, address aside (no ioredis `connect ECONNREFUSED …` dump).
  const shape = (detail: string | undefined): string => (detail ?? '').replace(/redis at [^ ]+ \(redis\.url\)/, 'redis at ADDRESS (redis.url)');
  assert.match(example.checks['redis']?.detail ?? '', /^redis at [^ ]+ \(redis\.url\) refused the connection \(ECONNREFUSED\)[^;]*; pulls are still served/);
  assert.equal(shape(example.checks['redis']?.detail), shape(sent.checks['redis']?.detail));
});

test('/readyz is 503 and names storage while the store cannot take writes, and 200 again after', async () => {
  const { services: s, root } = await services();
  assert.equal((await readyz(s)).status, 200);
  await rm(join(root, 'spool'), { recursive: true, force: true });
  const r = await readyz(s);
  assert.equal(r.status, 503);
  assert.deepEqual(r.body.failing, ['storage']);
  assert.match(r.body.checks['storage']?.detail ?? '', /storage/);
  await mkdir(join(root, 'spool'));
  assert.equal((await readyz(s)).status, 200);
});

test('a failing optional check (disk full) shows as degraded without taking the instance out of rotation', async () => {
  let full = true;
  const { services: s } = await services({}, {
    readiness: [{
      name: 'disk-full',
      required: false,
      check: async () => (full ? { ok: false, detail: 'storage volume is full: serving cached content, passing new pulls through uncached' } : { ok: true }),
    }],
  });
  const r = await readyz(s);
  assert.equal(r.status, 200);
  assert.equal(r.body.status, 'degraded');
  assert.deepEqual(r.body.degraded, ['disk-full']);
  assert.deepEqual(r.body.failing, []);
  assert.match(r.body.checks['disk-full']?.detail ?? '', /full/);
  full = false;
  const again = await readyz(s);
  assert.equal(again.body.status, 'ready');
  assert.deepEqual(again.body.degraded, []);
});

test('a check that never answers fails after its timeout instead of hanging the probe', async () => {
  const { services: s } = await services({}, {
    readiness: [{ name: 'stuck', check: () => new Promise(() => undefined) }],
  });
  const started = Date.now();
  const r = await readyz(s);
  assert.ok(Date.now() - started < 3500);
  assert.equal(r.status, 503);
  assert.deepEqual(r.body.failing, ['stuck']);
  assert.match(r.body.checks['stuck']?.detail ?? '', /did not answer/);
});

test('/metrics answers 404 when metrics.enabled is false', async () => {
  const { services: s } = await services({ metrics: { enabled: false } });
  const res = await s.app.inject({ method: 'GET', url: '/metrics' });
  assert.equal(res.statusCode, 404);
  assert.match(res.body, /metrics\.enabled/);
});
