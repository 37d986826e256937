// Real clients against a token-protected Berth, with tokens from the Keycloak docker-v2 emulator:
// what each client reads from Berth's challenge and sends to Keycloak is checked on the emulator's
// side (service and scope exactly as challenged; containerd's POST → 405 → GET fallback), and a
// refused client must cost the upstream nothing. docs/clients.md's own snippets are exercised by
// clients-auth.test.ts; this file pins the protocol.
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
import { ctrPull, readDirImage, skopeoCopy, startContainerd, writeHostsToml, type Containerd } from '../helpers/clients.js';

let kc: KeycloakEmulator;
let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;
let work: string;
let base: BuiltImage;
let app: BuiltImage;
let cd: Containerd | undefined;

before(async () => {
  kc = await startKeycloakEmulator();
  upstream = await startDistribution();
  base = buildImage({ seed: 'auth-e2e-base', layers: [1024, 30_000] });
  app = buildImage({ seed: 'auth-e2e-app', layers: 1 });
  await pushImage(upstream.url, 'library/base', '1.0', base);
  await pushImage(upstream.url, 'org/app', 'v1', app);
  proxy = await startFaultProxy(upstream.url);
  berth = await startBerth({
    upstreams: [upstreamOverride(proxy.url, { tagTtl: '1h' }), { name: 'ghcr.io', url: proxy.url, tagTtl: '1h' }],
    auth: { mode: 'token', token: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: kc.trustBundlePath } },
  });
  work = await makeTempDir('auth-e2e');
});

after(async () => {
  await cd?.stop();
  await berth?.stop();
  await proxy?.stop();
  await upstream?.stop();
  await kc?.stop();
  if (work) await removeTempDir(work);
});

beforeEach(() => {
  proxy.reset();
  kc.reset();
});

let seq = 0;
const digestsOf = (img: BuiltImage) => [img.configDigest, ...img.layers.map((l) => l.digest)].sort();

async function authFile(user: string, password: string): Promise<string> {
  const file = join(work, `auth-${++seq}.json`);
  await writeFile(file, JSON.stringify({ auths: { [berth.host]: { auth: Buffer.from(`${user}:${password}`).toString('base64') } } }));
  return file;
}

/** The token requests the emulator saw, as (method, status, user, service, scope). */
function tokenRequests() {
  return kc.requests().filter((r) => r.endpoint === 'token').map((r) => {
    const q = new URL(r.url, 'http://x').searchParams;
    return { method: r.method, status: r.status, user: r.user, service: q.get('service'), scopes: q.getAll('scope') };
  });
}

async function containerd(): Promise<Containerd> {
  cd ??= await startContainerd();
  return cd;
}

test('skopeo with an authfile keyed by the mirror host: token for exactly the challenged scope, byte-exact pull', async () => {
  const dest = join(work, `dir-${++seq}`);
  await skopeoCopy({ src: `docker://${berth.host}/library/base:1.0`, dest: `dir:${dest}`, authfile: await authFile('alice', kc.users['alice'] ?? '') });
  const got = await readDirImage(dest);
  assert.ok(got.manifest.equals(base.manifest));
  assert.deepEqual([...got.blobs.keys()].sort(), digestsOf(base));
  const granted = tokenRequests().filter((r) => r.status === 200);
  assert.ok(granted.length >= 1);
  for (const r of granted) {
    assert.equal(r.method, 'GET');
    assert.equal(r.user, 'alice');
    assert.equal(r.service, kc.service, 'service taken from the challenge');
    assert.deepEqual(r.scopes, ['repository:library/base:pull'], 'scope taken from the challenge');
  }
});

test('skopeo without credentials fails: it follows the challenge to Keycloak, gets no token, the upstream sees nothing', async () => {
  const r = await skopeoCopy({
    src: `docker://${berth.host}/library/base:1.0`,
    dest: `dir:${join(work, `dir-${++seq}`)}`,
    check: false,
    env: { REGISTRY_AUTH_FILE: join(work, 'absent.json') },
  });
  assert.notEqual(r.code, 0);
  const asked = tokenRequests();
  assert.ok(asked.length >= 1, `skopeo asked Keycloak for a token: ${r.stderr}`);
  assert.ok(asked.every((t) => t.user === null && t.status === 400 && t.service === kc.service));
  assert.deepEqual(asked[0]?.scopes, ['repository:library/base:pull']);
  assert.equal(proxy.count(), 0);
});

test('skopeo with a wrong password fails at Keycloak (401) and never reaches the upstream', async () => {
  const r = await skopeoCopy({
    src: `docker://${berth.host}/library/base:1.0`,
    dest: `dir:${join(work, `dir-${++seq}`)}`,
    authfile: await authFile('alice', 'wrong'),
    check: false,
  });
  assert.notEqual(r.code, 0);
  assert.ok(tokenRequests().some((t) => t.status === 401 && t.user === 'alice'));
  assert.equal(proxy.count(), 0);
});

test('ctr --user: containerd POSTs first, gets 405, falls back to GET with Basic, and pulls', async () => {
  const c = await containerd();
  const hostsDir = await makeTempDir('auth-e2e-hosts');
  try {
    await writeHostsToml(hostsDir, 'docker.io', berth.url, { server: berth.url });
    const pulled = await ctrPull(c, 'docker.io/library/base:1.0', { hostsDir, user: `bob:${kc.users['bob'] ?? ''}`, namespace: 'bob' });
    assert.equal(pulled.image?.digest, base.manifestDigest);
    assert.deepEqual([...pulled.blobs].sort(), digestsOf(base));
    const asked = tokenRequests();
    assert.ok(asked.some((t) => t.method === 'POST' && t.status === 405), 'the OAuth2 POST was tried and refused');
    const got = asked.filter((t) => t.method === 'GET' && t.status === 200);
    assert.ok(got.length >= 1, JSON.stringify(asked));
    assert.ok(got.every((t) => t.user === 'bob' && t.service === kc.service && t.scopes.includes('repository:library/base:pull')));
  } finally {
    await removeTempDir(hostsDir);
  }
});

test('ctr for another upstream (?ns=ghcr.io): the challenge scope names the repository as containerd asked for it', async () => {
  const c = await containerd();
  const hostsDir = await makeTempDir('auth-e2e-hosts');
  try {
    await writeHostsToml(hostsDir, 'ghcr.io', berth.url, { server: berth.url });
    const pulled = await ctrPull(c, 'ghcr.io/org/app:v1', { hostsDir, user: `carol:${kc.users['carol'] ?? ''}`, namespace: 'carol' });
    assert.equal(pulled.image?.digest, app.manifestDigest);
    const got = tokenRequests().filter((t) => t.status === 200);
    assert.ok(got.length >= 1);
    assert.ok(got.every((t) => t.scopes.join(' ').includes('repository:org/app:pull')), JSON.stringify(got));
  } finally {
    await removeTempDir(hostsDir);
  }
});

test('ctr without credentials is refused, and the upstream sees nothing', async () => {
  const c = await containerd();
  const hostsDir = await makeTempDir('auth-e2e-hosts');
  try {
    await writeHostsToml(hostsDir, 'docker.io', berth.url, { server: berth.url });
    const denied = await ctrPull(c, 'docker.io/library/base:1.0', { hostsDir, namespace: 'nobody', check: false, timeoutMs: 60_000 });
    assert.notEqual(denied.result.code, 0);
    const asked = tokenRequests();
    assert.ok(asked.length >= 1, 'containerd followed the challenge to Keycloak');
    assert.ok(asked.every((t) => t.method === 'GET' && t.user === null && t.status === 400), JSON.stringify(asked));
    assert.equal(proxy.count(), 0);
  } finally {
    await removeTempDir(hostsDir);
  }
});
