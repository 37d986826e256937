// Hosted repositories on the S3 driver (a real Ceph RGW): pushes of a small image and of a layer
// larger than two multipart parts land in the bucket and pull back byte for byte, with no
// multipart upload left open; a chunked upload (PATCHes with Content-Range, the last chunk on the
// PUT) commits; a PUT with the wrong digest stores nothing under either digest; a Berth started
// afresh on the same bucket serves the hosted tags (their records live in the bucket too); and
// once the manifest is deleted, GC removes its blobs from the bucket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import {
  buildImage, buildLargeBlobImage, pushImage, fetchManifest, fetchBlob, digestOf, seededBytes, type BuiltImage,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { startCeph, type CephRgw } from '../helpers/ceph.js';
import { PART_SIZE } from '../../src/storage/s3.js';

const BUCKET = 'berth-hosted';
const PREFIX = 'reg';

const small = buildImage({ seed: 'hosted-s3-small', layers: [120_000, 4_000] });
const big = buildLargeBlobImage({ seed: 'hosted-s3-big', size: 2 * PART_SIZE + 1_234_567, raw: true });

let ceph: CephRgw;
let berth: BerthHandle;

function config(): Record<string, unknown> {
  return {
    upstreams: [upstreamOverride('http://127.0.0.1:9')],
    repositories: [{ match: 'ci/**', mode: 'hosted' }],
    storage: {
      driver: 's3',
      deleteEnabled: true,
      s3: {
        endpoint: ceph.endpoint, region: ceph.region, bucket: BUCKET, prefix: PREFIX,
        accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey,
      },
    },
  };
}

const blobKey = (digest: string): string => `${PREFIX}/blobs/sha256/${digest.slice('sha256:'.length)}`;

async function pulledBack(url: string, repo: string, img: BuiltImage): Promise<void> {
  const m = await fetchManifest(url, repo, 'v1');
  assert.equal(m.status, 200);
  assert.ok(m.body.equals(img.manifest), `${repo}: manifest bytes`);
  for (const [d, data] of [[img.configDigest, img.config], ...img.layers.map((l) => [l.digest, l.data] as const)] as const) {
    const b = await fetchBlob(url, repo, d);
    assert.equal(b.status, 200, `${repo}: ${d}`);
    assert.equal(digestOf(b.body), d, `${repo}: ${d} bytes`);
    assert.equal(b.body.length, data.length);
  }
}

before(async () => {
  ceph = await startCeph({ buckets: [BUCKET] });
  berth = await startBerth(config());
});

after(async () => {
  await berth?.stop();
  await ceph?.stop();
});

test('pushes into a hosted repository land in the bucket and pull back byte for byte; no multipart upload is left open', async () => {
  await pushImage(berth.url, 'ci/small', 'v1', small);
  await pushImage(berth.url, 'ci/big', 'v1', big);
  await pulledBack(berth.url, 'ci/small', small);
  await pulledBack(berth.url, 'ci/big', big);
  const keys = new Set(await ceph.listKeys(BUCKET, `${PREFIX}/blobs/`));
  for (const img of [small, big]) {
    for (const d of [img.manifestDigest, img.configDigest, ...img.layers.map((l) => l.digest)]) assert.ok(keys.has(blobKey(d)), `${d} is in the bucket`);
  }
  assert.deepEqual(await ceph.listMultipartUploads(BUCKET), []);
});

test('a chunked upload commits on S3; a PUT with the wrong digest stores nothing', async () => {
  const data = seededBytes('hosted-s3-chunks', 300_000);
  const d = digestOf(data);
  const post = await request(`${berth.url}/v2/ci/chunks/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
  await post.body.dump();
  assert.equal(post.statusCode, 202);
  const location = String(post.headers['location']);
  const patch = await request(new URL(location, berth.url), {
    method: 'PATCH', body: data.subarray(0, 100_000), headers: { 'content-range': '0-99999', 'content-type': 'application/octet-stream' },
  });
  await patch.body.dump();
  assert.equal(patch.statusCode, 202);
  const put = await request(new URL(`${location}?digest=${d}`, berth.url), {
    method: 'PUT', body: data.subarray(100_000), headers: { 'content-type': 'application/octet-stream' },
  });
  await put.body.dump();
  assert.equal(put.statusCode, 201);
  assert.ok((await fetchBlob(berth.url, 'ci/chunks', d)).body.equals(data));

  const other = seededBytes('hosted-s3-wrong', 50_000);
  const claimed = digestOf(Buffer.from('not these bytes'));
  const start = await request(`${berth.url}/v2/ci/chunks/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
  await start.body.dump();
  const wrong = await request(new URL(`${String(start.headers['location'])}?digest=${claimed}`, berth.url), {
    method: 'PUT', body: other, headers: { 'content-type': 'application/octet-stream' },
  });
  const text = await wrong.body.text();
  assert.equal(wrong.statusCode, 400);
  assert.match(text, /DIGEST_INVALID/);
  const keys = new Set(await ceph.listKeys(BUCKET, `${PREFIX}/blobs/`));
  assert.ok(!keys.has(blobKey(claimed)) && !keys.has(blobKey(digestOf(other))), 'nothing stored under either digest');
});

test('a Berth started afresh on the same bucket serves the hosted tags', async () => {
  const second = await startBerth(config());
  try {
    await pulledBack(second.url, 'ci/small', small);
    const tags = await request(`${second.url}/v2/ci/small/tags/list`);
    assert.deepEqual(((await tags.body.json()) as { tags: string[] }).tags, ['v1']);
  } finally {
    await second.stop();
  }
});

test('after the manifest is deleted, GC removes its blobs from the bucket', async () => {
  const del = await request(`${berth.url}/v2/ci/big/manifests/${big.manifestDigest}`, { method: 'DELETE' });
  await del.body.dump();
  assert.equal(del.statusCode, 202);
  const lifecycle = berth.services.lifecycle;
  assert.ok(lifecycle);
  await lifecycle.gc({ graceMs: 0 });
  const keys = new Set(await ceph.listKeys(BUCKET, `${PREFIX}/blobs/`));
  for (const d of [big.manifestDigest, big.configDigest, ...big.layers.map((l) => l.digest)]) assert.ok(!keys.has(blobKey(d)), `${d} left the bucket`);
  for (const d of [small.manifestDigest, ...small.layers.map((l) => l.digest)]) assert.ok(keys.has(blobKey(d)), `${d} (still tagged) stays`);
  assert.equal((await fetchManifest(berth.url, 'ci/big', 'v1')).status, 404);
});
