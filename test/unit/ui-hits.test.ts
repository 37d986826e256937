// The overview's hit ratio (src/ui/hit-history.ts): since start it is Berth's own counters, the
// same figures /metrics gives; over the last hour it is now minus the per-minute snapshot taken
// an hour ago, so lookups older than the hour drop out.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics } from '../../src/metrics/metrics.js';
import { HitHistory } from '../../src/ui/hit-history.js';

const MIN = 60_000;

describe('hit history', () => {
  it('since start: (hit + revalidated + stale) / all, per kind and together; bytes by source', async () => {
    const m = new Metrics({ defaults: false });
    const h = new HitHistory(m, () => 0);
    await h.sample();
    m.cacheRequests.inc({ kind: 'manifest', result: 'hit' }, 3);
    m.cacheRequests.inc({ kind: 'manifest', result: 'revalidated' }, 1);
    m.cacheRequests.inc({ kind: 'manifest', result: 'miss' }, 4);
    m.cacheRequests.inc({ kind: 'blob', result: 'stale' }, 1);
    m.cacheRequests.inc({ kind: 'blob', result: 'coalesced' }, 1);
    m.servedBytes.inc({ source: 'cache' }, 1000);
    m.servedBytes.inc({ source: 'upstream' }, 250);
    const f = await h.figures();
    assert.equal(f.sinceStart.manifest, 0.5);
    assert.equal(f.sinceStart.blob, 0.5);
    assert.equal(f.sinceStart.all, 0.5);
    assert.deepEqual(f.sinceStart.lookups, { manifest: 8, blob: 2 });
    assert.deepEqual(f.sinceStart.bytes, { cache: 1000, upstream: 250 });
  });

  it('no lookups: no ratio (null), not 0 %', async () => {
    const f = await new HitHistory(new Metrics({ defaults: false }), () => 0).figures();
    assert.equal(f.sinceStart.all, null);
    assert.equal(f.lastHour.all, null);
  });

  it('last hour: lookups older than the hour drop out as the ring moves on', async () => {
    const m = new Metrics({ defaults: false });
    let t = 0;
    const h = new HitHistory(m, () => t);
    await h.sample(); // t = 0
    m.cacheRequests.inc({ kind: 'blob', result: 'miss' }, 10); // long ago: all misses
    for (let i = 1; i <= 30; i++) {
      t = i * MIN;
      await h.sample();
    }
    m.cacheRequests.inc({ kind: 'blob', result: 'hit' }, 10); // recent: all hits
    for (let i = 31; i <= 75; i++) {
      t = i * MIN;
      await h.sample();
    }
    const f = await h.figures();
    assert.equal(f.sinceStart.blob, 0.5);
    assert.equal(f.lastHour.blob, 1, 'the misses before minute 15 are outside the hour');
    assert.equal(f.lastHour.lookups.blob, 10);
    assert.equal(f.lastHour.minutes, 60);
  });
});
