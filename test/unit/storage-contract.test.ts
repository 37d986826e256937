// The storage-driver contract: what every StorageDriver must do, as one suite run against each
// driver (today the filesystem driver; an object-store driver joins the list when it lands).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import type { StorageDriver } from '../../src/storage/driver.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
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
      return { driver: new FilesystemDriver(root), cleanup: () => removeTempDir(root) };
    },
  },
];

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

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

    it('a committed spool file becomes the blob, readable whole and by inclusive range', async () => {
      const data = Buffer.from('the quick brown fox jumps over the lazy dog');
      const d = digestOf(data);
      const spool = driver.spoolPath();
      await writeFile(spool, data);
      await driver.commitBlob(spool, d);
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

    it('putBlobBuffer stores small blobs; listBlobs lists every blob once with its size', async () => {
      const a = Buffer.from('{"a":1}');
      const b = Buffer.from('{"b":22}');
      await driver.putBlobBuffer(digestOf(a), a);
      await driver.putBlobBuffer(digestOf(b), b);
      await driver.putBlobBuffer(digestOf(b), b); // idempotent
      const listed = new Map<string, number>();
      for await (const x of driver.listBlobs()) {
        assert.equal(listed.has(x.digest), false, 'listed once');
        listed.set(x.digest, x.size);
      }
      assert.equal(listed.get(digestOf(a)), a.length);
      assert.equal(listed.get(digestOf(b)), b.length);
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

    it('init removes spool files left by a dead writer and keeps working', async () => {
      const spoolDir = dirname(driver.spoolPath());
      await writeFile(join(spoolDir, 'leftover-from-an-old-layout'), 'partial');
      await driver.init();
      assert.deepEqual(await readdir(spoolDir), []);
      assert.equal(await driver.writable(), true);
    });
  });
}
