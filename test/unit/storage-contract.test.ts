// The storage-driver contract: what every StorageDriver must do, as one suite run against each
// driver (filesystem and in-memory today; an object-store driver joins the list when it lands).
// Guarantees only one driver makes (the filesystem's spool folder) are tested after the suite.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile, readdir, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Digest } from '../../src/oci/reference.js';
import type { StorageDriver } from '../../src/storage/driver.js';
import { createDriver } from '../../src/storage/factory.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import { MemoryDriver } from '../../src/storage/memory.js';
import { makeTempDir, removeTempDir } from '../helpers/index.js';

interface DriverFactory {
  name: string;
  create(): Promise<{ driver: StorageDriver; cleanup(): Promise<void> }>;
}

const factories: DriverFactory[] = [
  {
    name: 'filesystem',
    async create() {
      const root = await makeTempDir('driver');
      return { driver: createDriver({ driver: 'filesystem', root }), cleanup: () => removeTempDir(root) };
    },
  },
  {
    name: 'memory',
    async create() {
      return { driver: new MemoryDriver(), cleanup: async () => undefined };
    },
  },
];

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const factory of factories) {
  describe(`storage driver contract: ${factory.name}`, () => {
    let driver: StorageDriver;
    let cleanup: () => Promise<void>;

    before(async () => {
      ({ driver, cleanup } = await factory.create());
      await driver.init();
    });
    after(async () => cleanup());

    it('an absent blob is null for stat, read and readBuffer, and delete says false', async () => {
      const d = digestOf(Buffer.from('absent'));
      assert.equal(await driver.statBlob(d), null);
      assert.equal(await driver.readBlob(d), null);
      assert.equal(await driver.readBlobBuffer(d), null);
      assert.equal(await driver.deleteBlob(d), false);
    });

    it('a committed stage becomes the blob, readable whole and by inclusive range', async () => {
      const data = Buffer.from('the quick brown fox jumps over the lazy dog');
      const d = digestOf(data);
      const staged = await driver.stage();
      await staged.write(data.subarray(0, 10));
      await staged.write(data.subarray(10));
      assert.equal(staged.written, data.length);
      await staged.commit(d);
      await staged.close();
      assert.deepEqual(await driver.statBlob(d), { size: data.length });
      const whole = await driver.readBlob(d);
      assert.ok(whole);
      assert.equal(whole.size, data.length);
      assert.ok((await readAll(whole.stream)).equals(data));
      const part = await driver.readBlob(d, { start: 4, end: 8 });
      assert.ok(part);
      assert.equal((await readAll(part.stream)).toString(), 'quick');
      assert.ok((await driver.readBlobBuffer(d))?.equals(data));
    });

    it('a stage is readable at any position while it is written and after its commit', async () => {
      const a = Buffer.alloc(300_000, 1);
      const b = Buffer.alloc(200_000, 2);
      const data = Buffer.concat([a, b]);
      const d = digestOf(data);
      const staged = await driver.stage();
      const buf = Buffer.alloc(1000);
      assert.equal(await staged.readAt(buf, 0), 0, 'nothing written yet, nothing read');
      await staged.write(a);
      // Across the end of what is written so far: only the written bytes come back.
      assert.equal(await staged.readAt(buf, a.length - 400), 400);
      assert.ok(buf.subarray(0, 400).equals(a.subarray(0, 400)));
      await staged.write(b);
      // Across the boundary between two writes.
      assert.equal(await staged.readAt(buf, a.length - 500), 1000);
      assert.ok(buf.equals(data.subarray(a.length - 500, a.length + 500)));
      await staged.commit(d);
      assert.equal(await staged.readAt(buf, data.length - 10), 10, 'a joined reader keeps reading across the commit');
      assert.ok(buf.subarray(0, 10).equals(data.subarray(data.length - 10)));
      await staged.close();
      await staged.close(); // idempotent
      assert.deepEqual(await driver.statBlob(d), { size: data.length });
    });

    it('a discarded stage leaves no blob and nothing for the staging sweep', async () => {
      const data = Buffer.from('bytes that fail verification');
      const d = digestOf(data);
      const staged = await driver.stage();
      await staged.write(data);
      await staged.discard();
      await staged.close();
      assert.equal(await driver.statBlob(d), null);
      // A negative age counts every stage, however new.
      assert.deepEqual(await driver.sweepStaging(-60_000, true), { files: 0, bytes: 0 });
    });

    it('the staging sweep removes only stages not written for the given age, and a dry run removes nothing', async () => {
      // Ages are real time (a spool file's mtime): wide margins keep a loaded machine from blurring them.
      const age = 1000;
      const stale = await driver.stage();
      await stale.write(Buffer.alloc(1234, 3));
      await sleep(age + 300);
      const fresh = await driver.stage();
      await fresh.write(Buffer.alloc(10, 4));
      assert.deepEqual(await driver.sweepStaging(age, true), { files: 1, bytes: 1234 }, 'dry run reports the stale stage');
      assert.deepEqual(await driver.sweepStaging(age, true), { files: 1, bytes: 1234 }, 'and left it in place');
      assert.deepEqual(await driver.sweepStaging(age, false), { files: 1, bytes: 1234 });
      assert.deepEqual(await driver.sweepStaging(age, false), { files: 0, bytes: 0 }, 'the fresh stage stays');
      assert.deepEqual(await driver.sweepStaging(-60_000, true), { files: 1, bytes: 10 }, 'the fresh stage is still there');
      await fresh.discard();
      await fresh.close();
      await stale.close();
    });

    it('putBlobBuffer stores small blobs; listBlobs lists every blob once with its size and commit time', async () => {
      const a = Buffer.from('{"a":1}');
      const b = Buffer.from('{"b":22}');
      const before = Date.now();
      await driver.putBlobBuffer(digestOf(a), a);
      await driver.putBlobBuffer(digestOf(b), b);
      await driver.putBlobBuffer(digestOf(b), b); // idempotent
      const listed = new Map<string, { size: number; storedAt: number | null }>();
      for await (const x of driver.listBlobs()) {
        assert.equal(listed.has(x.digest), false, 'listed once');
        listed.set(x.digest, { size: x.size, storedAt: x.storedAt });
      }
      assert.equal(listed.get(digestOf(a))?.size, a.length);
      assert.equal(listed.get(digestOf(b))?.size, b.length);
      const t = listed.get(digestOf(a))?.storedAt;
      // Both drivers here know commit times; a driver that does not says null.
      assert.ok(t !== undefined && t !== null && t >= before - 1000 && t <= Date.now() + 1000, `commit time ${t} is about now`);
    });

    it('a blob being read stays readable when it is deleted under the reader', async () => {
      const data = Buffer.alloc(3 * 1024 * 1024, 7);
      const d = digestOf(data);
      await driver.putBlobBuffer(d, data);
      const open = await driver.readBlob(d);
      assert.ok(open);
      assert.equal(await driver.deleteBlob(d), true);
      assert.equal(await driver.statBlob(d), null);
      assert.ok((await readAll(open.stream)).equals(data), 'the open reader got every byte');
    });

    it('metadata: put, get, overwrite, list by prefix, delete', async () => {
      await driver.putMeta('repos/x/a/_tags/1', Buffer.from('one'));
      await driver.putMeta('repos/x/a/_tags/2', Buffer.from('two'));
      await driver.putMeta('repos/x/b/_tags/1', Buffer.from('other'));
      await driver.putMeta('repos/x/a/_tags/2', Buffer.from('two!'));
      assert.equal((await driver.getMeta('repos/x/a/_tags/2'))?.toString(), 'two!');
      const keys: string[] = [];
      for await (const k of driver.listMeta('repos/x/a/')) keys.push(k);
      assert.deepEqual(keys.sort(), ['repos/x/a/_tags/1', 'repos/x/a/_tags/2']);
      assert.equal(await driver.deleteMeta('repos/x/a/_tags/1'), true);
      assert.equal(await driver.deleteMeta('repos/x/a/_tags/1'), false);
      assert.equal(await driver.getMeta('repos/x/a/_tags/1'), null);
    });

    it('metadata keys that could escape the store are refused', async () => {
      await assert.rejects(driver.putMeta('../escape', Buffer.from('x')));
      await assert.rejects(driver.getMeta('a/../../b'));
    });

    it('init removes stages no writer finishes, and the store keeps working', async () => {
      const left = await driver.stage();
      await left.write(Buffer.from('partial'));
      assert.deepEqual(await driver.sweepStaging(-60_000, true), { files: 1, bytes: 7 }, 'staged before init');
      await driver.init();
      assert.deepEqual(await driver.sweepStaging(-60_000, true), { files: 0, bytes: 0 }, 'nothing staged survived init');
      assert.equal(await driver.writable(), true);
      await left.close();
    });

    it('space() reports free and total bytes, or null when the store cannot say', async () => {
      const s = await driver.space();
      if (s === null) {
        assert.equal(factory.name, 'memory', 'only the in-memory driver has no volume to measure');
        return;
      }
      assert.ok(s.total > 0 && s.free >= 0 && s.free <= s.total, JSON.stringify(s));
    });
  });
}

describe('filesystem driver: the spool folder', () => {
  it('init removes spool files of older layouts; a shared init removes nothing', async () => {
    const root = await makeTempDir('driver-spool');
    try {
      const driver = new FilesystemDriver(root);
      await driver.init();
      await writeFile(join(driver.spoolRoot, 'leftover-from-an-old-layout'), 'partial');
      await driver.init({ shared: true });
      assert.deepEqual(await readdir(driver.spoolRoot), ['leftover-from-an-old-layout'], 'another process may own it');
      await driver.init();
      assert.deepEqual(await readdir(driver.spoolRoot), []);
    } finally {
      await removeTempDir(root);
    }
  });

  it('the staging sweep judges a spool file by when it was last written', async () => {
    const root = await makeTempDir('driver-spool-age');
    try {
      const driver = new FilesystemDriver(root);
      await driver.init();
      await writeFile(join(driver.spoolRoot, 'old'), 'abc');
      const past = new Date(Date.now() - 3_600_000);
      await utimes(join(driver.spoolRoot, 'old'), past, past);
      await writeFile(join(driver.spoolRoot, 'new'), 'defg');
      assert.deepEqual(await driver.sweepStaging(60_000, false), { files: 1, bytes: 3 });
      assert.deepEqual(await readdir(driver.spoolRoot), ['new']);
    } finally {
      await removeTempDir(root);
    }
  });
});
