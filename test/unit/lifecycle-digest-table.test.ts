// The compact digest ids under the cache index (src/storage/lifecycle/digest-table.ts): checked
// against a plain Map through many random acquires and releases (growth, rehashing, removal from
// the probe table, reuse of freed ids), for sha256 digests whose first byte has its high bit set
// or not (the hash's sign), sha512 digests (kept on the side), and strings that are no digest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Digest } from '../../src/oci/reference.js';
import { DigestTable } from '../../src/storage/lifecycle/digest-table.js';

function sha256(i: number): Digest {
  return `sha256:${createHash('sha256').update(`blob ${i}`).digest('hex')}` as Digest;
}

function sha512(i: number): Digest {
  return `sha512:${createHash('sha512').update(`blob ${i}`).digest('hex')}` as Digest;
}

/** A small deterministic generator (the test must replay the same way when it fails). */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test('ids follow a Map model through growth, removals and reuse; each digest comes back as its own string', () => {
  const table = new DigestTable(8);
  const model = new Map<Digest, { id: number; refs: number }>();
  const rnd = random(7);
  const digests = Array.from({ length: 3000 }, (_, i) => (i % 50 === 0 ? sha512(i) : sha256(i)));
  assert.ok(digests.some((d) => d.startsWith('sha256:') && parseInt(d.slice(7, 9), 16) >= 128), 'some hashes have the high bit set');
  for (let step = 0; step < 40_000; step++) {
    const d = digests[Math.floor(rnd() * digests.length)] as Digest;
    const m = model.get(d);
    if (m && rnd() < 0.45) {
      table.release(m.id);
      m.refs -= 1;
      if (m.refs === 0) model.delete(d);
    } else {
      const id = table.acquire(d);
      if (m) {
        assert.equal(id, m.id, `${d} keeps its id while held`);
        m.refs += 1;
      } else {
        for (const other of model.values()) assert.notEqual(other.id, id, 'a held id is never handed to another digest');
        model.set(d, { id, refs: 1 });
      }
    }
    if (step % 5000 === 0 || step === 39_999) {
      assert.equal(table.size, model.size);
      for (const x of digests) {
        const want = model.get(x);
        assert.equal(table.idOf(x), want ? want.id : -1, `idOf(${x}) at step ${step}`);
        if (!want) continue;
        assert.equal(table.digest(want.id), x);
        // Every sha256 digest is held as raw bytes (its first byte readable), never on the side.
        assert.equal(table.firstByte(want.id), x.startsWith('sha256:') ? parseInt(x.slice(7, 9), 16) : -1);
      }
    }
  }
  assert.ok(table.capacity >= model.size);
});

test('strings that are no digest, or not lowercase hex, are not found and go in only as themselves', () => {
  const table = new DigestTable();
  const d = sha256(1);
  const id = table.acquire(d);
  assert.equal(table.idOf(d.toUpperCase()), -1);
  assert.equal(table.idOf(`${d.slice(0, -1)}g`), -1);
  assert.equal(table.idOf('latest'), -1);
  assert.equal(table.idOf(''), -1);
  assert.equal(table.idOf(d), id);
  assert.equal(table.firstByte(id), parseInt(d.slice(7, 9), 16));
  const odd = table.acquire('sha256:ABC' as Digest);
  assert.equal(table.digest(odd), 'sha256:ABC');
  assert.equal(table.idOf('sha256:ABC'), odd);
  assert.equal(table.firstByte(odd), -1);
});

test('while pinned, a freed id is not handed to another digest; after unpin it may be', () => {
  const table = new DigestTable(4);
  const a = table.acquire(sha256(1));
  table.pin();
  table.release(a);
  assert.equal(table.idOf(sha256(1)), -1);
  const b = table.acquire(sha256(2));
  assert.notEqual(b, a, 'the freed id stays out of use during the pass');
  table.unpin();
  const c = table.acquire(sha256(3));
  assert.equal(c, a, 'given out again once the pass is over');
});

test('owners hear of growth and keep their per-id arrays at least as long as the capacity', () => {
  const table = new DigestTable(2);
  const seen: number[] = [];
  table.onGrow((cap) => seen.push(cap));
  for (let i = 0; i < 100; i++) table.acquire(sha256(i));
  assert.ok(seen.length > 0);
  assert.equal(seen.at(-1), table.capacity);
  assert.ok(table.end <= table.capacity);
});
