// Real clients push into a hosted repository (issue 14) and pull back byte-identical: `skopeo
// copy` of a single image, an OCI index and a Docker manifest list from a registry into Berth,
// then back out to a `dir:`, and pulled by a clean containerd (`ctr`, every platform) and podman;
// `podman push` and `buildah push` of images they hold; `buildah
// build --layers --cache-to` into a hosted cache repository and a second build on empty storage
// with `--cache-from` that reuses the cached layer. Server-side counts (upload bytes, mounts)
// come from Berth's own metrics and access log.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import {
  startDistribution, buildImage, buildIndex, pushImage, pushIndex, makeTempDir, removeTempDir, fetchManifest,
  type Distribution, type BuiltImage, type BuiltIndex,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { readDirImage, runCommand, skopeoCopy, skopeoInspect, startContainerd, startPodman, type Podman } from '../helpers/clients.js';

let source: Distribution;
let berth: BerthHandle;
let work: string;
let single: BuiltImage;
let ociIndex: BuiltIndex;
let dockerList: BuiltIndex;

before(async () => {
  source = await startDistribution();
  single = buildImage({ seed: 'push-skopeo-single', layers: [4096, 300_000] });
  ociIndex = buildIndex({ seed: 'push-skopeo-oci', format: 'oci', layers: 2 });
  dockerList = buildIndex({ seed: 'push-skopeo-docker', format: 'docker', layers: 2 });
  await pushImage(source.url, 'src/single', '1.0', single);
  await pushIndex(source.url, 'src/multi', 'oci', ociIndex);
  await pushIndex(source.url, 'src/multi', 'list', dockerList);
  // The mirrored upstream is unreachable: nothing in these tests may need it.
  berth = await startBerth({
    upstreams: [upstreamOverride('http://127.0.0.1:9')],
    repositories: [{ match: 'ci/**', mode: 'hosted' }],
  });
  work = await makeTempDir('push-e2e');
});

after(async () => {
  await berth?.stop();
  await source?.stop();
  if (work) await removeTempDir(work);
});

const host = (u: string): string => u.replace('http://', '');
let seq = 0;

async function pullBackDir(ref: string, all: boolean): Promise<Awaited<ReturnType<typeof readDirImage>>> {
  const path = join(work, `dir-${++seq}`);
  await skopeoCopy({ src: `docker://${host(berth.url)}/${ref}`, dest: `dir:${path}`, all });
  return readDirImage(path);
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\d+(?:\\.\\d+)?(?:e\\+\\d+)?)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function pushedBytes(): Promise<number> {
  const res = await fetch(`${berth.url}/metrics`);
  return metric(await res.text(), 'berth_push_bytes_total');
}

test('skopeo copy of a single image into a hosted repository; pulled back byte-identical', async () => {
  const before = await pushedBytes();
  await skopeoCopy({ src: `docker://${host(source.url)}/src/single:1.0`, dest: `docker://${host(berth.url)}/ci/single:1.0` });
  const sent = (await pushedBytes()) - before;
  const total = single.config.length + single.layers.reduce((n, l) => n + l.size, 0);
  assert.equal(sent, total, 'every blob uploaded exactly once');
  const back = await pullBackDir('ci/single:1.0', false);
  assert.ok(back.manifest.equals(single.manifest), 'manifest byte-identical');
  assert.deepEqual([...back.blobs.keys()].sort(), [single.configDigest, ...single.layers.map((l) => l.digest)].sort());
  // A second copy uploads nothing: skopeo sees every blob there.
  const again = await pushedBytes();
  await skopeoCopy({ src: `docker://${host(source.url)}/src/single:1.0`, dest: `docker://${host(berth.url)}/ci/single:again` });
  assert.equal((await pushedBytes()) - again, 0);
});

test('skopeo copy --all of an OCI index and of a Docker manifest list; pulled back byte-identical', async () => {
  for (const [tag, index] of [['oci', ociIndex], ['list', dockerList]] as const) {
    await skopeoCopy({ src: `docker://${host(source.url)}/src/multi:${tag}`, dest: `docker://${host(berth.url)}/ci/multi:${tag}`, all: true });
    const back = await pullBackDir(`ci/multi:${tag}`, true);
    assert.ok(back.manifest.equals(index.manifest), `${tag}: index byte-identical`);
    for (const img of index.images) {
      assert.ok(back.instances.get(img.manifestDigest)?.equals(img.manifest), `${tag}: ${img.platform.architecture} manifest byte-identical`);
      for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) assert.ok(back.blobs.has(d), `${tag}: ${d}`);
    }
  }
});

test('skopeo copy from one hosted repository to another mounts every layer (only the config is uploaded)', async () => {
  const before = await pushedBytes();
  await skopeoCopy({ src: `docker://${host(berth.url)}/ci/single:1.0`, dest: `docker://${host(berth.url)}/ci/copied:1.0` });
  // containers/image tries to reuse (mount) layers; the config it always uploads.
  assert.equal((await pushedBytes()) - before, single.config.length);
  const m = await fetchManifest(berth.url, 'ci/copied', '1.0');
  assert.ok(m.body.equals(single.manifest));
  const mounts = berth.logs().filter((l) => l.includes('"blob.mount"') && l.includes('ci/copied'));
  assert.equal(mounts.length, single.layers.length, 'every layer mounted');
});

test('what skopeo pushed (an image, an OCI index, a Docker list) is pulled back by a clean containerd, every platform, and by podman', async (t) => {
  await skopeoCopy({ src: `docker://${host(source.url)}/src/single:1.0`, dest: `docker://${host(berth.url)}/ci/clients:single` });
  for (const tag of ['oci', 'list']) {
    await skopeoCopy({ src: `docker://${host(source.url)}/src/multi:${tag}`, dest: `docker://${host(berth.url)}/ci/clients:${tag}`, all: true });
  }
  const ctrd = await startContainerd();
  const pm = await startPodman({ registriesConf: podmanConf() });
  t.after(async () => {
    await ctrd.stop();
    await pm.stop();
  });
  // containerd checks every digest as it fetches, so a digest in its content store is the bytes.
  for (const [tag, root, images] of [['single', single.manifestDigest, [single]], ['oci', ociIndex.manifestDigest, ociIndex.images], ['list', dockerList.manifestDigest, dockerList.images]] as const) {
    const ref = `${host(berth.url)}/ci/clients:${tag}`;
    await ctrd.ctr(['images', 'pull', '--snapshotter', 'native', '--all-platforms', '--plain-http', ref], { timeoutMs: 120_000 });
    assert.match((await ctrd.ctr(['images', 'ls'])).stdout, new RegExp(root), `${tag}: ctr lists the pushed digest`);
    const content = (await ctrd.ctr(['content', 'ls', '-q'])).stdout;
    for (const img of images) {
      for (const d of [img.manifestDigest, img.configDigest, ...img.layers.map((l) => l.digest)]) assert.ok(content.includes(d), `${tag}: ctr has ${d}`);
    }
  }
  await pm.podman(['pull', '--tls-verify=false', `${host(berth.url)}/ci/clients:single`], { timeoutMs: 120_000 });
  const one = await pm.inspect(`${host(berth.url)}/ci/clients:single`);
  assert.equal(`sha256:${one.id}`, single.configDigest);
  assert.ok(one.repoDigests.includes(`${host(berth.url)}/ci/clients@${single.manifestDigest}`), one.repoDigests.join(', '));
  await pm.podman(['pull', '--tls-verify=false', `${host(berth.url)}/ci/clients:list`], { timeoutMs: 120_000 });
  const fromList = await pm.inspect(`${host(berth.url)}/ci/clients:list`);
  const amd = dockerList.images.find((i) => i.platform.architecture === 'amd64');
  assert.ok(amd);
  assert.equal(`sha256:${fromList.id}`, amd.configDigest);
  assert.ok(fromList.repoDigests.includes(`${host(berth.url)}/ci/clients@${dockerList.manifestDigest}`), fromList.repoDigests.join(', '));
});

let podman: Podman | null = null;

function podmanConf(): string {
  return [
    'unqualified-search-registries = []',
    '[[registry]]', `location = "${host(source.url)}"`, 'insecure = true',
    '[[registry]]', `location = "${host(berth.url)}"`, 'insecure = true', '',
  ].join('\n');
}

test('podman push and buildah push into hosted repositories; skopeo pulls them back intact', async (t) => {
  podman = await startPodman({ registriesConf: podmanConf() });
  t.after(async () => {
    await podman?.stop();
    podman = null;
  });
  const p = podman;
  await p.podman(['pull', '--tls-verify=false', `${host(source.url)}/src/single:1.0`], { timeoutMs: 120_000 });
  await p.podman(['push', '--tls-verify=false', `${host(source.url)}/src/single:1.0`, `docker://${host(berth.url)}/ci/podman:1.0`], { timeoutMs: 120_000 });
  const pushed = await skopeoInspect({ image: `docker://${host(berth.url)}/ci/podman:1.0`, config: true });
  const config = pushed.json as { rootfs: { diff_ids: string[] } };
  assert.deepEqual(config.rootfs.diff_ids, single.layers.map((l) => l.diffId), 'same layers, whatever podman recompressed');
  const back = await pullBackDir('ci/podman:1.0', false);
  assert.equal(back.blobs.size, 1 + single.layers.length);
  // podman pulls back what skopeo pushed: the OCI index by tag, resolved to this platform's image.
  await p.podman(['pull', '--tls-verify=false', `${host(berth.url)}/ci/multi:oci`], { timeoutMs: 120_000 });
  const fromIndex = await p.inspect(`${host(berth.url)}/ci/multi:oci`);
  const amd = ociIndex.images.find((i) => i.platform.architecture === 'amd64')!;
  assert.equal(`sha256:${fromIndex.id}`, amd.configDigest);
  assert.ok(fromIndex.repoDigests.includes(`${host(berth.url)}/ci/multi@${ociIndex.manifestDigest}`), fromIndex.repoDigests.join(', '));

  // buildah: a new image from scratch with one file, committed and pushed.
  const ctx = join(work, 'buildah-ctx');
  await mkdir(ctx, { recursive: true });
  await writeFile(join(ctx, 'hello.txt'), 'hello from buildah\n');
  const buildah = (args: string[]) => runCommand('buildah', ['--storage-driver', 'vfs', ...args], { env: { ...p.env }, timeoutMs: 120_000 });
  const ctr = (await buildah(['from', 'scratch'])).stdout.trim();
  await buildah(['copy', ctr, join(ctx, 'hello.txt'), '/hello.txt']);
  await buildah(['commit', ctr, 'localhost/buildah-made:1']);
  await buildah(['push', '--tls-verify=false', 'localhost/buildah-made:1', `docker://${host(berth.url)}/ci/buildah:1`]);
  const made = await pullBackDir('ci/buildah:1', false);
  assert.equal(made.blobs.size, 2, 'config and one layer');
});

test('buildah build --layers --cache-to a hosted repository; a build on empty storage with --cache-from reuses the cached layer', async (t) => {
  const ctx = join(work, 'cache-ctx');
  await mkdir(ctx, { recursive: true });
  await writeFile(join(ctx, 'data.txt'), 'cached layer content\n');
  await writeFile(join(ctx, 'Containerfile'), 'FROM scratch\nCOPY data.txt /data.txt\n');
  const cacheRepo = `${host(berth.url)}/ci/cache`;
  const build = async (): Promise<string> => {
    const pm = await startPodman({ registriesConf: podmanConf() });
    try {
      const r = await runCommand('buildah', [
        '--storage-driver', 'vfs', 'build', '--layers', '--tls-verify=false',
        '--cache-to', cacheRepo, '--cache-from', cacheRepo, '-t', 'localhost/cached:1', ctx,
      ], { env: { ...pm.env }, timeoutMs: 180_000 });
      return `${r.stdout}\n${r.stderr}`;
    } finally {
      await pm.stop();
    }
  };
  const first = await build();
  assert.doesNotMatch(first, /Using cache/i, 'the first build has no cache');
  const tags = await (await fetch(`${berth.url}/v2/ci/cache/tags/list`)).json() as { tags: string[] };
  assert.ok(tags.tags.length >= 1, 'the cache was pushed');
  const second = await build();
  if (!/Using cache/i.test(second)) t.diagnostic(second);
  assert.match(second, /Using cache/i, 'the second build on empty storage reuses the cached layer');
});
