// Kubernetes service links: with service links on (the default), a kubelet gives every pod
// BERTH_PORT=tcp://…, BERTH_SERVICE_HOST, BERTH_PORT_5000_TCP_* for a Service named `berth`, and
// BERTH_REDIS_* for `berth-redis`. Berth exited 78 on them as unknown config keys. Here the real
// CLI (`serve`, and `worker` against a real Redis) is started with exactly that environment and
// must come up ready.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { freePort, makeTempDir, removeTempDir, startProcess, startRedis, which, type ProcessHandle, type RedisServer } from '../helpers/index.js';

/** Every variable a kubelet injects for a Service with one named TCP port. */
function kubeletLinks(service: string, ip: string, port: number, portName: string): Record<string, string> {
  const v = service.toUpperCase().replace(/-/g, '_');
  return {
    [`${v}_SERVICE_HOST`]: ip,
    [`${v}_SERVICE_PORT`]: String(port),
    [`${v}_SERVICE_PORT_${portName.toUpperCase()}`]: String(port),
    [`${v}_PORT`]: `tcp://${ip}:${port}`,
    [`${v}_PORT_${port}_TCP`]: `tcp://${ip}:${port}`,
    [`${v}_PORT_${port}_TCP_PROTO`]: 'tcp',
    [`${v}_PORT_${port}_TCP_PORT`]: String(port),
    [`${v}_PORT_${port}_TCP_ADDR`]: ip,
  };
}

const podEnv = {
  ...kubeletLinks('kubernetes', '10.96.0.1', 443, 'https'),
  ...kubeletLinks('berth', '10.96.0.11', 5000, 'http'),
  ...kubeletLinks('berth-redis', '10.96.0.12', 6379, 'redis'),
};

const redisAvailable = which('redis-server') !== null;
let redis: RedisServer | null = null;
let dir = '';

before(async () => {
  dir = await makeTempDir('berth-links');
  if (redisAvailable) redis = await startRedis();
});

after(async () => {
  await redis?.stop();
  if (dir !== '') await removeTempDir(dir);
});

async function configFile(name: string, port: number): Promise<string> {
  const file = join(dir, `${name}.yaml`);
  await writeFile(
    file,
    stringify({
      http: { host: '127.0.0.1', port },
      storage: { root: join(dir, 'data') },
      // Never contacted: nothing here pulls.
      upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:9', aliases: ['index.docker.io'] }],
      redis: { url: redis?.url ?? null },
    }),
  );
  return file;
}

async function readyz(url: string, timeoutMs = 10_000): Promise<{ status: number; body: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await request(url);
    const body = await res.body.text();
    if (res.statusCode === 200 || Date.now() > deadline) return { status: res.statusCode, body };
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function run(args: string[], file: string, readyUrl: string): Promise<ProcessHandle> {
  // BERTH_TEST_LOG (a test-runner switch) would itself be an unknown config variable in the child.
  return startProcess(process.execPath, ['dist/src/cli.js', ...args], {
    env: { BERTH_CONFIG: file, BERTH_TEST_LOG: undefined, ...podEnv },
    readyUrl,
    readyTimeoutMs: 15_000,
  });
}

test('berth serve starts ready with the environment a kubelet gives a pod next to Services berth and berth-redis', async () => {
  const port = await freePort();
  const proc = await run(['serve'], await configFile('serve', port), `http://127.0.0.1:${port}/healthz`);
  try {
    const r = await readyz(`http://127.0.0.1:${port}/readyz`);
    assert.equal(r.status, 200, r.body);
    assert.doesNotMatch(proc.output(), /unknown environment variable/);
  } finally {
    const exit = await proc.stop();
    assert.equal(exit.code, 0, proc.output());
  }
});

test('berth worker starts ready with the same environment', { skip: redisAvailable ? false : 'redis-server not installed' }, async () => {
  const port = await freePort();
  const proc = await run(['worker', '--port', String(port)], await configFile('worker', 0), `http://127.0.0.1:${port}/healthz`);
  try {
    const r = await readyz(`http://127.0.0.1:${port}/readyz`);
    assert.equal(r.status, 200, r.body);
  } finally {
    await proc.stop();
  }
});

test('a typo among them still stops the start with exit code 78 and the variable named', async () => {
  const proc = await startProcess(process.execPath, ['dist/src/cli.js', 'serve'], {
    env: { BERTH_CONFIG: await configFile('typo', await freePort()), BERTH_TEST_LOG: undefined, ...podEnv, BERTH_HTTP_PROT: '5001' },
  });
  const exit = await proc.exited;
  assert.equal(exit.code, 78);
  assert.match(proc.output(), /config: BERTH_HTTP_PROT: unknown environment variable: http has no key "prot".*did you mean BERTH_HTTP_PORT\?/);
});
