// Blobs shared between repositories are counted once and outlive any one image that uses them:
// through eviction, and through purge by both APIs (admin and DELETE /v2 with deleteEnabled).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import {
  startDistribution, startFaultProxy, buildLargeBlobImage, buildIndex, pushImage, pushIndex, fetchManifest,
  type Distribution, type FaultProxy, type BuiltLayer,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { MemoryDriver } from '../../src/storage/memory.js';
import {
  MiB, getJson, imageDigests, imageFromLayers, lifecycleOf, pullImage, pushPullable, settle, storedBlobsOf, type PullableImage,
} from './lifecycle-support.js';

let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;

function rawLayer(seed: string, size: number): BuiltLayer {
  const l = buildLargeBlobImage({ seed, size, raw: true }).layers[0];
  assert.ok(l);
  return l;
}

const shared = rawLayer('lifecycle-share-L', 8 * MiB);
const ownA = rawLayer('lifecycle-share-A', 8 * MiB);
const ownB = rawLayer('lifecycle-share-B', 8 * MiB);
const big = rawLayer('lifecycle-share-C', 16 * MiB);
const one = imageFromLayers('one', [shared, ownA]);
const two = imageFromLayers('two', [shared, ownB]);
const three = imageFromLayers('three', [big]);
const multi = buildIndex({ seed: 'lifecycle-share-index', layers: [4096] });

before(async () => {
  upstream = await startDistribution();
  await pushPullable(upstream.url, 'lib/one', 'v1', one);
  await pushPullable(upstream.url, 'lib/two', 'v1', two);
  await pushPullable(upstream.url, 'lib/twin', 'v1', two);
  await pushPullable(upstream.url, 'lib/three', 'v1', three);
  await pushIndex(upstream.url, 'lib/multi', 'v1', multi);
  const amd = multi.images[0];
  assert.ok(amd);
  await pushImage(upstream.url, 'lib/multi', 'amd64', amd);
  proxy = await startFaultProxy(upstream.url);
});

after(async () => {
  await proxy?.stop();
  await upstream?.stop();
});

async function pull(repo: string, img: PullableImage): Promise<void> {
  await pullImage(berth.url, repo, 'v1', img);
  await settle(berth, imageDigests(img));
}

// Each driver in turn: the lifecycle behaves the same over the filesystem and in memory.
for (const kind of ['filesystem', 'memory'] as const) {
  describe(`shared blobs through eviction and purge [${kind}]`, () => {
    before(async () => {
      berth = await startBerth({
        storage: { maxSize: '40MiB', deleteEnabled: true },
        upstreams: [upstreamOverride(proxy.url, { tagTtl: '1h' })],
        auth: { policy: [{ subjects: ['anonymous'], actions: ['delete', 'admin'], repositories: ['*'] }] },
      }, kind === 'memory' ? { driver: new MemoryDriver() } : {});
      assert.equal(berth.services.driver.name, kind, 'the store under test');
    });

    after(async () => {
      await berth?.stop();
    });

    test(`evicting one image keeps another repository that shares its layer pullable, and the shared layer is not fetched again [${kind}]`, async () => {
      await pull('lib/one', one);
      await pull('lib/two', two);
      // 24 MiB stored; three's 16 MiB pass the high mark (38 MiB): one (least recently used) goes,
      // but only the parts two does not use.
      await pull('lib/three', three);
      const onDisk = await storedBlobsOf(berth);
      assert.ok(!onDisk.has(one.manifestDigest) && !onDisk.has(one.configDigest) && !onDisk.has(ownA.digest), 'one was evicted');
      assert.ok(onDisk.has(shared.digest), 'the layer two shares was kept');
      for (const d of [...imageDigests(two), ...imageDigests(three)]) assert.ok(onDisk.has(d), `${d} kept`);
      assert.equal(onDisk.get(shared.digest), shared.size);
      assert.ok(lifecycleOf(berth).bytes <= 40 * MiB);

      proxy.reset();
      await pullImage(berth.url, 'lib/two', 'v1', two);
      assert.equal(proxy.count(), 0, 'two pulls entirely from the cache');

      await pullImage(berth.url, 'lib/one', 'v1', one);
      assert.equal(proxy.count({ kind: 'blob', pathIncludes: shared.digest }), 0, 'the shared layer was not fetched again');
      assert.equal(proxy.count({ kind: 'blob', method: 'GET' }), 2, 'only its own config and layer');
      await settle(berth, imageDigests(one));
    });

    test(`DELETE /api/v1/cache/<upstream>/<name> purges a repository but keeps what another repository uses [${kind}]`, async () => {
      await pull('lib/one', one);
      await pull('lib/two', two);
      const r = await getJson(`${berth.url}/api/v1/cache/docker.io/lib/two`, 'DELETE');
      assert.equal(r.status, 200, JSON.stringify(r.json));
      assert.equal(r.json['tags'], 1);
      assert.equal(r.json['manifests'], 1);
      assert.equal(r.json['blobs'], 3, 'manifest, config and its own layer');
      const onDisk = await storedBlobsOf(berth);
      assert.ok(!onDisk.has(ownB.digest) && !onDisk.has(two.manifestDigest));
      assert.ok(onDisk.has(shared.digest), 'one still uses the shared layer');
      assert.deepEqual(await berth.services.mirror.meta.listTags('docker.io', 'lib/two'), []);
      const catalog = await getJson(`${berth.url}/v2/_catalog`);
      assert.ok(!(catalog.json['repositories'] as string[]).includes('lib/two'), 'the repository left the catalog');

      proxy.reset();
      await pullImage(berth.url, 'lib/one', 'v1', one);
      assert.equal(proxy.count(), 0, 'one is untouched');
      await pullImage(berth.url, 'lib/two', 'v1', two);
      assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 1, 'a purged tag is fetched again');
      assert.equal(proxy.count({ kind: 'blob', pathIncludes: shared.digest }), 0);

      const none = await getJson(`${berth.url}/api/v1/cache/docker.io/lib/never-pulled`, 'DELETE');
      assert.equal(none.status, 404);
      const bad = await getJson(`${berth.url}/api/v1/cache/nowhere.example.com/lib/one`, 'DELETE');
      assert.equal(bad.status, 404);
    });

    test(`a manifest two repositories hold stays until the last one purges it [${kind}]`, async () => {
      await pull('lib/two', two);
      await pull('lib/twin', two);
      const byTag = await getJson(`${berth.url}/api/v1/cache/docker.io/lib/twin:v1`, 'DELETE');
      assert.equal(byTag.status, 200);
      assert.equal(byTag.json['kept'], 1, 'lib/two still holds the manifest');
      assert.equal(byTag.json['blobs'], 0);
      proxy.reset();
      await pullImage(berth.url, 'lib/two', 'v1', two);
      assert.equal(proxy.count(), 0);
    });

    test(`DELETE /v2/<name>/manifests/<ref> with storage.deleteEnabled purges a tag or a digest; the next pull goes upstream [${kind}]`, async () => {
      await pull('lib/one', one);
      const del = await request(`${berth.url}/v2/lib/one/manifests/v1`, { method: 'DELETE' });
      await del.body.dump();
      assert.equal(del.statusCode, 202);
      assert.deepEqual(await berth.services.mirror.meta.listTags('docker.io', 'lib/one'), []);
      const onDisk = await storedBlobsOf(berth);
      assert.ok(!onDisk.has(one.manifestDigest) && !onDisk.has(ownA.digest), 'nothing else held one: it went');

      proxy.reset();
      const m = await fetchManifest(berth.url, 'lib/one', one.manifestDigest);
      assert.equal(m.status, 200);
      assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 1, 'not served from memory after the purge');

      const byDigest = await request(`${berth.url}/v2/lib/one/manifests/${one.manifestDigest}`, { method: 'DELETE' });
      await byDigest.body.dump();
      assert.equal(byDigest.statusCode, 202);
      const again = await request(`${berth.url}/v2/lib/one/manifests/${one.manifestDigest}`, { method: 'DELETE' });
      const body = await again.body.text();
      assert.equal(again.statusCode, 404);
      assert.match(body, /MANIFEST_UNKNOWN/);
    });

    test(`purging an index takes its children along, except a child a tag still names [${kind}]`, async () => {
      const [amd, arm] = multi.images;
      assert.ok(amd && arm);
      await pullImage(berth.url, 'lib/multi', 'v1', { ...amd, manifest: multi.manifest, manifestDigest: multi.manifestDigest });
      for (const child of [amd, arm]) await pullImage(berth.url, 'lib/multi', child.manifestDigest, child);
      await pullImage(berth.url, 'lib/multi', 'amd64', amd);
      await settle(berth, [multi.manifestDigest, ...imageDigests(amd), ...imageDigests(arm)]);

      const r = await getJson(`${berth.url}/api/v1/cache/docker.io/lib/multi:v1`, 'DELETE');
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const onDisk = await storedBlobsOf(berth);
      assert.ok(!onDisk.has(multi.manifestDigest), 'the index went');
      for (const d of imageDigests(arm)) assert.ok(!onDisk.has(d), `arm64 child ${d} went with it`);
      for (const d of imageDigests(amd)) assert.ok(onDisk.has(d), `amd64 child ${d} stays: lib/multi:amd64 names it`);
      proxy.reset();
      await pullImage(berth.url, 'lib/multi', 'amd64', amd);
      assert.equal(proxy.count(), 0);
    });
  });
}
