// dockerd and containerd push into hosted repositories (issue 14).
//  - `DOCKER_BUILDKIT=1 docker build` of a Dockerfile `FROM` an image Berth mirrors, then
//    `docker push` to a hosted repository: the base layers are mounted from the mirrored
//    repository, not uploaded (Berth's own count of uploaded bytes is the new layer and the
//    config only), and `docker pull` on a second, clean dockerd gets the same RepoDigests.
//  - `ctr images push` of an image ctr pulled from a registry; the manifest Berth serves is the
//    one ctr pushed, and `ctr images pull` from Berth on a clean containerd gets every blob.
// Each dockerd runs as root on its own containerd with everything under a temp dir.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  startDistribution, startFaultProxy, buildImage, pushImage, makeTempDir, removeTempDir, fetchManifest,
  type Distribution, type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { startContainerd, startDockerd, type Dockerd } from '../helpers/clients.js';

let upstream: Distribution;
let upstreamProxy: FaultProxy;
let berth: BerthHandle;
let base: BuiltImage;

before(async () => {
  upstream = await startDistribution();
  base = buildImage({ seed: 'push-dockerd-base', format: 'docker', layers: [4096, 400_000] });
  await pushImage(upstream.url, 'library/push-base', '1.0', base);
  upstreamProxy = await startFaultProxy(upstream.url);
  berth = await startBerth({
    upstreams: [upstreamOverride(upstreamProxy.url, { tagTtl: '1h' })],
    repositories: [{ match: 'ci/**', mode: 'hosted' }],
  });
});

after(async () => {
  await berth?.stop();
  await upstreamProxy?.stop();
  await upstream?.stop();
});

async function pushedBytes(): Promise<number> {
  const text = await (await fetch(`${berth.url}/metrics`)).text();
  const m = /^berth_push_bytes_total (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

test('docker push of a BuildKit image built FROM a mirrored base mounts the base layers; a clean dockerd pulls the same RepoDigest', async () => {
  const host = berth.host;
  let builder: Dockerd | null = null;
  let puller: Dockerd | null = null;
  const ctx = await makeTempDir('push-build-ctx');
  try {
    builder = await startDockerd();
    // Pulled by dockerd from Berth's own name for the mirrored repository: dockerd remembers the
    // repository each layer came from, which is what it offers as the mount source on push.
    await builder.docker(['pull', '--quiet', `${host}/library/push-base:1.0`], { timeoutMs: 120_000 });
    await writeFile(join(ctx, 'app.txt'), 'the application layer\n');
    await writeFile(join(ctx, 'Dockerfile'), `FROM ${host}/library/push-base:1.0\nCOPY app.txt /app.txt\n`);
    await builder.docker(['build', '--progress', 'plain', '-t', `${host}/ci/app:1`, ctx], {
      env: { DOCKER_BUILDKIT: '1' }, timeoutMs: 180_000,
    });
    const built = await builder.inspect(`${host}/ci/app:1`);
    assert.deepEqual(built.diffIds.slice(0, base.layers.length), base.layers.map((l) => l.diffId), 'built on the mirrored layers');
    assert.equal(built.diffIds.length, base.layers.length + 1);

    const before = await pushedBytes();
    await builder.docker(['push', `${host}/ci/app:1`], { timeoutMs: 180_000 });
    const uploaded = (await pushedBytes()) - before;
    const baseBytes = base.layers.reduce((n, l) => n + l.size, 0);
    const mounts = berth.logs().filter((l) => l.includes('"blob.mount"') && l.includes('ci/app'));
    assert.equal(mounts.length, base.layers.length, `every base layer mounted:\n${mounts.join('\n')}`);
    assert.ok(uploaded < baseBytes, `uploaded ${uploaded} bytes; the base layers alone are ${baseBytes}`);
    assert.ok(uploaded > 0, 'the new layer and the config were uploaded');

    const pushed = await builder.inspect(`${host}/ci/app:1`);
    const digest = pushed.repoDigests.find((d) => d.startsWith(`${host}/ci/app@`));
    assert.ok(digest, pushed.repoDigests.join(', '));
    const served = await fetchManifest(berth.url, 'ci/app', '1');
    assert.equal(`${host}/ci/app@${served.digest ?? ''}`, digest, 'Berth serves the manifest dockerd pushed');

    puller = await startDockerd();
    await puller.docker(['pull', '--quiet', `${host}/ci/app:1`], { timeoutMs: 120_000 });
    const pulled = await puller.inspect(`${host}/ci/app:1`);
    assert.deepEqual(pulled.repoDigests, [digest]);
    assert.equal(pulled.id, pushed.id);
    assert.deepEqual(pulled.diffIds, pushed.diffIds);
  } finally {
    await builder?.stop();
    await puller?.stop();
    await removeTempDir(ctx);
  }
});

test('ctr images push of a pulled image into a hosted repository; a clean containerd pulls it back', async () => {
  const img = buildImage({ seed: 'push-ctr', layers: [2048, 90_000] });
  await pushImage(upstream.url, 'src/ctr', '1.0', img);
  const srcRef = `${upstream.url.replace('http://', '')}/src/ctr:1.0`;
  const dstRef = `${berth.host}/ci/ctr:1.0`;
  const a = await startContainerd();
  const b = await startContainerd();
  try {
    await a.ctr(['images', 'pull', '--snapshotter', 'native', '--plain-http', srcRef]);
    await a.ctr(['images', 'push', '--plain-http', dstRef, srcRef]);
    const served = await fetchManifest(berth.url, 'ci/ctr', '1.0');
    assert.equal(served.status, 200);
    assert.ok(served.body.equals(img.manifest), 'the manifest ctr pushed, byte for byte');
    await b.ctr(['images', 'pull', '--snapshotter', 'native', '--plain-http', dstRef]);
    const listed = (await b.ctr(['images', 'ls'])).stdout;
    assert.match(listed, new RegExp(img.manifestDigest));
    const content = (await b.ctr(['content', 'ls', '-q'])).stdout;
    for (const d of [img.manifestDigest, img.configDigest, ...img.layers.map((l) => l.digest)]) assert.ok(content.includes(d), `${d} pulled`);
  } finally {
    await a.stop();
    await b.stop();
  }
});
