// containerd's ctr pulls through Berth via the hosts.toml in docs/clients.md: a single image, an
// OCI index and a Docker manifest list (all platforms), with the upstream's manifest and blob
// digests; requests carry `?ns=docker.io`; a blob download cut mid-way is resumed with
// `Range: bytes=N-`, answered 206, and the pull completes. A counting proxy sits between ctr and
// Berth so the test sees exactly what ctr sent and what it got back.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDistribution, startFaultProxy, buildImage, buildIndex, pushImage, pushIndex, makeTempDir, removeTempDir, cutAfter,
  type Distribution, type FaultProxy, type BuiltImage, type BuiltIndex,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { ctrPull, docSnippet, startContainerd, writeHostsToml, type Containerd, type CtrPulled } from '../helpers/clients.js';

const DOC = 'docs/clients.md';

let upstream: Distribution;
let upstreamProxy: FaultProxy;
let berth: BerthHandle;
let front: FaultProxy;
let cd: Containerd;
let hostsDir: string;
let single: BuiltImage;
let big: BuiltImage;
let ociIndex: BuiltIndex;
let dockerList: BuiltIndex;

before(async () => {
  upstream = await startDistribution();
  single = buildImage({ seed: 'ctr-single', layers: [4096, 150_000, 600_000] });
  big = buildImage({ seed: 'ctr-resume', layers: [4_000_000], compression: 'none' });
  ociIndex = buildIndex({ seed: 'ctr-oci-index', format: 'oci', layers: 2 });
  dockerList = buildIndex({ seed: 'ctr-docker-list', format: 'docker', layers: 2 });
  await pushImage(upstream.url, 'library/single', '1.0', single);
  await pushImage(upstream.url, 'library/big', '1.0', big);
  await pushIndex(upstream.url, 'library/multi', 'oci', ociIndex);
  await pushIndex(upstream.url, 'library/multi', 'list', dockerList);
  upstreamProxy = await startFaultProxy(upstream.url);
  berth = await startBerth({ upstreams: [upstreamOverride(upstreamProxy.url, { tagTtl: '1h' })] });
  front = await startFaultProxy(berth.url);
  cd = await startContainerd();
  hostsDir = await makeTempDir('hosts');
  const content = await docSnippet(DOC, 'containerd-hosts-docker-io', { 'mirror.example.com:5000': front.url.replace('http://', '') });
  await writeHostsToml(hostsDir, 'docker.io', front.url, { content });
});

after(async () => {
  await cd?.stop();
  await front?.stop();
  await berth?.stop();
  await upstreamProxy?.stop();
  await upstream?.stop();
  if (hostsDir) await removeTempDir(hostsDir);
});

beforeEach(() => {
  front.setRules([]);
  front.reset();
  upstreamProxy.reset();
});

let nsSeq = 0;
/** Each pull in its own containerd namespace, so content from earlier tests cannot satisfy it. */
function freshNamespace(): string {
  return `pull-${++nsSeq}`;
}

function blobsOf(img: BuiltImage): string[] {
  return [img.configDigest, ...img.layers.map((l) => l.digest)];
}

function assertImage(pulled: CtrPulled, manifests: string[], blobs: string[]): void {
  assert.deepEqual([...pulled.manifests].sort(), [...manifests].sort(), 'manifests in the content store');
  assert.deepEqual([...pulled.blobs].sort(), [...new Set(blobs)].sort(), 'configs and layers in the content store');
}

test('ctr pulls a single image through the docs hosts.toml with the upstream digests, sending ?ns=docker.io', async () => {
  const pulled = await ctrPull(cd, 'docker.io/library/single:1.0', { hostsDir, namespace: freshNamespace() });
  assert.equal(pulled.image?.digest, single.manifestDigest);
  assert.equal(pulled.image?.mediaType, single.mediaType);
  assertImage(pulled, [single.manifestDigest], blobsOf(single));
  const mirrorRequests = front.requests.filter((r) => r.kind === 'manifest' || r.kind === 'blob');
  assert.ok(mirrorRequests.length >= 1 + blobsOf(single).length);
  for (const r of mirrorRequests) assert.match(r.path, /[?&]ns=docker\.io(&|$)/, `${r.method} ${r.path} carries ns`);
  assert.ok(front.count({ method: 'HEAD', kind: 'manifest', pathIncludes: '/v2/library/single/manifests/1.0?ns=docker.io' }) >= 1, 'resolved with HEAD');
  assert.equal(front.count({ kind: 'blob', method: 'GET', status: 200 }), blobsOf(single).length);
});

test('ctr pulls every platform of an OCI index through Berth with the upstream digests', async () => {
  const pulled = await ctrPull(cd, 'docker.io/library/multi:oci', { hostsDir, allPlatforms: true, namespace: freshNamespace() });
  assert.equal(pulled.image?.digest, ociIndex.manifestDigest);
  assert.equal(pulled.image?.mediaType, ociIndex.mediaType);
  assertImage(pulled, [ociIndex.manifestDigest, ...ociIndex.images.map((i) => i.manifestDigest)], ociIndex.images.flatMap(blobsOf));
});

test('ctr gets the same content through Berth as straight from the upstream registry', async () => {
  const direct = await makeTempDir('hosts-direct');
  try {
    await writeHostsToml(direct, 'docker.io', upstream.url, { server: upstream.url });
    const viaBerth = await ctrPull(cd, 'docker.io/library/multi:list', { hostsDir, allPlatforms: true, namespace: freshNamespace() });
    const before = front.count();
    const straight = await ctrPull(cd, 'docker.io/library/multi:list', { hostsDir: direct, allPlatforms: true, namespace: freshNamespace() });
    assert.equal(front.count(), before, 'the direct pull did not touch Berth');
    assert.equal(viaBerth.image?.digest, straight.image?.digest);
    assert.deepEqual([...viaBerth.manifests].sort(), [...straight.manifests].sort());
    assert.deepEqual([...viaBerth.blobs].sort(), [...straight.blobs].sort());
    assert.ok(straight.blobs.size > 0);
  } finally {
    await removeTempDir(direct);
  }
});

test('ctr pulls every platform of a Docker manifest list through Berth with the upstream digests', async () => {
  const pulled = await ctrPull(cd, 'docker.io/library/multi:list', { hostsDir, allPlatforms: true, namespace: freshNamespace() });
  assert.equal(pulled.image?.digest, dockerList.manifestDigest);
  assertImage(pulled, [dockerList.manifestDigest, ...dockerList.images.map((i) => i.manifestDigest)], dockerList.images.flatMap(blobsOf));
});

test('ctr pulls one chosen platform of a list: only that image arrives', async () => {
  const arm = dockerList.images.find((i) => i.platform.architecture === 'arm64');
  assert.ok(arm);
  const pulled = await ctrPull(cd, 'docker.io/library/multi:list', { hostsDir, platform: 'linux/arm64/v8', namespace: freshNamespace() });
  assert.equal(pulled.image?.digest, dockerList.manifestDigest);
  assertImage(pulled, [dockerList.manifestDigest, arm.manifestDigest], blobsOf(arm));
});

test('a blob download cut mid-way is resumed by ctr with Range: bytes=N-, answered 206, and the pull completes', async (t) => {
  const layer = big.layers[0];
  assert.ok(layer);
  const cutAt = 1_500_000;
  front.setRules([cutAfter(cutAt, { match: { kind: 'blob', method: 'GET', pathIncludes: layer.digest }, times: 1 })]);
  const ns = freshNamespace();
  let pulled = await ctrPull(cd, 'docker.io/library/big:1.0', { hostsDir, namespace: ns, check: false });
  // ctr 1.6 either resumes inside the same pull or fails it and leaves the partial ingest, which
  // the next pull resumes; both go through a Range request.
  let attempts = 1;
  while (pulled.result.code !== 0 && attempts < 3) {
    pulled = await ctrPull(cd, 'docker.io/library/big:1.0', { hostsDir, namespace: ns, check: false });
    attempts += 1;
  }
  assert.equal(pulled.result.code, 0, pulled.result.stderr);
  assert.equal(pulled.image?.digest, big.manifestDigest);
  assertImage(pulled, [big.manifestDigest], blobsOf(big));
  const layerGets = front.requests.filter((r) => r.kind === 'blob' && r.method === 'GET' && r.path.includes(layer.digest));
  assert.equal(layerGets[0]?.faults.includes('cutAfter'), true, 'the first download was cut');
  assert.equal(layerGets[0]?.bytesSent, cutAt);
  t.diagnostic(`ctr pulls: ${attempts}; layer GETs: ${layerGets.map((r) => `${String(r.headers['range'] ?? 'whole')} → ${r.status} (${r.bytesSent} bytes)`).join(', ')}`);
  const resumed = layerGets.filter((r) => /^bytes=\d+-$/.test(String(r.headers['range'])));
  assert.ok(resumed.length >= 1, `a Range resume was sent: ${layerGets.map((r) => `${String(r.headers['range'])}→${r.status}`).join(', ')}`);
  const first = resumed[0];
  assert.ok(first);
  assert.equal(first.status, 206);
  const offset = Number(/^bytes=(\d+)-$/.exec(String(first.headers['range']))?.[1]);
  assert.ok(offset > 0 && offset <= cutAt, `resumed from ${offset}, at most the ${cutAt} bytes received`);
  assert.equal(first.bytesSent, layer.size - offset, 'the rest of the blob, no more');
  assert.equal(upstreamProxy.count({ kind: 'blob', pathIncludes: layer.digest }), 1, 'Berth fetched the layer upstream once');
});
