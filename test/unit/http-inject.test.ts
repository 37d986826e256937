// The HTTP surface with app.inject(): a mirror whose cache is seeded directly and whose only
// upstream refuses connections, so every answer here comes from Berth itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { createServices, type Services } from '../../src/app/serve.js';
import type { Digest } from '../../src/oci/reference.js';
import { makeTempDir, removeTempDir, freePort } from '../helpers/index.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;
const blob = Buffer.from('0123456789abcdefghij');
const blobDigest = sha(blob);
// The seeded repository holds the blob through its manifest: a cached blob is served only
// through a repository that holds it (src/registry/mirror-scope.ts), and the upstream is down.
const manifest = Buffer.from(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"${blobDigest}","size":${blob.length}}]}\n`);
const manifestDigest = sha(manifest);

let root: string;
let s: Services;

before(async () => {
  root = await makeTempDir('inject');
  const deadPort = await freePort(); // nothing listens here: connection refused
  const config = parseConfig({
    overrides: {
      storage: { root },
      upstreams: [{ name: 'docker.io', url: `http://127.0.0.1:${deadPort}`, tagTtl: '1h', maxFails: 1000 }],
      log: { level: 'silent' },
    },
  });
  s = await createServices(config, createLogger('silent'), { lifecycle: false, prewarm: false });
  await s.driver.putBlobBuffer(manifestDigest, manifest);
  await s.mirror.meta.putManifest(manifestDigest, { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: manifest.length });
  const now = Date.now();
  const rec = { digest: manifestDigest, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: manifest.length, fetchedAt: now, checkedAt: now };
  await s.mirror.meta.putTag('docker.io', 'library/seeded', 'fresh', rec);
  await s.mirror.meta.putTag('docker.io', 'library/seeded', 'old', { ...rec, checkedAt: now - 2 * 3600_000 });
  await s.mirror.meta.link('docker.io', 'library/seeded', manifestDigest, now);
  const staged = await s.driver.stage();
  await staged.write(blob);
  await staged.commit(blobDigest);
  await staged.close();
});

after(async () => {
  await s?.close();
  await removeTempDir(root);
});

test('GET /v2/ answers {} with the API version header', async () => {
  const r = await s.app.inject({ method: 'GET', url: '/v2/' });
  assert.equal(r.statusCode, 200);
  assert.equal(r.body, '{}');
  assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
});

test('a fresh tag is served from cache byte-exact with digest, type and length', async () => {
  const r = await s.app.inject({ method: 'GET', url: '/v2/seeded/manifests/fresh' });
  assert.equal(r.statusCode, 200);
  assert.ok(r.rawPayload.equals(manifest));
  assert.equal(r.headers['docker-content-digest'], manifestDigest);
  assert.equal(r.headers['content-type'], 'application/vnd.oci.image.manifest.v1+json');
  assert.equal(r.headers['content-length'], String(manifest.length));
  assert.equal(r.headers['warning'], undefined);
  const h = await s.app.inject({ method: 'HEAD', url: `/v2/library/seeded/manifests/${manifestDigest}` });
  assert.equal(h.statusCode, 200);
  assert.equal(h.headers['docker-content-digest'], manifestDigest);
  assert.equal(h.rawPayload.length, 0);
});

test('a tag past its TTL is served stale with Warning 110 when upstream refuses', async () => {
  const r = await s.app.inject({ method: 'GET', url: '/v2/library/seeded/manifests/old' });
  assert.equal(r.statusCode, 200);
  assert.equal(r.headers['warning'], '110 - "Response is Stale"');
  assert.equal(r.headers['docker-content-digest'], manifestDigest);
});

test('an uncached manifest with the upstream down is 503 UNAVAILABLE, not 500', async () => {
  const r = await s.app.inject({ method: 'GET', url: '/v2/library/unknown/manifests/latest' });
  assert.equal(r.statusCode, 503);
  assert.equal((r.json() as { errors: { code: string }[] }).errors[0]?.code, 'UNAVAILABLE');
});

test('cached blobs stream whole or by range', async () => {
  const r = await s.app.inject({ method: 'GET', url: `/v2/library/seeded/blobs/${blobDigest}` });
  assert.equal(r.statusCode, 200);
  assert.ok(r.rawPayload.equals(blob));
  assert.equal(r.headers['docker-content-digest'], blobDigest);
  const p = await s.app.inject({ method: 'GET', url: `/v2/library/seeded/blobs/${blobDigest}`, headers: { range: 'bytes=5-9' } });
  assert.equal(p.statusCode, 206);
  assert.equal(p.body, '56789');
  assert.equal(p.headers['content-range'], `bytes 5-9/${blob.length}`);
  const h = await s.app.inject({ method: 'HEAD', url: `/v2/library/seeded/blobs/${blobDigest}` });
  assert.equal(h.headers['content-length'], String(blob.length));
});

test('_catalog lists the seeded repository', async () => {
  const r = await s.app.inject({ method: 'GET', url: '/v2/_catalog' });
  assert.deepEqual(r.json(), { repositories: ['library/seeded'] });
});

test('health and readiness answer JSON', async () => {
  const health = await s.app.inject({ method: 'GET', url: '/healthz' });
  assert.equal(health.statusCode, 200);
  assert.equal((health.json() as { status: string }).status, 'ok');
  const ready = await s.app.inject({ method: 'GET', url: '/readyz' });
  assert.equal(ready.statusCode, 200);
  assert.equal((ready.json() as { status: string }).status, 'ready');
});

test('unknown paths and methods get OCI errors', async () => {
  const r = await s.app.inject({ method: 'GET', url: '/nothing-here' });
  assert.equal(r.statusCode, 404);
  assert.equal((r.json() as { errors: { code: string }[] }).errors[0]?.code, 'NAME_UNKNOWN');
  const p = await s.app.inject({ method: 'PATCH', url: '/v2/library/seeded/blobs/uploads/abc' });
  assert.equal(p.statusCode, 405);
  const bad = await s.app.inject({ method: 'GET', url: '/v2/library/seeded/manifests/%ZZ' });
  assert.ok(bad.statusCode >= 400 && bad.statusCode < 500, `got ${bad.statusCode}`);
});
