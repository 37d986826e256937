// Protects the process, port, temp-dir and Redis helpers: children die on stop() and at exit,
// temp dirs go away, missing binaries fail with the apt-get hint.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { freePort, waitForPort } from '../helpers/ports.js';
import { requireBinary, startProcess, waitForHttp, which } from '../helpers/proc.js';
import { makeTempDir, removeTempDir } from '../helpers/tmp.js';
import { pingRedis, startRedis } from '../helpers/redis.js';

/** True when pid no longer runs (gone, or a zombie nobody has reaped yet). */
function dead(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

describe('process and port helpers', () => {
  test('freePort gives a port that can be listened on', async () => {
    const port = await freePort();
    const srv = createServer();
    await new Promise<void>((resolve) => srv.listen(port, '127.0.0.1', resolve));
    assert.equal((srv.address() as AddressInfo).port, port);
    await waitForPort(port, 1000);
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  });

  test('a missing binary fails with the package to install', async () => {
    assert.throws(() => requireBinary('docker-registry-nope', 'docker-registry'), /docker-registry-nope not found: apt-get install -y docker-registry/);
    await assert.rejects(startProcess('umoci-missing-xyz', []), /not found/);
    assert.equal(which('definitely-not-a-binary-xyz'), null);
    assert.ok(which('sh'));
  });

  test('startProcess captures output, waits for readyOutput and stop() ends the child', async () => {
    const p = await startProcess('sh', ['-c', 'echo oops >&2; echo hello; sleep 0.1; echo ready; exec sleep 30'], { readyOutput: /ready/ });
    assert.match(p.output(), /hello\n/);
    assert.match(p.output(), /oops/);
    assert.equal(p.hasExited(), false);
    const exit = await p.stop();
    assert.equal(exit.signal, 'SIGTERM');
    assert.ok(dead(p.pid));
  });

  test('stop() escalates to SIGKILL when SIGTERM is ignored', async () => {
    const p = await startProcess('sh', ['-c', 'trap "" TERM; echo up; exec sleep 30'], { readyOutput: /up/ });
    const t0 = Date.now();
    const exit = await p.stop(300);
    assert.equal(exit.signal, 'SIGKILL');
    assert.ok(Date.now() - t0 >= 250);
  });

  test('processGroup signals the whole group, grandchildren included', async () => {
    const p = await startProcess('sh', ['-c', 'sleep 30 & echo "grandchild $!"; wait'], { readyOutput: /grandchild \d+/, processGroup: true });
    const grandchild = Number(/grandchild (\d+)/.exec(p.output())?.[1]);
    assert.ok(grandchild > 0);
    await p.stop();
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(dead(grandchild), 'grandchild survived');
  });

  test('a child that exits before it is ready fails start with its output', async () => {
    await assert.rejects(startProcess('sh', ['-c', 'echo broken config; exit 3'], { readyUrl: 'http://127.0.0.1:1/', readyTimeoutMs: 5000 }), /exited before ready \(code 3[\s\S]*broken config/);
    await assert.rejects(startProcess('sh', ['-c', 'exec sleep 30'], { readyOutput: /never/, readyTimeoutMs: 200 }), /did not match/);
  });

  test('output() is bounded and logFile gets everything', async () => {
    const dir = await makeTempDir('proc');
    const logFile = join(dir, 'out.log');
    const p = await startProcess('sh', ['-c', 'i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done'], { maxOutputBytes: 100, logFile });
    await p.exited;
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(p.output().length < 200);
    assert.match(p.output(), /bytes dropped[\s\S]*line-199\n$/);
    assert.match(readFileSync(logFile, 'utf8'), /^line-0\n[\s\S]*line-199\n$/);
    await removeTempDir(dir);
    assert.equal(existsSync(dir), false);
  });

  test('waitForHttp resolves on any status and rejects on timeout', async () => {
    const srv = createServer((_req, res) => {
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    await waitForHttp(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/v2/`, 1000);
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    await assert.rejects(waitForHttp(`http://127.0.0.1:${await freePort()}/`, 150), /no HTTP answer/);
  });

  test('children and temp dirs left behind are cleaned up when the test process exits', async () => {
    const helpers = new URL('../helpers/', import.meta.url).href;
    const script = `
      import { startProcess } from '${helpers}proc.js';
      import { makeTempDir } from '${helpers}tmp.js';
      const p = await startProcess('sleep', ['30']);
      const dir = await makeTempDir('leak');
      console.log(JSON.stringify({ pid: p.pid, dir }));
      process.exit(0);
    `;
    const dir = await makeTempDir('exit-test');
    const file = join(dir, 'leak.mjs');
    writeFileSync(file, script);
    const r = spawnSync(process.execPath, [file], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const { pid, dir: leaked } = JSON.parse(r.stdout) as { pid: number; dir: string };
    await new Promise((res) => setTimeout(res, 100));
    assert.ok(dead(pid), `child ${pid} survived its parent`);
    assert.equal(existsSync(leaked), false);
    await removeTempDir(dir);
  });

  test('a forgotten registry, redis and fault proxy neither hang the test process nor outlive it', { skip: which('docker-registry') === null || which('redis-server') === null }, async () => {
    const helpers = new URL('../helpers/', import.meta.url).href;
    const script = `
      import { startDistribution } from '${helpers}registry.js';
      import { startRedis } from '${helpers}redis.js';
      import { startFaultProxy } from '${helpers}fault-proxy.js';
      const reg = await startDistribution();
      const redis = await startRedis();
      await startFaultProxy(reg.url);
      console.log(JSON.stringify({ pids: [reg.process.pid, redis.process.pid], dirs: [reg.root] }));
    `;
    const dir = await makeTempDir('exit-test');
    const file = join(dir, 'forgot.mjs');
    writeFileSync(file, script);
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 15_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(Date.now() - t0 < 10_000);
    const { pids, dirs } = JSON.parse(r.stdout) as { pids: number[]; dirs: string[] };
    await new Promise((res) => setTimeout(res, 100));
    for (const pid of pids) assert.ok(dead(pid), `child ${pid} survived its parent`);
    for (const d of dirs) assert.equal(existsSync(d), false);
    await removeTempDir(dir);
  });
  test('children and temp dirs of a SIGKILLed test process are removed by the watchdog', { skip: which('docker-registry') === null }, async () => {
    const helpers = new URL('../helpers/', import.meta.url).href;
    const script = `
      import { startDistribution } from '${helpers}registry.js';
      import { startProcess } from '${helpers}proc.js';
      const reg = await startDistribution();
      const p = await startProcess('sleep', ['30']);
      console.log(JSON.stringify({ pids: [reg.process.pid, p.pid], dirs: [reg.root] }));
      setInterval(() => undefined, 1000);
    `;
    const dir = await makeTempDir('kill-test');
    const file = join(dir, 'killed.mjs');
    writeFileSync(file, script);
    const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    while (!out.includes('\n')) await new Promise((r) => setTimeout(r, 20));
    const { pids, dirs } = JSON.parse(out) as { pids: number[]; dirs: string[] };
    child.kill('SIGKILL');
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && !(pids.every(dead) && dirs.every((d) => !existsSync(d)))) {
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const pid of pids) assert.ok(dead(pid), `child ${pid} survived a SIGKILLed parent`);
    for (const d of dirs) assert.equal(existsSync(d), false);
    await removeTempDir(dir);
  });
});

describe('redis helper', { skip: which('redis-server') === null ? 'redis-server not installed' : false }, () => {
  test('startRedis answers PING on its port and stop() kills it', async () => {
    const redis = await startRedis();
    assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
    assert.equal(await pingRedis(redis.port), true);
    await redis.stop();
    assert.ok(dead(redis.process.pid));
    assert.equal(await pingRedis(redis.port, '127.0.0.1', 300), false);
  });
});
