// Issue 17.13: on a default install (no storage.maxSize) the storage panel and alert need
// berth_storage_max_bytes, and GET /api/v1/cache needs freeBytes. Both come from the volume that
// holds storage.root (statfs); a cap, when set, is what berth_storage_max_bytes shows.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { statfs } from 'node:fs/promises';
import { request } from 'undici';
import { freePort } from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';

const berths: BerthHandle[] = [];
after(async () => {
  for (const b of berths) await b.stop();
});

async function gauge(url: string, name: string): Promise<number | null> {
  const text = await (await request(`${url}/metrics`)).body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : null;
}

test('without a cap: berth_storage_max_bytes is the volume size and /api/v1/cache fills freeBytes', async () => {
  const b = await startBerth({ upstreams: [upstreamOverride(`http://127.0.0.1:${await freePort()}`)] });
  berths.push(b);
  const fs = await statfs(b.root);
  assert.equal(await gauge(b.url, 'berth_storage_max_bytes'), fs.blocks * fs.bsize);
  const res = await request(`${b.url}/api/v1/cache`);
  const stats = (await res.body.json()) as { freeBytes: number | null; maxSize: number | null };
  assert.equal(res.statusCode, 200);
  assert.equal(stats.maxSize, null);
  assert.equal(typeof stats.freeBytes, 'number');
  const free = fs.bavail * fs.bsize;
  // Other processes write to the same disk meanwhile: the same figure within 1 GiB.
  assert.ok(Math.abs((stats.freeBytes ?? 0) - free) < 1024 ** 3, `freeBytes ${stats.freeBytes} vs statfs ${free}`);
});

test('with a cap: berth_storage_max_bytes is the cap, and freeBytes is still filled', async () => {
  const b = await startBerth({ upstreams: [upstreamOverride(`http://127.0.0.1:${await freePort()}`)], storage: { maxSize: '3GiB' } });
  berths.push(b);
  assert.equal(await gauge(b.url, 'berth_storage_max_bytes'), 3 * 1024 ** 3);
  const stats = (await (await request(`${b.url}/api/v1/cache`)).body.json()) as { freeBytes: number | null };
  assert.equal(typeof stats.freeBytes, 'number');
});
