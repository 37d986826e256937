// Crash safety: a Berth process killed with SIGKILL mid-download (and again just as a committed
// blob sets off an eviction) restarts with no partial or unverified blob visible, no temp files,
// records that agree with the blobs, and pulls that then succeed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { access, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  startDistribution, startFaultProxy, buildLargeBlobImage, pushImage, makeTempDir, removeTempDir, fetchBlob, fetchManifest,
  type Distribution, type FaultProxy,
} from '../helpers/index.js';
import { startBerthProcess, upstreamOverride, type BerthProcess } from '../helpers/berth.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import { MetadataStore } from '../../src/storage/records.js';
import { parseDigest } from '../../src/oci/reference.js';
import { MiB, blobPath, fileDigest, pullImage, storedBlobs } from './lifecycle-support.js';

let upstream: Distribution;
let proxy: FaultProxy;
let root: string;
let berth: BerthProcess | null = null;
const small = [0, 1].map((i) => buildLargeBlobImage({ seed: `lifecycle-crash-small-${i}`, size: 12 * MiB }));
const big = buildLargeBlobImage({ seed: 'lifecycle-crash-big', size: 64 * MiB, raw: true });
const bigLayer = big.layers[0]?.digest ?? '';

before(async () => {
  upstream = await startDistribution();
  for (const [i, img] of small.entries()) await pushImage(upstream.url, `library/small${i}`, 'v1', img);
  await pushImage(upstream.url, 'library/big', 'v1', big);
  proxy = await startFaultProxy(upstream.url);
  root = await makeTempDir('lifecycle-crash');
});

after(async () => {
  await berth?.stop();
  await proxy?.stop();
  await upstream?.stop();
  await removeTempDir(root);
});

async function start(): Promise<BerthProcess> {
  // 24 MiB of small images + the 64 MiB layer pass the high mark (76 MiB): committing it evicts.
  return startBerthProcess({ storage: { root, maxSize: '80MiB' }, upstreams: [upstreamOverride(proxy.url, { tagTtl: '1h' })] });
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

async function spoolFiles(): Promise<{ name: string; size: number }[]> {
  const dir = join(root, 'spool');
  const out = [];
  for (const name of await readdir(dir).catch(() => [])) out.push({ name, size: (await stat(join(dir, name)).catch(() => ({ size: -1 }))).size });
  return out;
}

/** Poll (no sleeping between checks beyond a tick) until `cond`, then SIGKILL the child at once. */
async function killWhen(p: BerthProcess, cond: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
  p.proc.kill('SIGKILL');
  await p.proc.exited;
  await p.stop(); // already gone: only removes its config dir
}

/**
 * What must hold after any crash: every blob is what its name says, and no record names missing
 * content. Checked only while no Berth runs (a running one may be evicting under the check).
 */
async function checkStore(when: string): Promise<void> {
  for (const [digest] of await storedBlobs(root)) {
    assert.equal(await fileDigest(blobPath(root, digest)), digest, `${when}: blob ${digest} is exactly its name`);
  }
  const driver = new FilesystemDriver(root);
  const meta = new MetadataStore(driver);
  for await (const digest of meta.manifestDigests()) {
    const parsed = parseDigest(digest);
    assert.ok(parsed, `${when}: manifest record ${digest} is named by a digest`);
    assert.ok(await driver.statBlob(parsed), `${when}: manifest record ${digest} has its bytes`);
  }
  for (const [u, name] of await meta.repositories()) {
    for (const tag of await meta.listTags(u, name)) {
      const rec = await meta.getTag(u, name, tag);
      assert.ok(rec, `${when}: tag record ${name}:${tag} reads`);
      assert.ok(await meta.getManifest(rec.digest), `${when}: ${name}:${tag} names a manifest with a record`);
      const parsed = parseDigest(rec.digest);
      assert.ok(parsed && (await driver.statBlob(parsed)), `${when}: ${name}:${tag} names a manifest with its bytes`);
    }
  }
}

test('SIGKILL mid-download and at the eviction a commit sets off: restarts clean, verified, consistent, and pulls succeed', async () => {
  berth = await start();
  for (const [i, img] of small.entries()) await pullImage(berth.url, `library/small${i}`, 'v1', img);

  // 1. Killed while the 64 MiB layer is being downloaded.
  const m = await fetchManifest(berth.url, 'library/big', 'v1');
  assert.equal(m.status, 200);
  const pulling = fetchBlob(berth.url, 'library/big', bigLayer).catch((err: unknown) => err);
  await killWhen(berth, async () => (await spoolFiles()).some((f) => f.size >= MiB), 'the fill to start writing');
  await pulling;
  const leftovers = await spoolFiles();
  assert.ok(leftovers.some((f) => f.size > 0 && f.size < (big.layers[0]?.size ?? 0)), `killed mid-download: a partial spool file was left (${JSON.stringify(leftovers)})`);
  assert.ok(!(await exists(blobPath(root, bigLayer))), 'the partial blob is not visible under its digest');
  await checkStore('after a kill mid-download');

  berth = await start();
  assert.deepEqual(await spoolFiles(), [], 'start-up removed the partial download');

  // 2. Killed the moment the layer is committed, as its commit sets off eviction of small0/small1.
  const again = fetchBlob(berth.url, 'library/big', bigLayer).catch((err: unknown) => err);
  await killWhen(berth, () => exists(blobPath(root, bigLayer)), 'the layer to be committed');
  await again;
  await checkStore('after a kill at eviction time');

  // 3. The restart finishes what was interrupted; everything pulls, byte-exact.
  berth = await start();
  assert.deepEqual(await spoolFiles(), []);
  await pullImage(berth.url, 'library/big', 'v1', big);
  for (const [i, img] of small.entries()) await pullImage(berth.url, `library/small${i}`, 'v1', img);
  await berth.proc.stop();
  await checkStore('after pulling everything again');
});
