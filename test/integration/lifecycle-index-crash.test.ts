// After `kill -9` the cache index is right again (issue 16): a child-process Berth fills images
// from a real Distribution, is killed with SIGKILL (mid-fill, and again right after commits),
// restarts on the same store, and once its index is built (it builds in the background while
// serving) the blobs and bytes it counts are exactly a fresh scan of the store's files: no blob
// lost from the accounting, none counted twice.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import {
  startDistribution, buildLargeBlobImage, buildImage, pushImage, makeTempDir, removeTempDir, fetchBlob,
  type Distribution, type BuiltImage,
} from '../helpers/index.js';
import { startBerthProcess, upstreamOverride, type BerthProcess } from '../helpers/berth.js';
import { MiB, pullImage, storedBlobs } from './lifecycle-support.js';

let upstream: Distribution;
let root: string;
let berth: BerthProcess | null = null;
const smalls: BuiltImage[] = [0, 1, 2].map((i) => buildImage({ seed: `lifecycle-index-crash-${i}`, layers: 3 }));
const big = buildLargeBlobImage({ seed: 'lifecycle-index-crash-big', size: 48 * MiB, raw: true });
const bigLayer = big.layers[0]?.digest ?? '';

before(async () => {
  upstream = await startDistribution();
  for (const [i, img] of smalls.entries()) await pushImage(upstream.url, `library/s${i}`, 'v1', img);
  await pushImage(upstream.url, 'library/big', 'v1', big);
  root = await makeTempDir('lifecycle-index-crash');
});

after(async () => {
  await berth?.stop();
  await upstream?.stop();
  await removeTempDir(root);
});

function start(): Promise<BerthProcess> {
  return startBerthProcess({ storage: { root }, upstreams: [upstreamOverride(upstream.url, { tagTtl: '1h' })] });
}

interface IndexView { blobs: number; bytes: number; state: string }

async function indexOf(p: BerthProcess): Promise<IndexView> {
  const res = await request(`${p.url}/api/v1/cache`);
  const j = (await res.body.json()) as { blobs: number; bytes: number; index: { state: string } };
  return { blobs: j.blobs, bytes: j.bytes, state: j.index.state };
}

/** The index once built (polled: it builds in the background after a start). */
async function builtIndex(p: BerthProcess): Promise<IndexView> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const v = await indexOf(p);
    if (v.state === 'ready') return v;
    if (Date.now() > deadline) throw new Error('the index was not built within 30 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A fresh full scan: every blob file of the store, counted once. */
async function scanned(): Promise<{ blobs: number; bytes: number }> {
  const files = await storedBlobs(root);
  return { blobs: files.size, bytes: [...files.values()].reduce((a, b) => a + b, 0) };
}

async function kill(p: BerthProcess): Promise<void> {
  p.proc.kill('SIGKILL');
  await p.proc.exited;
  await p.stop(); // already gone: removes its config folder
}

async function spoolBytes(): Promise<number> {
  let n = 0;
  for (const name of await readdir(join(root, 'spool')).catch(() => [])) n += (await stat(join(root, 'spool', name)).catch(() => ({ size: 0 }))).size;
  return n;
}

test('kill -9 mid-fill, then right after commits: after each restart the index equals a fresh scan of the store', async () => {
  berth = await start();
  for (const [i, img] of smalls.entries()) await pullImage(berth.url, `library/s${i}`, 'v1', img);
  const before = await builtIndex(berth);
  assert.deepEqual({ blobs: before.blobs, bytes: before.bytes }, await scanned(), 'before any crash');
  assert.equal(before.blobs, smalls.reduce((n, img) => n + 2 + img.layers.length, 0));

  // Killed while the big layer is being filled: part of it is in the spool, nothing committed.
  const fill = fetchBlob(berth.url, 'library/big', bigLayer).catch(() => null);
  const deadline = Date.now() + 20_000;
  while ((await spoolBytes()) < 4 * MiB) {
    if (Date.now() > deadline) throw new Error('the fill never reached 4 MiB in the spool');
    await new Promise((r) => setImmediate(r));
  }
  await kill(berth);
  berth = null;
  await fill;
  berth = await start();
  const afterFill = await builtIndex(berth);
  assert.deepEqual({ blobs: afterFill.blobs, bytes: afterFill.bytes }, await scanned(), 'after the kill mid-fill');
  assert.deepEqual({ blobs: afterFill.blobs, bytes: afterFill.bytes }, { blobs: before.blobs, bytes: before.bytes }, 'the partial fill counts for nothing');

  // Killed right after a whole image was committed (access times not flushed yet).
  await pullImage(berth.url, 'library/big', 'v1', big);
  await kill(berth);
  berth = null;
  const files = await scanned();
  assert.equal(files.blobs, before.blobs + 3, 'the big image is on disk');
  berth = await start();
  const afterCommit = await builtIndex(berth);
  assert.deepEqual({ blobs: afterCommit.blobs, bytes: afterCommit.bytes }, files, 'after the kill right after commits');

  // And the restarted server keeps counting right: one more pull, already cached, adds nothing.
  await pullImage(berth.url, 'library/s0', 'v1', smalls[0] as BuiltImage);
  assert.deepEqual({ blobs: (await indexOf(berth)).blobs, bytes: (await indexOf(berth)).bytes }, files);
});
