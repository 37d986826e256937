// Real clients through every upstream fault the cache can absorb: once an image is cached and its
// tag's tagTtl has passed, skopeo and containerd's ctr still pull it — the same digests, every
// blob verified by the client — while the upstream answers 429, 5xx, stalls past the headers
// timeout, resets connections, or moved the tag and then fails the GET of the new manifest.
// Each pull is checked to have met the fault (the revalidation reached the upstream and failed)
// and to have been answered stale.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  startDistribution, startFaultProxy, buildImage, pushImage, makeTempDir, removeTempDir,
  status, dockerHubRateLimit, latency, refuse, cutAfter,
  type Distribution, type FaultProxy, type FaultRule, type BuiltImage,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { ctrPull, readOciLayout, skopeoCopy, startContainerd, writeHostsToml, type Containerd } from '../helpers/clients.js';

const TTL = 60_000;

let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;
let cd: Containerd;
let work: string;
let hostsDir: string;
let image: BuiltImage;
let moved: BuiltImage;
let skew = 0;
const now = (): number => Date.now() + skew;

before(async () => {
  upstream = await startDistribution();
  image = buildImage({ seed: 'e2e-faults', layers: [4096, 200_000, 900_000] });
  await pushImage(upstream.url, 'library/app', '1.0', image);
  await pushImage(upstream.url, 'library/moving', '1.0', image);
  proxy = await startFaultProxy(upstream.url);
  berth = await startBerth({
    upstreams: [upstreamOverride(proxy.url, { tagTtl: '60s', headersTimeout: '500ms', bodyTimeout: '500ms', maxFails: 1000 })],
  }, { now });
  cd = await startContainerd();
  work = await makeTempDir('cache-faults');
  hostsDir = join(work, 'hosts');
  await writeHostsToml(hostsDir, 'docker.io', berth.url);
  // Warm the cache through both clients; then `moving` moves upstream to an image never cached.
  await pullWithSkopeo('library/app:1.0');
  await pullWithSkopeo('library/moving:1.0');
  await pullWithCtr('library/app:1.0');
  moved = buildImage({ seed: 'e2e-faults-moved', layers: 1 });
  await pushImage(upstream.url, 'library/moving', '1.0', moved);
});

after(async () => {
  await cd?.stop();
  await berth?.stop();
  await proxy?.stop();
  await upstream?.stop();
  if (work) await removeTempDir(work);
});

beforeEach(() => {
  proxy.setRules([]);
  proxy.reset();
});

let seq = 0;

async function pullWithSkopeo(ref: string): Promise<void> {
  const dir = join(work, `oci-${++seq}`);
  await skopeoCopy({ src: `docker://${berth.host}/${ref}`, dest: `oci:${dir}:pulled` });
  const layout = await readOciLayout(dir); // re-hashes every blob
  assert.deepEqual(layout.index.manifests?.map((m) => m.digest), [image.manifestDigest]);
  for (const d of [image.configDigest, ...image.layers.map((l) => l.digest)]) assert.ok(layout.blobs.has(d), `${d} copied`);
}

async function pullWithCtr(ref: string): Promise<void> {
  const pulled = await ctrPull(cd, `docker.io/${ref}`, { hostsDir, namespace: `faults-${++seq}` });
  assert.equal(pulled.image?.digest, image.manifestDigest);
  assert.deepEqual([...pulled.blobs].sort(), [image.configDigest, ...image.layers.map((l) => l.digest)].sort());
}

async function staleCount(): Promise<number> {
  const m = (await berth.services.metrics.registry.getSingleMetric('berth_cache_requests_total')?.get())?.values ?? [];
  return m.find((v) => v.labels['kind'] === 'manifest' && v.labels['result'] === 'stale')?.value ?? 0;
}

const getManifest = { match: { kind: 'manifest' as const, method: 'GET' } };

const FAULTS: { name: string; repo: string; rules: FaultRule[] }[] = [
  { name: 'a 429 pull limit', repo: 'library/app', rules: [dockerHubRateLimit({ retryAfter: 1 })] },
  { name: '503', repo: 'library/app', rules: [status(503)] },
  { name: 'no headers within headersTimeout', repo: 'library/app', rules: [latency(2_000, { match: { kind: 'manifest' } })] },
  { name: 'reset connections', repo: 'library/app', rules: [refuse()] },
  { name: 'a moved tag whose new manifest GET answers 500', repo: 'library/moving', rules: [status(500, {}, getManifest)] },
  { name: 'a moved tag whose new manifest is cut mid-body', repo: 'library/moving', rules: [cutAfter(10, getManifest)] },
];

for (const fault of FAULTS) {
  for (const client of ['skopeo', 'ctr'] as const) {
    test(`${client} pulls a cached image while the upstream fails with ${fault.name}`, async () => {
      skew += TTL + 1_000;
      proxy.setRules(fault.rules);
      const before = await staleCount();
      if (client === 'skopeo') await pullWithSkopeo(`${fault.repo}:1.0`);
      else await pullWithCtr(`${fault.repo}:1.0`);
      assert.ok(proxy.count({ kind: 'manifest' }) >= 1, 'the revalidation reached the upstream');
      assert.ok(await staleCount() > before, 'and was answered stale');
    });
  }
}
