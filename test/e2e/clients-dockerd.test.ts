// dockerd (Debian's 20.10) pulls through Berth with the daemon.json of docs/clients.md, and a
// `DOCKER_BUILDKIT=1 docker build` resolves its FROM through the same mirror. dockerd silently
// falls back to Docker Hub on any mirror error, and Docker Hub is unreachable here, so a pull that
// succeeds was served by Berth; the counting proxy in front of Berth shows it request by request.
// dockerd runs as root on its own containerd with everything under a temp dir (no bridge, no
// iptables, vfs storage); the CLI is the one shipped with that dockerd.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  startDistribution, startFaultProxy, buildImage, buildIndex, pushImage, pushIndex, makeTempDir, removeTempDir,
  type Distribution, type FaultProxy, type BuiltImage, type BuiltIndex,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { docSnippet, startDockerd, type Dockerd } from '../helpers/clients.js';

const DOC = 'docs/clients.md';

let upstream: Distribution;
let upstreamProxy: FaultProxy;
let berth: BerthHandle;
let front: FaultProxy;
let dockerd: Dockerd;
let base: BuiltImage;
let buildBase: BuiltImage;
let list: BuiltIndex;

before(async () => {
  upstream = await startDistribution();
  base = buildImage({ seed: 'dockerd-base', format: 'docker', layers: [2048, 80_000] });
  buildBase = buildImage({ seed: 'dockerd-build-base', format: 'docker', layers: 2 });
  list = buildIndex({ seed: 'dockerd-list', format: 'docker', layers: 1 });
  await pushImage(upstream.url, 'library/berth-base', '1.0', base);
  await pushImage(upstream.url, 'library/berth-build-base', '1.0', buildBase);
  await pushIndex(upstream.url, 'library/berth-multi', '1.0', list);
  upstreamProxy = await startFaultProxy(upstream.url);
  berth = await startBerth({ upstreams: [upstreamOverride(upstreamProxy.url, { tagTtl: '1h' })] });
  front = await startFaultProxy(berth.url);
  const daemonJson = await docSnippet(DOC, 'dockerd-daemon-json', { 'mirror.example.com:5000': front.url.replace('http://', '') });
  dockerd = await startDockerd({ daemonConfig: JSON.parse(daemonJson) as Record<string, unknown> });
});

after(async () => {
  await dockerd?.stop();
  await front?.stop();
  await berth?.stop();
  await upstreamProxy?.stop();
  await upstream?.stop();
});

beforeEach(() => {
  front.reset();
});

test('docker pull goes through the registry-mirrors of the docs daemon.json and stores the upstream image', async () => {
  await dockerd.docker(['pull', '--quiet', 'berth-base:1.0'], { timeoutMs: 120_000 });
  const img = await dockerd.inspect('berth-base:1.0');
  assert.equal(img.id, base.configDigest, 'image id is the upstream config digest');
  assert.deepEqual(img.diffIds, base.layers.map((l) => l.diffId));
  assert.ok(img.repoDigests.includes(`berth-base@${base.manifestDigest}`), img.repoDigests.join(', '));
  assert.ok(front.count({ method: 'GET', kind: 'manifest', pathIncludes: '/v2/library/berth-base/manifests/' }) >= 1, 'the manifest came from Berth');
  assert.equal(front.count({ kind: 'blob', method: 'GET', status: 200 }), 1 + base.layers.length, 'config and layers came from Berth');
  assert.equal(front.count({ pathIncludes: 'ns=' }), 0, 'dockerd sends no ?ns= (Berth uses its default upstream)');
});

test('docker pull of a multi-arch list through the mirror gets the linux/amd64 image', async () => {
  await dockerd.docker(['pull', '--quiet', 'berth-multi:1.0'], { timeoutMs: 120_000 });
  const amd = list.images.find((i) => i.platform.architecture === 'amd64');
  assert.ok(amd);
  const img = await dockerd.inspect('berth-multi:1.0');
  assert.equal(img.id, amd.configDigest);
  assert.ok(img.repoDigests.includes(`berth-multi@${list.manifestDigest}`), img.repoDigests.join(', '));
  assert.ok(front.count({ kind: 'manifest', pathIncludes: amd.manifestDigest }) >= 1);
});

test('DOCKER_BUILDKIT=1 docker build resolves FROM through the mirror (with ?ns=docker.io) and builds on the upstream layers', async () => {
  const ctx = await makeTempDir('build-ctx');
  try {
    await writeFile(join(ctx, 'Dockerfile'), 'FROM berth-build-base:1.0\nLABEL org.berth.test="built through the mirror"\n');
    const r = await dockerd.docker(['build', '--progress', 'plain', '-t', 'berth-built:1', ctx], {
      env: { DOCKER_BUILDKIT: '1' },
      timeoutMs: 180_000,
    });
    assert.match(r.stderr + r.stdout, /berth-build-base:1\.0/);
    const built = await dockerd.inspect('berth-built:1');
    assert.deepEqual(built.diffIds, buildBase.layers.map((l) => l.diffId), 'the built image sits on the upstream layers');
    const viaBuildKit = front.requests.filter((r) => r.kind === 'manifest' && r.path.includes('/v2/library/berth-build-base/manifests/'));
    assert.ok(viaBuildKit.length >= 1, 'BuildKit asked Berth for the FROM image');
    assert.ok(viaBuildKit.some((q) => q.path.includes('ns=docker.io')), 'BuildKit (containerd resolver) sends ?ns=docker.io');
    assert.ok(front.count({ kind: 'blob', pathIncludes: buildBase.configDigest, status: 200 }) >= 1, 'the base config came from Berth');
  } finally {
    await removeTempDir(ctx);
  }
});

test('with Berth down, the dockerd pull fails instead of reaching anything else (the fallback is unreachable here)', async () => {
  front.setRules([{ action: 'refuse' }]);
  try {
    const r = await dockerd.docker(['pull', '--quiet', 'berth-never-cached:1.0'], { check: false, timeoutMs: 120_000 });
    assert.notEqual(r.code, 0);
    assert.ok(front.count() >= 1, 'dockerd tried the mirror first');
  } finally {
    front.setRules([]);
  }
});
