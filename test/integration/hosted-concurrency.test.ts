// Parallel pushes while GC runs in a loop (issue 14): 20 images sharing a base layer pushed at
// once into 20 hosted repositories, while garbage collection runs back to back. Every push that
// got 201 for its manifest pulls back complete, byte for byte, after GC has run again; with a
// grace period longer than a push, every push succeeds. A second round with no grace at all
// races GC against every blob between its upload and the manifest: pushes may then be refused
// (MANIFEST_BLOB_UNKNOWN), but never one answered 201 with content missing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { buildImage, fetchBlob, fetchManifest, pushBlob, seededBytes, digestOf, type BuiltImage } from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';

let berth: BerthHandle;

before(async () => {
  berth = await startBerth({
    upstreams: [upstreamOverride('http://127.0.0.1:9')],
    repositories: [{ match: 'ci/**', mode: 'hosted' }],
  });
});

after(async () => {
  await berth?.stop();
});

/** An image whose first layer is shared by every image of the round. */
function imageWithSharedBase(round: string, i: number, shared: { data: Buffer; digest: string }): BuiltImage {
  const own = buildImage({ seed: `${round}-${i}`, layers: [2048 + i * 100] });
  const layers = [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: shared.digest, size: shared.data.length, data: shared.data, diffId: shared.digest }, ...own.layers];
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) }, seed: `${round}-${i}` }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  }));
  return { ...own, layers, config, configDigest: digestOf(config), manifest, manifestDigest: digestOf(manifest), mediaType: 'application/vnd.oci.image.manifest.v1+json' };
}

/** Push blobs then the manifest; the manifest PUT's status (201 or the refusal). */
async function push(repo: string, img: BuiltImage): Promise<number> {
  for (const l of img.layers) await pushBlob(berth.url, repo, l.digest, l.data);
  await pushBlob(berth.url, repo, img.configDigest, img.config);
  const res = await request(`${berth.url}/v2/${repo}/manifests/latest`, {
    method: 'PUT', headers: { 'content-type': img.mediaType }, body: img.manifest,
  });
  await res.body.dump();
  return res.statusCode;
}

async function complete(repo: string, img: BuiltImage): Promise<void> {
  const m = await fetchManifest(berth.url, repo, 'latest');
  assert.equal(m.status, 200, `${repo}: manifest`);
  assert.ok(m.body.equals(img.manifest), `${repo}: manifest bytes`);
  for (const [d, data] of [[img.configDigest, img.config], ...img.layers.map((l) => [l.digest, l.data] as const)] as const) {
    const b = await fetchBlob(berth.url, repo, d);
    assert.equal(b.status, 200, `${repo}: ${d}`);
    assert.ok(b.body.equals(data), `${repo}: ${d} bytes`);
  }
}

async function round(name: string, graceMs: number): Promise<{ ok: number; refused: number; gcRuns: number }> {
  const lifecycle = berth.services.lifecycle!;
  const sharedData = seededBytes(`${name}-shared`, 200_000);
  const shared = { data: sharedData, digest: digestOf(sharedData) };
  const images = Array.from({ length: 20 }, (_, i) => imageWithSharedBase(name, i, shared));
  let running = true;
  let gcRuns = 0;
  const loop = (async () => {
    while (running) {
      await lifecycle.gc({ graceMs });
      gcRuns += 1;
      await new Promise((r) => setImmediate(r));
    }
  })();
  let statuses: number[];
  try {
    statuses = await Promise.all(images.map((img, i) => push(`ci/${name}-${i}`, img).catch(() => 0)));
  } finally {
    running = false;
    await loop;
  }
  // One more full collection after every push: what got 201 is held.
  await lifecycle.gc({ graceMs });
  let ok = 0;
  for (let i = 0; i < images.length; i++) {
    if (statuses[i] !== 201) continue;
    ok += 1;
    await complete(`ci/${name}-${i}`, images[i]!);
  }
  const refused = statuses.filter((s) => s !== 201);
  for (const s of refused) assert.ok(s === 400 || s === 0, `a refused push answers 400 (MANIFEST_BLOB_UNKNOWN), got ${s}`);
  return { ok, refused: refused.length, gcRuns };
}

test('20 parallel pushes sharing a layer, GC in a loop with a grace period: every push succeeds and pulls back complete', async (t) => {
  const r = await round('grace', 60_000);
  t.diagnostic(`201: ${r.ok}, refused: ${r.refused}, gc passes: ${r.gcRuns}`);
  assert.equal(r.ok, 20);
  assert.ok(r.gcRuns >= 1);
});

test('with no grace period GC races every upload: refused pushes are possible, a 201 with missing content never', async (t) => {
  const r = await round('nograce', 0);
  t.diagnostic(`201: ${r.ok}, refused: ${r.refused}, gc passes: ${r.gcRuns}`);
  assert.ok(r.gcRuns >= 1);
  assert.equal(r.ok + r.refused, 20);
});
