// The pacing of passes over the whole store (src/storage/lifecycle/batch.ts) and the listing
// shortcuts they rely on: bounded concurrency that still runs everything and reports a failure,
// loops that hand the event loop back, the filesystem listing that takes known sizes instead of
// measuring, and the breadth-first record listing that finds every key at any depth.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { eachLimit, Pacer, YIELD_EVERY } from '../../src/storage/lifecycle/batch.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import type { Digest } from '../../src/oci/reference.js';
import { digestOf, makeTempDir, removeTempDir } from '../helpers/index.js';

test('eachLimit runs every item, never more than the limit at once, and rejects with the first failure after all settled', async () => {
  let running = 0;
  let peak = 0;
  const done: number[] = [];
  await eachLimit(Array.from({ length: 50 }, (_, i) => i), 4, async (i) => {
    running += 1;
    peak = Math.max(peak, running);
    await new Promise((r) => setImmediate(r));
    running -= 1;
    done.push(i);
  });
  assert.equal(peak, 4);
  assert.deepEqual([...done].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));

  const ran: number[] = [];
  await assert.rejects(
    eachLimit([1, 2, 3, 4, 5], 2, async (i) => {
      ran.push(i);
      if (i === 2) throw new Error('two failed');
    }),
    /two failed/,
  );
  assert.deepEqual(ran.sort(), [1, 2, 3, 4, 5], 'the others still ran');
});

test('a Pacer yields to the event loop once every YIELD_EVERY ticks', async () => {
  const pace = new Pacer();
  let immediates = 0;
  let yields = 0;
  const tick = (): void => {
    immediates += 1;
  };
  for (let i = 0; i < YIELD_EVERY * 3; i++) {
    setImmediate(tick);
    const p = pace.tick();
    if (p) {
      yields += 1;
      const before = immediates;
      await p;
      assert.ok(immediates > before, 'queued callbacks ran during the yield');
    }
  }
  assert.equal(yields, 3);
});

test('filesystem listBlobs: a known size is taken as given (no stat), unknown ones are measured; listMeta finds keys at every depth', async () => {
  const root = await makeTempDir('lifecycle-batch');
  try {
    const driver = new FilesystemDriver(root);
    await driver.init();
    const blobs = Array.from({ length: 40 }, (_, i) => Buffer.from(`blob ${i} `.padEnd(10 + i, '.')));
    const digests = blobs.map((b) => digestOf(b) as Digest);
    for (const [i, b] of blobs.entries()) await driver.putBlobBuffer(digests[i] as Digest, b);
    const known = new Map<string, number>(digests.slice(0, 20).map((d) => [d, 7]));

    const listed = new Map<string, { size: number; storedAt: number | null }>();
    for await (const b of driver.listBlobs({ knownSize: (d) => known.get(d) })) listed.set(b.digest, { size: b.size, storedAt: b.storedAt });
    assert.equal(listed.size, 40);
    for (const [i, d] of digests.entries()) {
      const l = listed.get(d);
      assert.ok(l);
      if (i < 20) assert.deepEqual(l, { size: 7, storedAt: null }, 'taken from the hint, not measured');
      else {
        assert.equal(l.size, blobs[i]?.length, 'measured');
        assert.equal(typeof l.storedAt, 'number');
      }
    }
    // Without the hint every size is measured.
    for await (const b of driver.listBlobs()) assert.equal(b.size, blobs[digests.indexOf(b.digest)]?.length);

    const keys = ['a', 'b/c', 'b/d/e', 'b/d/f/g/h', 'repos/x/y/_tags/v1'];
    for (const k of keys) await driver.putMeta(k, Buffer.from('{}'));
    // A temp file and a stray non-record are not keys.
    await mkdir(join(root, 'meta', 'b', 'd'), { recursive: true });
    await writeFile(join(root, 'meta', 'b', 'd', 'e.json.abc.tmp'), '');
    await writeFile(join(root, 'meta', 'b', 'notes.txt'), '');
    const all: string[] = [];
    for await (const k of driver.listMeta('')) all.push(k);
    assert.deepEqual(all.sort(), [...keys].sort());
    const under: string[] = [];
    for await (const k of driver.listMeta('b/')) under.push(k);
    assert.deepEqual(under.sort(), ['b/c', 'b/d/e', 'b/d/f/g/h']);
  } finally {
    await removeTempDir(root);
  }
});
