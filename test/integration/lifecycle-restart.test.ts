// What survives a restart, and what garbage collection cleans: last-access times (eviction order
// after a restart follows them, not file times), orphan blobs and stale spool files (periodic GC,
// the admin API and `berth gc`), and records that name missing content (start-up check).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, unlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import {
  startDistribution, startFaultProxy, buildLargeBlobImage, pushImage, digestOf, makeTempDir, removeTempDir, startProcess,
  type Distribution, type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { MiB, blobPath, getJson, imageDigests, lifecycleOf, pullImage, settle, storedBlobs } from './lifecycle-support.js';

let upstream: Distribution;
let proxy: FaultProxy;
let root: string;
let berth: BerthHandle | null = null;
const imgs: Record<'x' | 'y' | 'z' | 'w', BuiltImage> = {
  x: buildLargeBlobImage({ seed: 'lifecycle-restart-x', size: 20 * MiB }),
  y: buildLargeBlobImage({ seed: 'lifecycle-restart-y', size: 20 * MiB }),
  z: buildLargeBlobImage({ seed: 'lifecycle-restart-z', size: 20 * MiB }),
  w: buildLargeBlobImage({ seed: 'lifecycle-restart-w', size: 20 * MiB }),
};

const DAY = 24 * 3600 * 1000;

function start(): Promise<BerthHandle> {
  return startBerth({
    storage: { root, maxSize: '64MiB' },
    upstreams: [upstreamOverride(proxy.url, { tagTtl: '1h' })],
  });
}

before(async () => {
  upstream = await startDistribution();
  for (const [k, img] of Object.entries(imgs)) await pushImage(upstream.url, `library/${k}`, 'v1', img);
  proxy = await startFaultProxy(upstream.url);
  root = await makeTempDir('lifecycle-restart');
});

after(async () => {
  await berth?.stop();
  await proxy?.stop();
  await upstream?.stop();
  await removeTempDir(root);
});

async function pull(k: keyof typeof imgs): Promise<void> {
  assert.ok(berth);
  await pullImage(berth.url, `library/${k}`, 'v1', imgs[k]);
  await settle(berth, imageDigests(imgs[k]));
}

test('last access survives a restart: after it, eviction still takes the least recently used, not the oldest file', async () => {
  berth = await start();
  await pull('x');
  await pull('y');
  await pull('z');
  await pull('x'); // x's files are the oldest, but x is now the most recently used
  await berth.stop();

  berth = await start();
  await pull('w'); // 80 MiB > 60.8: two images must go, down under 54.4 MiB
  const onDisk = await storedBlobs(root);
  for (const d of imageDigests(imgs.x)) assert.ok(onDisk.has(d), `x (used last before the restart) is kept: ${d}`);
  for (const d of imageDigests(imgs.w)) assert.ok(onDisk.has(d));
  for (const k of ['y', 'z'] as const) {
    for (const d of imageDigests(imgs[k])) assert.ok(!onDisk.has(d), `${k} was evicted: ${d}`);
  }
});

async function plantOrphan(ageMs: number): Promise<string> {
  const data = randomBytes(256 * 1024);
  const digest = digestOf(data);
  const path = blobPath(root, digest);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, data);
  const t = new Date(Date.now() - ageMs);
  await utimes(path, t, t);
  return digest;
}

async function plantSpool(name: string, ageMs: number): Promise<void> {
  const path = join(root, 'spool', name);
  await writeFile(path, randomBytes(64 * 1024));
  const t = new Date(Date.now() - ageMs);
  await utimes(path, t, t);
}

async function cli(args: string[]): Promise<{ code: number | null; output: string }> {
  const dir = await makeTempDir('lifecycle-gc-cli');
  try {
    const configFile = join(dir, 'berth.yaml');
    await writeFile(configFile, stringify({ storage: { root }, log: { level: 'warn' } }));
    const p = await startProcess(process.execPath, ['dist/src/cli.js', 'gc', ...args, '--config', configFile]);
    const exit = await p.exited;
    return { code: exit.code, output: p.output() };
  } finally {
    await removeTempDir(dir);
  }
}

test('garbage collection removes orphan blobs, stale spool files and dangling tags, and nothing that is held or fresh', async () => {
  assert.ok(berth);
  const oldOrphan = await plantOrphan(DAY);
  const freshOrphan = await plantOrphan(0);
  await plantSpool('stale', DAY);
  await plantSpool('fresh', 0);
  const ghost = digestOf('a manifest this cache never had');
  await berth.services.mirror.meta.putTag('docker.io', 'library/ghost', 'v1', { digest: ghost, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1, fetchedAt: 0, checkedAt: 0 });

  // `berth gc --dry-run` beside the running server: reports, changes nothing.
  const dry = await cli(['--dry-run']);
  assert.equal(dry.code, 0, dry.output);
  assert.match(dry.output, /would remove 1 blob\(s\)/);
  assert.match(dry.output, /would remove 1 stale temp file/);
  assert.match(dry.output, /would drop 1 record/);
  assert.ok((await storedBlobs(root)).has(oldOrphan), 'dry run removed nothing');

  const r = await getJson(`${berth.url}/api/v1/cache/gc`, 'POST');
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json['blobs'], 1, 'only the old orphan');
  assert.equal(r.json['spoolFiles'], 1);
  assert.equal(r.json['records'], 1, 'the tag naming a missing manifest');
  const onDisk = await storedBlobs(root);
  assert.ok(!onDisk.has(oldOrphan), 'the old orphan is gone');
  assert.ok(onDisk.has(freshOrphan), 'an orphan younger than the grace period stays (its manifest may be on its way)');
  assert.deepEqual((await readdir(join(root, 'spool'))).sort(), ['fresh']);
  assert.deepEqual(await berth.services.mirror.meta.listTags('docker.io', 'library/ghost'), []);
  proxy.reset();
  for (const k of ['x', 'w'] as const) await pullImage(berth.url, `library/${k}`, 'v1', imgs[k]);
  assert.equal(proxy.count(), 0, 'held images untouched');

  // The command does the same without a server's help.
  const another = await plantOrphan(DAY);
  const run = await cli([]);
  assert.equal(run.code, 0, run.output);
  assert.match(run.output, /removed 1 blob\(s\)/);
  assert.ok(!(await storedBlobs(root)).has(another));
  await unlink(join(root, 'spool', 'fresh'));
});

test('start-up check: records whose manifest bytes are missing are dropped, and the next pull fetches afresh', async () => {
  assert.ok(berth);
  await berth.stop();
  berth = null;
  await unlink(blobPath(root, imgs.x.manifestDigest)); // lost behind Berth's back
  berth = await start();
  // The index (and with it this check) builds in the background while serve already answers.
  await lifecycleOf(berth).ready();
  const meta = berth.services.mirror.meta;
  assert.deepEqual(await meta.listTags('docker.io', 'library/x'), [], 'the tag no longer names missing content');
  assert.equal(await meta.getManifest(imgs.x.manifestDigest), null);
  proxy.reset();
  await pull('x');
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 1);
  assert.equal(proxy.count({ kind: 'blob', method: 'GET' }), 0, 'its blobs were still there');
});
