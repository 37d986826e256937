// Pre-warm with real `berth worker` processes (the built CLI) on one Redis queue and one storage
// root, and `berth prewarm` from the command line. The crash test needs a download that is slow
// enough to kill a worker in the middle of it, which no real registry does on loopback: a small
// throttling hop (below) slows the first download of one blob; the counting proxy behind it
// still counts every upstream request.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Redis } from 'ioredis';
import {
  startDistribution, startFaultProxy, startRedis, startProcess, buildImage, buildLargeBlobImage, pushImage, makeTempDir, removeTempDir,
  type Distribution, type FaultProxy, type RedisServer, type ProcessHandle,
} from '../helpers/index.js';
import { RedisStatusStore, type EntryStatus } from '../../src/queue/status.js';

let upstream: Distribution;
let proxy: FaultProxy;
let redis: RedisServer;

before(async () => {
  upstream = await startDistribution();
  proxy = await startFaultProxy(upstream.url);
  redis = await startRedis();
});
after(async () => {
  await redis?.stop();
  await proxy?.stop();
  await upstream?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * An HTTP hop that forwards everything to `target`, except that the first GET whose path
 * contains `slowPath` has its body trickled out at `bytesPerTick` every 100 ms.
 */
async function startThrottle(target: string, slowPath: string, bytesPerTick: number): Promise<{ url: string; stop(): Promise<void> }> {
  const t = new URL(target);
  let throttled = false;
  const server: Server = createServer((req, res) => {
    const slow = !throttled && req.method === 'GET' && (req.url ?? '').includes(slowPath);
    if (slow) throttled = true;
    const up = httpRequest({ host: t.hostname, port: Number(t.port), method: req.method, path: req.url, headers: { ...req.headers, host: t.host } }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      if (!slow) {
        ur.pipe(res);
        return;
      }
      ur.pause();
      const tick = setInterval(() => {
        // read(n) answers null while fewer than n bytes are buffered; then take what there is.
        const chunk = (ur.read(bytesPerTick) as Buffer | null) ?? (ur.read() as Buffer | null);
        if (chunk) res.write(chunk);
        if (ur.readableEnded || (ur.readableLength === 0 && ur.complete)) {
          clearInterval(tick);
          res.end();
        }
      }, 100);
      res.once('close', () => {
        clearInterval(tick);
        ur.destroy();
      });
    });
    up.once('error', () => res.destroy());
    req.pipe(up);
  });
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

async function writeConfig(dir: string, cfg: Record<string, unknown>): Promise<string> {
  const file = join(dir, 'berth.yaml');
  await writeFile(file, stringify(cfg));
  return file;
}

function startWorker(configFile: string): Promise<ProcessHandle> {
  return startProcess(process.execPath, ['dist/src/cli.js', 'worker'], {
    env: { BERTH_CONFIG: configFile },
    readyOutput: /pre-warm worker ready/,
    readyTimeoutMs: 15_000,
  });
}

/** Every file under blobs/: name and sha256 of its bytes. */
async function storedBlobs(root: string): Promise<{ name: string; actual: string; size: number }[]> {
  const out: { name: string; actual: string; size: number }[] = [];
  const base = join(root, 'blobs', 'sha256');
  for (const shard of await readdir(base).catch(() => [] as string[])) {
    for (const hex of await readdir(join(base, shard))) {
      const bytes = await readFile(join(base, shard, hex));
      out.push({ name: `sha256:${hex}`, actual: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length });
    }
  }
  return out;
}

async function spoolBytes(root: string): Promise<number> {
  let max = 0;
  for (const f of await readdir(join(root, 'spool')).catch(() => [] as string[])) {
    const s = await stat(join(root, 'spool', f)).catch(() => null);
    if (s) max = Math.max(max, s.size);
  }
  return max;
}

describe('pre-warm worker processes', () => {
  it('a worker killed mid-download: another worker retries the job and completes it; the cache holds no partial blob', async () => {
    const t = randomBytes(3).toString('hex');
    const big = buildLargeBlobImage({ seed: `pw-kill-${t}`, size: 8 * 1024 * 1024 });
    const layer = big.layers[0];
    assert.ok(layer);
    await pushImage(upstream.url, `library/big-${t}`, '1', big);
    const throttle = await startThrottle(proxy.url, layer.digest, 128 * 1024);
    const dir = await makeTempDir('pw-workers');
    const root = join(dir, 'data');
    const prefix = `kill${t}`;
    const ref = `docker.io/library/big-${t}:1`;
    const configFile = await writeConfig(dir, {
      storage: { root },
      upstreams: [{ name: 'docker.io', url: throttle.url, aliases: ['index.docker.io'] }],
      redis: { url: redis.url, prefix },
      prewarm: { schedule: '0 0 1 1 *', lockDuration: '2s', retryDelay: '1s', images: [ref] },
    });
    const workers: ProcessHandle[] = [];
    const statusRedis = new Redis(redis.url);
    try {
      proxy.reset();
      // The first worker queues the entry's boot run and takes it; the second joins the queue.
      workers.push(await startWorker(configFile));
      workers.push(await startWorker(configFile));
      const deadline = Date.now() + 15_000;
      while ((await spoolBytes(root)) < 1024 * 1024) {
        if (Date.now() > deadline) throw new Error(`the download never got going\n${workers.map((w) => w.output()).join('\n')}`);
        await sleep(50);
      }
      const running = workers.find((w) => w.output().includes('pre-warm run started'));
      const other = workers.find((w) => w !== running);
      assert.ok(running && other, 'one worker took the run');
      running.kill('SIGKILL');
      await running.exited;

      const status = new RedisStatusStore(statusRedis, `${prefix}:prewarm-status`);
      const entries = async (): Promise<EntryStatus | undefined> => (await status.all()).find((s) => s.ref === ref);
      const until = Date.now() + 30_000;
      let last: EntryStatus | undefined;
      while ((last = await entries())?.lastResult !== 'success') {
        if (Date.now() > until) throw new Error(`no successful run after the kill: ${JSON.stringify(last)}\n${other.output()}`);
        await sleep(100);
      }
      assert.ok(other.output().includes('pre-warm run started'), 'the surviving worker ran the job');
      assert.equal(last?.resolved[0]?.digest, big.manifestDigest);
      assert.equal(proxy.count({ method: 'GET', pathIncludes: layer.digest }), 2, 'the cut download, then one complete one');

      const blobs = await storedBlobs(root);
      for (const b of blobs) assert.equal(b.actual, b.name, `${b.name} holds exactly its digest's bytes`);
      const names = blobs.map((b) => b.name);
      for (const d of [big.manifestDigest, big.configDigest, layer.digest]) assert.ok(names.includes(d), `${d} is cached`);

      const exit = await other.stop(20_000);
      assert.equal(exit.code, 0, 'SIGTERM closes the worker cleanly');
    } finally {
      statusRedis.disconnect();
      for (const w of workers) await w.stop(2_000);
      await throttle.stop();
      await removeTempDir(dir);
    }
  });

  it('berth prewarm without Redis runs each ref here and prints the result; a second run is unchanged at zero pulls', async () => {
    const t = randomBytes(3).toString('hex');
    const img = buildImage({ seed: `pw-cli-${t}`, layers: [4000] });
    await pushImage(upstream.url, `library/cli-${t}`, '7', img);
    const dir = await makeTempDir('pw-cli');
    const configFile = await writeConfig(dir, {
      storage: { root: join(dir, 'data') },
      upstreams: [{ name: 'docker.io', url: proxy.url, aliases: ['index.docker.io'] }],
      prewarm: { images: [`cli-${t}:7`] },
    });
    const run = async (...args: string[]) => {
      const p = await startProcess(process.execPath, ['dist/src/cli.js', 'prewarm', '--config', configFile, ...args]);
      const exit = await p.exited;
      return { code: exit.code, out: p.output() };
    };
    try {
      proxy.reset();
      const first = await run('--all');
      assert.equal(first.code, 0, first.out);
      assert.match(first.out, new RegExp(`cli-${t}:7: success: 7 ${img.manifestDigest} \\(1 pulls, 2 blobs fetched, 3 digests pinned\\)`));
      proxy.reset();
      const second = await run(`docker.io/library/cli-${t}:7`);
      assert.equal(second.code, 0, second.out);
      assert.match(second.out, /: unchanged: .*\(0 pulls, 0 blobs fetched/);
      assert.equal(proxy.count({ method: 'GET' }), 0);
      const missing = await run(`library/nothing-${t}:1`);
      assert.equal(missing.code, 1);
      assert.match(missing.out, /failed \(permanent\)/);
    } finally {
      await removeTempDir(dir);
    }
  });
});
