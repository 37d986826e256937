// The cache index builds in the background (issue 16): `serve` answers /readyz and pulls from a
// store whose listing has not even begun, while eviction waits for the whole index; uses served
// meanwhile count once it is built (an image pulled during the build is the most recently used,
// not one of the oldest). The listing is held back by a gate on the driver, so the build is
// "still running" for exactly as long as the test says, whatever the machine's speed.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { fetchBlob, fetchManifest, freePort, makeTempDir, removeTempDir } from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { generateStore } from '../bench/scale-store.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import type { BlobListing, ListBlobsOptions } from '../../src/storage/driver.js';
import { getJson, lifecycleOf, storedBlobs } from './lifecycle-support.js';

let berth: BerthHandle | null = null;
let root = '';

after(async () => {
  await berth?.stop();
  if (root) await removeTempDir(root);
});

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** Resolves `p` or says it is still pending after the event loop has drained twice. */
async function pending(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  for (let i = 0; i < 2; i++) await new Promise((r) => setImmediate(r));
  return !done;
}

test('serve answers pulls while the index is still building; eviction waits for it; uses seen meanwhile count', async () => {
  root = await makeTempDir('lifecycle-index-build');
  const store = join(root, 'store');
  // 6 images of 10 blobs, oldest first (r0 is the oldest by commit time).
  const gen = generateStore(store, { blobs: 60, spreadMs: 6 * 3600_000 });
  const onDisk = await storedBlobs(store);
  const total = [...onDisk.values()].reduce((a, b) => a + b, 0);

  // The listing waits for the gate: the index cannot be built until the test opens it.
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let listings = 0;
  const driver = new FilesystemDriver(store);
  const list = driver.listBlobs.bind(driver);
  driver.listBlobs = async function* (o?: ListBlobsOptions): AsyncIterable<BlobListing> {
    listings += 1;
    await gate;
    yield* list(o);
  };

  // A cap that the whole store passes: once the index is built, eviction keeps about half of it.
  const maxSize = Math.floor(total * 0.6);
  berth = await startBerth(
    { storage: { root: store, maxSize }, upstreams: [upstreamOverride(`http://127.0.0.1:${await freePort()}`, { tagTtl: '24h' })] },
    { driver, prewarm: false },
  );
  const lc = lifecycleOf(berth);
  assert.equal(listings, 1, 'the build has started listing');
  assert.equal(lc.indexReady, false);

  const ready = await getJson(`${berth.url}/readyz`);
  assert.equal(ready.status, 200, 'ready while the index builds');
  const stats = await getJson(`${berth.url}/api/v1/cache`);
  assert.deepEqual(stats.json['index'], { state: 'building', ms: null });

  // The oldest image, pulled (manifest by tag and every blob) while nothing is indexed.
  const oldest = gen.images[0];
  assert.ok(oldest);
  const m = await fetchManifest(berth.url, oldest.name, oldest.tag);
  assert.equal(m.status, 200);
  assert.equal(sha256(m.body), oldest.digest);
  const manifest = JSON.parse(m.body.toString('utf8')) as { config: { digest: string }; layers: { digest: string }[] };
  const blobs = [manifest.config.digest, ...manifest.layers.map((l) => l.digest)];
  for (const d of blobs) {
    const b = await fetchBlob(berth.url, oldest.name, d);
    assert.equal(b.status, 200, `blob ${d}`);
    assert.equal(sha256(b.body), d);
  }

  // An eviction pass asked for now waits for the index (it would otherwise see an empty store).
  const evicting = lc.evict();
  assert.equal(await pending(evicting), true, 'eviction waits while the index builds');
  assert.equal(lc.indexReady, false);
  assert.equal((await storedBlobs(store)).size, onDisk.size, 'nothing removed before the index is built');

  open();
  const report = await evicting;
  await lc.settled();
  assert.equal(lc.indexReady, true);
  const after = await getJson(`${berth.url}/api/v1/cache`);
  assert.equal((after.json['index'] as { state: string }).state, 'ready');
  const left = await storedBlobs(store);
  const leftBytes = [...left.values()].reduce((a, b) => a + b, 0);
  assert.ok(leftBytes <= maxSize, `evicted down under the cap (${leftBytes} of ${maxSize})`);
  assert.ok(report.manifests >= 1, `whole images were evicted: ${JSON.stringify(report)}`);
  assert.equal(after.json['bytes'], leftBytes, 'the index counts exactly what is on disk');
  assert.equal(after.json['blobs'], left.size);
  // The pull during the build made the oldest image the most recently used: it stays, and the
  // next oldest (never pulled) went first.
  for (const d of [oldest.digest, ...blobs]) assert.ok(left.has(d), `pulled during the build, kept: ${d}`);
  const second = gen.images[1];
  assert.ok(second);
  assert.ok(!left.has(second.digest), 'the oldest image nobody pulled was evicted');
});
