// The fill coordinator's view of work in progress, against a real Distribution upstream: while an
// upstream answer is held back (the fault proxy's latency), the mirror lists the manifest, tag or
// blob fill it is leading, a blob under fill is reported as `filling` (so the lifecycle never
// removes it), a second client joins rather than asking upstream again, and once the fill ends
// the list is empty again.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDistribution, startFaultProxy, buildImage, pushImage, fetchManifest, fetchBlob, latency,
  type Distribution, type FaultProxy,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import type { FillInProgress } from '../../src/registry/fills.js';

let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;

before(async () => {
  upstream = await startDistribution();
  proxy = await startFaultProxy(upstream.url);
  berth = await startBerth({ upstreams: [upstreamOverride(proxy.url, { tagTtl: '1h' })] });
});

after(async () => {
  await berth?.stop();
  await proxy?.stop();
  await upstream?.stop();
});

beforeEach(() => {
  proxy.setRules([]);
  proxy.reset();
});

const fills = (): FillInProgress[] => berth.services.mirror.status().fills;

test('a blob fill is listed and reported as filling while upstream holds it back; a joiner adds no upstream GET', async () => {
  const img = buildImage({ seed: 'fills-blob', layers: 1 });
  await pushImage(upstream.url, 'library/fillblob', 'v1', img);
  const layer = img.layers[0];
  assert.ok(layer);
  proxy.setRules([latency(1500, { match: { kind: 'blob', method: 'GET' } })]);
  const first = fetchBlob(berth.url, 'library/fillblob', layer.digest);
  await proxy.waitForCount({ kind: 'blob', method: 'GET' }, 1);
  const listed = fills();
  assert.equal(listed.length, 1, JSON.stringify(listed));
  assert.equal(listed[0]?.kind, 'blob');
  assert.equal(listed[0]?.reference, layer.digest);
  assert.equal(listed[0]?.name, null, 'blobs are shared by every repository');
  assert.ok(berth.services.mirror.filling(layer.digest), 'a blob under fill is never removed by the lifecycle');
  const second = fetchBlob(berth.url, 'library/fillblob', layer.digest);
  const [a, b] = await Promise.all([first, second]);
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  assert.ok(a.body.equals(layer.data));
  assert.ok(b.body.equals(layer.data));
  assert.equal(proxy.count({ kind: 'blob', method: 'GET' }), 1, 'the second client joined the one fill');
  // The fill leaves the table once it has committed (the blob is then in the store).
  for (let i = 0; i < 50 && berth.services.mirror.filling(layer.digest); i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(berth.services.mirror.filling(layer.digest), false);
  assert.deepEqual(fills(), []);
});

test('manifest and tag fills are listed with their upstream, repository and reference', async () => {
  const img = buildImage({ seed: 'fills-manifest', layers: 1 });
  await pushImage(upstream.url, 'library/fillman', 'v1', img);

  proxy.setRules([latency(1000, { match: { kind: 'manifest', method: 'GET' } })]);
  const byDigest = fetchManifest(berth.url, 'library/fillman', img.manifestDigest);
  await proxy.waitForCount({ kind: 'manifest', method: 'GET' }, 1);
  assert.deepEqual(fills().map((f) => [f.kind, f.upstream, f.name, f.reference]), [
    ['manifest', 'docker.io', 'library/fillman', img.manifestDigest],
  ]);
  assert.equal((await byDigest).status, 200);
  assert.deepEqual(fills(), []);

  proxy.reset();
  proxy.setRules([latency(1000, { match: { kind: 'manifest', method: 'HEAD' } })]);
  const byTag = fetchManifest(berth.url, 'fillman', 'v1');
  await proxy.waitForCount({ kind: 'manifest', method: 'HEAD' }, 1);
  assert.deepEqual(fills().map((f) => [f.kind, f.upstream, f.name, f.reference]), [['tag', 'docker.io', 'library/fillman', 'v1']]);
  const res = await byTag;
  assert.equal(res.status, 200);
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 0, 'the tag pointed at a manifest already held');
  assert.deepEqual(fills(), []);
});
