// One-off pre-warm runs are bounded (issue 18.8): 300 junk refs used to create 300 status records
// and send 300 upstream HEADs. Now at most prewarm.oneOff.perMinute are accepted a minute (429
// with Retry-After beyond), and at most prewarm.oneOff.maxRecords one-off records are kept (the
// oldest finished ones are forgotten). Upstream requests are counted by the proxy in front of a
// real Distribution.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startDistribution, startFaultProxy, type Distribution, type FaultProxy } from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import type { PrewarmListing } from '../../src/queue/service.js';

const NEVER = '0 0 1 1 *';
let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;

before(async () => {
  upstream = await startDistribution();
  proxy = await startFaultProxy(upstream.url);
  berth = await startBerth({
    upstreams: [upstreamOverride(proxy.url)],
    prewarm: { schedule: NEVER, attempts: 1, oneOff: { perMinute: 5, maxRecords: 3 } },
  });
});

after(async () => {
  await berth?.stop();
  await proxy?.stop();
  await upstream?.stop();
});

async function post(ref: string): Promise<{ status: number; retryAfter: string | undefined; body: string }> {
  const res = await request(`${berth.url}/api/v1/prewarm`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ref }) });
  const ra = res.headers['retry-after'];
  return { status: res.statusCode, retryAfter: Array.isArray(ra) ? ra[0] : ra, body: await res.body.text() };
}

async function oneOffs(): Promise<PrewarmListing['entries']> {
  const res = await request(`${berth.url}/api/v1/prewarm`);
  return ((await res.body.json()) as PrewarmListing).entries.filter((e) => !e.configured);
}

async function settled(ref: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const e = (await oneOffs()).find((x) => x.ref === ref);
    if (e?.lastResult) return;
    assert.ok(Date.now() < deadline, `${ref} finished its run`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('junk one-off refs are rate-limited and their records capped; refused ones cost the upstream nothing', async () => {
  const accepted: string[] = [];
  let refused = 0;
  for (let i = 0; i < 30; i++) {
    const ref = `docker.io/library/junk-${i}:1`;
    const r = await post(ref);
    if (r.status === 202) {
      accepted.push(ref);
      await settled(ref); // finished runs are what the record cap may forget
    } else {
      assert.equal(r.status, 429, r.body);
      assert.match(r.body, /TOOMANYREQUESTS/);
      assert.match(r.body, /prewarm\.oneOff\.perMinute/);
      assert.ok(Number(r.retryAfter) >= 1, `Retry-After ${r.retryAfter}`);
      refused += 1;
    }
  }
  assert.equal(accepted.length, 5, 'perMinute one-offs accepted');
  assert.equal(refused, 25);
  const upstreamManifestRequests = proxy.count({ kind: 'manifest' });
  assert.ok(upstreamManifestRequests >= 5 && upstreamManifestRequests <= 10, `only the accepted runs reached the upstream (${upstreamManifestRequests} manifest requests)`);
  const kept = await oneOffs();
  assert.ok(kept.length <= 3, `at most maxRecords one-off records are kept (${kept.map((e) => e.ref).join(', ')})`);
  assert.ok(kept.some((e) => e.ref === accepted[accepted.length - 1]), 'the newest is kept; the oldest were forgotten');
  assert.ok(!kept.some((e) => e.ref === accepted[0]));
});
