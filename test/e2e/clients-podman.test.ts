// podman pulls through Berth with the registries.conf of docs/clients.md: a short name resolves
// to docker.io and comes from the mirror, a multi-arch list gives the amd64 image, and ghcr.io
// goes through the same Berth by the path prefix in the mirror's location. The image podman stores
// has the upstream's config digest (its image id), manifest digest and layer diff ids.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDistribution, startFaultProxy, buildImage, buildIndex, pushImage, pushIndex,
  type Distribution, type FaultProxy, type BuiltImage, type BuiltIndex,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { docSnippet, startPodman, type Podman } from '../helpers/clients.js';

const DOC = 'docs/clients.md';

let upstream: Distribution;
let upstreamProxy: FaultProxy;
let berth: BerthHandle;
let front: FaultProxy;
let podman: Podman;
let single: BuiltImage;
let list: BuiltIndex;
let ghcrImage: BuiltImage;

before(async () => {
  upstream = await startDistribution();
  single = buildImage({ seed: 'podman-single', format: 'docker', layers: [2048, 90_000] });
  list = buildIndex({ seed: 'podman-list', format: 'docker', layers: 2 });
  ghcrImage = buildImage({ seed: 'podman-ghcr', layers: 2 });
  await pushImage(upstream.url, 'library/berth-short', '1.0', single);
  await pushIndex(upstream.url, 'library/berth-multi', '2.0', list);
  await pushImage(upstream.url, 'org/app', 'v1', ghcrImage);
  upstreamProxy = await startFaultProxy(upstream.url);
  berth = await startBerth({
    upstreams: [upstreamOverride(upstreamProxy.url, { tagTtl: '1h' }), { name: 'ghcr.io', url: upstreamProxy.url, tagTtl: '1h' }],
  });
  front = await startFaultProxy(berth.url);
  const fill = { 'mirror.example.com:5000': front.url.replace('http://', '') };
  const conf = `${await docSnippet(DOC, 'registries-conf', fill)}\n${await docSnippet(DOC, 'registries-conf-ghcr-io', fill)}`;
  podman = await startPodman({ registriesConf: conf });
});

after(async () => {
  await podman?.stop();
  await front?.stop();
  await berth?.stop();
  await upstreamProxy?.stop();
  await upstream?.stop();
});

beforeEach(() => {
  front.reset();
});

function assertStored(got: { id: string; diffIds: string[] }, img: BuiltImage): void {
  assert.equal(`sha256:${got.id}`, img.configDigest, 'image id is the upstream config digest');
  assert.deepEqual(got.diffIds, img.layers.map((l) => l.diffId), 'layers are the upstream layers');
}

test('podman pulls a short name through the docs registries.conf: docker.io via Berth, upstream digests', async () => {
  await podman.podman(['pull', '--quiet', 'berth-short:1.0']);
  const img = await podman.inspect('docker.io/library/berth-short:1.0');
  assertStored(img, single);
  assert.equal(img.digest, single.manifestDigest);
  assert.ok(front.count({ kind: 'manifest', pathIncludes: '/v2/library/berth-short/manifests/1.0' }) >= 1, 'asked the mirror for the tag');
  assert.equal(front.count({ kind: 'blob', method: 'GET', status: 200 }), 1 + single.layers.length, 'config and layers from Berth');
});

test('podman pulls the amd64 image of a multi-arch list through Berth', async () => {
  await podman.podman(['pull', '--quiet', '--arch', 'amd64', '--os', 'linux', 'docker.io/library/berth-multi:2.0']);
  const amd = list.images.find((i) => i.platform.architecture === 'amd64');
  assert.ok(amd);
  const img = await podman.inspect('docker.io/library/berth-multi:2.0');
  assertStored(img, amd);
  assert.ok(img.repoDigests.some((d) => d.endsWith(`@${list.manifestDigest}`) || d.endsWith(`@${amd.manifestDigest}`)), img.repoDigests.join(', '));
  assert.ok(front.count({ kind: 'manifest', pathIncludes: amd.manifestDigest }) >= 1, 'the platform manifest came from Berth by digest');
});

test('podman reaches ghcr.io through the same Berth with the docs path-prefix mirror', async () => {
  await podman.podman(['pull', '--quiet', 'ghcr.io/org/app:v1']);
  const img = await podman.inspect('ghcr.io/org/app:v1');
  assertStored(img, ghcrImage);
  assert.ok(front.count({ kind: 'manifest', pathIncludes: '/v2/ghcr.io/org/app/manifests/v1' }) >= 1);
  assert.ok(upstreamProxy.count({ kind: 'manifest', pathIncludes: '/v2/org/app/manifests/' }) >= 1, 'Berth asked the ghcr.io upstream without the prefix');
});
