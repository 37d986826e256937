// Hosted content in the cache lifecycle (issue 14): the size cap never evicts it (mirrored content
// goes instead), and `berth gc` (a separate process on the same store) removes hosted blobs and
// manifests nothing references once past the grace period — `--dry-run` lists them and changes
// nothing — while tagged hosted images stay whole.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import {
  buildImage, digestOf, fetchBlob, fetchManifest, makeTempDir, pushImage, removeTempDir, seededBytes,
  startDistribution, type Distribution,
} from '../helpers/index.js';
import { startBerth, upstreamOverride } from '../helpers/berth.js';
import type { Digest } from '../../src/oci/reference.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';

let upstream: Distribution;

before(async () => {
  upstream = await startDistribution();
});

after(async () => {
  await upstream?.stop();
});

test('the size cap evicts mirrored images, never hosted ones (nor blobs pushed for a manifest still to come)', async () => {
  const mirrored = Array.from({ length: 4 }, (_, i) => buildImage({ seed: `cap-mirror-${i}`, layers: [200_000] }));
  for (const [i, img] of mirrored.entries()) await pushImage(upstream.url, `library/cap${i}`, 'latest', img);
  const b = await startBerth({
    upstreams: [upstreamOverride(upstream.url)],
    repositories: [{ match: 'ci/**', mode: 'hosted' }],
    storage: { maxSize: '700KiB' },
  });
  try {
    const hosted = buildImage({ seed: 'cap-hosted', layers: [300_000] });
    await pushImage(b.url, 'ci/keep', 'latest', hosted);
    const lone = seededBytes('cap-lone', 100_000);
    const r = await request(`${b.url}/v2/ci/keep/blobs/uploads/?digest=${digestOf(lone)}`, { method: 'POST', body: lone, headers: { 'content-type': 'application/octet-stream' } });
    await r.body.dump();
    assert.equal(r.statusCode, 201);
    // Pull every mirrored image through: far over the cap.
    for (const [i, img] of mirrored.entries()) {
      assert.equal((await fetchManifest(b.url, `library/cap${i}`, 'latest')).status, 200);
      for (const l of img.layers) assert.equal((await fetchBlob(b.url, `library/cap${i}`, l.digest)).status, 200);
    }
    const lifecycle = b.services.lifecycle!;
    await lifecycle.settled();
    await lifecycle.evict();
    const driver = b.services.driver;
    const present = async (d: string) => (await driver.statBlob(d as Digest)) !== null;
    let evicted = 0;
    for (const img of mirrored) if (!(await present(img.layers[0]!.digest))) evicted += 1;
    assert.ok(evicted >= 1, 'mirrored content was evicted to get under the cap');
    for (const d of [hosted.manifestDigest, hosted.configDigest, ...hosted.layers.map((l) => l.digest), digestOf(lone)]) {
      assert.ok(await present(d), `hosted ${d} kept`);
    }
    assert.ok((await fetchManifest(b.url, 'ci/keep', 'latest')).body.equals(hosted.manifest));
  } finally {
    await b.stop();
  }
});

test('berth gc --dry-run lists unreferenced hosted content and changes nothing; berth gc removes it and keeps tagged images', async () => {
  const dir = await makeTempDir('hosted-gc');
  const root = join(dir, 'data');
  const config = { storage: { root, deleteEnabled: true }, repositories: [{ match: 'ci/**', mode: 'hosted' }], upstreams: [upstreamOverride('http://127.0.0.1:9')] };
  // Pushed two hours "ago" (Berth's clock), so the CLI's grace period has passed for all of it.
  const past = Date.now() - 2 * 3600_000;
  const kept = buildImage({ seed: 'gc-kept', layers: [50_000] });
  const gone = buildImage({ seed: 'gc-gone', layers: [60_000] });
  const lone = seededBytes('gc-lone', 70_000);
  const b = await startBerth(config, { now: () => past, lifecycle: { now: () => past } });
  try {
    await pushImage(b.url, 'ci/kept', 'v1', kept);
    await pushImage(b.url, 'ci/gone', 'v1', gone);
    const del = await request(`${b.url}/v2/ci/gone/manifests/${gone.manifestDigest}`, { method: 'DELETE' });
    await del.body.dump();
    assert.equal(del.statusCode, 202);
    const r = await request(`${b.url}/v2/ci/gone/blobs/uploads/?digest=${digestOf(lone)}`, { method: 'POST', body: lone, headers: { 'content-type': 'application/octet-stream' } });
    await r.body.dump();
    assert.equal(r.statusCode, 201);
  } finally {
    await b.stop();
  }
  // The store's own times too (commit times stand in for last use where none was persisted).
  const old = new Date(past);
  const fs = new FilesystemDriver(root);
  for await (const blob of fs.listBlobs()) await utimes(fs.blobPath(blob.digest), old, old);
  try {
    const file = join(dir, 'berth.yaml');
    await writeFile(file, stringify(config));
    const cli = (args: string[]) => spawnSync(process.execPath, ['dist/src/cli.js', ...args, '--config', file], { env: { ...process.env, BERTH_CONFIG: '' }, encoding: 'utf8', timeout: 30_000 });
    const goneDigests = [gone.manifestDigest, gone.configDigest, ...gone.layers.map((l) => l.digest), digestOf(lone)].sort();
    const dry = cli(['gc', '--dry-run', '--json']);
    assert.equal(dry.status, 0, dry.stderr);
    const report = JSON.parse(dry.stdout) as { items: { digest: string }[] };
    assert.deepEqual(report.items.map((i) => i.digest).sort(), goneDigests);
    for (const d of goneDigests) assert.ok(await fs.statBlob(d as Digest), `the dry run left ${d}`);
    const real = cli(['gc']);
    assert.equal(real.status, 0, real.stderr);
    const after = await startBerth(config, { keepRoot: true });
    try {
      for (const d of goneDigests) assert.equal(await after.services.driver.statBlob(d as Digest), null, `${d} removed`);
      const m = await fetchManifest(after.url, 'ci/kept', 'v1');
      assert.ok(m.body.equals(kept.manifest));
      for (const l of kept.layers) assert.ok((await fetchBlob(after.url, 'ci/kept', l.digest)).body.equals(l.data));
    } finally {
      await after.stop();
    }
  } finally {
    await removeTempDir(dir);
  }
});

test('GC removes the hosted links to what it removes: a blob collected from A and pushed later into B is not served by A again', async () => {
  let clock = Date.now();
  const now = () => clock;
  const b = await startBerth(
    { upstreams: [upstreamOverride(upstream.url)], repositories: [{ match: 'ci/**', mode: 'hosted' }], storage: { deleteEnabled: true } },
    { now, lifecycle: { now } },
  );
  try {
    const img = buildImage({ seed: 'gc-dangling', layers: [40_000] });
    const x = img.layers[0]!.digest as Digest;
    await pushImage(b.url, 'ci/a', 'v1', img);
    const del = await request(`${b.url}/v2/ci/a/manifests/${img.manifestDigest}`, { method: 'DELETE' });
    await del.body.dump();
    assert.equal(del.statusCode, 202);
    const records = b.services.lifecycle!;
    const hostedRecords = b.services.mirror!.meta.hosted;
    assert.ok(await hostedRecords.getBlobLink('ci/a', x), 'A links X before GC');

    clock += 3600_000; // past the grace period
    const report = await records.gc();
    assert.ok(report.blobs >= 3, `GC removed the image's blobs (${report.blobs})`);
    assert.equal(await b.services.driver.statBlob(x), null, 'X removed from the store');
    assert.equal(await hostedRecords.getBlobLink('ci/a', x), null, "A's link to X went with it");

    // The same bytes pushed into another repository: B serves them, A does not.
    const layer = img.layers[0]!;
    const put = await request(`${b.url}/v2/ci/b/blobs/uploads/?digest=${x}`, { method: 'POST', body: layer.data, headers: { 'content-type': 'application/octet-stream' } });
    await put.body.dump();
    assert.equal(put.statusCode, 201);
    const inB = await request(`${b.url}/v2/ci/b/blobs/${x}`, { method: 'HEAD' });
    await inB.body.dump();
    assert.equal(inB.statusCode, 200);
    const head = await request(`${b.url}/v2/ci/a/blobs/${x}`, { method: 'HEAD' });
    await head.body.dump();
    assert.equal(head.statusCode, 404);
    const get = await request(`${b.url}/v2/ci/a/blobs/${x}`);
    assert.equal(get.statusCode, 404);
    const body = (await get.body.json()) as { errors: { code: string }[] };
    assert.equal(body.errors[0]?.code, 'BLOB_UNKNOWN');
  } finally {
    await b.stop();
  }
});

test('GC keeps a blob a hosted link made within the grace period (a mount on another replica), and repairs links to missing bytes', async () => {
  let clock = Date.now();
  const now = () => clock;
  const b = await startBerth(
    { upstreams: [upstreamOverride(upstream.url)], repositories: [{ match: 'ci/**', mode: 'hosted' }] },
    { now, lifecycle: { now } },
  );
  try {
    const kept = seededBytes('gc-fresh-link', 30_000);
    const lost = seededBytes('gc-lost-bytes', 20_000);
    for (const [repo, bytes] of [['ci/old', kept], ['ci/lost', lost]] as const) {
      const r = await request(`${b.url}/v2/${repo}/blobs/uploads/?digest=${digestOf(bytes)}`, { method: 'POST', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
      await r.body.dump();
      assert.equal(r.statusCode, 201);
    }
    clock += 3600_000;
    const hostedRecords = b.services.mirror!.meta.hosted;
    // Another replica mounted `kept` into ci/new just now: this process's access times never saw it.
    await hostedRecords.linkBlob('ci/new', digestOf(kept), clock);
    // `lost`'s bytes vanished under its link (a crash between GC's two steps).
    await b.services.driver.deleteBlob(digestOf(lost));
    const report = await b.services.lifecycle!.gc();
    assert.ok(await b.services.driver.statBlob(digestOf(kept)), 'the freshly linked blob stays');
    assert.ok(await hostedRecords.getBlobLink('ci/new', digestOf(kept)));
    assert.equal(await hostedRecords.getBlobLink('ci/lost', digestOf(lost)), null, 'the link to missing bytes is repaired');
    assert.ok(report.records >= 1);
    const head = await request(`${b.url}/v2/ci/new/blobs/${digestOf(kept)}`, { method: 'HEAD' });
    await head.body.dump();
    assert.equal(head.statusCode, 200);
  } finally {
    await b.stop();
  }
});
