// A real client through replicas: two Berth processes on one store and one Redis behind a
// round-robin TCP balancer (test/helpers/balancer.ts), and skopeo pulling through the balancer.
// What lands is byte-identical to a pull straight from the upstream, both replicas served
// connections, and each blob was downloaded from upstream once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startBalancer, type Balancer } from '../helpers/balancer.js';
import { readDirImage, skopeoCopy } from '../helpers/clients.js';
import { buildImage, makeTempDir, pushImage, removeTempDir, requireBinary, type BuiltImage } from '../helpers/index.js';
import { startCluster, type ClusterRig } from './cluster-support.js';

let cluster: ClusterRig;
let balancer: Balancer;
let work: string;
let img: BuiltImage;

before(async () => {
  requireBinary('skopeo', 'skopeo');
  cluster = await startCluster({ replicas: 2, upstream: { tagTtl: '1h' } });
  balancer = await startBalancer(cluster.replicas.map((r) => r.url.replace('http://', '')));
  work = await makeTempDir('cluster-clients');
  img = buildImage({ seed: 'cluster-skopeo', layers: [4096, 300_000, 2_000_000] });
  await pushImage(cluster.rig.upstream.url, 'library/app', '1.0', img);
});

after(async () => {
  await balancer?.stop();
  await cluster?.stop();
  if (work) await removeTempDir(work);
});

test('skopeo pulls through two replicas behind a round-robin balancer: byte-identical to upstream, one upstream GET per blob', async () => {
  const direct = join(work, 'direct');
  await skopeoCopy({ src: `docker://${cluster.rig.upstream.url.replace('http://', '')}/library/app:1.0`, dest: `dir:${direct}` });
  cluster.rig.resetProxy();
  const pulls = [join(work, 'via-1'), join(work, 'via-2'), join(work, 'via-3')];
  // Concurrent pulls, so the replicas meet the same cold blobs at once.
  await Promise.all(pulls.map((dir) => skopeoCopy({ src: `docker://${balancer.host}/library/app:1.0`, dest: `dir:${dir}` })));
  const want = await readDirImage(direct);
  assert.equal(want.manifestDigest, img.manifestDigest);
  for (const dir of pulls) {
    const got = await readDirImage(dir);
    assert.ok(got.manifest.equals(want.manifest), 'the manifest is byte-identical');
    assert.deepEqual([...got.blobs].sort(), [...want.blobs].sort(), 'the same blobs, each re-hashed to its digest');
  }
  const served = balancer.connections();
  assert.ok(served.every((n) => n > 0), `both replicas served connections (${served.join(', ')})`);
  for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) {
    const gets = cluster.rig.proxy.count({ kind: 'blob', method: 'GET', pathIncludes: d });
    assert.equal(gets, 1, `blob ${d.slice(0, 19)} downloaded from upstream once (${gets})`);
  }
});
