// The UI at scale (issue 15): 10,000 cached repositories with 100,000 tags on the filesystem
// store. A benchmark, not a timed test: it checks that the listing pages on the server (25 rows,
// the right total, a working `last` cursor, search) and prints how long the first catalog page, a
// later page, a search and a repository page take. It seeds ~200,000 record files, which takes
// about a minute here, so it runs only with BERTH_UI_SCALE=1 (REPOS / TAGS change the size).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { startBerth, type BerthHandle } from '../helpers/berth.js';
import { buildImage, makeTempDir, removeTempDir, type BuiltImage } from '../helpers/index.js';
import { createDriver } from '../../src/storage/factory.js';
import { MetadataStore } from '../../src/storage/records.js';
import type { Digest } from '../../src/oci/reference.js';

const enabled = process.env['BERTH_UI_SCALE'] === '1';
const REPOS = Number(process.env['REPOS'] ?? 10_000);
const TAGS = Number(process.env['TAGS'] ?? 10);
const skip = enabled ? false : 'a benchmark: set BERTH_UI_SCALE=1 to seed 10,000 repositories and run it';

let root: string;
let berth: BerthHandle;
const images: BuiltImage[] = [];
const repoName = (r: number): string => `team${r % 100}/app${String(r).padStart(5, '0')}`;

/** Write records as the store lays them out (src/storage/records.ts), without an fsync per file. */
async function seed(): Promise<void> {
  const driver = await createDriver({ driver: 'filesystem', root });
  await driver.init();
  const meta = new MetadataStore(driver);
  for (let i = 0; i < 100; i++) {
    const img = buildImage({ seed: `ui-scale-${i}`, layers: 1 });
    await driver.putBlobBuffer(img.manifestDigest as Digest, img.manifest);
    await driver.putBlobBuffer(img.configDigest as Digest, img.config);
    for (const l of img.layers) await driver.putBlobBuffer(l.digest as Digest, l.data);
    await meta.putManifest(img.manifestDigest, { mediaType: img.mediaType, size: img.manifest.length });
    images.push(img);
  }
  const metaRoot = join(root, 'meta');
  const now = Date.now();
  let batch: [string, string][] = [];
  const flush = async (): Promise<void> => {
    await Promise.all(batch.map(async ([p, body]) => {
      await mkdir(dirname(p), { recursive: true });
      await writeFile(p, body);
    }));
    batch = [];
  };
  for (let r = 0; r < REPOS; r++) {
    for (let t = 0; t < TAGS; t++) {
      const img = images[(r * TAGS + t) % images.length] as BuiltImage;
      const rec = { digest: img.manifestDigest, mediaType: img.mediaType, size: img.manifest.length, fetchedAt: now, checkedAt: now };
      batch.push([join(metaRoot, `repos/docker.io/${repoName(r)}/_tags/v${t}.json`), JSON.stringify(rec)]);
      batch.push([join(metaRoot, `repos/docker.io/${repoName(r)}/_manifests/sha256/${img.manifestDigest.slice(7)}.json`), JSON.stringify({ linkedAt: now })]);
    }
    if (batch.length >= 2000) await flush();
  }
  await flush();
}

before(async () => {
  if (!enabled) return;
  root = await makeTempDir('ui-scale');
  let t = performance.now();
  await seed();
  console.log(`# seeded ${REPOS} repositories × ${TAGS} tags in ${Math.round(performance.now() - t)} ms`);
  t = performance.now();
  berth = await startBerth({ upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:9' }], storage: { root } });
  console.log(`# Berth started in ${Math.round(performance.now() - t)} ms`);
});

after(async () => {
  await berth?.stop();
  if (root) await removeTempDir(root);
});

async function timed<T>(path: string): Promise<{ ms: number; body: T }> {
  const t = performance.now();
  const r = await fetch(`${berth.url}/ui/api${path}`);
  assert.equal(r.status, 200, path);
  const body = (await r.json()) as T;
  return { ms: Math.round(performance.now() - t), body };
}

interface Page { repositories: { repository: string; tags: number }[]; next: string | null; total: number }

/** Median, min and max of `runs` timings of one request. */
async function sample(path: string, runs = 5): Promise<string> {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) ms.push((await timed(path)).ms);
  ms.sort((a, b) => a - b);
  return `median ${ms[Math.floor(runs / 2)]} ms (${ms[0]}–${ms[runs - 1]})`;
}

test('10,000 repositories: pages of 25 on the server, search, a repository page (timings printed)', { skip }, async () => {
  const first = await timed<Page>('/repositories?n=25');
  assert.equal(first.body.total, REPOS);
  assert.equal(first.body.repositories.length, 25);
  assert.equal(first.body.repositories[0]?.tags, TAGS);
  const later = await timed<Page>(`/repositories?n=25&last=${encodeURIComponent(first.body.next ?? '')}`);
  assert.equal(later.body.repositories.length, 25);
  assert.ok((later.body.repositories[0]?.repository ?? '') > (first.body.next ?? ''), 'the cursor moves on');
  const search = await timed<Page>(`/repositories?n=25&q=app0${String(REPOS - 1).slice(-3)}`);
  assert.ok(search.body.total >= 1);
  const repo = await timed<{ tags: { kind: string }[] }>(`/repository?name=${encodeURIComponent(repoName(7))}`);
  assert.equal(repo.body.tags.length, TAGS);
  assert.equal(repo.body.tags[0]?.kind, 'image');
  console.log(`# first request after start (waits for the repository index): ${first.ms} ms`);
  console.log(`# first catalog page: ${await sample('/repositories?n=25')}`);
  console.log(`# pages further on: ${await sample(`/repositories?n=25&last=${encodeURIComponent(repoName(Math.floor(REPOS / 2)))}`)}`);
  console.log(`# search: ${await sample('/repositories?n=25&q=app07')}`);
  console.log(`# repository page: ${await sample(`/repository?name=${encodeURIComponent(repoName(4242 % REPOS))}`)}`);
});
