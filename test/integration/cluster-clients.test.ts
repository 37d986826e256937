// Real clients through replicas: two Berth processes on one store and one Redis behind a
// round-robin TCP balancer (test/helpers/balancer.ts); skopeo, ctr and podman pull through the
// balancer. What lands is byte-identical to the upstream's image, both replicas served
// connections, and each blob was downloaded from upstream once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startBalancer, type Balancer } from '../helpers/balancer.js';
import { ctrPull, readDirImage, registriesConf, skopeoCopy, startContainerd, startPodman, writeHostsToml } from '../helpers/clients.js';
import { buildImage, makeTempDir, pushImage, removeTempDir, requireBinary, type BuiltImage } from '../helpers/index.js';
import { sharedRgw, startCluster, type ClusterRig } from './cluster-support.js';

let cluster: ClusterRig;
let balancer: Balancer;
let work: string;
let img: BuiltImage;

before(async () => {
  requireBinary('skopeo', 'skopeo');
  cluster = await startCluster({ replicas: 2, upstream: { tagTtl: '1h' }, storage: sharedRgw });
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

test('ctr pulls through the balancer with a hosts.toml: every manifest and blob is the upstream\'s, fetched upstream once', async () => {
  const ctrImg = buildImage({ seed: 'cluster-ctr', layers: [8192, 500_000, 1_500_000] });
  await pushImage(cluster.rig.upstream.url, 'library/ctr-app', '1.0', ctrImg);
  cluster.rig.resetProxy();
  const cd = await startContainerd();
  const hostsDir = await makeTempDir('cluster-hosts');
  try {
    await writeHostsToml(hostsDir, 'docker.io', balancer.url);
    const pulled = await Promise.all(['a', 'b'].map((ns) => ctrPull(cd, 'docker.io/library/ctr-app:1.0', { hostsDir, namespace: `cluster-${ns}` })));
    for (const p of pulled) {
      assert.equal(p.result.code, 0, p.result.stderr);
      assert.equal(p.image?.digest, ctrImg.manifestDigest);
      assert.deepEqual([...p.manifests], [ctrImg.manifestDigest], 'the manifest, re-hashed, is the upstream\'s');
      assert.deepEqual([...p.blobs].sort(), [ctrImg.configDigest, ...ctrImg.layers.map((l) => l.digest)].sort());
    }
    for (const d of [ctrImg.configDigest, ...ctrImg.layers.map((l) => l.digest)]) {
      assert.equal(cluster.rig.proxy.count({ kind: 'blob', method: 'GET', pathIncludes: d }), 1, `blob ${d.slice(0, 19)} fetched upstream once`);
    }
  } finally {
    await cd.stop();
    await removeTempDir(hostsDir);
  }
});

test('podman pulls through the balancer as a registries.conf mirror: the image id and digest are the upstream\'s', async () => {
  const podImg = buildImage({ seed: 'cluster-podman', layers: [4096, 700_000] });
  await pushImage(cluster.rig.upstream.url, 'library/pod-app', '1.0', podImg);
  cluster.rig.resetProxy();
  const podman = await startPodman({ registriesConf: registriesConf(balancer.host) });
  try {
    await podman.podman(['pull', '--quiet', 'docker.io/library/pod-app:1.0'], { timeoutMs: 120_000 });
    const got = await podman.inspect('docker.io/library/pod-app:1.0');
    assert.equal(got.digest, podImg.manifestDigest);
    assert.equal(`sha256:${got.id}`, podImg.configDigest);
    for (const d of podImg.layers.map((l) => l.digest)) {
      assert.equal(cluster.rig.proxy.count({ kind: 'blob', method: 'GET', pathIncludes: d }), 1, `layer ${d.slice(0, 19)} fetched upstream once`);
    }
  } finally {
    await podman.stop();
  }
});
