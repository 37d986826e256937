// The storage guarantees eviction leans on: a blob being read survives its removal (the reader
// holds an open descriptor; unlink only drops the name, on Linux and every POSIX filesystem), and
// a blob streamed through without being stored is verified before its last bytes go out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import { verifiedStream } from '../../src/storage/verify-stream.js';
import { digestOf, makeTempDir, removeTempDir, seededBytes } from '../helpers/index.js';

test('a blob being read keeps streaming every byte after eviction unlinks it', async () => {
  const root = await makeTempDir('lifecycle-unlink');
  try {
    const driver = new FilesystemDriver(root);
    await driver.init();
    const data = seededBytes('unlink-while-open', 8 * 1024 * 1024 + 17);
    const digest = digestOf(data);
    await driver.putBlobBuffer(digest, data);
    const got = await driver.readBlob(digest);
    assert.ok(got);
    const hash = createHash('sha256');
    let n = 0;
    let removed = false;
    for await (const chunk of got.stream as AsyncIterable<Buffer>) {
      hash.update(chunk);
      n += chunk.length;
      if (!removed) {
        removed = await driver.deleteBlob(digest); // evicted under the reader after its first chunk
        assert.equal(await driver.statBlob(digest), null, 'the name is gone at once');
      }
    }
    assert.ok(removed);
    assert.equal(n, data.length);
    assert.equal(`sha256:${hash.digest('hex')}`, digest, 'the reader got the whole blob');
  } finally {
    await removeTempDir(root);
  }
});

function chunks(data: Buffer, size = 1000): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) parts.push(data.subarray(i, i + size));
  return Readable.from(parts);
}

async function drain(r: Readable): Promise<{ bytes: Buffer; error: Error | null }> {
  const got: Buffer[] = [];
  try {
    for await (const c of r as AsyncIterable<Buffer>) got.push(c);
    return { bytes: Buffer.concat(got), error: null };
  } catch (err) {
    return { bytes: Buffer.concat(got), error: err as Error };
  }
}

const data = seededBytes('verify-stream', 10_000);
const digest = digestOf(data);
const mismatch = (reason: string) => new Error(reason);

test('a streamed-through blob passes whole when its bytes match', async () => {
  let counted = 0;
  const r = await drain(verifiedStream(chunks(data), { digest, size: data.length, mismatch, onBytes: (n) => (counted += n) }));
  assert.equal(r.error, null);
  assert.ok(r.bytes.equals(data));
  assert.equal(counted, data.length);
});

test('a corrupt streamed-through blob fails before its last bytes reach the client', async () => {
  const bad = Buffer.from(data);
  bad[5000] = (bad[5000] ?? 0) ^ 0xff;
  const r = await drain(verifiedStream(chunks(bad), { digest, size: data.length, mismatch }));
  assert.match(r.error?.message ?? '', /hash to/);
  assert.ok(r.bytes.length < data.length, 'the client sees a cut, never a complete wrong body');
});

test('a short or long upstream body fails the stream', async () => {
  const short = await drain(verifiedStream(chunks(data.subarray(0, 9000)), { digest, size: data.length, mismatch }));
  assert.match(short.error?.message ?? '', /ended after 9000 of 10000/);
  const long = await drain(verifiedStream(chunks(Buffer.concat([data, Buffer.from('x')])), { digest, size: data.length, mismatch }));
  assert.match(long.error?.message ?? '', /more than the announced/);
});

test('ranges are cut from the stream; one reaching the end is verified', async () => {
  const mid = await drain(verifiedStream(chunks(data), { digest, size: data.length, range: { start: 1500, end: 2499 }, mismatch }));
  assert.equal(mid.error, null);
  assert.ok(mid.bytes.equals(data.subarray(1500, 2500)));
  const tail = await drain(verifiedStream(chunks(data), { digest, size: data.length, range: { start: 9990, end: 9999 }, mismatch }));
  assert.ok(tail.bytes.equals(data.subarray(9990)));
  const bad = Buffer.from(data);
  bad[0] = (bad[0] ?? 0) ^ 0xff;
  const badTail = await drain(verifiedStream(chunks(bad), { digest, size: data.length, range: { start: 9990, end: 9999 }, mismatch }));
  assert.ok(badTail.error, 'a range that ends the blob is only completed when the whole blob verifies');
});
