// requestDeadline against a real Distribution behind the fault proxy: an upstream that drips a
// manifest (4 bytes every 200 ms: never idle for bodyTimeout, ~20 s for a manifest) or holds its headers (less than
// headersTimeout) must not hold the mirror's clients. After the deadline a cached tag is served
// stale, and an uncached one is answered 503 with Retry-After — never a wait without end.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildImage, pushImage, fetchManifest, drip, latency,
  type Distribution, type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';

const STALE = '110 - "Response is Stale"';
const TTL = 60_000;
// Timeouts that a drip and a slow start never trip; only the deadline can end them.
const KNOBS = { tagTtl: '60s', headersTimeout: '30s', bodyTimeout: '30s', requestDeadline: '1500ms', failTimeout: '7s', maxFails: 1000 };

let rig: Rig;
let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;
let cached: BuiltImage;
let moved: BuiltImage;
let skew = 0;
const now = (): number => Date.now() + skew;

before(async () => {
  rig = await startRig({ upstreams: { 'docker.io': KNOBS }, berthOptions: { now } });
  ({ upstream, proxy, berth } = rig);
  cached = buildImage({ seed: 'deadline-cached', layers: 1 });
  await pushImage(upstream.url, 'library/dripping', 'v1', cached);
  const first = await fetchManifest(berth.url, 'library/dripping', 'v1');
  assert.equal(first.status, 200);
  // The tag moves upstream: revalidation will have to GET the new manifest by digest.
  moved = buildImage({ seed: 'deadline-moved', layers: 1 });
  await pushImage(upstream.url, 'library/dripping', 'v1', moved);
  await pushImage(upstream.url, 'library/uncached', 'v1', moved);
});

after(async () => {
  await rig?.stop();
});

beforeEach(() => {
  rig.resetProxy();
});

const getManifest = { match: { kind: 'manifest' as const, method: 'GET' } };

test('a manifest GET dripping past requestDeadline leaves the cached tag served stale, promptly', async () => {
  skew += TTL + 1_000;
  proxy.setRules([drip(4, 200, getManifest)]);
  const t0 = Date.now();
  const m = await fetchManifest(berth.url, 'library/dripping', 'v1');
  const took = Date.now() - t0;
  assert.equal(m.status, 200);
  assert.equal(m.headers['warning'], STALE);
  assert.equal(m.digest, cached.manifestDigest, 'the old manifest, not a partial new one');
  assert.ok(took < 8_000, `answered at the deadline, not when the drip ended (${took} ms)`);
  assert.ok(proxy.count({ ...getManifest.match, fault: 'drip' }) >= 1, 'the GET by digest really was dripped');
});

test('an uncached tag whose manifest drips is answered 503 with Retry-After', async () => {
  proxy.setRules([drip(4, 200, getManifest)]);
  const t0 = Date.now();
  const m = await fetchManifest(berth.url, 'library/uncached', 'v1');
  assert.equal(m.status, 503, m.body.toString());
  assert.equal(m.headers['retry-after'], '7', 'Retry-After: as long as a breaker would hold');
  assert.ok(Date.now() - t0 < 8_000, 'at the deadline, not when the ~20 s drip ends');
});

test('headers held back longer than requestDeadline (within headersTimeout) end in stale content', async () => {
  skew += TTL + 1_000;
  proxy.setRules([latency(5_000, { match: { kind: 'manifest' } })]);
  const t0 = Date.now();
  const m = await fetchManifest(berth.url, 'library/dripping', 'v1');
  assert.equal(m.status, 200);
  assert.equal(m.headers['warning'], STALE);
  assert.ok(Date.now() - t0 < 4_000, 'not the 5 s the upstream took');
});

test('once the upstream answers in time the new manifest is taken', async () => {
  skew += TTL + 1_000;
  const m = await fetchManifest(berth.url, 'library/dripping', 'v1');
  assert.equal(m.status, 200);
  assert.equal(m.headers['warning'], undefined);
  assert.equal(m.digest, moved.manifestDigest);
});
