// Counter series bound once (src/metrics/metrics.ts `bind`, `countCache`, `served`,
// `httpRequest`): the per-request path adds to plain numbers and the counters take them at each
// read, so a scrape and `get()` show exactly what was counted, mixed with direct `inc` calls,
// and nothing is counted twice across reads.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics } from '../../src/metrics/metrics.js';

async function value(m: Metrics, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = m.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const got = await metric.get();
  return got.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
}

describe('bound counter series', () => {
  it('a scrape shows what bound series counted, added to direct inc calls, once', async () => {
    const m = new Metrics({ defaults: false });
    m.countCache('manifest', 'hit');
    m.countCache('manifest', 'hit');
    m.cacheRequests.inc({ kind: 'manifest', result: 'hit' }, 5);
    m.served('cache', 1438);
    m.served('cache', 1438);
    m.served('upstream', 7);
    let text = await m.registry.metrics();
    assert.match(text, /berth_cache_requests_total\{kind="manifest",result="hit"\} 7\n/);
    assert.match(text, /berth_served_bytes_total\{source="cache"\} 2876\n/);
    assert.match(text, /berth_served_bytes_total\{source="upstream"\} 7\n/);
    // Read again with nothing new: the same figures, not doubled.
    text = await m.registry.metrics();
    assert.match(text, /berth_cache_requests_total\{kind="manifest",result="hit"\} 7\n/);
    m.countCache('manifest', 'hit');
    assert.equal(await value(m, 'berth_cache_requests_total', { kind: 'manifest', result: 'hit' }), 8);
    assert.equal(await value(m, 'berth_cache_requests_total', { kind: 'blob', result: 'miss' }), 0);
  });

  it('httpRequest counts by method, route and status and observes the duration by method and route', async () => {
    const m = new Metrics({ defaults: false });
    m.httpRequest('GET', 'manifest', 200, 0.0004);
    m.httpRequest('GET', 'manifest', 200, 0.002);
    m.httpRequest('GET', 'manifest', 304, null);
    m.httpRequest('HEAD', 'blob', 404, 0.1);
    assert.equal(await value(m, 'berth_http_requests_total', { method: 'GET', route: 'manifest', status: '200' }), 2);
    assert.equal(await value(m, 'berth_http_requests_total', { method: 'GET', route: 'manifest', status: '304' }), 1);
    assert.equal(await value(m, 'berth_http_requests_total', { method: 'HEAD', route: 'blob', status: '404' }), 1);
    const text = await m.registry.metrics();
    // Two durations known for GET manifest (the 304 had none), one for HEAD blob.
    assert.match(text, /berth_http_request_duration_seconds_count\{method="GET",route="manifest"\} 2\n/);
    assert.match(text, /berth_http_request_duration_seconds_bucket\{le="0.0005",method="GET",route="manifest"\} 1\n/);
    assert.match(text, /berth_http_request_duration_seconds_count\{method="HEAD",route="blob"\} 1\n/);
  });

  it('bind returns one series per label set, whatever the order of the labels', async () => {
    const m = new Metrics({ defaults: false });
    const a = m.bind(m.httpRequests, { method: 'GET', route: 'tags', status: '200' });
    const b = m.bind(m.httpRequests, { status: '200', route: 'tags', method: 'GET' });
    a.inc();
    b.inc(2);
    assert.equal(await value(m, 'berth_http_requests_total', { method: 'GET', route: 'tags', status: '200' }), 3);
  });
});
