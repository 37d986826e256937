// The registry:2 → Berth migration of docs/deploy.md, run for real: the Berth Deployment keeps the
// registry:2 Deployment's env block unchanged, and the `berth` CLI started with exactly that
// environment (URLs pointed at a real Distribution and the Keycloak emulator, the listen address
// and directories at temp ones) serves token-authenticated pulls, on a volume that still holds
// Distribution's own folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { request } from 'undici';
import {
  startDistribution, buildImage, pushImage, makeTempDir, removeTempDir, freePort, startProcess, digestOf,
} from '../helpers/index.js';
import { startKeycloakEmulator } from '../helpers/keycloak.js';
import { docSnippet, readDocSnippets } from '../helpers/clients.js';

const DOC = 'docs/deploy.md';

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}
interface Container {
  name: string;
  image: string;
  env: EnvVar[];
  livenessProbe?: { httpGet?: { path: string } };
  readinessProbe?: { httpGet?: { path: string } };
  securityContext?: { readOnlyRootFilesystem?: boolean };
  volumeMounts: { name: string; mountPath: string }[];
}
interface DeploymentDoc {
  kind: string;
  spec: { template: { spec: { containers: Container[]; securityContext?: { runAsUser?: number; fsGroup?: number } } } };
}

function container(doc: DeploymentDoc): Container {
  const c = doc.spec.template.spec.containers[0];
  assert.ok(c);
  return c;
}

test('every snippet in docs/deploy.md is checked here', async () => {
  const source = await readFile('test/unit/deploy-migration.test.ts', 'utf8');
  for (const id of (await readDocSnippets(DOC)).keys()) assert.ok(source.includes(`'${id}'`), `snippet ${id} is used by this test`);
});

test('the migrated Deployment keeps the registry:2 env block exactly, and adds Berth\'s probes and a read-only root', async () => {
  const before = parseYaml(await docSnippet(DOC, 'registry2-deployment')) as DeploymentDoc;
  const after = parseYaml(await docSnippet(DOC, 'berth-migrated-deployment')) as DeploymentDoc;
  const b = container(before);
  const a = container(after);
  assert.equal(b.image, 'registry:2');
  assert.notEqual(a.image, b.image);
  assert.deepEqual(a.env, b.env, 'the same environment');
  assert.ok(a.env.some((e) => e.name.startsWith('REGISTRY_AUTH_TOKEN_')), 'the Keycloak block is there');
  const mountsOf = (c: Container) => c.volumeMounts.filter((m) => m.name !== 'tmp');
  assert.deepEqual(mountsOf(a), mountsOf(b), 'the same volumes at the same paths');
  assert.equal(a.livenessProbe?.httpGet?.path, '/healthz');
  assert.equal(a.readinessProbe?.httpGet?.path, '/readyz');
  assert.equal(a.securityContext?.readOnlyRootFilesystem, true);
  assert.ok(a.volumeMounts.some((m) => m.mountPath === '/tmp'));
  assert.equal(after.spec.template.spec.securityContext?.fsGroup, 1000, 'the volume is writable for the image\'s uid');
});

test('berth serve started with only the migrated env block pulls with Keycloak tokens from the upstream', async () => {
  const doc = parseYaml(await docSnippet(DOC, 'berth-migrated-deployment')) as DeploymentDoc;
  const envBlock = container(doc).env;
  const value = (name: string): string => {
    const v = envBlock.find((e) => e.name === name)?.value;
    assert.ok(v !== undefined, `${name} in the env block`);
    return v;
  };
  const kc = await startKeycloakEmulator({ clientId: value('REGISTRY_AUTH_TOKEN_SERVICE') });
  const upstream = await startDistribution();
  const dir = await makeTempDir('migration');
  try {
    const img = buildImage({ seed: 'migrated', layers: [4096] });
    await pushImage(upstream.url, 'library/migrated', '1.0', img);
    // A volume that registry:2 used before: its storage folder stays where it is.
    const root = join(dir, 'registry');
    await mkdir(join(root, 'docker', 'registry', 'v2'), { recursive: true });
    await writeFile(join(root, 'docker', 'registry', 'v2', 'left-by-distribution'), 'x');
    const port = await freePort();
    // The doc's values, each swapped for its test counterpart; nothing is added or dropped.
    const swap: Record<string, string> = {
      REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`,
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: root,
      REGISTRY_PROXY_REMOTEURL: upstream.url,
      REGISTRY_AUTH_TOKEN_REALM: kc.tokenUrl,
      REGISTRY_AUTH_TOKEN_ISSUER: kc.issuer,
      REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE: kc.trustBundlePath,
    };
    const secrets: Record<string, string> = { 'dockerhub-credentials/username': 'ci-bot', 'dockerhub-credentials/password': 'hub-token' };
    const env: NodeJS.ProcessEnv = { BERTH_CONFIG: undefined };
    for (const e of envBlock) {
      const ref = e.valueFrom?.secretKeyRef;
      env[e.name] = ref ? secrets[`${ref.name}/${ref.key}`] : (swap[e.name] ?? e.value);
      assert.ok(env[e.name] !== undefined, e.name);
    }
    assert.equal(env['REGISTRY_AUTH_TOKEN_SERVICE'], kc.service);
    const proc = await startProcess(process.execPath, ['dist/src/cli.js', 'serve'], {
      env,
      readyUrl: `http://127.0.0.1:${port}/healthz`,
      readyTimeoutMs: 15_000,
    });
    try {
      const base = `http://127.0.0.1:${port}`;
      const ping = await request(`${base}/v2/`);
      await ping.body.dump();
      assert.equal(ping.statusCode, 401);
      assert.match(String(ping.headers['www-authenticate']), new RegExp(`^Bearer realm="${kc.tokenUrl}",service="${kc.service}"`));
      const t = await kc.fetchToken('alice', 'repository:library/migrated:pull');
      assert.equal(t.status, 200, t.body);
      const auth = { authorization: `Bearer ${t.token ?? ''}` };
      const m = await request(`${base}/v2/library/migrated/manifests/1.0`, { headers: { ...auth, accept: img.mediaType } });
      const body = Buffer.from(await m.body.arrayBuffer());
      assert.equal(m.statusCode, 200, body.toString());
      assert.equal(digestOf(body), img.manifestDigest);
      const layer = img.layers[0];
      assert.ok(layer);
      const blob = await request(`${base}/v2/library/migrated/blobs/${layer.digest}`, { headers: auth });
      assert.equal(digestOf(Buffer.from(await blob.body.arrayBuffer())), layer.digest);
      assert.equal(await readFile(join(root, 'docker', 'registry', 'v2', 'left-by-distribution'), 'utf8'), 'x', 'Distribution\'s folder is left alone');
    } finally {
      await proc.stop();
    }
  } finally {
    await upstream.stop();
    await kc.stop();
    await removeTempDir(dir);
  }
});
