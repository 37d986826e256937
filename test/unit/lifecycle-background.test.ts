// The index built in the background (CacheLifecycle.startInBackground), on the in-memory driver
// with the listing held back by a gate: a commit while it builds is counted, and writing access
// times meanwhile must not drop the persisted times of blobs the index has not listed yet (an
// access record is rewritten whole from the index).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Digest } from '../../src/oci/reference.js';
import type { BlobListing, ListBlobsOptions } from '../../src/storage/driver.js';
import { MemoryDriver } from '../../src/storage/memory.js';
import { CacheLifecycle } from '../../src/storage/lifecycle.js';
import { MetadataStore } from '../../src/storage/records.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { createLogger } from '../../src/log.js';
import { digestOf, seededBytes } from '../helpers/index.js';

test('while the index builds: a commit is counted, and an access flush keeps the persisted times of blobs not listed yet', async () => {
  const driver = new MemoryDriver();
  await driver.init();
  const meta = new MetadataStore(driver);
  // Two blobs whose access times live in the same record (same first digest byte).
  const bodies = new Map<string, Buffer>();
  let a: Digest | null = null;
  let b: Digest | null = null;
  for (let i = 0; b === null; i++) {
    const data = seededBytes(`lifecycle-background-${i}`, 100 + i);
    const d = digestOf(data);
    const shard = meta.accessShardOf(d);
    const other = [...bodies.keys()].find((k) => meta.accessShardOf(k) === shard);
    if (other !== undefined) {
      a = other as Digest;
      b = d;
    }
    bodies.set(d, data);
  }
  assert.ok(a);
  const aData = bodies.get(a) as Buffer;
  const bData = bodies.get(b) as Buffer;
  await driver.putBlobBuffer(a, aData);
  // Later than the blob's commit time (a later persisted time is the one loading keeps).
  const persisted = Date.now() + 60_000;
  await meta.putAccessShard(meta.accessShardOf(a), { [a]: persisted });

  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const list = driver.listBlobs.bind(driver);
  driver.listBlobs = async function* (_o?: ListBlobsOptions): AsyncIterable<BlobListing> {
    await gate;
    yield* list();
  };
  const lc = new CacheLifecycle({
    driver, meta, metrics: new Metrics({ defaults: false }), log: createLogger('silent'), maxSize: null, highWatermark: 0.9, lowWatermark: 0.5,
  });
  lc.startInBackground({ timers: false });
  assert.equal(lc.indexReady, false);

  // A fill commits b while the listing waits; then the flush timer would fire.
  await driver.putBlobBuffer(b, bData);
  lc.stored(b, bData.length, 'blob');
  assert.equal(lc.has(b), true, 'a commit is counted at once');
  await lc.flush();
  const during = JSON.parse((await driver.getMeta(meta.accessShardOf(a)))?.toString('utf8') ?? '{}') as Record<string, number>;
  assert.equal(during[a], persisted, 'the persisted time of a blob not listed yet is still there');

  open();
  await lc.ready();
  assert.equal(lc.indexReady, true);
  assert.equal(lc.bytes, aData.length + bData.length, 'each blob counted once');
  await lc.flush();
  const afterwards = JSON.parse((await driver.getMeta(meta.accessShardOf(a)))?.toString('utf8') ?? '{}') as Record<string, number>;
  assert.equal(afterwards[a], persisted, 'the loaded time is written back as it was');
  assert.equal(typeof afterwards[b], 'number', 'and the committed blob has its own');
  await lc.stop();
});
