// Disk full (ENOSPC) while filling, on a real size-limited filesystem: a 40 MiB tmpfs mounted by
// the test (we run as root). Where mounting is not permitted, the same test runs with the error
// injected into file writes instead (and a matching free-space probe); it says which it used.
//
// Cached content keeps being served; an uncached blob still arrives, streamed through uncached
// (the first client of a fill that hit ENOSPC is cut and retries, as real clients do); the state
// shows in /readyz, /metrics, the admin API and the log; caching resumes when space returns.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { open, statfs, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import {
  startDistribution, startFaultProxy, buildLargeBlobImage, pushImage, digestOf, makeTempDir, removeTempDir, startProcess, fetchBlob,
  type Distribution, type FaultProxy,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { MiB, blobPath, getJson, imageDigests, lifecycleOf, metricValue, pullImage, settle } from './lifecycle-support.js';

let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;
let dir: string;
let mounted = false;
const cached = buildLargeBlobImage({ seed: 'lifecycle-full-cached', size: 2 * MiB });
const big1 = buildLargeBlobImage({ seed: 'lifecycle-full-big1', size: 12 * MiB, raw: true });
const big2 = buildLargeBlobImage({ seed: 'lifecycle-full-big2', size: 12 * MiB, raw: true });

/** How the disk is made full and given space again. */
interface Disk {
  fill(): Promise<void>;
  free(): Promise<void>;
}
let disk: Disk;

async function run(cmd: string, args: string[]): Promise<{ code: number | null; output: string }> {
  const p = await startProcess(cmd, args, { aptPackage: 'mount' });
  const e = await p.exited;
  return { code: e.code, output: p.output() };
}

function tmpfsDisk(root: string): Disk {
  const ballast = join(root, 'ballast');
  return {
    // Leave 4 MiB: manifests and records still fit, a 12 MiB layer does not.
    async fill() {
      const s = await statfs(root);
      const fh = await open(ballast, 'w');
      try {
        const chunk = Buffer.alloc(MiB);
        for (let left = s.bavail * s.bsize - 4 * MiB; left > 0; left -= chunk.length) {
          await fh.write(chunk, 0, Math.min(chunk.length, left));
        }
      } finally {
        await fh.close();
      }
    },
    async free() {
      await unlink(ballast);
    },
  };
}

/** Fallback: every FileHandle write fails with ENOSPC while `full`; free space follows the flag. */
function injectedDisk(): { disk: Disk; space: () => Promise<{ free: number; total: number }> } {
  let full = false;
  const patch = async (): Promise<void> => {
    const probe = join(dir, 'probe');
    const fh = await open(probe, 'w');
    const proto = Object.getPrototypeOf(fh) as Record<'write' | 'writeFile', (...args: unknown[]) => Promise<unknown>>;
    await fh.close();
    await unlink(probe);
    for (const method of ['write', 'writeFile'] as const) {
      const original = proto[method];
      proto[method] = function (this: unknown, ...args: unknown[]) {
        if (full) return Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));
        return original.apply(this, args);
      };
    }
  };
  let patched = false;
  return {
    disk: {
      async fill() {
        if (!patched) await patch();
        patched = true;
        full = true;
      },
      async free() {
        full = false;
      },
    },
    space: async () => ({ free: full ? 0 : 1024 * MiB, total: 1024 * MiB }),
  };
}

before(async () => {
  upstream = await startDistribution();
  await pushImage(upstream.url, 'library/cached', 'v1', cached);
  await pushImage(upstream.url, 'library/big1', 'v1', big1);
  await pushImage(upstream.url, 'library/big2', 'v1', big2);
  proxy = await startFaultProxy(upstream.url);
  dir = await makeTempDir('lifecycle-full');
  const overrides = { storage: { root: dir }, upstreams: [upstreamOverride(proxy.url, { tagTtl: '1h' })] };
  const m = process.env['BERTH_TEST_NO_MOUNT'] ? { code: 1, output: 'skipped (BERTH_TEST_NO_MOUNT)' } : await run('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', dir]);
  if (m.code === 0) {
    mounted = true;
    disk = tmpfsDisk(dir);
    berth = await startBerth(overrides);
  } else {
    process.stderr.write(`# mount -t tmpfs not permitted (${m.output.trim()}); injecting ENOSPC into writes instead\n`);
    const injected = injectedDisk();
    disk = injected.disk;
    berth = await startBerth(overrides, { lifecycle: { space: injected.space }, prewarm: false });
  }
});

after(async () => {
  await berth?.stop();
  if (mounted) await run('umount', ['-l', dir]);
  await removeTempDir(dir);
  await proxy?.stop();
  await upstream?.stop();
});

/** Like a real client: a cut download is tried again (up to 3 times). */
async function fetchWithRetry(repo: string, digest: string): Promise<Buffer> {
  let last: unknown;
  for (let i = 0; i < 3; i++) {
    try {
      const b = await fetchBlob(berth.url, repo, digest);
      if (b.status === 200 && digestOf(b.body) === digest) return b.body;
      last = new Error(`status ${b.status}`);
    } catch (err) {
      last = err;
    }
  }
  throw new Error(`blob ${digest} did not arrive in 3 tries: ${String(last)}`);
}

test('a full disk keeps cached pulls working, streams uncached blobs through, and says so', async () => {
  await pullImage(berth.url, 'library/cached', 'v1', cached);
  await settle(berth, imageDigests(cached));
  await disk.fill();

  const layer = big1.layers[0]?.digest ?? '';
  const m = await fetch(`${berth.url}/v2/library/big1/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(m.status, 200, 'the manifest still answers');
  assert.equal((await fetchBlob(berth.url, 'library/big1', big1.configDigest)).status, 200);
  assert.equal(digestOf(await fetchWithRetry('library/big1', layer)), layer, 'the uncached layer arrived, byte-exact');
  assert.equal(lifecycleOf(berth).canStore(), false, 'the cache knows the disk is full');
  assert.ok(berth.logs().some((l) => l.includes('storage is full')), 'the condition is logged');

  proxy.reset();
  assert.equal(digestOf(await fetchWithRetry('library/big1', layer)), layer);
  assert.equal(digestOf(await fetchWithRetry('library/big1', layer)), layer);
  assert.equal(proxy.count({ kind: 'blob', method: 'GET' }), 2, 'streamed through: one upstream GET per client, nothing stored');
  const ranged = await request(`${berth.url}/v2/library/big1/blobs/${layer}`, { headers: { range: 'bytes=1000-1999' } });
  const part = Buffer.from(await ranged.body.arrayBuffer());
  assert.equal(ranged.statusCode, 206);
  assert.ok(part.equals(big1.layers[0]?.data.subarray(1000, 2000) ?? Buffer.alloc(0)), 'a range is served from the stream');
  await assert.rejects(open(blobPath(dir, layer), 'r'), 'the layer was not cached');

  proxy.reset();
  await pullImage(berth.url, 'library/cached', 'v1', cached);
  assert.equal(proxy.count(), 0, 'cached content is still served from the cache');

  const ready = await getJson(`${berth.url}/readyz`);
  assert.equal(ready.status, 200, 'still ready: it serves');
  assert.equal(ready.json['status'], 'degraded');
  const check = (ready.json['checks'] as Record<string, { ok: boolean; detail?: string }>)['disk-full'];
  assert.equal(check?.ok, false);
  assert.match(check?.detail ?? '', /storage full/);
  assert.equal(await metricValue(berth.url, 'berth_storage_full'), 1);
  assert.equal((await getJson(`${berth.url}/api/v1/cache`)).json['storageFull'], true);
});

test('caching resumes when space returns', async () => {
  await disk.free();
  assert.equal(await lifecycleOf(berth).checkSpace(), true);
  assert.equal(await metricValue(berth.url, 'berth_storage_full'), 0);
  assert.equal((await getJson(`${berth.url}/readyz`)).json['status'], 'ready');

  await pullImage(berth.url, 'library/big2', 'v1', big2);
  await settle(berth, imageDigests(big2));
  proxy.reset();
  await pullImage(berth.url, 'library/big2', 'v1', big2);
  assert.equal(proxy.count(), 0, 'the new image was cached');
  await writeFile(join(dir, 'after'), 'writes work again');
});
