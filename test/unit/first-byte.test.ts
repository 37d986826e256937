// The first-byte deadline of blobs from upstream (src/registry/first-byte.ts): a stream is handed
// on once it has a byte; no upstream progress for `ms` is an `unavailable` failure with
// Retry-After; progress elsewhere in the download (a Range far ahead) keeps the wait alive.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { firstByte } from '../../src/registry/first-byte.js';
import { UpstreamError } from '../../src/upstream/errors.js';

const D = `sha256:${'a'.repeat(64)}`;
const opts = (ms: number, progress: () => number) => ({ ms, progress, upstream: 'docker.io', digest: D });

function later(stream: Readable, ms: number, chunk: Buffer | null): void {
  setTimeout(() => stream.push(chunk), ms);
}

test('resolves once the first byte is there, and every byte still flows after', async () => {
  const s = new Readable({ read() {} });
  later(s, 30, Buffer.from('hello '));
  later(s, 60, Buffer.from('world'));
  later(s, 70, null);
  const got = await firstByte(s, opts(1000, () => 0));
  assert.equal(got, s);
  let text = '';
  for await (const c of got) text += String(c);
  assert.equal(text, 'hello world');
});

test('no upstream progress for ms: unavailable with Retry-After, and the stream is let go', async () => {
  const s = new Readable({ read() {} });
  const started = Date.now();
  await assert.rejects(firstByte(s, opts(100, () => 0)), (err: unknown) => {
    assert.ok(err instanceof UpstreamError);
    assert.equal(err.kind, 'unavailable');
    assert.equal(err.causeCode, 'FIRST_BYTE_TIMEOUT');
    assert.equal(err.retryAfter, 1);
    assert.match(err.message, /docker\.io sent no bytes of blob sha256:a{64}/);
    return true;
  });
  assert.ok(Date.now() - started >= 95);
  assert.equal(s.destroyed, true);
});

test('a download that keeps moving is waited for, even when this reader sees nothing yet', async () => {
  const s = new Readable({ read() {} });
  let progress = 0;
  const tick = setInterval(() => (progress += 1000), 20);
  later(s, 250, Buffer.from('x'));
  try {
    const got = await firstByte(s, opts(60, () => progress));
    assert.equal(got, s);
  } finally {
    clearInterval(tick);
    s.destroy();
  }
});

test("the stream's own failure before a byte is passed on", async () => {
  const s = new Readable({ read() {} });
  setTimeout(() => s.destroy(new Error('upstream bytes hash to something else')), 20);
  await assert.rejects(firstByte(s, opts(1000, () => 0)), /hash to something else/);
});

test('an empty stream that ends at once resolves (a zero-length blob)', async () => {
  const s = new Readable({ read() {} });
  later(s, 10, null);
  assert.equal(await firstByte(s, opts(1000, () => 0)), s);
});
