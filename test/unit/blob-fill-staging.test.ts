// A blob fill over the storage-owned staging API, on each driver: joined readers stream the staged
// bytes while the fill runs (whatever their range), the verified blob lands in the store, and a
// body whose bytes do not match fails every reader short of the full length and leaves nothing
// staged or stored.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Readable } from 'node:stream';
import { BlobFill } from '../../src/registry/blob-fill.js';
import type { StorageDriver } from '../../src/storage/driver.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import { MemoryDriver } from '../../src/storage/memory.js';
import { digestOf, makeTempDir, removeTempDir, seededBytes } from '../helpers/index.js';

const drivers: { name: string; open(): Promise<{ driver: StorageDriver; close(): Promise<void> }> }[] = [
  {
    name: 'filesystem',
    async open() {
      const root = await makeTempDir('fill-staging');
      const driver = new FilesystemDriver(root);
      await driver.init();
      return { driver, close: () => removeTempDir(root) };
    },
  },
  {
    name: 'memory',
    async open() {
      const driver = new MemoryDriver();
      await driver.init();
      return { driver, close: async () => undefined };
    },
  },
];

/** A body that sends `first`, waits for `release`, then sends `rest`. */
function gatedBody(first: Buffer, rest: Buffer): { body: AsyncIterable<Buffer>; release(): void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  async function* body(): AsyncGenerator<Buffer> {
    yield first;
    await gate;
    yield rest;
  }
  return { body: body(), release };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Everything a reader got before it ended or failed. */
async function readUntilEnd(stream: Readable): Promise<{ bytes: number; error: Error | null }> {
  let bytes = 0;
  try {
    for await (const c of stream) bytes += (c as Buffer).length;
    return { bytes, error: null };
  } catch (err) {
    return { bytes, error: err as Error };
  }
}

for (const d of drivers) {
  describe(`blob fill over ${d.name} staging`, () => {
    it('joined readers stream bytes before the download ends; the verified blob is committed', async () => {
      const { driver, close } = await d.open();
      try {
        const data = seededBytes('fill-staging', 700_000);
        const digest = digestOf(data);
        const cut = 400_000; // past the readers' wake-up step, so they are woken mid-fill
        const { body, release } = gatedBody(data.subarray(0, cut), data.subarray(cut));
        const fill = await BlobFill.create(digest, 'test', data.length, driver);
        const whole = fill.reader();
        const range = fill.reader(350_000, 450_000);
        let counted = 0;
        const running = fill.run(body, (n) => (counted += n));

        // The first part arrives while the upstream still holds the rest back.
        const it = whole[Symbol.asyncIterator]();
        const early: Buffer[] = [];
        let got = 0;
        while (got < cut) {
          const next = await it.next();
          assert.equal(next.done, false, 'the reader does not end before the fill');
          early.push(next.value as Buffer);
          got += (next.value as Buffer).length;
        }
        assert.equal(fill.state, 'running', 'those bytes were served before the download ended');
        release();
        for (let next = await it.next(); !next.done; next = await it.next()) early.push(next.value as Buffer);
        await running;

        assert.ok(Buffer.concat(early).equals(data), 'the whole reader got exactly the blob');
        assert.ok((await readAll(range)).equals(data.subarray(350_000, 450_001)), 'the range reader got its inclusive range');
        assert.equal(fill.state, 'done');
        assert.equal(counted, data.length);
        assert.deepEqual(await driver.statBlob(digest), { size: data.length });
        assert.ok((await driver.readBlobBuffer(digest))?.equals(data));
        assert.deepEqual(await driver.sweepStaging(-60_000, true), { files: 0, bytes: 0 }, 'nothing is left staged');
      } finally {
        await close();
      }
    });

    it('bytes that do not match the digest fail every reader before the last byte and leave nothing behind', async () => {
      const { driver, close } = await d.open();
      try {
        const data = seededBytes('fill-staging-good', 300_000);
        const digest = digestOf(data);
        const wrong = Buffer.from(data);
        wrong[wrong.length - 1] = (wrong[wrong.length - 1] ?? 0) ^ 0xff;
        const { body, release } = gatedBody(wrong.subarray(0, 100_000), wrong.subarray(100_000));
        const fill = await BlobFill.create(digest, 'test', data.length, driver);
        const readers = [fill.reader(), fill.reader(200_000)].map(readUntilEnd);
        release();
        await fill.run(body, () => undefined);
        const results = await Promise.all(readers);
        for (const r of results) {
          assert.ok(r.error, 'the reader failed');
          assert.match(r.error.message, /hash to/);
        }
        assert.ok((results[0]?.bytes ?? Infinity) < data.length, 'the whole reader never got a complete body');
        assert.equal(fill.state, 'failed');
        assert.equal(await driver.statBlob(digest), null, 'nothing was stored');
        assert.deepEqual(await driver.sweepStaging(-60_000, true), { files: 0, bytes: 0 }, 'nothing is left staged');
        await fill.finished.then(
          () => assert.fail('a failed fill does not finish'),
          (err: Error) => assert.match(err.message, /hash to/),
        );
      } finally {
        await close();
      }
    });
  });
}
