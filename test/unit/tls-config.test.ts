// http.tls as configuration: REGISTRY_HTTP_TLS_CERTIFICATE / _KEY (registry:2's names) and the
// BERTH_* and YAML forms reach http.tls; half a pair is refused; and loadConfig (so `serve` and
// `config check` alike) refuses files that cannot serve HTTPS with a message naming the key and
// the file, never OpenSSL's text. Certificates are made with the openssl CLI.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/errors.js';
import { readTlsPair } from '../../src/config/disk.js';
import { makeTempDir, removeTempDir } from '../helpers/index.js';
import { issueCert, makeCa, type TestCert } from '../helpers/certs.js';
import { runCommand } from '../helpers/clients.js';

let dir: string;
let a: TestCert;
let b: TestCert;

const OPENSSL_TEXT = /routines|error:[0-9A-F]{6,}|OSSL_|PEM_read|DECODER|asn1/i;

before(async () => {
  dir = await makeTempDir('tls-config');
  const ca = await makeCa(dir, 'unit');
  a = await issueCert(ca, dir, 'a', { dns: ['mirror.example.com'], ips: ['10.0.0.5'] });
  b = await issueCert(ca, dir, 'b', { dns: ['other.example.com'] });
});

after(async () => {
  if (dir) await removeTempDir(dir);
});

test('REGISTRY_HTTP_TLS_CERTIFICATE and REGISTRY_HTTP_TLS_KEY set http.tls.certificate and http.tls.key', () => {
  const cfg = parseConfig({ env: { REGISTRY_HTTP_TLS_CERTIFICATE: '/certs/tls.crt', REGISTRY_HTTP_TLS_KEY: '/certs/tls.key' } });
  assert.deepEqual(cfg.http.tls, { certificate: '/certs/tls.crt', key: '/certs/tls.key', reloadInterval: 2_000 });
  const berth = parseConfig({ env: { BERTH_HTTP_TLS_CERTIFICATE: '/c.pem', BERTH_HTTP_TLS_KEY: '/k.pem', BERTH_HTTP_TLS_RELOADINTERVAL: '10s' } });
  assert.deepEqual(berth.http.tls, { certificate: '/c.pem', key: '/k.pem', reloadInterval: 10_000 });
  assert.deepEqual(parseConfig({}).http.tls, { certificate: null, key: null, reloadInterval: 2_000 }, 'plain HTTP by default');
});

test('a certificate without a key (or a key without a certificate) is refused naming the missing key', () => {
  assert.throws(() => parseConfig({ env: { REGISTRY_HTTP_TLS_CERTIFICATE: '/certs/tls.crt' } }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.key, 'http.tls.key');
    assert.match(err.message, /required when http\.tls\.certificate is set/);
    return true;
  });
  assert.throws(() => parseConfig({ overrides: { http: { tls: { key: '/k' } } } }), /config: http\.tls\.certificate: required when http\.tls\.key is set/);
});

test('loadConfig accepts a matching pair and reads what the log shows of it', async () => {
  const cfg = await loadConfig({ file: null, env: {}, overrides: { storage: { root: join(dir, 'data') }, http: { tls: { certificate: a.certFile, key: a.keyFile } } } });
  assert.equal(cfg.http.tls.certificate, a.certFile);
  const pair = await readTlsPair(a.certFile, a.keyFile);
  assert.equal(pair.fingerprint, a.fingerprint);
  assert.match(pair.names, /DNS:mirror\.example\.com/);
  assert.match(pair.names, /IP Address:10\.0\.0\.5/);
  assert.ok(Date.parse(pair.notAfter) > Date.now());
});

async function refusal(files: { cert: string; key: string }): Promise<ConfigError> {
  const err = await loadConfig({ file: null, env: {}, overrides: { storage: { root: join(dir, 'data') }, http: { tls: { certificate: files.cert, key: files.key } } } }).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
  assert.doesNotMatch(err.message, OPENSSL_TEXT, 'no OpenSSL text');
  return err;
}

test('files that cannot serve HTTPS are refused at load, naming the key and the file', async () => {
  const garbage = join(dir, 'garbage.pem');
  await writeFile(garbage, 'not a certificate at all\n');
  const badBody = join(dir, 'bad-body.pem');
  await writeFile(badBody, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n');
  const encrypted = join(dir, 'encrypted.key');
  await runCommand('openssl', ['pkey', '-in', a.keyFile, '-aes256', '-passout', 'pass:secret', '-out', encrypted]);

  let e = await refusal({ cert: garbage, key: a.keyFile });
  assert.equal(e.key, 'http.tls.certificate');
  assert.match(e.message, /garbage\.pem holds no PEM certificate/);

  e = await refusal({ cert: badBody, key: a.keyFile });
  assert.equal(e.key, 'http.tls.certificate');
  assert.match(e.message, /bad-body\.pem certificate 1 is not a valid PEM certificate/);

  e = await refusal({ cert: a.certFile, key: b.keyFile });
  assert.equal(e.key, 'http.tls.key');
  assert.match(e.message, /b\.key is not the key of the certificate in .*a\.crt \(CN=a, SHA-256 /);

  e = await refusal({ cert: a.keyFile, key: a.certFile });
  assert.equal(e.key, 'http.tls.certificate', 'swapped: the certificate file is checked first');
  assert.match(e.message, /holds no PEM certificate/);
  e = await refusal({ cert: a.certFile, key: a.certFile });
  assert.equal(e.key, 'http.tls.key');
  assert.match(e.message, /holds no PEM private key .*are certificate and key swapped\?/);

  e = await refusal({ cert: a.certFile, key: encrypted });
  assert.equal(e.key, 'http.tls.key');
  assert.match(e.message, /encrypted with a passphrase/);

  e = await refusal({ cert: join(dir, 'missing.crt'), key: a.keyFile });
  assert.equal(e.key, 'http.tls.certificate');
  assert.match(e.message, /cannot read .*missing\.crt: ENOENT/);

  e = await refusal({ cert: a.certFile, key: dir });
  assert.equal(e.key, 'http.tls.key');
  assert.match(e.message, /EISDIR/);
});
