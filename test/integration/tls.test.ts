// HTTPS on http.port with http.tls.{certificate,key}, and rotation without a restart: the pair
// sits in a directory laid out as the kubelet mounts a Secret (`tls.crt -> ..data/tls.crt`,
// `..data -> ..<version>`), and is rotated the way the kubelet does it (a new version dir, then
// an atomic rename of the `..data` symlink). A fresh TLS connection is opened after each change
// and the certificate it is shown is compared by SHA-256 fingerprint. Upstream: a real Distribution.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:tls';
import { mkdir, rename, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { stringify } from 'yaml';
import { runCommand } from '../helpers/clients.js';
import { buildImage, makeTempDir, pushImage, removeTempDir, startDistribution, type BuiltImage, type Distribution } from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { issueCert, makeCa, type TestCa, type TestCert } from '../helpers/certs.js';

let dir: string;
let secret: string;
let upstream: Distribution;
let berth: BerthHandle;
let image: BuiltImage;
let caA: TestCa;
let caB: TestCa;
let certA: TestCert;
let certB: TestCert;
let certC: TestCert;
let version = 0;

/** Publish a new version of the Secret's files as the kubelet does: new dir, then swap `..data`. */
async function publish(files: { crt: string; key: string }): Promise<void> {
  version++;
  const v = join(secret, `..v${version}`);
  await mkdir(v);
  await writeFile(join(v, 'tls.crt'), files.crt);
  await writeFile(join(v, 'tls.key'), files.key);
  await symlink(`..v${version}`, join(secret, '..data_tmp'));
  await rename(join(secret, '..data_tmp'), join(secret, '..data'));
}

/** The fingerprint of the certificate a fresh TLS connection to Berth is shown. */
function peerFingerprint(): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: berth.port, ca: [caA.pem, caB.pem], servername: 'localhost' }, () => {
      const fp = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fp);
    });
    socket.once('error', reject);
  });
}

async function waitForFingerprint(want: string, withinMs: number): Promise<number> {
  const started = Date.now();
  let seen = '';
  while (Date.now() - started < withinMs) {
    seen = await peerFingerprint();
    if (seen === want) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`within ${withinMs} ms a fresh connection was still shown ${seen}, not ${want}`);
}

const warnings = (): Array<Record<string, unknown>> =>
  berth.logs().map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['level'] === 40 || l['level'] === 'warn');

before(async () => {
  dir = await makeTempDir('tls');
  caA = await makeCa(dir, 'first');
  caB = await makeCa(dir, 'second');
  const san = { ips: ['127.0.0.1'], dns: ['localhost'] };
  certA = await issueCert(caA, dir, 'a', san);
  certB = await issueCert(caB, dir, 'b', san); // another CA, as a re-issued cert-manager Issuer would do
  certC = await issueCert(caA, dir, 'c', san);
  secret = join(dir, 'secret');
  await mkdir(secret);
  await publish({ crt: certA.certPem, key: certA.keyPem });
  await symlink('..data/tls.crt', join(secret, 'tls.crt'));
  await symlink('..data/tls.key', join(secret, 'tls.key'));

  upstream = await startDistribution();
  image = buildImage({ seed: 'tls-image', layers: [4096] });
  await pushImage(upstream.url, 'library/tls-app', '1.0', image);
  berth = await startBerth({
    upstreams: [upstreamOverride(upstream.url)],
    http: { tls: { certificate: join(secret, 'tls.crt'), key: join(secret, 'tls.key'), reloadInterval: '200ms' } },
  });
});

after(async () => {
  await berth?.stop();
  await upstream?.stop();
  if (dir) await removeTempDir(dir);
});

test('serves the registry API over HTTPS with the configured certificate, and refuses plain HTTP', async () => {
  const agent = new Agent({ connect: { ca: caA.pem } });
  try {
    const res = await request(`https://127.0.0.1:${berth.port}/v2/library/tls-app/manifests/1.0`, {
      dispatcher: agent,
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' },
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['docker-content-digest'], image.manifestDigest);
    await res.body.arrayBuffer();
  } finally {
    await agent.close();
  }
  assert.equal(await peerFingerprint(), certA.fingerprint);
  await assert.rejects(request(`http://127.0.0.1:${berth.port}/v2/`, { headersTimeout: 5000, bodyTimeout: 5000 }).then((r) => r.body.text()));
});

test('berth healthcheck (the image HEALTHCHECK) probes over https when http.tls is set', async () => {
  const file = join(dir, 'healthcheck.yaml');
  const tls = { certificate: join(secret, 'tls.crt'), key: join(secret, 'tls.key') };
  await writeFile(file, stringify({ http: { host: '127.0.0.1', port: berth.port, tls }, storage: { root: join(dir, 'hc-data') } }));
  const ok = await runCommand(process.execPath, ['dist/src/cli.js', 'healthcheck', '--config', file], { check: false, timeoutMs: 30_000 });
  assert.equal(ok.code, 0, ok.stderr);
  // The same port without TLS in the config: plain HTTP to a TLS server does not answer.
  await writeFile(file, stringify({ http: { host: '127.0.0.1', port: berth.port }, storage: { root: join(dir, 'hc-data') } }));
  const plain = await runCommand(process.execPath, ['dist/src/cli.js', 'healthcheck', '--config', file], { check: false, timeoutMs: 30_000 });
  assert.equal(plain.code, 1);
  assert.match(plain.stderr, /berth healthcheck: http:\/\/127\.0\.0\.1:\d+\/healthz/);
});

test('a rotated pair (another CA, symlink swap) is served to new connections within seconds, without a restart', async () => {
  const server = berth.services.app.server;
  await publish({ crt: certB.certPem, key: certB.keyPem });
  const took = await waitForFingerprint(certB.fingerprint, 5_000);
  assert.ok(took < 5_000);
  assert.equal(berth.services.app.server, server, 'the same server object: no restart');
  const reloaded = berth.logs().map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['msg'] === 'TLS certificate reloaded');
  assert.equal(reloaded.at(-1)?.['fingerprint'], certB.fingerprint);
  assert.equal(reloaded.at(-1)?.['previous'], certA.fingerprint);
});

test('garbage in the files is logged once as a warning naming the key, and the previous certificate stays', async () => {
  const before = warnings().length;
  await publish({ crt: 'this is not a certificate\n', key: certB.keyPem });
  await new Promise((r) => setTimeout(r, 1_500)); // several reload intervals
  assert.equal(await peerFingerprint(), certB.fingerprint, 'still serving B');
  const added = warnings().slice(before);
  assert.equal(added.length, 1, `one warning, not one per poll: ${JSON.stringify(added)}`);
  const reason = String(added[0]?.['reason']);
  assert.match(reason, /^http\.tls\.certificate: .*tls\.crt holds no PEM certificate/);
  assert.equal(added[0]?.['serving'], certB.fingerprint);
  assert.doesNotMatch(JSON.stringify(added), /routines|error:[0-9A-F]{8}|OSSL|PEM_read/i, 'no OpenSSL text');
});

test('a certificate with the wrong key is refused naming http.tls.key; a good pair after it is loaded', async () => {
  const before = warnings().length;
  await publish({ crt: certC.certPem, key: certA.keyPem });
  await new Promise((r) => setTimeout(r, 1_000));
  assert.equal(await peerFingerprint(), certB.fingerprint, 'still serving B');
  const added = warnings().slice(before);
  assert.equal(added.length, 1, JSON.stringify(added));
  assert.match(String(added[0]?.['reason']), /^http\.tls\.key: .*tls\.key is not the key of the certificate in .*tls\.crt/);
  await publish({ crt: certC.certPem, key: certC.keyPem });
  await waitForFingerprint(certC.fingerprint, 5_000);
});

test('files replaced in place (no symlinks) are picked up too', async () => {
  // What a plain volume or a hand rotation does: rename a new file over each old one.
  const plain = join(dir, 'plain');
  await mkdir(plain);
  await writeFile(join(plain, 'tls.crt'), certA.certPem);
  await writeFile(join(plain, 'tls.key'), certA.keyPem);
  const b = await startBerth({
    upstreams: [upstreamOverride(upstream.url)],
    http: { tls: { certificate: join(plain, 'tls.crt'), key: join(plain, 'tls.key'), reloadInterval: '200ms' } },
  });
  try {
    const shown = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port: b.port, rejectUnauthorized: false }, () => {
          resolve(s.getPeerCertificate().fingerprint256);
          s.end();
        });
        s.once('error', reject);
      });
    assert.equal(await shown(), certA.fingerprint);
    await writeFile(join(plain, 'tls.key.new'), certB.keyPem);
    await writeFile(join(plain, 'tls.crt.new'), certB.certPem);
    await rename(join(plain, 'tls.crt.new'), join(plain, 'tls.crt'));
    await rename(join(plain, 'tls.key.new'), join(plain, 'tls.key'));
    const deadline = Date.now() + 5_000;
    let seen = await shown();
    while (seen !== certB.fingerprint && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      seen = await shown();
    }
    assert.equal(seen, certB.fingerprint);
  } finally {
    await b.stop();
  }
});
