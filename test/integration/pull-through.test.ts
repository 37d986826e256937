// The foundation, against a real upstream: Distribution (Debian's docker-registry) seeded by our
// own image builder, with a counting/fault-injecting proxy between Berth and it.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  startBlobCdn, buildImage, buildIndex, pushImage, pushIndex, fetchManifest, fetchBlob,
  cutAfter, flipByte, redirectBlobs, digestOf, MediaTypes, type Distribution, type FaultProxy, type BuiltImage, type BuiltIndex,
} from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';

let rig: Rig;
let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;
let single: BuiltImage;
let ociIndex: BuiltIndex;
let dockerList: BuiltIndex;
let other: BuiltImage;

before(async () => {
  single = buildImage({ seed: 'pull-single', layers: [2048, 70_000, 300_000] });
  ociIndex = buildIndex({ seed: 'pull-oci-index', format: 'oci', layers: 2 });
  dockerList = buildIndex({ seed: 'pull-docker-list', format: 'docker', layers: 2 });
  other = buildImage({ seed: 'pull-other', layers: 1 });
  rig = await startRig({
    seed: async (registry) => {
      await pushImage(registry.url, 'library/single', '1.0', single);
      await pushImage(registry.url, 'library/single', '0.9', single);
      await pushImage(registry.url, 'library/single', '2.0-rc', single);
      await pushIndex(registry.url, 'library/multi', 'oci', ociIndex);
      await pushIndex(registry.url, 'library/multi', 'list', dockerList);
      await pushImage(registry.url, 'org/app', 'v1', other);
    },
    upstreams: { 'docker.io': { tagTtl: '1h' }, 'ghcr.io': { tagTtl: '1h' } },
  });
  ({ upstream, proxy, berth } = rig);
});

after(async () => {
  await rig?.stop();
});

beforeEach(() => {
  rig.resetProxy();
});

async function get(path: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') {
  const res = await request(`${berth.url}${path}`, { method, headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body, json: () => JSON.parse(body.toString()) as Record<string, unknown> };
}

async function pullImage(repo: string, ref: string, img: BuiltImage): Promise<void> {
  const m = await fetchManifest(berth.url, repo, ref);
  assert.equal(m.status, 200, `manifest ${repo}:${ref}: ${m.body.toString()}`);
  assert.equal(m.digest, img.manifestDigest);
  assert.equal(digestOf(m.body), img.manifestDigest);
  for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) {
    const b = await fetchBlob(berth.url, repo, d);
    assert.equal(b.status, 200, `blob ${d}`);
    assert.equal(digestOf(b.body), d);
  }
}

test('pulls a single image by tag byte-exact, and a second pull makes zero upstream blob requests', async () => {
  await pullImage('library/single', '1.0', single);
  assert.equal(proxy.count({ kind: 'blob' }), 4, 'one upstream GET per blob on the cold pull');
  proxy.reset();
  await pullImage('library/single', '1.0', single);
  assert.equal(proxy.count({ kind: 'blob' }), 0, 'warm pull: no upstream blob requests');
  assert.equal(proxy.count(), 0, 'tag within tagTtl: no upstream requests at all');
});

test('manifest responses carry the stored media type, digest, ETag and length; HEAD has no body', async () => {
  const g = await fetchManifest(berth.url, 'library/single', '1.0');
  assert.equal(g.mediaType, MediaTypes.ociManifest);
  assert.equal(g.headers['etag'], `"${single.manifestDigest}"`);
  assert.equal(g.headers['docker-distribution-api-version'], 'registry/2.0');
  assert.equal(g.headers['oci-namespace'], 'docker.io');
  const h = await fetchManifest(berth.url, 'library/single', single.manifestDigest, { method: 'HEAD' });
  assert.equal(h.status, 200);
  assert.equal(h.body.length, 0);
  assert.equal(h.headers['content-length'], String(single.manifest.length));
  assert.equal(h.digest, single.manifestDigest);
  const nm = await get(`/v2/library/single/manifests/1.0`, { 'if-none-match': `"${single.manifestDigest}"`, accept: MediaTypes.ociManifest });
  assert.equal(nm.status, 304);
});

test('one-component names get library/ and share the cache entry; ?ns= does not enter the key', async () => {
  await pullImage('library/single', '1.0', single);
  proxy.reset();
  await pullImage('single', '1.0', single);
  const r = await get(`/v2/library/single/manifests/1.0?ns=docker.io`);
  assert.equal(r.status, 200);
  assert.equal(r.headers['oci-namespace'], 'docker.io');
  assert.equal(proxy.count(), 0, 'same cache entry whatever the spelling');
});

test('OCI index and Docker manifest list come through byte-exact with every child', async () => {
  for (const [tag, idx] of [['oci', ociIndex], ['list', dockerList]] as const) {
    const m = await fetchManifest(berth.url, 'library/multi', tag);
    assert.equal(m.status, 200);
    assert.equal(m.mediaType, idx.mediaType);
    assert.ok(m.body.equals(idx.manifest), 'index bytes are the upstream bytes');
    for (const img of idx.images) await pullImage('library/multi', img.manifestDigest, img);
  }
});

test('a client that accepts no manifest lists gets the linux/amd64 image of a list by tag; an OCI index is a 404 for it', async () => {
  const amd = dockerList.images.find((i) => i.platform.architecture === 'amd64');
  assert.ok(amd);
  const m = await fetchManifest(berth.url, 'library/multi', 'list', { accept: MediaTypes.dockerManifest });
  assert.equal(m.status, 200);
  assert.equal(m.digest, amd.manifestDigest);
  const o = await fetchManifest(berth.url, 'library/multi', 'oci', { accept: MediaTypes.dockerManifest });
  assert.equal(o.status, 404);
  assert.equal((JSON.parse(o.body.toString()) as { errors: { code: string }[] }).errors[0]?.code, 'MANIFEST_UNKNOWN');
});

test('a leading path component naming another upstream routes there; an unknown ns is refused and never forwarded', async () => {
  const m = await fetchManifest(berth.url, 'ghcr.io/org/app', 'v1');
  assert.equal(m.status, 200);
  assert.equal(m.headers['oci-namespace'], 'ghcr.io');
  assert.equal(m.digest, other.manifestDigest);
  proxy.reset();
  const r = await get('/v2/org/app/manifests/v1?ns=evil.example.com');
  assert.equal(r.status, 404);
  assert.equal((r.json().errors as { code: string }[])[0]?.code, 'NAME_UNKNOWN');
  assert.equal(proxy.count(), 0);
});

test('blob Range requests: 206 with Content-Range, open-ended resume, 416 beyond the end', async () => {
  const layer = single.layers[2];
  assert.ok(layer);
  await fetchBlob(berth.url, 'library/single', layer.digest);
  const r = await get(`/v2/library/single/blobs/${layer.digest}`, { range: 'bytes=100-199' });
  assert.equal(r.status, 206);
  assert.equal(r.headers['content-range'], `bytes 100-199/${layer.size}`);
  assert.ok(r.body.equals(layer.data.subarray(100, 200)));
  const resume = await get(`/v2/library/single/blobs/${layer.digest}`, { range: 'bytes=1000-' });
  assert.equal(resume.status, 206);
  assert.ok(resume.body.equals(layer.data.subarray(1000)));
  const bad = await get(`/v2/library/single/blobs/${layer.digest}`, { range: `bytes=${layer.size + 10}-` });
  assert.equal(bad.status, 416);
  assert.equal(bad.headers['content-range'], `bytes */${layer.size}`);
  assert.equal((bad.json().errors as { code: string }[])[0]?.code, 'RANGE_INVALID');
});

test('a corrupted upstream blob never lands in the cache, and the next pull succeeds', async () => {
  const img = buildImage({ seed: 'corrupt-me', layers: [200_000] });
  await pushImage(upstream.url, 'library/corrupt', 'v1', img);
  const layer = img.layers[0];
  assert.ok(layer);
  proxy.setRules([flipByte(5000, { match: { kind: 'blob' }, times: 1 })]);
  assert.equal(await downloadFails(`/v2/library/corrupt/blobs/${layer.digest}`), true, 'cut short, never completed with wrong bytes');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await blobFileCount(layer.digest), 0, 'nothing stored under the digest');
  const good = await fetchBlob(berth.url, 'library/corrupt', layer.digest);
  assert.equal(good.status, 200);
  assert.equal(digestOf(good.body), layer.digest);
  assert.equal(proxy.count({ kind: 'blob' }), 2);
});

test('a blob cut mid-stream upstream fails the client cleanly, leaves nothing, and the next pull succeeds', async () => {
  const img = buildImage({ seed: 'cut-me', layers: [500_000] });
  await pushImage(upstream.url, 'library/cut', 'v1', img);
  const layer = img.layers[0];
  assert.ok(layer);
  proxy.setRules([cutAfter(100_000, { match: { kind: 'blob' }, times: 1 })]);
  assert.equal(await downloadFails(`/v2/library/cut/blobs/${layer.digest}`), true);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await blobFileCount(layer.digest), 0);
  assert.deepEqual(await readdir(join(berth.root, 'spool')), [], 'no spool file left behind');
  const good = await fetchBlob(berth.url, 'library/cut', layer.digest);
  assert.equal(digestOf(good.body), layer.digest);
});

test('a client that disconnects does not cancel the cache fill', async () => {
  const img = buildImage({ seed: 'abandon', layers: [3_000_000], compression: 'none' });
  await pushImage(upstream.url, 'library/abandon', 'v1', img);
  const layer = img.layers[0];
  assert.ok(layer);
  proxy.setRules([{ action: 'latency', ms: 200, match: { kind: 'blob' } }]);
  const ac = new AbortController();
  const res = await request(`${berth.url}/v2/library/abandon/blobs/${layer.digest}`, { signal: ac.signal });
  ac.abort();
  await res.body.arrayBuffer().catch(() => undefined);
  for (let i = 0; i < 50 && (await blobFileCount(layer.digest)) === 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await blobFileCount(layer.digest), 1, 'the fill completed and committed');
  proxy.reset();
  const again = await fetchBlob(berth.url, 'library/abandon', layer.digest);
  assert.equal(digestOf(again.body), layer.digest);
  assert.equal(proxy.count({ kind: 'blob' }), 0);
});

test('blob redirects are followed without sending Authorization to the other host', async () => {
  const cdn = await startBlobCdn(upstream.url);
  try {
    const img = buildImage({ seed: 'via-cdn', layers: [50_000] });
    await pushImage(upstream.url, 'library/cdn', 'v1', img);
    proxy.setRules([redirectBlobs(cdn.url)]);
    const layer = img.layers[0];
    assert.ok(layer);
    const b = await fetchBlob(berth.url, 'library/cdn', layer.digest);
    assert.equal(b.status, 200);
    assert.equal(digestOf(b.body), layer.digest);
    assert.ok(cdn.requests.length >= 1);
    assert.ok(cdn.requests.every((r) => !r.authorization), 'no Authorization crossed hosts');
  } finally {
    await cdn.stop();
  }
});

test('tags/list is sorted and paginated with n/last and a Link header', async () => {
  const all = await get('/v2/library/single/tags/list');
  assert.equal(all.status, 200);
  assert.deepEqual(all.json(), { name: 'library/single', tags: ['0.9', '1.0', '2.0-rc'] });
  const p1 = await get('/v2/library/single/tags/list?n=2');
  assert.deepEqual(p1.json().tags, ['0.9', '1.0']);
  assert.equal(p1.headers['link'], '</v2/library/single/tags/list?last=1.0&n=2>; rel="next"');
  const p2 = await get('/v2/library/single/tags/list?n=2&last=1.0');
  assert.deepEqual(p2.json().tags, ['2.0-rc']);
  assert.equal(p2.headers['link'], undefined);
  const zero = await get('/v2/library/single/tags/list?n=0');
  assert.deepEqual(zero.json().tags, []);
  const bad = await get('/v2/library/single/tags/list?n=-1');
  assert.equal(bad.status, 400);
});

test('_catalog lists cached repositories with pagination', async () => {
  await pullImage('library/single', '1.0', single);
  const c = await get('/v2/_catalog');
  const repos = c.json().repositories as string[];
  assert.ok(repos.includes('library/single'));
  assert.ok(repos.includes('ghcr.io/org/app'));
  assert.deepEqual(repos, [...repos].sort());
  const p = await get('/v2/_catalog?n=1');
  assert.equal((p.json().repositories as string[]).length, 1);
  assert.match(String(p.headers['link']), /^<\/v2\/_catalog\?last=.+&n=1>; rel="next"$/);
  assert.equal((await get('/v2/_catalog?n=5000')).status, 400);
});

test('bad input gets precise OCI errors, never a 500', async () => {
  const cases: [string, string, number, string][] = [
    ['GET', '/v2/Bad_Name/manifests/latest', 400, 'NAME_INVALID'],
    ['GET', '/v2/library/single/manifests/.INVALID_MANIFEST_NAME', 404, 'MANIFEST_UNKNOWN'],
    ['GET', '/v2/library/single/manifests/sha256:totallywrong', 400, 'DIGEST_INVALID'],
    ['GET', '/v2/library/single/blobs/sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9', 404, 'BLOB_UNKNOWN'],
    ['GET', '/v2/library/single/blobs/md5:abc', 400, 'DIGEST_INVALID'],
    ['POST', '/v2/library/single/blobs/uploads/', 405, 'UNSUPPORTED'],
    ['PUT', '/v2/library/single/manifests/1.0', 405, 'UNSUPPORTED'],
    ['DELETE', '/v2/library/single/manifests/1.0', 405, 'UNSUPPORTED'],
    ['GET', '/v2/library/nope/manifests/latest', 404, 'MANIFEST_UNKNOWN'],
    ['GET', '/v2/library/single/other', 404, 'NAME_UNKNOWN'],
  ];
  for (const [method, path, status, code] of cases) {
    const res = await request(`${berth.url}${path}`, { method: method as 'GET' });
    const body = await res.body.text();
    assert.equal(res.statusCode, status, `${method} ${path}: ${body}`);
    assert.equal((JSON.parse(body) as { errors: { code: string }[] }).errors[0]?.code, code, `${method} ${path}`);
    assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
  }
  const head = await get('/v2/library/single/blobs/sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9', {}, 'HEAD');
  assert.equal(head.status, 404);
});

test('an uncached pull while upstream is unreachable answers 503 UNAVAILABLE and the mirror keeps serving', async () => {
  proxy.setRules([{ action: 'refuse' }]);
  const r = await get('/v2/library/never-seen/manifests/latest');
  assert.equal(r.status, 503);
  assert.equal((r.json().errors as { code: string }[])[0]?.code, 'UNAVAILABLE');
  proxy.setRules([]);
  assert.equal((await get('/healthz')).status, 200);
  assert.equal((await fetchManifest(berth.url, 'library/single', single.manifestDigest)).status, 200);
});

/** True when a download does not complete with a 200 and its whole body. */
async function downloadFails(path: string): Promise<boolean> {
  try {
    const res = await request(`${berth.url}${path}`);
    if (res.statusCode !== 200) {
      await res.body.dump();
      return true;
    }
    await res.body.arrayBuffer();
    return false;
  } catch {
    return true;
  }
}

async function blobFileCount(digest: string): Promise<number> {
  const hex = digest.slice('sha256:'.length);
  try {
    const files = await readdir(join(berth.root, 'blobs', 'sha256', hex.slice(0, 2)));
    return files.filter((f) => f === hex).length;
  } catch {
    return 0;
  }
}
