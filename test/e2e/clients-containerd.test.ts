// containerd through one Berth for two upstreams, with the hosts.toml files of docs/clients.md:
// certs.d/docker.io and certs.d/ghcr.io both name Berth, containerd sends ?ns=docker.io or
// ?ns=ghcr.io, and Berth sends each pull to the right upstream — the same repository name holds
// different images on the two, and each pull gets its own upstream's digests. The Kubernetes-node
// snippets (CRI `config_path`, per-host CRI credentials) are loaded by containerd itself.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import {
  startDistribution, startFaultProxy, buildImage, buildIndex, pushImage, pushIndex, makeTempDir, removeTempDir,
  type Distribution, type FaultProxy, type BuiltImage, type BuiltIndex,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { ctrPull, docSnippet, runCommand, startContainerd, writeHostsToml, type Containerd } from '../helpers/clients.js';

const DOC = 'docs/clients.md';

let hub: Distribution;
let ghcr: Distribution;
let hubProxy: FaultProxy;
let ghcrProxy: FaultProxy;
let berth: BerthHandle;
let front: FaultProxy;
let cd: Containerd;
let hostsDir: string;
let hubApp: BuiltImage;
let ghcrApp: BuiltImage;
let ghcrIndex: BuiltIndex;

before(async () => {
  [hub, ghcr] = await Promise.all([startDistribution(), startDistribution()]);
  hubApp = buildImage({ seed: 'containerd-hub-app', layers: 2 });
  ghcrApp = buildImage({ seed: 'containerd-ghcr-app', layers: 3 });
  ghcrIndex = buildIndex({ seed: 'containerd-ghcr-index', format: 'oci', layers: 1 });
  // The same repository name on both upstreams, holding different images.
  await pushImage(hub.url, 'org/app', 'v1', hubApp);
  await pushImage(ghcr.url, 'org/app', 'v1', ghcrApp);
  await pushIndex(ghcr.url, 'org/multi', 'v2', ghcrIndex);
  [hubProxy, ghcrProxy] = await Promise.all([startFaultProxy(hub.url), startFaultProxy(ghcr.url)]);
  berth = await startBerth({
    upstreams: [upstreamOverride(hubProxy.url, { tagTtl: '1h' }), { name: 'ghcr.io', url: ghcrProxy.url, tagTtl: '1h' }],
  });
  front = await startFaultProxy(berth.url);
  cd = await startContainerd();
  hostsDir = await makeTempDir('certs.d');
  const fill = { 'mirror.example.com:5000': front.url.replace('http://', '') };
  await writeHostsToml(hostsDir, 'docker.io', front.url, { content: await docSnippet(DOC, 'containerd-hosts-docker-io', fill) });
  await writeHostsToml(hostsDir, 'ghcr.io', front.url, { content: await docSnippet(DOC, 'containerd-hosts-ghcr-io', fill) });
});

after(async () => {
  await cd?.stop();
  await front?.stop();
  await berth?.stop();
  await hubProxy?.stop();
  await ghcrProxy?.stop();
  await hub?.stop();
  await ghcr?.stop();
  if (hostsDir) await removeTempDir(hostsDir);
});

beforeEach(() => {
  for (const p of [front, hubProxy, ghcrProxy]) p.reset();
});

function blobsOf(img: BuiltImage): string[] {
  return [img.configDigest, ...img.layers.map((l) => l.digest)];
}

test('one Berth serves docker.io and ghcr.io to containerd: ?ns= picks the upstream for the same repository name', async () => {
  const fromHub = await ctrPull(cd, 'docker.io/org/app:v1', { hostsDir, namespace: 'two-upstreams' });
  const fromGhcr = await ctrPull(cd, 'ghcr.io/org/app:v1', { hostsDir, namespace: 'two-upstreams' });
  assert.equal(fromHub.image?.digest, hubApp.manifestDigest);
  assert.equal(fromGhcr.image?.digest, ghcrApp.manifestDigest);
  assert.deepEqual([...fromHub.blobs].sort(), blobsOf(hubApp).sort());
  assert.deepEqual([...fromGhcr.blobs].sort(), blobsOf(ghcrApp).sort());
  const pulls = front.requests.filter((r) => r.kind === 'manifest' || r.kind === 'blob');
  assert.ok(pulls.some((r) => r.path.includes('ns=ghcr.io')), 'containerd sent ?ns=ghcr.io');
  for (const r of pulls) assert.match(r.path, /[?&]ns=(docker|ghcr)\.io(&|$)/, `${r.method} ${r.path}`);
  assert.equal(hubProxy.count({ kind: 'blob', pathIncludes: ghcrApp.configDigest }), 0, 'ghcr.io content never asked of docker.io');
  assert.equal(ghcrProxy.count({ kind: 'blob', pathIncludes: hubApp.configDigest }), 0, 'docker.io content never asked of ghcr.io');
  assert.equal(ghcrProxy.count({ kind: 'manifest', pathIncludes: '/v2/org/app/manifests/' }) >= 1, true);
});

test('containerd pulls every platform of an OCI index from the second upstream with its digests', async () => {
  const pulled = await ctrPull(cd, 'ghcr.io/org/multi:v2', { hostsDir, allPlatforms: true, namespace: 'ghcr-index' });
  assert.equal(pulled.image?.digest, ghcrIndex.manifestDigest);
  assert.deepEqual([...pulled.manifests].sort(), [ghcrIndex.manifestDigest, ...ghcrIndex.images.map((i) => i.manifestDigest)].sort());
  assert.deepEqual([...pulled.blobs].sort(), ghcrIndex.images.flatMap(blobsOf).sort());
  assert.equal(hubProxy.count(), 0, 'nothing went to docker.io');
});

test('a second containerd pull of the same images is served from Berth\'s cache with no upstream blob requests', async () => {
  await ctrPull(cd, 'ghcr.io/org/app:v1', { hostsDir, namespace: 'warm-ghcr' });
  await ctrPull(cd, 'docker.io/org/app:v1', { hostsDir, namespace: 'warm-hub' });
  assert.equal(hubProxy.count({ kind: 'blob' }) + ghcrProxy.count({ kind: 'blob' }), 0);
  assert.ok(front.count({ kind: 'blob', status: 200 }) >= blobsOf(ghcrApp).length + blobsOf(hubApp).length, 'the blobs came from Berth');
});

test('containerd loads the Kubernetes-node snippets: CRI config_path and per-host credentials land in the CRI registry config', async () => {
  const dir = await makeTempDir('cri-config');
  try {
    const file = join(dir, 'config.toml');
    const pathSnippet = await docSnippet(DOC, 'containerd-config-path-1x');
    const authSnippet = await docSnippet(DOC, 'containerd-cri-auth-1x', { 'mirror.example.com:5000': 'berth.test:5000' });
    await writeFile(file, `${pathSnippet}\n${authSnippet}`);
    const dump = await runCommand('containerd', ['--config', file, 'config', 'dump']);
    const section = (name: string): string => {
      const start = dump.stdout.indexOf(`[${name}]`);
      assert.ok(start >= 0, `containerd's effective config has [${name}]`);
      const rest = dump.stdout.slice(start + name.length + 2);
      const next = rest.search(/^\s*\[/m);
      return next >= 0 ? rest.slice(0, next) : rest;
    };
    assert.match(section('plugins."io.containerd.grpc.v1.cri".registry'), /config_path = "\/etc\/containerd\/certs\.d"/);
    const auth = section('plugins."io.containerd.grpc.v1.cri".registry.configs."berth.test:5000".auth');
    assert.match(auth, /username = "ci-puller"/);
    assert.match(auth, /password = "secret"/);
  } finally {
    await removeTempDir(dir);
  }
});
