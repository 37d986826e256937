// Manifests are validated before they are stored (issue 18 item 9). A real Distribution holds
// the good images; the fault proxy in front of it answers manifest requests with what a broken
// upstream or a misconfigured CDN sends (a gzip body, an index called an image manifest, a by-tag
// answer without Docker-Content-Digest). The client gets 502 naming the upstream, nothing lands
// in the store, and a tag that had a good manifest is still served, marked stale.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import {
  buildImage, pushImage, fetchManifest, digestOf, status, responseHeaders, MediaTypes,
  type Distribution, type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';
import { storedBlobs } from './lifecycle-support.js';

let rig: Rig;
let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;
let skew = 0;
const now = (): number => Date.now() + skew;
let good: BuiltImage;

before(async () => {
  rig = await startRig({ upstreams: { 'docker.io': { tagTtl: '10s' } }, berthOptions: { now } });
  ({ upstream, proxy, berth } = rig);
  good = buildImage({ seed: 'validate-good', layers: 1 });
  await pushImage(upstream.url, 'library/good', 'v1', good);
});

after(async () => {
  await rig?.stop();
});

beforeEach(() => {
  rig.resetProxy();
});

function ociError(body: Buffer): { code: string; message: string } {
  const doc = JSON.parse(body.toString('utf8')) as { errors: { code: string; message: string }[] };
  const e = doc.errors[0];
  assert.ok(e, body.toString());
  return e;
}

test('a gzip body sent as a manifest by tag is a 502 naming the upstream, and nothing is stored', async () => {
  const gz = gzipSync(good.manifest);
  proxy.setRules([status(200, { headers: { 'content-type': MediaTypes.ociManifest, 'docker-content-digest': digestOf(gz) }, body: gz }, { match: { kind: 'manifest' } })]);
  const m = await fetchManifest(berth.url, 'library/gzipped', 'v1');
  assert.equal(m.status, 502, m.body.toString());
  const e = ociError(m.body);
  assert.match(e.message, /docker\.io sent an invalid manifest for library\/gzipped@sha256:[0-9a-f]{64}: the body is not JSON/);
  assert.ok(!(await storedBlobs(berth.root)).has(digestOf(gz)), 'the gzip body was not stored');
  assert.deepEqual(await berth.services.mirror.meta.listTags('docker.io', 'library/gzipped'), []);
  assert.equal(await berth.services.mirror.meta.getManifest(digestOf(gz)), null);
});

test('by digest: bytes that hash right but are not a manifest of the declared type are refused', async () => {
  // The digest the client asks for is the digest of these very bytes: only validation can refuse them.
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [] }));
  const d = digestOf(index);
  proxy.setRules([status(200, { headers: { 'content-type': MediaTypes.ociManifest }, body: index }, { match: { kind: 'manifest' } })]);
  const m = await fetchManifest(berth.url, 'library/liar', d);
  assert.equal(m.status, 502);
  assert.match(ociError(m.body).message, /declared application\/vnd\.oci\.image\.manifest\.v1\+json, but the body says mediaType application\/vnd\.oci\.image\.index\.v1\+json/);
  assert.ok(!(await storedBlobs(berth.root)).has(d));
  // The refusal is not remembered as content: once the upstream is right, the same digest is fetched and served.
  proxy.setRules([status(200, { headers: { 'content-type': MediaTypes.ociIndex }, body: index }, { match: { kind: 'manifest' } })]);
  const ok = await fetchManifest(berth.url, 'library/liar', d);
  assert.equal(ok.status, 200, ok.body.toString());
  assert.equal(ok.mediaType, MediaTypes.ociIndex);
});

test('a by-tag answer without Docker-Content-Digest is stored only when it is a valid manifest', async () => {
  // Valid: HEAD and GET carry no digest header; the body is a real manifest, so it is accepted.
  proxy.setRules([responseHeaders({ 'docker-content-digest': null }, { match: { kind: 'manifest' } })]);
  const ok = await fetchManifest(berth.url, 'library/good', 'v1');
  assert.equal(ok.status, 200, ok.body.toString());
  assert.equal(ok.digest, good.manifestDigest);
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 1, 'learned the digest by GET');

  // Past tagTtl the upstream answers garbage without a digest: the last good manifest is served stale.
  skew += 11_000;
  proxy.reset();
  const html = Buffer.from('<html><body>502 Bad Gateway</body></html>');
  proxy.setRules([status(200, { headers: { 'content-type': 'text/plain' }, body: html }, { match: { kind: 'manifest' } })]);
  const stale = await fetchManifest(berth.url, 'library/good', 'v1');
  assert.equal(stale.status, 200);
  assert.equal(stale.digest, good.manifestDigest);
  assert.equal(digestOf(stale.body), good.manifestDigest);
  assert.equal(stale.headers['warning'], '110 - "Response is Stale"');
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 1, 'the GET by tag was tried');
  assert.ok(!(await storedBlobs(berth.root)).has(digestOf(html)), 'the HTML was not stored');
  const rec = await berth.services.mirror.meta.getTag('docker.io', 'library/good', 'v1');
  assert.equal(rec?.digest, good.manifestDigest, 'the tag still names the good manifest');

  // No good manifest to fall back on: 502.
  const cold = await fetchManifest(berth.url, 'library/never', 'v1');
  assert.equal(cold.status, 502);
  assert.match(ociError(cold.body).message, /docker\.io sent an invalid manifest for library\/never:v1: the body is not JSON/);
});
