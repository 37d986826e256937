// Size cap with LRU eviction against a real upstream (Distribution behind the counting proxy):
// five ~20 MiB images pulled in turn through a 64 MiB cache, one of them pinned.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import {
  startDistribution, startFaultProxy, buildLargeBlobImage, pushImage, fetchManifest,
  type Distribution, type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { MemoryDriver } from '../../src/storage/memory.js';
import { MiB, getJson, imageDigests, lifecycleOf, metricValue, pullImage, settle, storedBlobsOf } from './lifecycle-support.js';

let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;
const images: BuiltImage[] = [];

before(async () => {
  upstream = await startDistribution();
  for (let i = 0; i < 5; i++) {
    const img = buildLargeBlobImage({ seed: `lifecycle-evict-${i}`, size: 20 * MiB });
    images.push(img);
    await pushImage(upstream.url, `library/img${i}`, 'v1', img);
  }
  proxy = await startFaultProxy(upstream.url);
});

after(async () => {
  await proxy?.stop();
  await upstream?.stop();
});

function img(i: number): BuiltImage {
  const x = images[i];
  assert.ok(x);
  return x;
}

// Each driver in turn: the lifecycle behaves the same over the filesystem and in memory.
for (const kind of ['filesystem', 'memory'] as const) {
  describe(`LRU eviction under maxSize [${kind}]`, () => {
    before(async () => {
      berth = await startBerth({
        storage: { maxSize: '64MiB' },
        upstreams: [upstreamOverride(proxy.url, { tagTtl: '1h' })],
        // Deleting is allowed by the policy, so a refusal can only come from storage.deleteEnabled.
        auth: { policy: [{ subjects: ['anonymous'], actions: ['delete', 'admin'], repositories: ['*'] }] },
      }, kind === 'memory' ? { driver: new MemoryDriver() } : {});
      assert.equal(berth.services.driver.name, kind, 'the store under test');
    });

    after(async () => {
      await berth?.stop();
    });

    test(`keeps the cache under maxSize by evicting whole images, least recently pulled first, never the pinned one [${kind}]`, async () => {
      const lc = lifecycleOf(berth);
      const meta = berth.services.mirror.meta;

      await pullImage(berth.url, 'library/img0', 'v1', img(0));
      await settle(berth, imageDigests(img(0)));
      // What pre-warm writes for a pinned image: every digest it keeps.
      await meta.putPin('img0', {
        ref: 'docker.io/library/img0:v1', upstream: 'docker.io', name: 'library/img0', digests: imageDigests(img(0)), pinnedAt: Date.now(),
      });

      for (let i = 1; i < 5; i++) {
        await pullImage(berth.url, `library/img${i}`, 'v1', img(i));
        await settle(berth, imageDigests(img(i)));
        assert.ok(lc.bytes <= 64 * MiB, `after pulling img${i} the cache holds ${lc.bytes} bytes, over the cap`);
      }

      // 4 × 20 MiB passed the high mark (60.8 MiB) when img3 landed: the two least recently pulled
      // unpinned images (img1, img2) went, down under the low mark (54.4 MiB). img4 then fits.
      const onDisk = await storedBlobsOf(berth);
      const total = [...onDisk.values()].reduce((a, b) => a + b, 0);
      assert.equal(total, lc.bytes, 'the index agrees with the disk');
      assert.ok(total <= 64 * MiB);
      for (const i of [0, 3, 4]) {
        for (const d of imageDigests(img(i))) assert.ok(onDisk.has(d), `img${i}: ${d} is kept`);
        assert.deepEqual(await meta.listTags('docker.io', `library/img${i}`), ['v1']);
      }
      for (const i of [1, 2]) {
        for (const d of imageDigests(img(i))) assert.ok(!onDisk.has(d), `img${i}: ${d} was evicted`);
        assert.deepEqual(await meta.listTags('docker.io', `library/img${i}`), [], `img${i}'s tag record went with it`);
        assert.equal(await meta.getManifest(img(i).manifestDigest), null);
      }

      // Every tag still recorded pulls completely from the cache: no tag names missing content.
      proxy.reset();
      for (const [u, name] of await meta.repositories()) {
        for (const tag of await meta.listTags(u, name)) {
          const i = Number(name.replace('library/img', ''));
          await pullImage(berth.url, name, tag, img(i));
        }
      }
      assert.equal(proxy.count(), 0, 'tags left in the cache are served without asking upstream');

      // An evicted image is simply fetched again.
      await pullImage(berth.url, 'library/img1', 'v1', img(1));
      assert.equal(proxy.count({ kind: 'blob', method: 'GET' }), 2, 'its config and layer came from upstream once each');
      await settle(berth, imageDigests(img(1)));
      assert.ok(lc.bytes <= 64 * MiB);
      assert.ok((await storedBlobsOf(berth)).has(img(0).layers[0]?.digest ?? ''), 'the pinned image survived another eviction');
    });

    test(`storage figures: /metrics and GET /api/v1/cache agree with the store [${kind}]`, async () => {
      const lc = lifecycleOf(berth);
      await lc.settled();
      const onDisk = await storedBlobsOf(berth);
      const bytes = [...onDisk.values()].reduce((a, b) => a + b, 0);
      assert.equal(await metricValue(berth.url, 'berth_storage_bytes'), bytes);
      assert.equal(await metricValue(berth.url, 'berth_storage_blobs'), onDisk.size);
      assert.ok(((await metricValue(berth.url, 'berth_evictions_total')) ?? 0) >= 6, 'img1 and img2: manifest, config and layer each');
      assert.ok(((await metricValue(berth.url, 'berth_evicted_bytes_total')) ?? 0) >= 40 * MiB);
      assert.equal(await metricValue(berth.url, 'berth_storage_full'), 0);

      const { status, json } = await getJson(`${berth.url}/api/v1/cache`);
      assert.equal(status, 200);
      assert.equal(json['bytes'], bytes);
      assert.equal(json['blobs'], onDisk.size);
      assert.equal(json['maxSize'], 64 * MiB);
      assert.equal(json['storageFull'], false);
      assert.deepEqual(json['pinned'], { pins: 1, blobs: 3, bytes: imageDigests(img(0)).reduce((a, d) => a + (onDisk.get(d) ?? 0), 0) });
      const ev = json['evictions'] as Record<string, unknown>;
      assert.ok(typeof ev['runs'] === 'number' && ev['runs'] >= 1);
    });

    test(`DELETE of a manifest is refused while storage.deleteEnabled is off [${kind}]`, async () => {
      const res = await request(`${berth.url}/v2/library/img0/manifests/v1`, { method: 'DELETE' });
      const body = await res.body.text();
      assert.equal(res.statusCode, 405, body);
      assert.match(body, /UNSUPPORTED/);
      const m = await fetchManifest(berth.url, 'library/img0', 'v1');
      assert.equal(m.status, 200, 'still cached');
    });
  });
}
