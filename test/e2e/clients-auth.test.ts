// The authenticated client configurations of docs/clients.md against a token-protected Berth
// (Keycloak docker-v2 tokens, from the emulator in test/helpers/keycloak.ts): skopeo and podman
// with the docs auth file keyed by the mirror host, ctr with --user through the docs hosts.toml.
// A client without credentials is refused, and a refused client costs the upstream nothing.
// dockerd, which cannot authenticate to a mirror, pulls anonymously from the networks the docs'
// Berth config lets in.
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  startDistribution, startFaultProxy, buildImage, pushImage, makeTempDir, removeTempDir,
  type Distribution, type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { startKeycloakEmulator, type KeycloakEmulator } from '../helpers/keycloak.js';
import { parse as parseYaml } from 'yaml';
import {
  ctrPull, docSnippet, readDirImage, skopeoCopy, startContainerd, startDockerd, startPodman, writeHostsToml,
  type Containerd, type Dockerd, type Podman,
} from '../helpers/clients.js';

const DOC = 'docs/clients.md';

let kc: KeycloakEmulator;
let upstream: Distribution;
let upstreamProxy: FaultProxy;
let berth: BerthHandle;
let work: string;
let image: BuiltImage;
let mirrorHost: string;
let registriesConf: string;
let authFile: string;

before(async () => {
  kc = await startKeycloakEmulator();
  upstream = await startDistribution();
  image = buildImage({ seed: 'auth-clients', layers: [2048, 50_000] });
  await pushImage(upstream.url, 'library/private-base', '1.0', image);
  upstreamProxy = await startFaultProxy(upstream.url);
  berth = await startBerth({
    upstreams: [upstreamOverride(upstreamProxy.url, { tagTtl: '1h' })],
    auth: { mode: 'token', token: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: kc.trustBundlePath } },
  });
  mirrorHost = berth.host;
  work = await makeTempDir('auth-clients');
  const fill = {
    'mirror.example.com:5000': mirrorHost,
    BASE64_USER_COLON_PASSWORD: Buffer.from(`alice:${kc.users['alice'] ?? ''}`).toString('base64'),
  };
  registriesConf = join(work, 'registries.conf');
  await writeFile(registriesConf, await docSnippet(DOC, 'registries-conf', fill));
  authFile = join(work, 'auth.json');
  await writeFile(authFile, await docSnippet(DOC, 'auth-json', fill));
});

after(async () => {
  await berth?.stop();
  await upstreamProxy?.stop();
  await upstream?.stop();
  await kc?.stop();
  if (work) await removeTempDir(work);
});

beforeEach(() => {
  upstreamProxy.reset();
  kc.reset();
});

let seq = 0;
function blobsOf(img: BuiltImage): string[] {
  return [img.configDigest, ...img.layers.map((l) => l.digest)];
}

test('skopeo with the docs auth file (keyed by the mirror host) pulls through a token-protected Berth', async () => {
  const dest = join(work, `dir-${++seq}`);
  await skopeoCopy({ src: 'docker://docker.io/library/private-base:1.0', dest: `dir:${dest}`, registriesConf, authfile: authFile });
  const got = await readDirImage(dest);
  assert.ok(got.manifest.equals(image.manifest));
  assert.deepEqual([...got.blobs.keys()].sort(), blobsOf(image).sort());
  assert.ok(kc.count({ endpoint: 'token', status: 200 }) >= 1, 'skopeo fetched a token from Keycloak');
});

test('skopeo without credentials is refused by Berth, and the upstream sees nothing', async () => {
  const dest = join(work, `dir-${++seq}`);
  const r = await skopeoCopy({
    src: `docker://${mirrorHost}/library/private-base:1.0`,
    dest: `dir:${dest}`,
    check: false,
    env: { REGISTRY_AUTH_FILE: join(work, 'no-such-auth.json') },
  });
  assert.notEqual(r.code, 0);
  // Berth's 401 sends skopeo to Keycloak, which (like the real one) refuses an anonymous token request.
  assert.match(r.stderr, /bearer token/i);
  assert.ok(kc.count({ endpoint: 'token', status: 400 }) >= 1, 'the anonymous token request was refused by Keycloak');
  assert.equal(upstreamProxy.count(), 0);
});

test('ctr --user pulls through the docs hosts.toml from a token-protected Berth', async () => {
  let cd: Containerd | undefined;
  const hostsDir = await makeTempDir('auth-hosts');
  try {
    cd = await startContainerd();
    const content = await docSnippet(DOC, 'containerd-hosts-docker-io', { 'mirror.example.com:5000': mirrorHost });
    await writeHostsToml(hostsDir, 'docker.io', berth.url, { content });
    const denied = await ctrPull(cd, 'docker.io/library/private-base:1.0', { hostsDir, namespace: 'anonymous', check: false });
    assert.notEqual(denied.result.code, 0, 'no credentials, no pull');
    const pulled = await ctrPull(cd, 'docker.io/library/private-base:1.0', { hostsDir, user: `alice:${kc.users['alice'] ?? ''}`, namespace: 'alice' });
    assert.equal(pulled.image?.digest, image.manifestDigest);
    assert.deepEqual([...pulled.blobs].sort(), blobsOf(image).sort());
    assert.ok(kc.count({ endpoint: 'token', status: 200 }) >= 1);
  } finally {
    await cd?.stop();
    await removeTempDir(hostsDir);
  }
});

test('podman with the docs auth file pulls through a token-protected Berth', async () => {
  let podman: Podman | undefined;
  try {
    podman = await startPodman({ registriesConf: await docSnippet(DOC, 'registries-conf', { 'mirror.example.com:5000': mirrorHost }) });
    await podman.podman(['pull', '--quiet', '--authfile', authFile, 'private-base:1.0']);
    const img = await podman.inspect('docker.io/library/private-base:1.0');
    assert.equal(`sha256:${img.id}`, image.configDigest);
    assert.equal(img.digest, image.manifestDigest);
  } finally {
    await podman?.stop();
  }
});

test('dockerd pulls anonymously from a token-protected Berth configured as the docs say (anonymous networks)', async () => {
  const cfg = await docSnippet(DOC, 'berth-auth-anonymous-networks', {
    'https://keycloak.example.com/realms/ci/protocol/docker-v2/auth': kc.tokenUrl,
    'https://keycloak.example.com/realms/ci': kc.issuer,
    'service: berth': `service: ${kc.service}`,
    '/etc/berth/keycloak-trust-chain.pem': kc.trustBundlePath,
    '10.20.0.0/16': '127.0.0.0/8',
  });
  const anonymousBerth = await startBerth({
    ...(parseYaml(cfg) as Record<string, unknown>),
    upstreams: [upstreamOverride(upstreamProxy.url, { tagTtl: '1h' })],
  });
  let dockerd: Dockerd | undefined;
  try {
    const daemonJson = await docSnippet(DOC, 'dockerd-daemon-json', { 'mirror.example.com:5000': anonymousBerth.host });
    dockerd = await startDockerd({ daemonConfig: JSON.parse(daemonJson) as Record<string, unknown> });
    await dockerd.docker(['pull', '--quiet', 'private-base:1.0'], { timeoutMs: 120_000 });
    const img = await dockerd.inspect('private-base:1.0');
    assert.equal(img.id, image.configDigest);
    assert.equal(kc.count({ endpoint: 'token' }), 0, 'no token was needed from an allowed network');
    // The same Berth still wants a token from a client that is not on an allowed network.
    const other = await startBerth({
      ...(parseYaml(cfg.replace('127.0.0.0/8', '10.20.0.0/16')) as Record<string, unknown>),
      upstreams: [upstreamOverride(upstreamProxy.url, { tagTtl: '1h' })],
    });
    try {
      const res = await fetch(`${other.url}/v2/library/private-base/manifests/1.0`);
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm=/);
    } finally {
      await other.stop();
    }
  } finally {
    await dockerd?.stop();
    await anonymousBerth.stop();
  }
});
