// The cache lifecycle on the S3 driver (a real Ceph RGW): the size cap evicts whole images from
// the bucket, least recently pulled first and never the pinned one, and a restarted Berth rebuilds
// its index from the bucket's (paginated) listing and keeps serving without upstream requests.
// The bucket is listed through the S3 API, not through the driver under test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildLargeBlobImage, pushImage, type BuiltImage } from '../helpers/index.js';
import { startCeph, type CephRgw } from '../helpers/ceph.js';
import { startRig, type Rig } from '../helpers/rig.js';
import type { BerthHandle } from '../helpers/berth.js';
import { MiB, imageDigests, lifecycleOf, pullImage, settle } from './lifecycle-support.js';

const BUCKET = 'berth-s3-lifecycle';
const PREFIX = 'lc';
const images: BuiltImage[] = Array.from({ length: 5 }, (_, i) => buildLargeBlobImage({ seed: `s3-lifecycle-${i}`, size: 20 * MiB, raw: true }));

let ceph: CephRgw;
let rig: Rig;
let berth: BerthHandle;

function img(i: number): BuiltImage {
  const x = images[i];
  assert.ok(x);
  return x;
}

function storage(): Record<string, unknown> {
  return {
    driver: 's3',
    maxSize: '64MiB',
    s3: { endpoint: ceph.endpoint, bucket: BUCKET, prefix: PREFIX, accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey },
  };
}

/** Blobs in the bucket, digest → size, from the S3 API. */
async function bucketBlobs(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const { ListObjectsV2Command } = await import('@aws-sdk/client-s3');
  let token: string | undefined;
  do {
    const page = await ceph.client().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${PREFIX}/blobs/`, ContinuationToken: token }));
    for (const o of page.Contents ?? []) out.set((o.Key ?? '').slice(`${PREFIX}/blobs/`.length).replace('/', ':'), o.Size ?? 0);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

before(async () => {
  ceph = await startCeph({ buckets: [BUCKET] });
  rig = await startRig({
    upstreams: { 'docker.io': { tagTtl: '1h' } },
    berthConfig: { storage: storage() },
    seed: async (u) => {
      for (let i = 0; i < images.length; i++) await pushImage(u.url, `library/img${i}`, 'v1', img(i));
    },
  });
  rig.defer(() => ceph.stop());
  berth = rig.berth;
});

after(async () => {
  await rig?.stop();
  await ceph?.stop();
});

test('maxSize on S3: whole images leave the bucket, least recently pulled first, never the pinned one', async () => {
  const lc = lifecycleOf(berth);
  const meta = berth.services.mirror.meta;
  await pullImage(berth.url, 'library/img0', 'v1', img(0));
  await settle(berth, imageDigests(img(0)));
  await meta.putPin('img0', {
    ref: 'docker.io/library/img0:v1', upstream: 'docker.io', name: 'library/img0', digests: imageDigests(img(0)), pinnedAt: Date.now(),
  });
  for (let i = 1; i < 5; i++) {
    await pullImage(berth.url, `library/img${i}`, 'v1', img(i));
    await settle(berth, imageDigests(img(i)));
    assert.ok(lc.bytes <= 64 * MiB, `after img${i} the cache holds ${lc.bytes} bytes, over the cap`);
  }
  const inBucket = await bucketBlobs();
  const total = [...inBucket.values()].reduce((a, b) => a + b, 0);
  assert.equal(total, lc.bytes, 'the index agrees with the bucket');
  for (const i of [0, 3, 4]) for (const d of imageDigests(img(i))) assert.ok(inBucket.has(d), `img${i}: ${d} is kept`);
  for (const i of [1, 2]) {
    for (const d of imageDigests(img(i))) assert.ok(!inBucket.has(d), `img${i}: ${d} left the bucket`);
    assert.deepEqual(await meta.listTags('docker.io', `library/img${i}`), []);
  }
  assert.deepEqual(await ceph.listMultipartUploads(BUCKET), []);
});

test('a restarted Berth rebuilds its index from the bucket and serves what is there with no upstream request', async () => {
  const before = await bucketBlobs();
  const bytes = [...before.values()].reduce((a, b) => a + b, 0);
  await berth.stop();
  berth = await rig.addBerth({ storage: storage() });
  const lc = lifecycleOf(berth);
  await lc.settled();
  assert.equal(lc.bytes, bytes, 'usage rebuilt from the listing');
  rig.resetProxy();
  for (const i of [0, 3, 4]) await pullImage(berth.url, `library/img${i}`, 'v1', img(i));
  assert.equal(rig.proxy.counts.total(), 0);
});
