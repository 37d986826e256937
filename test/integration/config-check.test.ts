// `berth config check` refuses exactly what `berth serve` refuses (issue 17.5): both run loadConfig,
// so for each config serve would stop on — a pre-warm image on an unconfigured upstream, an invalid
// reference, an unusable trust bundle, a storage root under /proc, a bare-number duration, a
// misspelt key, a registry:2 config.yml — both exit 78 with the same one-line message, and serve
// stops before it listens or touches the cache. Runs the built CLI.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir, removeTempDir } from '../helpers/index.js';
import { runCommand } from '../helpers/clients.js';

let dir = '';

before(async () => {
  dir = await makeTempDir('berth-check');
  await writeFile(join(dir, 'garbage.pem'), 'not a certificate\n');
  await writeFile(join(dir, 'broken.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
});

after(async () => {
  if (dir !== '') await removeTempDir(dir);
});

const base = (root: string): string => `http: {host: 127.0.0.1, port: 0}\nstorage: {root: ${root}}\n`;
const token = (bundle: string): string =>
  `auth:\n  mode: token\n  token: {realm: "https://kc.example/auth", service: registry, issuer: kc, rootCertBundle: ${bundle}}\n`;

const cases: Array<{ title: string; yaml: (d: string) => string; message: RegExp }> = [
  {
    title: 'a bad CIDR in http.adminNetworks',
    yaml: (d) => `http: {host: 127.0.0.1, port: 0, adminNetworks: [10.0.0.0/40]}\nstorage: {root: ${d}/data}\n`,
    message: /^config: http\.adminNetworks\[0\]: .*10\.0\.0\.0\/40/,
  },
  {
    title: 'a bad CIDR in metrics.networks',
    yaml: (d) => `${base(`${d}/data`)}metrics: {networks: [not-a-network]}\n`,
    message: /^config: metrics\.networks\[0\]: .*not-a-network/,
  },
  {
    title: 'a pre-warm image on an unconfigured upstream',
    yaml: (d) => `${base(`${d}/data`)}prewarm:\n  images: [alpine:3.20, quay.io/org/app:1]\n`,
    message: /^config: prewarm\.images\[1\]\.ref: "quay\.io\/org\/app:1" names the registry "quay\.io", which is not a configured upstream/,
  },
  {
    title: 'an invalid reference',
    yaml: (d) => `${base(`${d}/data`)}prewarm:\n  images: [Alpine:3.20]\n`,
    message: /^config: prewarm\.images\[0\]\.ref: "Alpine:3\.20" is not a valid image reference: "Alpine" is not a valid repository name \(repository names are lower case\)/,
  },
  {
    title: 'a rootCertBundle with no certificate',
    yaml: (d) => `${base(`${d}/data`)}${token(`${d}/../garbage.pem`)}`,
    message: /^config: auth\.token\.rootCertBundle: .*garbage\.pem holds no PEM certificate or public key/,
  },
  {
    title: 'a rootCertBundle with a broken certificate (no OpenSSL text)',
    yaml: (d) => `${base(`${d}/data`)}${token(`${d}/../broken.pem`)}`,
    message: /^config: auth\.token\.rootCertBundle: .*broken\.pem block 1 is not a valid PEM certificate \(its base64 body does not decode to an X\.509 certificate\)$/,
  },
  {
    title: 'a storage root under /proc',
    yaml: () => base('/proc/berth-data'),
    message: /^config: storage\.root: cannot create \/proc\/berth-data: \/proc does not accept new directories/,
  },
  {
    title: 'a bare number for a duration',
    yaml: (d) => `${base(`${d}/data`)}upstreams:\n  - {name: docker.io, url: "https://registry-1.docker.io", tagTtl: 600}\n`,
    message: /^config: upstreams\[0\]\.tagTtl: expected a duration like "10m", got 600: a duration needs a unit, one of ms, s, m, h, d/,
  },
  {
    title: 'a misspelt key',
    yaml: (d) => `${base(`${d}/data`)}upstreams:\n  - {name: docker.io, url: "https://registry-1.docker.io", tagTTL: 10m}\n`,
    message: /^config: upstreams\[0\]\.tagTTL: unknown key \(known: .*\); did you mean "tagTtl"\?/,
  },
  {
    title: 'a registry:2 config.yml',
    yaml: () => 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\nproxy:\n  remoteurl: https://registry-1.docker.io\n',
    message: /^config: .*registry2\.yaml: this is a registry:2 \(Distribution\) config\.yml .*REGISTRY_PROXY_REMOTEURL/,
  },
];

for (const [i, c] of cases.entries()) {
  test(`config check and serve both refuse ${c.title}, with the same message`, async () => {
    const caseDir = join(dir, `case-${i}`);
    const file = join(dir, c.title.startsWith('a registry:2') ? 'registry2.yaml' : `case-${i}.yaml`);
    await runCommand('mkdir', ['-p', caseDir]);
    await writeFile(file, c.yaml(caseDir));
    const env = { BERTH_TEST_LOG: undefined, BERTH_CONFIG: undefined };
    const check = await runCommand(process.execPath, ['dist/src/cli.js', 'config', 'check', file], { env, check: false, timeoutMs: 15_000 });
    const serve = await runCommand(process.execPath, ['dist/src/cli.js', 'serve', '--config', file], { env, check: false, timeoutMs: 15_000 });
    assert.equal(check.code, 78, `config check: ${check.stdout}${check.stderr}`);
    assert.equal(serve.code, 78, `serve: ${serve.stdout}${serve.stderr}`);
    assert.match(check.stderr.trim(), c.message);
    assert.equal(serve.stderr, check.stderr, 'the same message from both');
    assert.equal(check.stderr.trim().split('\n').length, 1, 'one line, no stack trace');
    assert.equal(serve.stdout, '', 'serve stopped before logging anything (nothing listened, nothing indexed)');
    assert.deepEqual(await readdir(caseDir), [], 'serve created no cache');
  });
}
