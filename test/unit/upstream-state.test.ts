import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimitState, parseRateLimitHeader } from '../../src/upstream/ratelimit.js';
import { Breaker } from '../../src/upstream/breaker.js';
import { parseRetryAfter } from '../../src/upstream/errors.js';

test('rate-limit headers of the N;w=S form are read', () => {
  assert.deepEqual(parseRateLimitHeader('100;w=21600'), { value: 100, window: 21600 });
  assert.deepEqual(parseRateLimitHeader('76'), { value: 76, window: null });
  assert.equal(parseRateLimitHeader('garbage'), null);
  assert.equal(parseRateLimitHeader(undefined), null);
});

test('a 429 blocks GETs until Retry-After, then lifts', () => {
  let now = 1_000_000;
  const s = new RateLimitState(() => now);
  s.observe({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '3;w=21600' });
  assert.equal(s.remaining(), 3);
  assert.equal(s.blockedFor(), 0);
  s.markExhausted(30);
  assert.equal(s.blockedFor(), 30);
  assert.equal(s.remaining(), 0);
  now += 31_000;
  assert.equal(s.blockedFor(), 0);
});

test('breaker opens after maxFails, lets one probe through after failTimeout', () => {
  let now = 0;
  const b = new Breaker(3, 10_000, () => now);
  b.failure();
  b.failure();
  assert.equal(b.allow(), true);
  b.failure();
  assert.equal(b.state, 'open');
  assert.equal(b.allow(), false);
  now = 10_000;
  assert.equal(b.allow(), true, 'one probe');
  assert.equal(b.allow(), false, 'only one');
  b.success();
  assert.equal(b.state, 'closed');
});

test('Retry-After takes seconds or an HTTP date', () => {
  assert.equal(parseRetryAfter('120'), 120);
  assert.equal(parseRetryAfter(new Date(61_000).toUTCString(), 1_000), 60);
  assert.equal(parseRetryAfter('soon'), undefined);
});
