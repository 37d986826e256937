// The `berth` command as an operator meets it (issue 17 items 6 and 7): help on every command
// without side effects, --version, unknown arguments refused, `berth config` listing its
// subcommands, `prewarm --json` with progress and `prewarm --wait` against real workers, `gc
// --dry-run` listing what would go, `serve` warning when no worker consumes the Redis queue, the
// healthcheck on the port the config resolves to, SIGTERM through `npm start`, and start-up
// errors that name the setting.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { readFile, writeFile, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { MetadataStore } from '../../src/storage/records.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import { createLogger } from '../../src/log.js';
import { startPrewarmWorker } from '../../workers/prewarm.js';
import {
  buildImage, digestOf, freePort, latency, makeTempDir, pushImage, removeTempDir, startDistribution, startFaultProxy, startProcess, startRedis,
  waitForHttp, type Distribution, type RedisServer,
} from '../helpers/index.js';
import { startBerth, startBerthProcess, upstreamOverride } from '../helpers/berth.js';

function berth(args: string[], env: Record<string, string> = {}, timeout = 20_000) {
  const r = spawnSync(process.execPath, ['dist/src/cli.js', ...args], { env: { ...process.env, BERTH_CONFIG: '', ...env }, encoding: 'utf8', timeout });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** As berth(), without blocking this process (a fault proxy running here must keep answering). */
function berthAsync(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['dist/src/cli.js', ...args], { env: { ...process.env, BERTH_CONFIG: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) => child.once('close', (code) => {
    clearTimeout(timer);
    resolve({ code, stdout, stderr });
  }));
}

async function answers(url: string): Promise<boolean> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await r.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

let upstream: Distribution;
let redis: RedisServer;
before(async () => {
  upstream = await startDistribution();
  redis = await startRedis();
});
after(async () => {
  await redis?.stop();
  await upstream?.stop();
});

test('--help on every command prints its usage and starts nothing (serve --help used to start a server)', async () => {
  const port = await freePort();
  const env = { BERTH_HTTP_PORT: String(port), BERTH_HTTP_HOST: '127.0.0.1' };
  for (const cmd of [['serve'], ['worker'], ['prewarm'], ['gc'], ['config', 'check'], ['healthcheck']]) {
    for (const flag of cmd[0] === 'serve' ? ['--help', '-h'] : ['--help']) {
      const r = berth([...cmd, flag], env, 10_000);
      assert.equal(r.code, 0, `${cmd.join(' ')} ${flag}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^usage: berth ${cmd.join(' ')}`), cmd.join(' '));
    }
  }
  assert.equal(await answers(`http://127.0.0.1:${port}/healthz`), false, 'nothing listens');
  const help = berth(['help', 'gc']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--dry-run/);
});

test('--version prints the version from package.json', async () => {
  const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { version: string };
  const r = berth(['--version']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `berth ${pkg.version}\n`);
});

test('unknown options and stray arguments are refused with the usage and exit 2', async () => {
  const port = await freePort();
  const env = { BERTH_HTTP_PORT: String(port), BERTH_HTTP_HOST: '127.0.0.1' };
  const cases: Array<[string[], RegExp]> = [
    [['serve', '--bogus'], /berth serve: unknown option "--bogus"/],
    [['serve', 'now'], /berth serve: unexpected argument "now"/],
    [['worker', '--frob'], /berth worker: unknown option "--frob"/],
    [['prewarm', '--nope', 'alpine:3.20'], /berth prewarm: unknown option "--nope"/],
    [['prewarm', '--all', 'alpine:3.20'], /not both/],
    [['gc', '--dryrun'], /berth gc: unknown option "--dryrun"/],
    [['config', 'frob'], /unknown subcommand "frob"/],
    [['--versoin'], /unknown command "--versoin"/],
  ];
  for (const [args, re] of cases) {
    const r = berth(args, env, 10_000);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
    assert.match(r.stderr, /usage: berth/, args.join(' '));
  }
  assert.equal(await answers(`http://127.0.0.1:${port}/healthz`), false, 'nothing listens');
});

test('`berth config` alone lists its subcommands', () => {
  const r = berth(['config']);
  assert.equal(r.code, 2);
  assert.match(r.stdout, /usage: berth config <subcommand>/);
  assert.match(r.stdout, /config check \[FILE/);
});

test('prewarm --json reports each run as JSON, with progress lines on stderr while it downloads', async () => {
  const img = buildImage({ seed: 'cli-json', layers: [300_000] });
  await pushImage(upstream.url, 'library/cli-json', '1', img);
  const proxy = await startFaultProxy(upstream.url);
  const dir = await makeTempDir('cli-json');
  try {
    const file = join(dir, 'berth.yaml');
    await writeFile(file, stringify({ storage: { root: join(dir, 'data') }, upstreams: [upstreamOverride(proxy.url)], prewarm: { images: [] } }));
    proxy.setRules([latency(2_500, { match: { kind: 'blob' } })]);
    const r = await berthAsync(['prewarm', '--config', file, '--json', 'library/cli-json:1', 'library/cli-missing:1']);
    assert.equal(r.code, 1, `one run failed: ${r.stderr}`);
    const doc = JSON.parse(r.stdout) as { runs: Array<{ ref: string; result: string; digests?: string[]; permanent?: boolean }> };
    assert.equal(doc.runs.length, 2);
    assert.equal(doc.runs[0]?.result, 'success');
    assert.deepEqual(doc.runs[0]?.digests, [img.manifestDigest]);
    assert.equal(doc.runs[1]?.result, 'failed');
    assert.equal(doc.runs[1]?.permanent, true);
    assert.match(r.stderr, /berth prewarm: library\/cli-json:1: [\d.]+ [KM]iB downloaded \(\d+ s\)/);
  } finally {
    await proxy.stop();
    await removeTempDir(dir);
  }
});

test('prewarm --wait with Redis waits for the workers and exits with how the runs ended', async () => {
  const img = buildImage({ seed: 'cli-wait', layers: [50_000] });
  await pushImage(upstream.url, 'library/cli-wait', '2', img);
  const dir = await makeTempDir('cli-wait');
  const file = join(dir, 'berth.yaml');
  await writeFile(file, stringify({
    storage: { root: join(dir, 'data') }, upstreams: [upstreamOverride(upstream.url)],
    redis: { url: redis.url, prefix: `wait${Date.now()}` }, prewarm: { images: [], attempts: 1 },
  }));
  const worker = await startProcess(process.execPath, ['dist/src/cli.js', 'worker'], { env: { BERTH_CONFIG: file }, readyOutput: /pre-warm worker ready/, readyTimeoutMs: 15_000 });
  try {
    const ok = berth(['prewarm', '--config', file, '--wait', '--json', 'library/cli-wait:2'], {}, 60_000);
    assert.equal(ok.code, 0, ok.stderr);
    const doc = JSON.parse(ok.stdout) as { runs: Array<{ result: string; digests?: string[] }> };
    assert.equal(doc.runs[0]?.result, 'success');
    assert.deepEqual(doc.runs[0]?.digests, [img.manifestDigest]);
    const bad = berth(['prewarm', '--config', file, '--wait', 'library/cli-nothing:1'], {}, 60_000);
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.match(bad.stdout, /library\/cli-nothing:1: failed: /);
    const queuedOnly = berth(['prewarm', '--config', file, 'library/cli-wait:2'], {}, 30_000);
    assert.equal(queuedOnly.code, 0, queuedOnly.stderr);
    assert.match(queuedOnly.stdout, /library\/cli-wait:2: (already )?queued as job /);
  } finally {
    await worker.stop();
    await removeTempDir(dir);
  }
});

test('gc --dry-run lists each image and blob that would go, with sizes, and changes nothing', async () => {
  const dir = await makeTempDir('cli-gc');
  try {
    const root = join(dir, 'data');
    const driver = new FilesystemDriver(root);
    await driver.init();
    const layer = Buffer.alloc(300 * 1024, 7);
    const layerDigest = digestOf(layer);
    await driver.putBlobBuffer(layerDigest, layer);
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: layerDigest, size: layer.length }, layers: [] }));
    const manifestDigest = digestOf(manifest);
    await driver.putBlobBuffer(manifestDigest, manifest);
    await new MetadataStore(driver).putManifest(manifestDigest, { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: manifest.length });
    const old = new Date(Date.now() - 7 * 24 * 3600_000);
    for (const d of [layerDigest, manifestDigest]) await utimes(driver.blobPath(d), old, old);
    const file = join(dir, 'berth.yaml');
    await writeFile(file, stringify({ storage: { root } }));
    const dry = berth(['gc', '--dry-run', '--config', file]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would remove 2 blob\(s\)/);
    assert.match(dry.stdout, new RegExp(`image +${manifestDigest} +\\d+ B`));
    assert.match(dry.stdout, new RegExp(`blob +${layerDigest} +300\\.0 KiB`));
    const json = berth(['gc', '--dry-run', '--json', '--config', file]);
    const report = JSON.parse(json.stdout) as { items: Array<{ digest: string; kind: string; bytes: number }> };
    assert.deepEqual(report.items.map((i) => `${i.kind} ${i.digest} ${i.bytes}`).sort(), [`blob ${layerDigest} ${layer.length}`, `manifest ${manifestDigest} ${manifest.length}`].sort());
    assert.ok(await driver.statBlob(layerDigest), 'the dry run removed nothing');
  } finally {
    await removeTempDir(dir);
  }
});

test('serve with Redis and no worker consuming the queue warns in the log and in GET /api/v1/prewarm', async () => {
  const prefix = `noworker${Date.now()}`;
  const b = await startBerth({ upstreams: [upstreamOverride(upstream.url)], redis: { url: redis.url, prefix }, prewarm: { images: [] } });
  try {
    const deadline = Date.now() + 10_000;
    while (!b.logs().some((l) => l.includes('no berth worker is consuming the pre-warm queue')) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const line = b.logs().find((l) => l.includes('no berth worker is consuming the pre-warm queue'));
    assert.ok(line, 'the log warns');
    assert.equal((JSON.parse(line) as { level: number }).level, 40, 'at warn level');
    const listing = await (await fetch(`${b.url}/api/v1/prewarm`)).json() as { workers: number; warnings: string[] };
    assert.equal(listing.workers, 0);
    assert.equal(listing.warnings.length, 1);
    assert.match(listing.warnings[0] ?? '', /no berth worker is consuming the pre-warm queue/);
    const worker = await startPrewarmWorker(b.services.config, createLogger('silent'));
    try {
      const after = await (await fetch(`${b.url}/api/v1/prewarm`)).json() as { workers: number; warnings: string[] };
      assert.equal(after.workers, 1);
      assert.deepEqual(after.warnings, []);
    } finally {
      await worker.close();
    }
  } finally {
    await b.stop();
  }
});

test('healthcheck (the image\'s HEALTHCHECK) probes the port from the YAML, BERTH_HTTP_PORT or REGISTRY_HTTP_ADDR', async () => {
  const dockerfile = await readFile('Dockerfile', 'utf8');
  const hc = /^HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])\s*$/m.exec(dockerfile);
  assert.ok(hc, 'HEALTHCHECK in exec form');
  const [cmd, ...args] = JSON.parse(hc[1] ?? '[]') as string[];
  assert.equal(cmd, 'node');
  const b = await startBerthProcess({ upstreams: [upstreamOverride(upstream.url)] });
  const run = (env: Record<string, string>) => spawnSync(process.execPath, args, { env: { ...process.env, BERTH_CONFIG: '', ...env }, encoding: 'utf8', timeout: 15_000 });
  try {
    // The image sets BERTH_CONFIG; the port lives in that YAML only.
    const yaml = run({ BERTH_CONFIG: b.configFile });
    assert.equal(yaml.status, 0, yaml.stderr);
    assert.equal(run({ BERTH_HTTP_PORT: String(b.port) }).status, 0);
    assert.equal(run({ REGISTRY_HTTP_ADDR: `127.0.0.1:${b.port}` }).status, 0);
    const wrong = run({ BERTH_HTTP_PORT: String(await freePort()) });
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /berth healthcheck: http:\/\/127\.0\.0\.1:\d+\/healthz did not answer/);
    const ready = berth(['healthcheck', '--config', b.configFile, '/readyz']);
    assert.equal(ready.code, 0, ready.stderr);
  } finally {
    await b.stop();
  }
  assert.equal(run({ BERTH_HTTP_PORT: String(b.port) }).status, 1, 'fails once the server is gone');
});

test('SIGTERM to `npm start` reaches the server: it shuts down instead of running on orphaned', async () => {
  const port = await freePort();
  const dir = await makeTempDir('npm-start');
  const env = { ...process.env, BERTH_CONFIG: '', BERTH_HTTP_PORT: String(port), BERTH_HTTP_HOST: '127.0.0.1', BERTH_STORAGE_ROOT: join(dir, 'data') };
  // Its own process group, so the test can clean up whatever is left; the signal goes to npm alone.
  const npm = spawn('npm', ['start'], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  npm.stdout.on('data', (c: Buffer) => (output += c.toString()));
  npm.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<void>((resolve) => npm.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}/healthz`;
  try {
    await waitForHttp(url, 20_000);
    process.kill(npm.pid ?? 0, 'SIGTERM');
    await exited;
    const deadline = Date.now() + 10_000;
    while ((await answers(url)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.equal(await answers(url), false, `the server stopped with npm:\n${output.slice(-2000)}`);
    assert.match(output, /shutting down: finishing in-flight requests and fills/);
  } finally {
    try {
      process.kill(-(npm.pid ?? 0), 'SIGKILL');
    } catch {
      // the group is gone already
    }
    await removeTempDir(dir);
  }
});

test('a port already in use is named as http.port in one sentence, no stack trace', async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const port = (blocker.address() as { port: number }).port;
  const dir = await makeTempDir('inuse');
  try {
    const r = berth(['serve'], { BERTH_HTTP_PORT: String(port), BERTH_HTTP_HOST: '127.0.0.1', BERTH_STORAGE_ROOT: join(dir, 'data') });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`berth: http\\.port ${port} on 127\\.0\\.0\\.1 is already in use \\(EADDRINUSE\\): .*set http\\.port \\(BERTH_HTTP_PORT\\)`));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  } finally {
    blocker.close();
    await removeTempDir(dir);
  }
});
