// The storage-driver contract: what every StorageDriver must do, as one suite run against each
// driver: filesystem, in-memory, and S3 on a real Ceph RGW (started once for this file), with
// and without a key prefix. Guarantees only one driver makes (the filesystem's spool folder, the
// S3 driver's multipart uploads and conditional create) are tested after the suite.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFile, readdir, utimes } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { AbortMultipartUploadCommand, CreateMultipartUploadCommand, PutObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import type { Digest } from '../../src/oci/reference.js';
import type { StorageDriver } from '../../src/storage/driver.js';
import { createDriver } from '../../src/storage/factory.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import { MemoryDriver } from '../../src/storage/memory.js';
import { PART_SIZE, S3Driver } from '../../src/storage/s3.js';
import { makeTempDir, removeTempDir } from '../helpers/index.js';
import { startCeph, type CephRgw } from '../helpers/ceph.js';

interface DriverFactory {
  name: string;
  /** Can say how much space is left (object stores and memory cannot). */
  measuresSpace: boolean;
  create(): Promise<{ driver: StorageDriver; cleanup(): Promise<void> }>;
}

// One Ceph for the whole file, started by the first S3 suite and stopped at the end.
let ceph: Promise<CephRgw> | undefined;
const cephOnce = (): Promise<CephRgw> => (ceph ??= startCeph());
after(async () => {
  if (ceph) await (await ceph).stop();
});

function s3Config(rgw: CephRgw, bucket: string, prefix: string) {
  return {
    endpoint: rgw.endpoint, region: rgw.region, bucket, prefix, forcePathStyle: true,
    accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey, redirect: { publicEndpoint: null },
  };
}

/** An S3 driver on a fresh bucket; `prefix` also gets decoys outside it that must stay invisible. */
async function s3Driver(bucket: string, prefix: string): Promise<{ driver: StorageDriver; cleanup(): Promise<void> }> {
  const rgw = await cephOnce();
  await rgw.createBucket(bucket);
  if (prefix !== '') {
    const decoy = Buffer.from('outside the prefix');
    const hex = createHash('sha256').update(decoy).digest('hex');
    for (const Key of [`blobs/sha256/${hex}`, 'meta/repos/x/a/_tags/9']) {
      await rgw.client().send(new PutObjectCommand({ Bucket: bucket, Key, Body: decoy }));
    }
  }
  const root = await makeTempDir('driver-s3-spool');
  const driver = await createDriver({ driver: 's3', root, s3: s3Config(rgw, bucket, prefix) });
  return {
    driver,
    async cleanup() {
      (driver as S3Driver).close();
      await removeTempDir(root);
    },
  };
}

const factories: DriverFactory[] = [
  {
    name: 'filesystem',
    measuresSpace: true,
    async create() {
      const root = await makeTempDir('driver');
      return { driver: await createDriver({ driver: 'filesystem', root }), cleanup: () => removeTempDir(root) };
    },
  },
  {
    name: 'memory',
    measuresSpace: false,
    async create() {
      return { driver: new MemoryDriver(), cleanup: async () => undefined };
    },
  },
  { name: 's3 (Ceph RGW)', measuresSpace: false, create: () => s3Driver('berth-contract', '') },
  { name: 's3 (Ceph RGW) with a prefix', measuresSpace: false, create: () => s3Driver('berth-contract-prefixed', 'mirrors/team-a') },
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
      // Every driver here knows commit times; a driver that does not says null.
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
        assert.equal(factory.measuresSpace, false, `${factory.name} has a volume to measure`);
        return;
      }
      assert.equal(factory.measuresSpace, true, `${factory.name} reports space it cannot know`);
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

describe('s3 driver: uploads, conditional create, the bucket check', () => {
  let rgw: CephRgw;
  let driver: S3Driver;
  let root: string;
  const bucket = 'berth-s3-specific';

  before(async () => {
    rgw = await cephOnce();
    await rgw.createBucket(bucket);
    root = await makeTempDir('driver-s3-own');
    driver = (await createDriver({ driver: 's3', root, s3: s3Config(rgw, bucket, 'p') })) as S3Driver;
    await driver.init();
  });
  after(async () => {
    driver.close();
    await removeTempDir(root);
  });

  it('a blob larger than one part goes up as a multipart upload and reads back byte for byte', async () => {
    const data = Buffer.alloc(2 * PART_SIZE + 12345);
    for (let i = 0; i + 4 <= data.length; i += 4) data.writeUInt32LE(i, i);
    const d = digestOf(data);
    const staged = await driver.stage();
    for (let at = 0; at < data.length; at += 1024 * 1024) await staged.write(data.subarray(at, at + 1024 * 1024));
    await staged.commit(d);
    // Readers that joined the fill keep reading after the commit removed the spool file.
    const tail = Buffer.alloc(100);
    assert.equal(await staged.readAt(tail, data.length - 100), 100);
    assert.ok(tail.equals(data.subarray(data.length - 100)));
    await staged.close();
    assert.deepEqual(await driver.statBlob(d), { size: data.length });
    const got = await driver.readBlob(d);
    assert.ok(got);
    assert.equal(digestOf(await readAll(got.stream)), d);
    const part = await driver.readBlob(d, { start: PART_SIZE - 2, end: PART_SIZE + 1 });
    assert.ok(part);
    assert.equal(part.size, data.length, 'a range read still reports the whole size');
    assert.ok((await readAll(part.stream)).equals(data.subarray(PART_SIZE - 2, PART_SIZE + 2)));
    assert.deepEqual(await rgw.listMultipartUploads(bucket), [], 'no multipart upload left open');
    assert.deepEqual(await rgw.listKeys(bucket, 'p/blobs/'), [`p/blobs/sha256/${d.slice(7)}`]);
  });

  it('listings page past 1,000 keys (one page of the store): every blob and record is listed once', async () => {
    const n = 1050;
    const blobs = Array.from({ length: n }, (_, i) => Buffer.from(`page-${i}`));
    for (let at = 0; at < n; at += 50) {
      await Promise.all(blobs.slice(at, at + 50).map(async (b, j) => {
        await driver.putBlobBuffer(digestOf(b), b);
        await driver.putMeta(`paged/r${at + j}`, b);
      }));
    }
    const listed = new Set<string>();
    for await (const b of driver.listBlobs()) listed.add(b.digest);
    for (const b of blobs) assert.ok(listed.has(digestOf(b)), `listed ${digestOf(b)}`);
    const keys: string[] = [];
    for await (const k of driver.listMeta('paged/')) keys.push(k);
    assert.equal(keys.length, n);
    assert.equal(new Set(keys).size, n);
  });

  it('staged with its expected digest, a large blob uploads parts while it is written, visible only once committed', async () => {
    const data = Buffer.alloc(2 * PART_SIZE + 777);
    for (let i = 0; i + 4 <= data.length; i += 4) data.writeUInt32LE(i ^ 0x5a5a5a5a, i);
    const d = digestOf(data);
    const key = `p/blobs/sha256/${d.slice(7)}`;
    const staged = await driver.stage(d);
    await staged.write(data.subarray(0, 2 * PART_SIZE));
    const deadline = Date.now() + 10_000;
    while ((await rgw.listMultipartUploads(bucket)).length === 0 && Date.now() < deadline) await sleep(20);
    assert.deepEqual((await rgw.listMultipartUploads(bucket)).map((u) => u.key), [key], 'parts go up during the fill');
    assert.equal(await driver.statBlob(d), null, 'nothing under the key before the commit');
    await staged.write(data.subarray(2 * PART_SIZE));
    await staged.commit(d);
    await staged.close();
    const got = await driver.readBlob(d);
    assert.ok(got);
    assert.equal(digestOf(await readAll(got.stream)), d);
    assert.deepEqual(await rgw.listMultipartUploads(bucket), []);

    // The same with a fill that fails: the parts already sent are aborted.
    const bad = Buffer.alloc(2 * PART_SIZE + 5, 3);
    const badDigest = digestOf(Buffer.from('what the upstream announced'));
    const failing = await driver.stage(badDigest);
    await failing.write(bad);
    await failing.discard();
    await failing.close();
    assert.deepEqual(await rgw.listMultipartUploads(bucket), [], 'a discarded fill leaves no upload open');
    assert.equal(await driver.statBlob(badDigest), null);
    assert.equal(await driver.statBlob(digestOf(bad)), null);
  });

  it('committing a blob that is already stored keeps the stored object (If-None-Match: *)', async () => {
    const data = Buffer.from('stored once, committed twice');
    const d = digestOf(data);
    for (let i = 0; i < 2; i++) {
      const staged = await driver.stage();
      await staged.write(data);
      await staged.commit(d);
      await staged.close();
    }
    assert.ok((await driver.readBlobBuffer(d))?.equals(data));
    assert.deepEqual(await driver.sweepStaging(-60_000, true), { files: 0, bytes: 0 }, 'no spool file left behind');
  });

  it('the staging sweep aborts multipart uploads a killed process left open, once they are old enough, and only under the prefix', async () => {
    const s3 = rgw.client();
    const open = async (Key: string): Promise<string | undefined> => {
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key }));
      await s3.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: 1, Body: Buffer.alloc(4096, 1) }));
      return UploadId;
    };
    const orphan = `p/blobs/sha256/${'a'.repeat(64)}`;
    const outside = `other/blobs/sha256/${'b'.repeat(64)}`;
    await open(orphan);
    const outsideId = await open(outside);
    const keys = async () => (await rgw.listMultipartUploads(bucket)).map((u) => u.key).sort();
    assert.deepEqual(await keys(), [outside, orphan].sort());
    assert.deepEqual(await driver.sweepStaging(3_600_000, false), { files: 0, bytes: 0 }, 'a fresh upload may be a live fill: kept');
    assert.deepEqual(await driver.sweepStaging(-60_000, true), { files: 1, bytes: 0 }, 'a dry run reports the old one');
    assert.deepEqual(await keys(), [outside, orphan].sort(), 'a dry run aborts nothing');
    assert.deepEqual(await driver.sweepStaging(-60_000, false), { files: 1, bytes: 0 });
    assert.deepEqual(await keys(), [outside], 'the orphan under the prefix is aborted; the other prefix is not Berth\'s');
    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: outside, UploadId: outsideId }));
  });

  it('an upload the store fails part-way is aborted: nothing under the key, no multipart upload left open', async () => {
    // A relay that keeps the Host header (so signatures hold) and answers 500 to every try of part 2.
    let refused = 0;
    const relay = createServer((req, res) => {
      if (req.method === 'PUT' && /[?&]partNumber=2(&|$)/.test(req.url ?? '')) {
        refused += 1;
        req.resume();
        res.writeHead(500, { 'content-type': 'application/xml' }).end('<Error><Code>InternalError</Code></Error>');
        return;
      }
      const up = httpRequest(`${rgw.endpoint}${req.url ?? '/'}`, { method: req.method, headers: req.headers }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const port = (relay.address() as { port: number }).port;
    const failing = (await createDriver({ driver: 's3', root, s3: { ...s3Config(rgw, bucket, 'p'), endpoint: `http://127.0.0.1:${port}` } })) as S3Driver;
    try {
      const data = Buffer.alloc(2 * PART_SIZE + 1, 9);
      const d = digestOf(data);
      const staged = await failing.stage();
      await staged.write(data);
      await assert.rejects(staged.commit(d), /multipart upload of p\/blobs\/sha256/);
      await staged.discard();
      await staged.close();
      assert.ok(refused >= 1, 'part 2 was refused');
      assert.equal(await driver.statBlob(d), null, 'nothing under the key');
      assert.deepEqual(await rgw.listMultipartUploads(bucket), [], 'the multipart upload was aborted');
      assert.deepEqual(await driver.sweepStaging(-60_000, true), { files: 0, bytes: 0 });
    } finally {
      failing.close();
      await new Promise<void>((r) => relay.close(() => r()));
    }
  });

  it('a bucket that does not exist fails init with the endpoint and the bucket named', async () => {
    const other = (await createDriver({ driver: 's3', root, s3: s3Config(rgw, 'no-such-bucket', '') })) as S3Driver;
    try {
      await assert.rejects(other.init(), (err: Error) => {
        assert.match(err.message, /no-such-bucket/);
        assert.ok(err.message.includes(rgw.endpoint), err.message);
        assert.match(err.message, /does not exist/);
        return true;
      });
      assert.equal(await other.writable(), false);
    } finally {
      other.close();
    }
  });

  it('a store that does not answer makes reads fail with a clear error, not "absent"', async () => {
    const dead = (await createDriver({ driver: 's3', root, s3: { ...s3Config(rgw, bucket, ''), endpoint: 'http://127.0.0.1:9' } })) as S3Driver;
    try {
      await assert.rejects(dead.statBlob(digestOf(Buffer.from('x'))), /S3 HEAD .*127\.0\.0\.1:9/);
      await assert.rejects(dead.getMeta('repos/a'), /S3 GET/);
      await assert.rejects(dead.readBlob(digestOf(Buffer.from('x'))), /S3 GET .*127\.0\.0\.1:9/);
      assert.equal(await dead.writable(), false);
    } finally {
      dead.close();
    }
  });
});
