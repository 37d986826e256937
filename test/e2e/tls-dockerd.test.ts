// dockerd pulls from Berth over HTTPS, verifying Berth's certificate against a CA it trusts
// through /etc/docker/certs.d/<host:port>/ca.crt, with NO insecure-registries; and without that
// CA file the same pull fails with a certificate error.
//
// dockerd treats every 127.0.0.0/8 registry as insecure (it would skip verification), so Berth
// listens on this machine's first non-loopback IPv4 address (found at test time; the test is
// skipped, saying so, when there is none) and the registry is named `<that-ip>:<port>`. The
// server certificate carries that IP as a subjectAltName and is signed by a CA made here with
// openssl. Berth runs as the built CLI (`serve`), configured as a registry:2 would be:
// REGISTRY_HTTP_ADDR, REGISTRY_HTTP_TLS_CERTIFICATE, REGISTRY_HTTP_TLS_KEY.
//
// Outside the temp dirs this test writes ONE directory, /etc/docker/certs.d/<ip>:<port>/ (unique
// by the free port it got), holding only ca.crt; it is removed in cleanup (and at exit if the
// test dies). The upstream is a real Distribution on loopback.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import {
  buildImage, freePort, guardDir, makeTempDir, pushImage, removeTempDir, startDistribution, startProcess,
  type BuiltImage, type Distribution, type ProcessHandle,
} from '../helpers/index.js';
import { startDockerd, type Dockerd } from '../helpers/clients.js';
import { issueCert, makeCa } from '../helpers/certs.js';

/** The first non-internal IPv4 address of this machine, or null. */
function externalIpv4(): string | null {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal && !a.address.startsWith('127.')) return a.address;
  }
  return null;
}

const ip = externalIpv4();
const skip = ip === null ? 'this machine has no non-loopback IPv4 address, and dockerd never verifies TLS for 127.0.0.0/8 registries' : false;

let dir: string;
let upstream: Distribution;
let berth: ProcessHandle;
let dockerd: Dockerd;
let host: string;
let certsDir: string;
let unguardCerts: () => void = () => undefined;
let caPem: string;
let image: BuiltImage;
let other: BuiltImage;

before(async () => {
  if (ip === null) return;
  dir = await makeTempDir('tls-dockerd');
  upstream = await startDistribution();
  image = buildImage({ seed: 'tls-dockerd', format: 'docker', layers: [2048, 50_000] });
  other = buildImage({ seed: 'tls-dockerd-other', format: 'docker', layers: 1 });
  await pushImage(upstream.url, 'library/tls-app', '1.0', image);
  await pushImage(upstream.url, 'library/tls-app', '2.0', other);

  const port = await freePort();
  host = `${ip}:${port}`;
  const ca = await makeCa(dir, 'berth-e2e');
  caPem = ca.pem;
  const cert = await issueCert(ca, dir, 'berth', { ips: [ip] });
  const configFile = join(dir, 'berth.yaml');
  await writeFile(configFile, stringify({
    upstreams: [{ name: 'docker.io', url: upstream.url, aliases: ['index.docker.io', 'registry-1.docker.io'] }],
    storage: { root: join(dir, 'data') },
    prewarm: { images: [] },
  }));
  berth = await startProcess(process.execPath, ['dist/src/cli.js', 'serve'], {
    env: {
      BERTH_CONFIG: configFile,
      REGISTRY_HTTP_ADDR: host,
      REGISTRY_HTTP_TLS_CERTIFICATE: cert.certFile,
      REGISTRY_HTTP_TLS_KEY: cert.keyFile,
    },
    readyOutput: /berth is serving/,
    readyTimeoutMs: 20_000,
  });
  certsDir = `/etc/docker/certs.d/${host}`;
  unguardCerts = guardDir(certsDir);
  // No registry-mirrors or insecure-registries: dockerd talks to Berth as a registry of its own.
  dockerd = await startDockerd({ daemonConfig: {} });
});

after(async () => {
  await dockerd?.stop();
  await berth?.stop();
  await upstream?.stop();
  if (certsDir) await rm(certsDir, { recursive: true, force: true });
  unguardCerts();
  if (dir) await removeTempDir(dir);
});

test('without the CA in /etc/docker/certs.d, docker pull from Berth fails with a certificate error', { skip }, async () => {
  const r = await dockerd.docker(['pull', `${host}/library/tls-app:2.0`], { check: false, timeoutMs: 120_000 });
  assert.notEqual(r.code, 0, 'the pull must fail');
  assert.match(r.stderr + r.stdout, /x509: certificate signed by unknown authority|certificate is not trusted|unknown authority/);
  assert.doesNotMatch(r.stderr + r.stdout, /http: server gave HTTP response to HTTPS client/, 'Berth spoke TLS');
});

test('with the CA in /etc/docker/certs.d/<ip>:<port>/ca.crt and no insecure-registries, docker pull over HTTPS stores the upstream image', { skip }, async () => {
  await mkdir(certsDir, { recursive: true });
  await writeFile(join(certsDir, 'ca.crt'), caPem);
  const info = await dockerd.docker(['info', '--format', '{{json .RegistryConfig}}']);
  const registry = JSON.parse(info.stdout) as { InsecureRegistryCIDRs?: string[]; IndexConfigs?: Record<string, { Secure?: boolean }> };
  assert.deepEqual(registry.InsecureRegistryCIDRs, ['127.0.0.0/8'], 'only dockerd\'s built-in insecure range: Berth\'s address is verified');
  assert.equal(registry.IndexConfigs?.[host], undefined, `${host} is not configured as an insecure registry`);

  await dockerd.docker(['pull', '--quiet', `${host}/library/tls-app:1.0`], { timeoutMs: 120_000 });
  const img = await dockerd.inspect(`${host}/library/tls-app:1.0`);
  assert.equal(img.id, image.configDigest, 'image id is the upstream config digest');
  assert.deepEqual(img.diffIds, image.layers.map((l) => l.diffId));
  assert.ok(img.repoDigests.includes(`${host}/library/tls-app@${image.manifestDigest}`), img.repoDigests.join(', '));
});
