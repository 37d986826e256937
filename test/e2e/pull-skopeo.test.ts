// skopeo pulls through Berth — directly (`docker://<berth>/…`) and as a registries.conf mirror
// taken from docs/clients.md — a single image, an OCI index and a Docker manifest list (`--all`),
// and every manifest and blob that lands is the upstream's, byte for byte. A counting proxy in
// front of Berth shows the requests really reached the mirror (the fallback, registry-1.docker.io,
// is unreachable here, so a success could come from nowhere else anyway).
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import {
  startDistribution, startFaultProxy, buildImage, buildIndex, pushImage, pushIndex, makeTempDir, removeTempDir,
  type Distribution, type FaultProxy, type BuiltImage, type BuiltIndex,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { docSnippet, readDirImage, readOciLayout, skopeoCopy, skopeoInspect } from '../helpers/clients.js';

const DOC = 'docs/clients.md';

let upstream: Distribution;
let upstreamProxy: FaultProxy;
let berth: BerthHandle;
let front: FaultProxy;
let work: string;
let single: BuiltImage;
let ociIndex: BuiltIndex;
let dockerList: BuiltIndex;
let ghcrImage: BuiltImage;

before(async () => {
  upstream = await startDistribution();
  single = buildImage({ seed: 'skopeo-single', layers: [4096, 120_000, 700_000] });
  ociIndex = buildIndex({ seed: 'skopeo-oci-index', format: 'oci', layers: 2 });
  dockerList = buildIndex({ seed: 'skopeo-docker-list', format: 'docker', layers: 2 });
  ghcrImage = buildImage({ seed: 'skopeo-ghcr', layers: 2 });
  await pushImage(upstream.url, 'library/single', '1.0', single);
  await pushIndex(upstream.url, 'library/multi', 'oci', ociIndex);
  await pushIndex(upstream.url, 'library/multi', 'list', dockerList);
  await pushImage(upstream.url, 'org/app', 'v1', ghcrImage);
  upstreamProxy = await startFaultProxy(upstream.url);
  berth = await startBerth({
    upstreams: [upstreamOverride(upstreamProxy.url, { tagTtl: '1h' }), { name: 'ghcr.io', url: upstreamProxy.url, tagTtl: '1h' }],
  });
  front = await startFaultProxy(berth.url);
  work = await makeTempDir('skopeo-e2e');
});

after(async () => {
  await front?.stop();
  await berth?.stop();
  await upstreamProxy?.stop();
  await upstream?.stop();
  if (work) await removeTempDir(work);
});

beforeEach(() => {
  front.reset();
  upstreamProxy.reset();
});

let seq = 0;
function dest(kind: 'oci' | 'dir'): { path: string; ref: string } {
  const path = join(work, `${kind}-${++seq}`);
  return { path, ref: kind === 'oci' ? `oci:${path}:pulled` : `dir:${path}` };
}

/** The docs' placeholders, filled with this test's mirror. */
function mirror(): Record<string, string> {
  return { 'mirror.example.com:5000': front.url.replace('http://', '') };
}

async function confFile(text: string): Promise<string> {
  const file = join(work, `registries-${++seq}.conf`);
  await writeFile(file, text);
  return file;
}

function blobsOf(img: BuiltImage): string[] {
  return [img.configDigest, ...img.layers.map((l) => l.digest)];
}

test('skopeo copies a single image straight from Berth with the upstream manifest and blob digests', async () => {
  const d = dest('oci');
  await skopeoCopy({ src: `docker://${front.url.replace('http://', '')}/library/single:1.0`, dest: d.ref });
  const layout = await readOciLayout(d.path);
  assert.deepEqual(layout.index.manifests?.map((m) => m.digest), [single.manifestDigest]);
  for (const b of [single.manifestDigest, ...blobsOf(single)]) assert.ok(layout.blobs.has(b), `${b} arrived`);
  assert.equal(layout.blobs.size, 1 + blobsOf(single).length, 'nothing else arrived');
  assert.ok(front.count({ kind: 'manifest', pathIncludes: '/library/single/' }) >= 1);
  assert.equal(front.count({ kind: 'blob', method: 'GET', status: 200 }), blobsOf(single).length);
});

test('skopeo through the docs registries.conf mirror gets the same bytes as a direct pull from the upstream', async () => {
  const conf = await confFile(await docSnippet(DOC, 'registries-conf', mirror()));
  const viaMirror = dest('dir');
  await skopeoCopy({ src: 'docker://docker.io/library/single:1.0', dest: viaMirror.ref, registriesConf: conf });
  const direct = dest('dir');
  await skopeoCopy({ src: `docker://${upstream.url.replace('http://', '')}/library/single:1.0`, dest: direct.ref });
  const a = await readDirImage(viaMirror.path);
  const b = await readDirImage(direct.path);
  assert.ok(a.manifest.equals(single.manifest), 'manifest bytes are the upstream bytes');
  assert.ok(a.manifest.equals(b.manifest));
  assert.deepEqual([...a.blobs.keys()].sort(), [...b.blobs.keys()].sort());
  assert.deepEqual([...a.blobs.keys()].sort(), blobsOf(single).sort());
  assert.ok(front.count({ kind: 'manifest', pathIncludes: '/v2/library/single/manifests/1.0' }) >= 1, 'the mirror was asked for the tag');
});

test('skopeo --all copies an OCI index through Berth: index, both platform manifests and every blob', async () => {
  const d = dest('oci');
  await skopeoCopy({ src: `docker://${front.url.replace('http://', '')}/library/multi:oci`, dest: d.ref, all: true });
  const layout = await readOciLayout(d.path);
  assert.deepEqual(layout.index.manifests?.map((m) => m.digest), [ociIndex.manifestDigest]);
  const expected = [ociIndex.manifestDigest, ...ociIndex.images.flatMap((i) => [i.manifestDigest, ...blobsOf(i)])];
  assert.deepEqual([...layout.blobs.keys()].sort(), [...new Set(expected)].sort());
});

test('skopeo --all copies a Docker manifest list through the docs mirror config byte-exact', async () => {
  const conf = await confFile(await docSnippet(DOC, 'registries-conf', mirror()));
  const d = dest('dir');
  await skopeoCopy({ src: 'docker://docker.io/library/multi:list', dest: d.ref, all: true, registriesConf: conf });
  const got = await readDirImage(d.path);
  assert.ok(got.manifest.equals(dockerList.manifest), 'the list is byte-identical');
  assert.deepEqual([...got.instances.keys()].sort(), dockerList.images.map((i) => i.manifestDigest).sort());
  for (const img of dockerList.images) assert.ok(got.instances.get(img.manifestDigest)?.equals(img.manifest));
  assert.deepEqual([...got.blobs.keys()].sort(), dockerList.images.flatMap(blobsOf).sort());
});

test('skopeo without --all picks the linux/amd64 image of a manifest list through Berth', async () => {
  const d = dest('dir');
  await skopeoCopy({
    src: `docker://${front.url.replace('http://', '')}/library/multi:list`,
    dest: d.ref,
    extraArgs: ['--override-os', 'linux', '--override-arch', 'amd64'],
  });
  const amd = dockerList.images.find((i) => i.platform.architecture === 'amd64');
  assert.ok(amd);
  const got = await readDirImage(d.path);
  assert.ok(got.manifest.equals(amd.manifest));
  assert.deepEqual([...got.blobs.keys()].sort(), blobsOf(amd).sort());
});

test('skopeo reaches a second upstream through the docs ghcr.io mirror config (path prefix)', async () => {
  const conf = await confFile(await docSnippet(DOC, 'registries-conf-ghcr-io', mirror()));
  const d = dest('dir');
  await skopeoCopy({ src: 'docker://ghcr.io/org/app:v1', dest: d.ref, registriesConf: conf });
  const got = await readDirImage(d.path);
  assert.ok(got.manifest.equals(ghcrImage.manifest));
  assert.deepEqual([...got.blobs.keys()].sort(), blobsOf(ghcrImage).sort());
  assert.ok(front.count({ kind: 'manifest', pathIncludes: '/v2/ghcr.io/org/app/manifests/v1' }) >= 1);
  assert.ok(upstreamProxy.count({ kind: 'manifest', pathIncludes: '/v2/org/app/' }) >= 1, 'routed to the ghcr.io upstream without the prefix');
});

test('skopeo inspect --raw through Berth returns the upstream index bytes', async () => {
  const r = await skopeoInspect({ image: `docker://${front.url.replace('http://', '')}/library/multi:oci`, raw: true });
  assert.equal(r.stdout, ociIndex.manifest.toString('utf8'));
});
