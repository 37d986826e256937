// How a replica takes in the rate-limit state another replica or worker saw (RateLimitState.adopt,
// fed by src/registry/cluster.ts): newer numbers win, a longer block wins, a firm Retry-After is
// never lifted early, and an adopted state is not shared back (no echo between replicas).
// A fake clock; no servers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimitState, type SharedRateLimit } from '../../src/upstream/ratelimit.js';

function pair(): { t: { now: number }; a: RateLimitState; b: RateLimitState; sent: SharedRateLimit[] } {
  const t = { now: 1_000_000 };
  const a = new RateLimitState(() => t.now);
  const b = new RateLimitState(() => t.now);
  const sent: SharedRateLimit[] = [];
  // A shares what it sees; B adopts it (what the pub/sub channel does between replicas).
  a.onChange = (s) => {
    sent.push(s);
    b.adopt(s);
  };
  b.onChange = () => assert.fail('an adopted state is not shared again');
  return { t, a, b, sent };
}

test('a 429 with Retry-After on one replica blocks GETs on the other until it passes', () => {
  const { t, a, b } = pair();
  a.markExhausted(30);
  assert.equal(b.blockedFor(), 30);
  assert.equal(b.remaining(), 0);
  t.now += 29_000;
  assert.equal(b.blockedFor(), 1);
  t.now += 1_000;
  assert.equal(b.blockedFor(), 0);
});

test('reported pulls left reach the other replica; an older report does not overwrite a newer one', () => {
  const { t, a, b } = pair();
  a.observe({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '42;w=21600' });
  assert.equal(b.remaining(), 42);
  assert.equal(b.status().limit, 100);
  const old = a.shared();
  t.now += 1_000;
  a.observe({ 'ratelimit-remaining': '41;w=21600' });
  b.adopt(old);
  assert.equal(b.remaining(), 41, 'the older report is ignored');
});

test('a firm block is not lifted by a later report of pulls left; a block without Retry-After is', () => {
  const { t, a, b } = pair();
  a.markExhausted(60);
  t.now += 1_000;
  const c = new RateLimitState(() => t.now);
  c.observe({ 'ratelimit-remaining': '5;w=21600' });
  b.adopt(c.shared());
  assert.equal(b.blockedFor(), 59, 'Retry-After is the upstream\'s instruction: it stands');
  const d = new RateLimitState(() => t.now);
  d.observe({ 'ratelimit-limit': '100;w=600' });
  d.markExhausted(undefined);
  const e = new RateLimitState(() => t.now);
  e.adopt(d.shared());
  assert.ok(e.blockedFor() > 0);
  t.now += 1_000;
  const f = new RateLimitState(() => t.now);
  f.observe({ 'ratelimit-remaining': '7;w=600' });
  e.adopt(f.shared());
  assert.equal(e.blockedFor(), 0, 'a window-long block lifts when pulls are reported again');
});
