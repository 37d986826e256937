// Replicas on one shared FILESYSTEM store (a volume every replica mounts), the smoke test of the
// other store the replica code supports: the suites in cluster-fills/-state/-clients run on a
// Ceph RGW bucket. Two replicas, 8 concurrent cold GETs of one blob split over both: one upstream
// GET, every body hash-correct, one stored copy that verifies.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Agent, request } from 'undici';
import { buildLargeBlobImage, drip, pushImage } from '../helpers/index.js';
import { sharedFilesystem, startCluster, type ClusterRig, type Replica } from './cluster-support.js';

let cluster: ClusterRig;

before(async () => {
  cluster = await startCluster({ replicas: 2, upstream: { tagTtl: '1h' }, storage: sharedFilesystem });
});

after(async () => {
  await cluster?.stop();
});

test('two replicas on one filesystem store: 8 concurrent cold GETs of a blob, one upstream GET, every body and the stored copy verify', async () => {
  const { rig, replicas } = cluster;
  const [a, b] = replicas as [Replica, Replica];
  const img = buildLargeBlobImage({ seed: 'cluster-fs-smoke', size: 8 * 1024 * 1024 });
  const layer = img.layers[0];
  assert.ok(layer);
  await pushImage(rig.upstream.url, 'library/fs', 'v1', img);
  rig.resetProxy();
  rig.proxy.setRules([drip(32 * 1024, 2, { match: { kind: 'blob', method: 'GET' } })]);
  const agent = new Agent({ connections: 16 });
  try {
    const bodies = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      const res = await request(`${(i % 2 === 0 ? a : b).url}/v2/library/fs/blobs/${layer.digest}`, { dispatcher: agent });
      assert.equal(res.statusCode, 200);
      return Buffer.from(await res.body.arrayBuffer());
    }));
    for (const body of bodies) assert.equal(`sha256:${createHash('sha256').update(body).digest('hex')}`, layer.digest);
    assert.equal(rig.proxy.count({ kind: 'blob', method: 'GET' }), 1, 'one upstream GET across both replicas');
    const stored = (await cluster.store.blobs()).filter((s) => s.digest === layer.digest);
    assert.deepEqual(stored.map((s) => s.hashesTo), [layer.digest], 'one stored copy, and it verifies');
  } finally {
    await agent.close();
    rig.proxy.setRules([]);
  }
});
