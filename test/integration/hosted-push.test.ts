// Hosted repositories over plain HTTP (issue 14): the OCI push protocol (monolithic, streaming,
// chunked, status, cancel, final PUT), mount (from hosted and from mirrored repositories),
// manifest PUT with its checks, delete, referrers, tags/list and _catalog, and the bad-input list:
// each answers the exact OCI error and leaves nothing in the store (no blob, no spool file, no
// upload record). A real Distribution is the mirrored upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import {
  buildImage, buildIndex, digestOf, fetchBlob, fetchManifest, pushImage, pushManifest, seededBytes,
  type BuiltImage,
} from '../helpers/index.js';
import { startRig, type Rig } from '../helpers/rig.js';
import type { Digest } from '../../src/oci/reference.js';

let rig: Rig;
let url: string;
let base: BuiltImage;
let clock = Date.now();

before(async () => {
  base = buildImage({ seed: 'hosted-base', layers: 2 });
  rig = await startRig({
    seed: async (up) => {
      await pushImage(up.url, 'library/base', 'latest', base);
    },
    berthConfig: {
      repositories: [{ match: 'ci/**', mode: 'hosted' }, { match: 'team/*', mode: 'hosted' }],
      hosted: { uploadTtl: '1h', maxManifestSize: '64KiB', immutableTags: ['v*'] },
      storage: { deleteEnabled: true },
    },
    berthOptions: { now: () => clock },
  });
  url = rig.url;
});

after(async () => {
  await rig?.stop();
});

type Headers = Record<string, string | string[] | undefined>;

async function call(method: string, path: string, opts: { body?: Buffer | string; headers?: Record<string, string> } = {}) {
  const res = await request(`${url}${path}`, {
    method: method as 'GET',
    headers: opts.headers ?? {},
    ...(opts.body !== undefined ? { body: opts.body } : {}),
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers as Headers, body, text: body.toString('utf8') };
}

function h(headers: Headers, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function errorCode(text: string): string | undefined {
  return (JSON.parse(text) as { errors: { code: string }[] }).errors[0]?.code;
}

async function storeHas(digest: string): Promise<boolean> {
  return (await rig.berth.services.driver.statBlob(digest as Digest)) !== null;
}

async function spoolFiles(): Promise<string[]> {
  return readdir(join(rig.berth.root, 'spool')).catch(() => []);
}

async function uploadRecords(): Promise<number> {
  let n = 0;
  for await (const _ of rig.berth.services.driver.listMeta('uploads/')) n += 1;
  return n;
}

async function startUpload(repo: string): Promise<string> {
  const r = await call('POST', `/v2/${repo}/blobs/uploads/`);
  assert.equal(r.status, 202, r.text);
  const location = h(r.headers, 'location');
  assert.ok(location?.startsWith(`/v2/${repo}/blobs/uploads/`), `Location ${location}`);
  assert.equal(h(r.headers, 'range'), '0-0');
  assert.ok(h(r.headers, 'docker-upload-uuid'));
  assert.ok(h(r.headers, 'oci-chunk-min-length') !== undefined);
  return location as string;
}

async function pushAll(repo: string, tag: string, image: BuiltImage): Promise<string> {
  return pushImage(url, repo, tag, image);
}

test('a monolithic POST ?digest= stores the blob and answers 201 with Location and Docker-Content-Digest', async () => {
  const data = seededBytes('mono', 5000);
  const d = digestOf(data);
  const r = await call('POST', `/v2/ci/mono/blobs/uploads/?digest=${d}`, { body: data, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(r.status, 201, r.text);
  assert.equal(h(r.headers, 'location'), `/v2/ci/mono/blobs/${d}`);
  assert.equal(h(r.headers, 'docker-content-digest'), d);
  const got = await fetchBlob(url, 'ci/mono', d);
  assert.equal(got.status, 200);
  assert.ok(got.body.equals(data));
  // Held by ci/mono only: another hosted repository does not serve it.
  assert.equal((await fetchBlob(url, 'ci/other', d)).status, 404);
  assert.equal(await uploadRecords(), 0);
});

test('a streaming PATCH without Content-Range, then PUT ?digest=, commits byte-exact', async () => {
  const data = seededBytes('stream', 3 * 1024 * 1024 + 17);
  const d = digestOf(data);
  const location = await startUpload('ci/stream');
  // Chunked transfer encoding, no Content-Length: what dockerd sends.
  const patch = await request(`${url}${location}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/octet-stream' },
    body: Readable.from((function* () {
      for (let i = 0; i < data.length; i += 256 * 1024) yield data.subarray(i, i + 256 * 1024);
    })()),
  });
  await patch.body.dump();
  assert.equal(patch.statusCode, 202);
  assert.equal(h(patch.headers as Headers, 'range'), `0-${data.length - 1}`);
  const next = h(patch.headers as Headers, 'location') as string;
  const put = await call('PUT', `${next}?digest=${d}`);
  assert.equal(put.status, 201, put.text);
  assert.equal(h(put.headers, 'docker-content-digest'), d);
  const got = await fetchBlob(url, 'ci/stream', d);
  assert.ok(got.body.equals(data));
  assert.deepEqual(await spoolFiles(), []);
});

test('chunked PATCHes with Content-Range in order; out of order is 416 with the current Range; GET says where it stands', async () => {
  const data = seededBytes('chunks', 3000);
  const d = digestOf(data);
  const location = await startUpload('ci/chunks');
  const c1 = await call('PATCH', location, { body: data.subarray(0, 1000), headers: { 'content-range': '0-999', 'content-type': 'application/octet-stream' } });
  assert.equal(c1.status, 202, c1.text);
  assert.equal(h(c1.headers, 'range'), '0-999');
  const bad = await call('PATCH', location, { body: data.subarray(2000, 3000), headers: { 'content-range': '2000-2999', 'content-type': 'application/octet-stream' } });
  assert.equal(bad.status, 416, bad.text);
  assert.equal(errorCode(bad.text), 'BLOB_UPLOAD_INVALID');
  assert.equal(h(bad.headers, 'range'), '0-999');
  const status = await call('GET', location);
  assert.equal(status.status, 204);
  assert.equal(h(status.headers, 'range'), '0-999');
  assert.equal(h(status.headers, 'docker-upload-uuid'), location.split('/').pop());
  const c2 = await call('PATCH', location, { body: data.subarray(1000, 2000), headers: { 'content-range': '1000-1999', 'content-type': 'application/octet-stream' } });
  assert.equal(c2.status, 202);
  // The last chunk rides on the PUT.
  const put = await call('PUT', `${location}?digest=${d}`, { body: data.subarray(2000), headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(put.status, 201, put.text);
  assert.ok((await fetchBlob(url, 'ci/chunks', d)).body.equals(data));
});

test('DELETE cancels an upload: nothing staged, the session is unknown afterwards', async () => {
  const location = await startUpload('ci/cancel');
  await call('PATCH', location, { body: seededBytes('cancel', 4096), headers: { 'content-type': 'application/octet-stream' } });
  const del = await call('DELETE', location);
  assert.equal(del.status, 204);
  const again = await call('GET', location);
  assert.equal(again.status, 404);
  assert.equal(errorCode(again.text), 'BLOB_UPLOAD_UNKNOWN');
  assert.deepEqual(await spoolFiles(), []);
  assert.equal(await uploadRecords(), 0);
});

test('bad input: a wrong digest on the final PUT is DIGEST_INVALID and commits nothing', async () => {
  const data = seededBytes('wrong', 2048);
  const wrong = digestOf(Buffer.from('something else'));
  const location = await startUpload('ci/bad');
  await call('PATCH', location, { body: data, headers: { 'content-type': 'application/octet-stream' } });
  const put = await call('PUT', `${location}?digest=${wrong}`);
  assert.equal(put.status, 400, put.text);
  assert.equal(errorCode(put.text), 'DIGEST_INVALID');
  assert.equal(await storeHas(wrong), false);
  assert.equal(await storeHas(digestOf(data)), false);
  assert.equal((await call('GET', location)).status, 404);
  assert.deepEqual(await spoolFiles(), []);
  // A monolithic POST with the wrong digest, too.
  const mono = await call('POST', `/v2/ci/bad/blobs/uploads/?digest=${wrong}`, { body: data, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(mono.status, 400);
  assert.equal(errorCode(mono.text), 'DIGEST_INVALID');
  assert.equal(await storeHas(digestOf(data)), false);
  assert.equal(await uploadRecords(), 0);
});

test('bad input: a body cut short drops the session and leaves nothing staged', async () => {
  const location = await startUpload('ci/cut');
  const { port } = new URL(url);
  await new Promise<void>((resolve, reject) => {
    const sock = connect(Number(port), '127.0.0.1', () => {
      sock.write(`PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n`);
      sock.write(seededBytes('cut', 30000), () => setTimeout(() => { sock.destroy(); resolve(); }, 200));
    });
    sock.on('error', reject);
  });
  // The server notices the abort; the session goes with its bytes.
  for (let i = 0; i < 50 && (await call('GET', location)).status !== 404; i++) await new Promise((r) => setTimeout(r, 50));
  const status = await call('GET', location);
  assert.equal(status.status, 404);
  assert.equal(errorCode(status.text), 'BLOB_UPLOAD_UNKNOWN');
  assert.deepEqual(await spoolFiles(), []);
  assert.equal(await uploadRecords(), 0);
});

test('bad input: an upload session untouched for hosted.uploadTtl has expired and left nothing', async () => {
  const location = await startUpload('ci/expire');
  await call('PATCH', location, { body: seededBytes('exp', 1000), headers: { 'content-type': 'application/octet-stream' } });
  clock += 2 * 60 * 60 * 1000;
  try {
    const r = await call('PATCH', location, { body: seededBytes('exp2', 1000), headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(r.status, 404, r.text);
    assert.equal(errorCode(r.text), 'BLOB_UPLOAD_UNKNOWN');
    assert.match(r.text, /uploadTtl/);
  } finally {
    clock = Date.now();
  }
  assert.deepEqual(await spoolFiles(), []);
  assert.equal(await uploadRecords(), 0);
});

test('bad input: pushing to a mirrored name is 405 UNSUPPORTED naming the repositories setting', async () => {
  const before = rig.proxy.requests.length;
  const r = await call('POST', '/v2/library/base/blobs/uploads/');
  assert.equal(r.status, 405);
  assert.equal(errorCode(r.text), 'UNSUPPORTED');
  assert.match(r.text, /repositories/);
  const m = await call('PUT', '/v2/library/base/manifests/x', { body: base.manifest, headers: { 'content-type': base.mediaType } });
  assert.equal(m.status, 405);
  assert.equal(rig.proxy.requests.length, before, 'nothing went upstream');
});

test('bad input: a manifest over hosted.maxManifestSize is 413, and one naming a missing blob is MANIFEST_BLOB_UNKNOWN', async () => {
  const big = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', pad: 'x'.repeat(70 * 1024) }));
  const r = await call('PUT', '/v2/ci/big/manifests/latest', { body: big, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(r.status, 413, r.text);
  assert.equal(errorCode(r.text), 'SIZE_INVALID');
  assert.equal(await storeHas(digestOf(big)), false);

  const img = buildImage({ seed: 'missing-blob', layers: 1 });
  // Config pushed, layer not.
  await call('POST', `/v2/ci/missing/blobs/uploads/?digest=${img.configDigest}`, { body: img.config, headers: { 'content-type': 'application/octet-stream' } });
  const m = await call('PUT', '/v2/ci/missing/manifests/latest', { body: img.manifest, headers: { 'content-type': img.mediaType } });
  assert.equal(m.status, 400, m.text);
  assert.equal(errorCode(m.text), 'MANIFEST_BLOB_UNKNOWN');
  assert.equal(await storeHas(img.manifestDigest), false);
  assert.equal((await fetchManifest(url, 'ci/missing', 'latest')).status, 404);
});

test('manifest PUT by tag stores byte-exact; ?tag= adds tags; GET and HEAD answer it', async () => {
  const img = buildImage({ seed: 'put-tag', layers: 2 });
  const d = await pushAll('ci/app', 'one', img);
  const put = await call('PUT', `/v2/ci/app/manifests/${img.manifestDigest}?tag=two&tag=three`, { body: img.manifest, headers: { 'content-type': img.mediaType } });
  assert.equal(put.status, 201, put.text);
  assert.equal(h(put.headers, 'location'), `/v2/ci/app/manifests/${d}`);
  assert.equal(h(put.headers, 'docker-content-digest'), d);
  for (const tag of ['one', 'two', 'three', d]) {
    const m = await fetchManifest(url, 'ci/app', tag);
    assert.equal(m.status, 200);
    assert.ok(m.body.equals(img.manifest));
    assert.equal(m.mediaType, img.mediaType);
    assert.equal(m.digest, d);
  }
  const tags = await call('GET', '/v2/ci/app/tags/list');
  assert.deepEqual(JSON.parse(tags.text), { name: 'ci/app', tags: ['one', 'three', 'two'] });
  const page = await call('GET', '/v2/ci/app/tags/list?n=2');
  assert.deepEqual((JSON.parse(page.text) as { tags: string[] }).tags, ['one', 'three']);
  assert.match(h(page.headers, 'link') ?? '', /last=three/);
  const catalog = await call('GET', '/v2/_catalog');
  const repos = (JSON.parse(catalog.text) as { repositories: string[] }).repositories;
  assert.ok(repos.includes('ci/app'), repos.join(','));
  // Blobs of a hosted repository answer Range like cached ones.
  const layer = img.layers[1]!;
  const part = await call('GET', `/v2/ci/app/blobs/${layer.digest}`, { headers: { range: 'bytes=10-19' } });
  assert.equal(part.status, 206);
  assert.ok(part.body.equals(layer.data.subarray(10, 20)));
  // A request naming an upstream with ?ns= is about that upstream, not the hosted repository.
  const before = rig.proxy.requests.length;
  const viaNs = await call('GET', '/v2/ci/app/manifests/one?ns=docker.io', { headers: { accept: img.mediaType } });
  assert.equal(viaNs.status, 404, viaNs.text);
  assert.ok(rig.proxy.requests.length > before, 'asked the upstream');
});

test('an OCI index and a Docker manifest list: children must be held; non-manifest entries (a cache config) are accepted', async () => {
  for (const format of ['oci', 'docker'] as const) {
    const index = buildIndex({ seed: `idx-${format}`, format });
    const repo = `ci/index-${format}`;
    // Without the children: MANIFEST_BLOB_UNKNOWN.
    const early = await call('PUT', `/v2/${repo}/manifests/multi`, { body: index.manifest, headers: { 'content-type': index.mediaType } });
    assert.equal(early.status, 400, early.text);
    assert.equal(errorCode(early.text), 'MANIFEST_BLOB_UNKNOWN');
    for (const img of index.images) await pushImage(url, repo, null, img);
    await pushManifest(url, repo, 'multi', index.manifest, index.mediaType);
    const m = await fetchManifest(url, repo, 'multi');
    assert.ok(m.body.equals(index.manifest));
  }
  // A BuildKit-style cache index: an image entry plus an entry that is a plain blob.
  const img = buildImage({ seed: 'cache-img' });
  await pushImage(url, 'ci/cache', null, img);
  const cacheConfig = Buffer.from('{"layers":[],"records":[]}');
  await call('POST', `/v2/ci/cache/blobs/uploads/?digest=${digestOf(cacheConfig)}`, { body: cacheConfig, headers: { 'content-type': 'application/octet-stream' } });
  const cacheIndex = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { mediaType: img.mediaType, digest: img.manifestDigest, size: img.manifest.length },
      { mediaType: 'application/vnd.buildkit.cacheconfig.v0', digest: digestOf(cacheConfig), size: cacheConfig.length },
    ],
  }));
  const r = await call('PUT', '/v2/ci/cache/manifests/buildcache', { body: cacheIndex, headers: { 'content-type': 'application/vnd.oci.image.index.v1+json' } });
  assert.equal(r.status, 201, r.text);
});

test('hosted.immutableTags: a matching tag is never moved (DENIED); re-pushing the same digest is fine', async () => {
  const a = buildImage({ seed: 'immutable-a' });
  const b = buildImage({ seed: 'immutable-b' });
  await pushAll('ci/imm', 'v1.0', a);
  await pushAll('ci/imm', 'v1.0', a);
  await pushImage(url, 'ci/imm', null, b);
  const r = await call('PUT', '/v2/ci/imm/manifests/v1.0', { body: b.manifest, headers: { 'content-type': b.mediaType } });
  assert.equal(r.status, 403, r.text);
  assert.equal(errorCode(r.text), 'DENIED');
  assert.equal((await fetchManifest(url, 'ci/imm', 'v1.0')).digest, a.manifestDigest);
  // A tag outside the globs moves freely.
  await pushAll('ci/imm', 'latest', a);
  await pushAll('ci/imm', 'latest', b);
  assert.equal((await fetchManifest(url, 'ci/imm', 'latest')).digest, b.manifestDigest);
});

test('mount from a hosted repository and from a mirrored one is 201 without bytes; otherwise 202 and an upload', async () => {
  const img = buildImage({ seed: 'mount-src', layers: 1 });
  await pushAll('ci/src', 'latest', img);
  const layer = img.layers[0]!;
  const m1 = await call('POST', `/v2/ci/dst/blobs/uploads/?mount=${layer.digest}&from=ci/src`);
  assert.equal(m1.status, 201, m1.text);
  assert.equal(h(m1.headers, 'location'), `/v2/ci/dst/blobs/${layer.digest}`);
  assert.ok((await fetchBlob(url, 'ci/dst', layer.digest)).body.equals(layer.data));

  // Mirrored: pull library/base through Berth first, then mount its layer.
  const baseLayer = base.layers[0]!;
  const notCached = await call('POST', `/v2/ci/dst/blobs/uploads/?mount=${baseLayer.digest}&from=library/base`);
  assert.equal(notCached.status, 202, 'a blob the mirror has not cached is uploaded');
  assert.ok(h(notCached.headers, 'location')?.includes('/blobs/uploads/'));
  await call('DELETE', h(notCached.headers, 'location') as string);
  assert.equal((await fetchBlob(url, 'library/base', baseLayer.digest)).status, 200);
  const m2 = await call('POST', `/v2/ci/dst/blobs/uploads/?mount=${baseLayer.digest}&from=library/base`);
  assert.equal(m2.status, 201, m2.text);
  assert.ok((await fetchBlob(url, 'ci/dst', baseLayer.digest)).body.equals(baseLayer.data));

  // From a repository that does not hold it: an upload session instead.
  const m3 = await call('POST', `/v2/ci/dst/blobs/uploads/?mount=${layer.digest}&from=ci/nothing`);
  assert.equal(m3.status, 202);
  await call('DELETE', h(m3.headers, 'location') as string);
});

test('referrers: subject answered with OCI-Subject, listed as an index, filtered by artifactType; never 404', async () => {
  const img = buildImage({ seed: 'subject' });
  const subject = await pushAll('ci/ref', 'latest', img);
  const empty = Buffer.from('{}');
  await call('POST', `/v2/ci/ref/blobs/uploads/?digest=${digestOf(empty)}`, { body: empty, headers: { 'content-type': 'application/octet-stream' } });
  const sig = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: 'application/vnd.example.sig',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(empty), size: 2 },
    layers: [{ mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(empty), size: 2 }],
    subject: { mediaType: img.mediaType, digest: subject, size: img.manifest.length },
    annotations: { 'org.example': 'yes' },
  }));
  const put = await call('PUT', `/v2/ci/ref/manifests/${digestOf(sig)}`, { body: sig, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(put.status, 201, put.text);
  assert.equal(h(put.headers, 'oci-subject'), subject);
  const list = await call('GET', `/v2/ci/ref/referrers/${subject}`);
  assert.equal(list.status, 200);
  assert.equal(h(list.headers, 'content-type'), 'application/vnd.oci.image.index.v1+json');
  const idx = JSON.parse(list.text) as { manifests: { digest: string; artifactType: string; annotations: Record<string, string> }[] };
  assert.equal(idx.manifests.length, 1);
  assert.equal(idx.manifests[0]?.digest, digestOf(sig));
  assert.equal(idx.manifests[0]?.artifactType, 'application/vnd.example.sig');
  assert.equal(idx.manifests[0]?.annotations['org.example'], 'yes');
  const filtered = await call('GET', `/v2/ci/ref/referrers/${subject}?artifactType=application/vnd.other`);
  assert.equal(h(filtered.headers, 'oci-filters-applied'), 'artifactType');
  assert.equal((JSON.parse(filtered.text) as { manifests: unknown[] }).manifests.length, 0);
  const unknown = await call('GET', `/v2/ci/ref/referrers/${digestOf('nothing')}`);
  assert.equal(unknown.status, 200);
  assert.equal((JSON.parse(unknown.text) as { manifests: unknown[] }).manifests.length, 0);
});

test('tag delete, manifest delete and blob delete answer 202; GC then removes what nothing references', async () => {
  const img = buildImage({ seed: 'delete-me', layers: 1 });
  const d = await pushAll('ci/del', 'latest', img);
  await call('PUT', `/v2/ci/del/manifests/${d}?tag=keep`, { body: img.manifest, headers: { 'content-type': img.mediaType } });
  const tagDel = await call('DELETE', '/v2/ci/del/manifests/latest');
  assert.equal(tagDel.status, 202, tagDel.text);
  assert.equal((await fetchManifest(url, 'ci/del', 'latest')).status, 404);
  assert.equal((await fetchManifest(url, 'ci/del', 'keep')).status, 200);
  const lifecycle = rig.berth.services.lifecycle!;
  // Held by a hosted tag: GC with no grace keeps it all.
  await lifecycle.gc({ graceMs: 0 });
  assert.equal(await storeHas(img.layers[0]!.digest), true);
  assert.equal(await storeHas(d), true);
  const manDel = await call('DELETE', `/v2/ci/del/manifests/${d}`);
  assert.equal(manDel.status, 202);
  assert.equal((await fetchManifest(url, 'ci/del', 'keep')).status, 404, 'its tags went with it');
  const blobDel = await call('DELETE', `/v2/ci/del/blobs/${img.configDigest}`);
  assert.equal(blobDel.status, 202);
  assert.equal((await fetchBlob(url, 'ci/del', img.configDigest)).status, 404);
  // Dry run reports; the real run removes the manifest and the blobs only it named.
  const dry = await lifecycle.gc({ graceMs: 0, dryRun: true });
  assert.ok(dry.blobs >= 3, `dry run counts ${dry.blobs}`);
  assert.equal(await storeHas(d), true);
  await lifecycle.gc({ graceMs: 0 });
  assert.equal(await storeHas(d), false);
  assert.equal(await storeHas(img.layers[0]!.digest), false);
  assert.equal(await storeHas(img.configDigest), false);
  // Other hosted content is untouched.
  assert.equal((await fetchManifest(url, 'ci/app', 'one')).status, 200);
});

test('metrics count pushed bytes and open uploads', async () => {
  const location = await startUpload('ci/metrics');
  const m = await call('GET', '/metrics');
  assert.match(m.text, /berth_uploads_in_progress 1\b/);
  const pushed = /berth_push_bytes_total (\d+)/.exec(m.text);
  assert.ok(pushed && Number(pushed[1]) > 3 * 1024 * 1024, m.text.slice(0, 200));
  await call('DELETE', location);
  assert.match((await call('GET', '/metrics')).text, /berth_uploads_in_progress 0\b/);
});

test('no request in this file was answered with a 5xx, and nothing was left staged', async () => {
  const fivexx = rig.berth.logs().filter((l) => /"status":5\d\d/.test(l));
  assert.deepEqual(fivexx, []);
  assert.deepEqual(await spoolFiles(), []);
});
