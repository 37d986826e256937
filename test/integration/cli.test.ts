// The `berth` command as an operator runs it: config check, bad config, serve, graceful stop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFile, readdir, access } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import {
  makeTempDir, removeTempDir, startDistribution, startFaultProxy, buildImage, pushImage, latency,
} from '../helpers/index.js';
import { startBerthProcess, upstreamOverride } from '../helpers/berth.js';

function berth(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['dist/src/cli.js', ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('config check prints the effective config with secrets masked and units kept', async () => {
  const dir = await makeTempDir('cli');
  try {
    const file = join(dir, 'berth.yaml');
    await writeFile(file, [
      'storage:', `  root: ${join(dir, 'data')}`, '  maxSize: 50GiB',
      'upstreams:', '  - name: docker.io', '    url: https://registry-1.docker.io',
      '    username: ci-bot', '    password: "s3cret-pat"', '    tagTtl: 15m',
    ].join('\n'));
    const r = berth(['config', 'check', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /: OK/);
    assert.match(r.stdout, /tagTtl: 15m/);
    assert.match(r.stdout, /maxSize: 50GiB/);
    assert.doesNotMatch(r.stdout, /s3cret-pat/);
    assert.match(r.stdout, /password: "?\*\*\*"?/);
  } finally {
    await removeTempDir(dir);
  }
});

test('a bad config is refused at start with a message naming the key, no stack trace', async () => {
  const dir = await makeTempDir('cli');
  try {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'http:\n  prot: 5000\n');
    const r = berth(['serve'], { BERTH_CONFIG: file });
    assert.equal(r.code, 78);
    assert.match(r.stderr, /http\.prot: unknown key/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    const env = berth(['config', 'check'], { BERTH_CONFIG: '', BERTH_HTTP_PORT: 'lots' });
    assert.equal(env.code, 78);
    assert.match(env.stderr, /http\.port/);
  } finally {
    await removeTempDir(dir);
  }
});

test('an unknown command prints usage and exits 2', () => {
  const r = berth(['frobnicate']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /usage: berth/);
});

test('SIGTERM lets an in-flight blob fill finish and commit before the process exits', async () => {
  const upstream = await startDistribution();
  const proxy = await startFaultProxy(upstream.url);
  const img = buildImage({ seed: 'graceful', layers: [4_000_000], compression: 'none' });
  await pushImage(upstream.url, 'library/graceful', 'v1', img);
  const layer = img.layers[0];
  assert.ok(layer);
  const b = await startBerthProcess({ upstreams: [upstreamOverride(proxy.url)] });
  try {
    proxy.setRules([latency(800, { match: { kind: 'blob' } })]);
    const res = request(`${b.url}/v2/library/graceful/blobs/${layer.digest}`);
    await proxy.waitForCount({ kind: 'blob' }, 1);
    b.proc.kill('SIGTERM');
    const got = await res;
    const body = Buffer.from(await got.body.arrayBuffer());
    assert.equal(body.length, layer.size, 'the in-flight response completed');
    const exit = await b.proc.exited;
    assert.equal(exit.code, 0);
    const hex = layer.digest.slice('sha256:'.length);
    await access(join(b.root, 'blobs', 'sha256', hex.slice(0, 2), hex));
    assert.deepEqual(await readdir(join(b.root, 'spool')), []);
  } finally {
    await b.stop();
    await proxy.stop();
    await upstream.stop();
  }
});
