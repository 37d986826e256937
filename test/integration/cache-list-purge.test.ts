// Purge by pattern over shared content (issue 17 item 11), against a real Distribution upstream:
// repositories inside and outside the pattern share a layer and a whole multi-platform index. The
// dry run must report exactly what the purge then removes, content anything outside the pattern
// holds must stay (and pull again without an upstream fetch), and what only the purged
// repositories held must leave the store.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startRig, type Rig } from '../helpers/rig.js';
import { buildIndex, buildLargeBlobImage, fetchBlob, fetchManifest, pushIndex, type BuiltIndex, type BuiltLayer } from '../helpers/index.js';
import { imageDigests, imageFromLayers, pullImage, pushPullable, settle, storedBlobs, type PullableImage } from './lifecycle-support.js';

function rawLayer(seed: string, size: number): BuiltLayer {
  const l = buildLargeBlobImage({ seed, size, raw: true }).layers[0];
  assert.ok(l);
  return l;
}

const shared = rawLayer('cache-purge-shared', 64 * 1024);
const one = imageFromLayers('purge-one', [shared, rawLayer('cache-purge-one', 32 * 1024)]);
const two = imageFromLayers('purge-two', [shared, rawLayer('cache-purge-two', 16 * 1024)]);
const keep = imageFromLayers('purge-keep', [shared, rawLayer('cache-purge-keep', 8 * 1024)]);
const multi = buildIndex({ seed: 'cache-purge-multi' });
const lonely = buildIndex({ seed: 'cache-purge-lonely' });

let rig: Rig;

function indexDigests(ix: BuiltIndex): string[] {
  return [ix.manifestDigest, ...ix.images.flatMap((i) => [i.manifestDigest, i.configDigest, ...i.layers.map((l) => l.digest)])];
}

function sizes(pairs: [string, number][]): number {
  return [...new Map(pairs)].reduce((sum, [, n]) => sum + n, 0);
}

function imageSizes(img: PullableImage): [string, number][] {
  return [[img.manifestDigest, img.manifest.length], [img.configDigest, img.config.length], ...img.layers.map((l): [string, number] => [l.digest, l.size])];
}

function indexSizes(ix: BuiltIndex): [string, number][] {
  return [[ix.manifestDigest, ix.manifest.length], ...ix.images.flatMap((i): [string, number][] => [
    [i.manifestDigest, i.manifest.length], [i.configDigest, i.config.length], ...i.layers.map((l): [string, number] => [l.digest, l.size]),
  ])];
}

async function pullIndex(repo: string, tag: string, ix: BuiltIndex): Promise<void> {
  const m = await fetchManifest(rig.url, repo, tag);
  assert.equal(m.status, 200, `${repo}:${tag}`);
  assert.equal(m.digest, ix.manifestDigest);
  for (const img of ix.images) {
    assert.equal((await fetchManifest(rig.url, repo, img.manifestDigest)).status, 200);
    for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) assert.equal((await fetchBlob(rig.url, repo, d)).status, 200);
  }
  await settle(rig.berth, indexDigests(ix));
}

async function purge(body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const res = await request(`${rig.url}/api/v1/cache/purge`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(res.statusCode, 200);
  return (await res.body.json()) as Record<string, unknown>;
}

before(async () => {
  rig = await startRig({
    seed: async (u) => {
      await pushPullable(u.url, 'a/one', 'v1', one);
      await pushPullable(u.url, 'a/two', 'v1', two);
      await pushPullable(u.url, 'b/keep', 'v1', keep);
      await pushIndex(u.url, 'a/multi', 'v1', multi);
      await pushIndex(u.url, 'b/multi-copy', 'v1', multi);
      await pushIndex(u.url, 'a/lonely', 'v1', lonely);
    },
    upstreams: { 'docker.io': { tagTtl: '1h' } },
  });
  for (const [repo, img] of [['a/one', one], ['a/two', two], ['b/keep', keep]] as const) {
    await pullImage(rig.url, repo, 'v1', img);
    await settle(rig.berth, imageDigests(img));
  }
  await pullIndex('a/multi', 'v1', multi);
  await pullIndex('b/multi-copy', 'v1', multi);
  await pullIndex('a/lonely', 'v1', lonely);
});

after(async () => {
  await rig?.stop();
});

test('purge of a/*: the dry run equals the purge; a layer and an index that b/* also holds stay and pull without upstream', async () => {
  // Only the purged repositories hold these: one's and two's own layers, configs and manifests,
  // and all of the lonely index. The shared layer (b/keep) and the multi index (b/multi-copy) stay.
  const going = [
    ...imageSizes(one).filter(([d]) => d !== shared.digest),
    ...imageSizes(two).filter(([d]) => d !== shared.digest),
    ...indexSizes(lonely),
  ];
  const expectedBytes = sizes(going);

  const dry = await purge({ pattern: 'a/*', dryRun: true });
  assert.equal(dry['dryRun'], true);
  assert.deepEqual((dry['repositories'] as { repository: string }[]).map((r) => r.repository), ['a/lonely', 'a/multi', 'a/one', 'a/two']);
  assert.equal(dry['bytes'], expectedBytes);
  assert.equal(dry['blobs'], new Map(going).size);
  assert.equal(dry['manifests'], 2 + 1 + lonely.images.length, "one's and two's manifests, lonely's index and its children");
  assert.equal(dry['tags'], 4);
  const before = await storedBlobs(rig.berth.root);
  for (const [d] of going) assert.ok(before.has(d), 'the dry run removed nothing');

  const real = await purge({ pattern: 'a/*' });
  for (const k of ['tags', 'links', 'manifests', 'blobs', 'bytes', 'kept']) assert.equal(real[k], dry[k], k);
  assert.deepEqual(real['repositories'], dry['repositories']);

  const left = await storedBlobs(rig.berth.root);
  for (const [d] of going) assert.ok(!left.has(d), `${d} only a/* held: removed`);
  assert.ok(left.has(shared.digest), 'the layer b/keep shares stays');
  for (const d of indexDigests(multi)) assert.ok(left.has(d), 'the index b/multi-copy holds stays, children and all');

  rig.resetProxy();
  await pullImage(rig.url, 'b/keep', 'v1', keep);
  await pullIndex('b/multi-copy', 'v1', multi);
  assert.equal(rig.proxy.count(), 0, 'what stayed is served from the cache alone');

  const list = await request(`${rig.url}/api/v1/cache/repositories`);
  const names = ((await list.body.json()) as { repositories: { repository: string }[] }).repositories.map((r) => r.repository);
  assert.deepEqual(names, ['b/keep', 'b/multi-copy']);
});
