// Issue 17.8's leftovers: errors say what to change. An unknown /api/v1 path is a route error
// (404 NOT_FOUND naming the path), not a repository unknown to the registry; Redis failures read
// as sentences naming redis.url, not ioredis internals. The Redis errors are the real ones ioredis
// and BullMQ raise against a port where nothing listens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { createServices, type Services } from '../../src/app/serve.js';
import { QueueUnavailableError } from '../../src/queue/index.js';
import { BullmqQueue } from '../../src/queue/bullmq.js';
import { describeRedisError } from '../../src/queue/redis-errors.js';
import { redisCheck } from '../../src/http/routes/health.js';
import { makeTempDir, removeTempDir, freePort } from '../helpers/index.js';

const RAW = /connect ECONNREFUSED|MaxRetriesPerRequestError|Reached the max retries|Connection is closed/;

let root: string;
let s: Services;
let closed: number;

before(async () => {
  root = await makeTempDir('wording');
  closed = await freePort();
  const config = parseConfig({
    overrides: { storage: { root }, upstreams: [{ name: 'docker.io', url: `http://127.0.0.1:${closed}` }], log: { level: 'silent' } },
  });
  s = await createServices(config, createLogger('silent'), { lifecycle: false, prewarm: false });
});

after(async () => {
  await s?.close();
  await removeTempDir(root);
});

test('an unknown /api/v1 path answers 404 NOT_FOUND naming the method and path, not NAME_UNKNOWN', async () => {
  for (const url of ['/api/v1/nope', '/api/v1/cache/nope/deeper?x=1', '/api/v1']) {
    const r = await s.app.inject({ method: 'GET', url });
    assert.equal(r.statusCode, 404, url);
    const err = (r.json() as { errors: { code: string; message: string }[] }).errors[0];
    assert.equal(err?.code, 'NOT_FOUND', url);
    assert.match(err?.message ?? '', new RegExp(`no admin API route for GET ${url.split('?')[0]?.replace(/\//g, '\\/') ?? ''}$`));
  }
  const post = await s.app.inject({ method: 'POST', url: '/api/v1/purge-everything', payload: {} });
  assert.equal(post.statusCode, 404);
  assert.match(post.body, /no admin API route for POST \/api\/v1\/purge-everything/);
  // Outside /api/v1 an unknown path is still the registry's NAME_UNKNOWN.
  const other = await s.app.inject({ method: 'GET', url: '/nothing-here' });
  assert.equal((other.json() as { errors: { code: string }[] }).errors[0]?.code, 'NAME_UNKNOWN');
});

test('a refused Redis connection reads as a sentence naming redis.url, in /readyz', async () => {
  const url = `redis://:secret@127.0.0.1:${closed}`;
  const r = await redisCheck(url).check();
  assert.equal(r.ok, false);
  assert.match(r.detail ?? '', new RegExp(`^redis at 127\\.0\\.0\\.1:${closed} \\(redis\\.url\\) refused the connection \\(ECONNREFUSED\\)`));
  assert.doesNotMatch(r.detail ?? '', RAW);
  assert.doesNotMatch(r.detail ?? '', /secret/);
});

test('ioredis MaxRetriesPerRequestError and "Connection is closed." become sentences naming redis.url', async () => {
  const url = `redis://127.0.0.1:${closed}`;
  const retrying = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
  retrying.on('error', () => undefined);
  const maxRetries = await retrying.get('k').then(() => null, (err: unknown) => err);
  retrying.disconnect();
  assert.equal((maxRetries as Error).name, 'MaxRetriesPerRequestError', 'the real ioredis error');
  assert.equal(describeRedisError(maxRetries, url), `redis at 127.0.0.1:${closed} (redis.url) is not reachable: the command was given up after retrying the connection`);

  const gone = new Redis(url, { lazyConnect: true, retryStrategy: () => null });
  gone.on('error', () => undefined);
  gone.disconnect();
  const closedErr = await gone.get('k').then(() => null, (err: unknown) => err);
  assert.match((closedErr as Error).message, /Connection is closed/, 'the real ioredis error');
  assert.equal(describeRedisError(closedErr, url), `redis at 127.0.0.1:${closed} (redis.url) is not reachable: the connection is closed`);
});

test('the BullMQ queue against a Redis that is down fails fast with a QueueUnavailableError naming redis.url', async () => {
  const lines: string[] = [];
  const log = pino({ level: 'warn' }, { write: (l: string) => lines.push(l) });
  const queue = new BullmqQueue({ url: `redis://127.0.0.1:${closed}`, prefix: 'wording', policy: { attempts: 1, retryDelayMs: 1000 }, lockDurationMs: 1000, log });
  try {
    const err = await queue.enqueue({ entryId: 'e', ref: 'docker.io/library/alpine:3', platforms: [], tags: null, pin: false, reason: 'manual' }).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof QueueUnavailableError, String(err));
    assert.match(err.message, new RegExp(`^redis at 127\\.0\\.0\\.1:${closed} \\(redis\\.url\\)`));
    assert.doesNotMatch(err.message, RAW);
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['msg'] === 'redis connection problem (pre-warm queue)');
    assert.ok(logged.length >= 1, 'the connection problem is logged');
    for (const l of logged) {
      assert.match(String(l['reason']), /\(redis\.url\)/);
      assert.doesNotMatch(JSON.stringify(l), RAW);
    }
  } finally {
    await queue.close().catch(() => undefined);
  }
});
