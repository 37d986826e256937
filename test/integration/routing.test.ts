// Routing end to end against a real Distribution upstream behind a counting proxy: a request whose
// first path component is a registry host that is not configured is answered 404 NAME_UNKNOWN,
// exactly as the same request with ?ns= is, and the upstream sees nothing at all.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startDistribution, startFaultProxy, buildImage, pushImage, type Distribution, type FaultProxy } from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';

let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;

before(async () => {
  upstream = await startDistribution();
  // The repository exists upstream under the very name a mis-routed request would ask for.
  await pushImage(upstream.url, 'ghcr.io/org/app', 'v1', buildImage({ seed: 'routing-ghcr', layers: 1 }));
  await pushImage(upstream.url, 'org/app', 'v1', buildImage({ seed: 'routing-org', layers: 1 }));
  proxy = await startFaultProxy(upstream.url);
  berth = await startBerth({ upstreams: [upstreamOverride(proxy.url)] });
});

after(async () => {
  await berth?.stop();
  await proxy?.stop();
  await upstream?.stop();
});

async function get(path: string): Promise<{ status: number; code: string | undefined; message: string }> {
  const res = await request(`${berth.url}${path}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  const body = (await res.body.json()) as { errors?: { code: string; message: string }[] };
  return { status: res.statusCode, code: body.errors?.[0]?.code, message: body.errors?.[0]?.message ?? '' };
}

test('/v2/ghcr.io/org/app/... with no ghcr.io upstream is refused like ?ns=ghcr.io, and nothing reaches the upstream', async () => {
  proxy.reset();
  const byPath = await get('/v2/ghcr.io/org/app/manifests/v1');
  const byNs = await get('/v2/org/app/manifests/v1?ns=ghcr.io');
  assert.deepEqual([byPath.status, byPath.code], [404, 'NAME_UNKNOWN']);
  assert.deepEqual([byPath.status, byPath.code], [byNs.status, byNs.code]);
  assert.match(byPath.message, /"ghcr\.io".*not an upstream this mirror serves/);
  const blob = await get(`/v2/ghcr.io/org/app/blobs/sha256:${'a'.repeat(64)}`);
  assert.deepEqual([blob.status, blob.code], [404, 'NAME_UNKNOWN']);
  assert.equal(proxy.count(), 0, 'not forwarded to the default upstream as a repository named ghcr.io/org/app');
});

test('the same repository without the host prefix is still served from the default upstream', async () => {
  proxy.reset();
  const res = await request(`${berth.url}/v2/org/app/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  await res.body.dump();
  assert.equal(res.statusCode, 200);
  assert.ok(proxy.count() > 0);
});
