// Berth on the S3 driver (a real Ceph RGW) in front of a real Distribution upstream: a cold pull
// fills the bucket, a warm pull and a restarted Berth are served from it with no upstream
// request, Range reads are exact, a cut or corrupt upstream body leaves nothing under the blob's
// key and no multipart upload open, and the optional redirect sends blob GETs to a presigned URL
// that serves the exact bytes while HEAD and Range stay with Berth. Upstream requests are counted
// at the fault proxy; the bucket is listed through the S3 API.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import {
  buildImage, buildLargeBlobImage, pushImage, fetchManifest, fetchBlob, digestOf, cutAfter, flipByte, latency,
  makeTempDir, removeTempDir, type BuiltImage,
} from '../helpers/index.js';
import { readDirImage, skopeoCopy } from '../helpers/clients.js';
import { startCeph, type CephRgw } from '../helpers/ceph.js';
import { startRig, type Rig } from '../helpers/rig.js';
import type { BerthHandle } from '../helpers/berth.js';
import { PART_SIZE } from '../../src/storage/s3.js';

const MiB = 1024 * 1024;
const BUCKET = 'berth-s3-pull';
const PREFIX = 'cache';

const small = buildImage({ seed: 's3-pull-small', layers: [200_000, 3_000] });
// Larger than two parts: committed by a multipart upload.
const big = buildLargeBlobImage({ seed: 's3-pull-big', size: 2 * PART_SIZE + 3 * MiB, raw: true });
const cut = buildLargeBlobImage({ seed: 's3-pull-cut', size: PART_SIZE + 2 * MiB, raw: true });
const corrupt = buildImage({ seed: 's3-pull-corrupt', layers: [500_000] });

let ceph: CephRgw;
let rig: Rig;
let berth: BerthHandle;

function storage(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    driver: 's3',
    s3: {
      endpoint: ceph.endpoint, region: ceph.region, bucket: BUCKET, prefix: PREFIX,
      accessKeyId: ceph.accessKeyId, secretAccessKey: ceph.secretAccessKey, ...extra,
    },
  };
}

const blobKey = (digest: string) => `${PREFIX}/blobs/sha256/${digest.slice('sha256:'.length)}`;

/** Every blob of an image (config, layers, manifest) with its bytes. */
function blobsOf(img: BuiltImage): Map<string, Buffer> {
  return new Map<string, Buffer>([
    [img.configDigest, img.config],
    ...img.layers.map((l) => [l.digest, l.data] as [string, Buffer]),
  ]);
}

/** A whole pull over HTTP: the tag's manifest, then every blob, each hash-checked. */
async function pullOverHttp(url: string, repo: string, img: BuiltImage): Promise<void> {
  const m = await fetchManifest(url, repo, 'v1');
  assert.equal(m.status, 200);
  assert.equal(digestOf(m.body), img.manifestDigest, 'manifest bytes');
  for (const [digest, data] of blobsOf(img)) {
    const b = await fetchBlob(url, repo, digest);
    assert.equal(b.status, 200, `blob ${digest}`);
    assert.equal(b.body.length, data.length);
    assert.equal(digestOf(b.body), digest, `blob ${digest} hashes to its name`);
  }
}

before(async () => {
  ceph = await startCeph({ buckets: [BUCKET] });
  rig = await startRig({
    upstreams: { 'docker.io': { tagTtl: '1h' } },
    berthConfig: { storage: storage() },
    seed: async (u) => {
      await pushImage(u.url, 'library/small', 'v1', small);
      await pushImage(u.url, 'library/big', 'v1', big);
      await pushImage(u.url, 'library/cut', 'v1', cut);
      await pushImage(u.url, 'library/corrupt', 'v1', corrupt);
    },
  });
  rig.defer(() => ceph.stop());
  berth = rig.berth;
});

after(async () => {
  await rig?.stop();
  await ceph?.stop();
});

beforeEach(() => rig.resetProxy());

test('a cold pull (skopeo) fills the bucket under the documented keys, byte-identical to upstream', async () => {
  const dir = await makeTempDir('s3-pull-dir');
  try {
    // dir: keeps blobs as served (an oci: layout would have skopeo compress the plain-tar layer).
    await skopeoCopy({ src: `docker://${berth.host}/library/big:v1`, dest: `dir:${dir}` });
    const pulled = await readDirImage(dir);
    assert.equal(pulled.manifestDigest, big.manifestDigest, 'manifest byte-identical');
    for (const [digest, data] of blobsOf(big)) assert.equal(pulled.blobs.get(digest), data.length, `skopeo got ${digest}`);
    assert.equal(rig.proxy.count({ kind: 'blob', method: 'GET' }), blobsOf(big).size, 'one upstream GET per blob');
  } finally {
    await removeTempDir(dir);
  }
  await pullOverHttp(berth.url, 'library/small', small);
  const keys = new Set(await ceph.listKeys(BUCKET, `${PREFIX}/blobs/`));
  for (const img of [big, small]) {
    for (const digest of [...blobsOf(img).keys(), img.manifestDigest]) assert.ok(keys.has(blobKey(digest)), `${blobKey(digest)} is in the bucket`);
  }
  assert.ok((await ceph.listKeys(BUCKET, `${PREFIX}/meta/`)).length > 0, 'records live in the bucket too');
  assert.deepEqual(await ceph.listKeys(BUCKET, 'blobs/'), [], 'nothing outside the prefix');
  assert.deepEqual(await ceph.listMultipartUploads(BUCKET), [], 'no multipart upload left open');
});

test('a warm pull is served from the bucket with no upstream request', async () => {
  await pullOverHttp(berth.url, 'library/big', big);
  await pullOverHttp(berth.url, 'library/small', small);
  assert.equal(rig.proxy.counts.total(), 0, 'no upstream request');
});

test('Range reads from the bucket are exact, across a part boundary too', async () => {
  const layer = big.layers[0];
  assert.ok(layer);
  for (const [start, end] of [[0, 0], [100, 1099], [PART_SIZE - 5, PART_SIZE + 4], [layer.size - 10, layer.size - 1]] as const) {
    const r = await fetchBlob(berth.url, 'library/big', layer.digest, { headers: { range: `bytes=${start}-${end}` } });
    assert.equal(r.status, 206);
    assert.equal(r.headers['content-range'], `bytes ${start}-${end}/${layer.size}`);
    assert.ok(r.body.equals(layer.data.subarray(start, end + 1)), `bytes ${start}-${end}`);
  }
  assert.equal(rig.proxy.counts.total(), 0);
});

test('a restarted Berth (a new spool folder) serves everything from the bucket', async () => {
  await berth.stop();
  berth = await rig.addBerth({ storage: storage() });
  await pullOverHttp(berth.url, 'library/big', big);
  await pullOverHttp(berth.url, 'library/small', small);
  assert.equal(rig.proxy.counts.total(), 0, 'no upstream request after the restart');
});

test('a cut upstream body leaves no object under the blob key and no multipart upload; the next pull stores it', async () => {
  const layer = cut.layers[0];
  assert.ok(layer);
  rig.proxy.setRules([cutAfter(PART_SIZE + MiB, { match: { kind: 'blob', method: 'GET', pathIncludes: layer.digest }, times: 1 })]);
  const res = await request(`${berth.url}/v2/library/cut/blobs/${layer.digest}`);
  await assert.rejects(res.body.arrayBuffer(), 'the client sees a cut, never a complete wrong body');
  // The fill ends (and aborts the parts it had sent) asynchronously after the client's cut.
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && berth.services.mirror.status().fills.length > 0) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(berth.services.mirror.status().fills, [], 'the failed fill has ended');
  assert.deepEqual((await ceph.listKeys(BUCKET, `${PREFIX}/blobs/`)).filter((k) => k === blobKey(layer.digest)), [], 'nothing under the key');
  assert.deepEqual(await ceph.listMultipartUploads(BUCKET), [], 'no multipart upload left open');

  const again = await fetchBlob(berth.url, 'library/cut', layer.digest);
  assert.equal(again.status, 200);
  assert.equal(digestOf(again.body), layer.digest);
  assert.equal(rig.proxy.count({ kind: 'blob', method: 'GET' }), 2, 'a fresh download after the failed one');
  assert.ok((await ceph.listKeys(BUCKET, blobKey(layer.digest))).includes(blobKey(layer.digest)), 'stored once verified');
  assert.deepEqual(await ceph.listMultipartUploads(BUCKET), []);
});

test('a corrupt upstream body (one flipped byte) is never stored', async () => {
  const layer = corrupt.layers[0];
  assert.ok(layer);
  rig.proxy.setRules([latency(100, { match: { kind: 'blob' }, times: 1 }), flipByte(1000, { match: { kind: 'blob', method: 'GET', pathIncludes: layer.digest }, times: 1 })]);
  const res = await request(`${berth.url}/v2/library/corrupt/blobs/${layer.digest}`);
  await assert.rejects(res.body.arrayBuffer());
  assert.deepEqual(await ceph.listKeys(BUCKET, blobKey(layer.digest)), [], 'nothing under the key');
});

test('redirect on: a cached blob GET answers 307 to a presigned URL with the exact bytes; HEAD, Range and small blobs stay with Berth', async () => {
  const redirecting = await rig.addBerth({ storage: storage({ redirect: { enabled: true, ttl: '2m', minSize: '1MiB' } }) });
  const layer = big.layers[0];
  assert.ok(layer);
  const res = await request(`${redirecting.url}/v2/library/big/blobs/${layer.digest}`);
  await res.body.dump();
  assert.equal(res.statusCode, 307);
  const location = String(res.headers['location']);
  assert.ok(location.startsWith(`${ceph.endpoint}/${BUCKET}/${blobKey(layer.digest)}?`), location);
  assert.match(location, /X-Amz-Expires=120/);
  const direct = await request(location);
  assert.equal(direct.statusCode, 200);
  assert.equal(digestOf(Buffer.from(await direct.body.arrayBuffer())), layer.digest, 'the store serves the exact bytes');

  const head = await request(`${redirecting.url}/v2/library/big/blobs/${layer.digest}`, { method: 'HEAD' });
  await head.body.dump();
  assert.equal(head.statusCode, 200);
  assert.equal(head.headers['content-length'], String(layer.size));
  const ranged = await fetchBlob(redirecting.url, 'library/big', layer.digest, { headers: { range: 'bytes=10-19' } });
  assert.equal(ranged.status, 206);
  assert.ok(ranged.body.equals(layer.data.subarray(10, 20)));
  const cfg = await fetchBlob(redirecting.url, 'library/big', big.configDigest);
  assert.equal(cfg.status, 200, 'a blob under minSize is served by Berth');
  assert.ok(cfg.body.equals(big.config));
  assert.equal(rig.proxy.counts.total(), 0);
  await redirecting.stop();
});
