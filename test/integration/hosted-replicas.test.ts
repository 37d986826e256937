// Upload sessions across replicas (issue 14): two Berth processes on one shared store, with
// cluster.advertiseUrl. A session started on one replica continues on the other: requests for it
// are passed on to the replica holding the staged bytes (over the internal endpoint, with
// cluster.secret), bodies streamed through, answers relayed. The blob then pulls back byte-exact
// from both; with the owner dead, the other replica answers BLOB_UPLOAD_UNKNOWN and nothing is
// stored.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request, type Dispatcher } from 'undici';
import { digestOf, seededBytes } from '../helpers/index.js';
import { startCluster, type ClusterRig } from './cluster-support.js';

const MiB = 1024 * 1024;
let cluster: ClusterRig;

before(async () => {
  cluster = await startCluster({ replicas: 2, config: { repositories: [{ match: 'ci/**', mode: 'hosted' }] } });
});

after(async () => {
  await cluster?.stop();
});

function header(h: Record<string, string | string[] | undefined>, k: string): string | undefined {
  const v = h[k];
  return Array.isArray(v) ? v[0] : v;
}

async function start(base: string, repo: string): Promise<string> {
  const r = await request(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
  await r.body.dump();
  assert.equal(r.statusCode, 202);
  return String(header(r.headers, 'location'));
}

async function errorOf(r: Dispatcher.ResponseData): Promise<{ code: string; message: string }> {
  const body = (await r.body.json()) as { errors: { code: string; message: string }[] };
  return body.errors[0] ?? { code: '', message: '' };
}

async function pullHash(base: string, repo: string, digest: string): Promise<{ status: number; digest: string; bytes: number }> {
  const r = await request(`${base}/v2/${repo}/blobs/${digest}`);
  const h = createHash('sha256');
  let bytes = 0;
  for await (const c of r.body as AsyncIterable<Buffer>) {
    h.update(c);
    bytes += c.length;
  }
  return { status: r.statusCode, digest: `sha256:${h.digest('hex')}`, bytes };
}

test('a chunked upload started on A continues on B and A in turn, and commits on B: the blob pulls back byte-exact from both', async () => {
  const [a, b] = cluster.replicas;
  assert.ok(a && b);
  const blob = seededBytes('replica-upload', 3 * MiB + 17);
  const digest = digestOf(blob);
  const c1 = blob.subarray(0, MiB + 5);
  const c2 = blob.subarray(MiB + 5, 2 * MiB + MiB / 2);
  const c3 = blob.subarray(2 * MiB + MiB / 2);
  const location = await start(a.url, 'ci/app');
  const id = location.slice(location.lastIndexOf('/') + 1);

  // Chunk 1 on B, streamed (no Content-Length, no Content-Range), as dockerd sends: B does not
  // hold the session and passes it on, the body streamed through.
  const p1 = await request(`${b.url}${location}`, {
    method: 'PATCH', body: Readable.from([c1.subarray(0, 400_000), c1.subarray(400_000)]), headers: { 'content-type': 'application/octet-stream' },
  });
  await p1.body.dump();
  assert.equal(p1.statusCode, 202);
  assert.equal(header(p1.headers, 'range'), `0-${c1.length - 1}`);
  assert.equal(header(p1.headers, 'location'), location);
  assert.equal(header(p1.headers, 'docker-upload-uuid'), id);

  // Status on B, and an out-of-order chunk on B: the owner's 416 and Range come back.
  const st = await request(`${b.url}${location}`);
  await st.body.dump();
  assert.equal(st.statusCode, 204);
  assert.equal(header(st.headers, 'range'), `0-${c1.length - 1}`);
  const bad = await request(`${b.url}${location}`, {
    method: 'PATCH', body: Buffer.from('hello'),
    headers: { 'content-type': 'application/octet-stream', 'content-range': '5-9', 'content-length': '5' },
  });
  assert.equal(bad.statusCode, 416);
  assert.equal(header(bad.headers, 'range'), `0-${c1.length - 1}`);
  assert.equal((await errorOf(bad)).code, 'BLOB_UPLOAD_INVALID');

  // Chunk 2 on A, the owner, with Content-Range.
  const p2 = await request(`${a.url}${location}`, {
    method: 'PATCH', body: c2,
    headers: { 'content-type': 'application/octet-stream', 'content-range': `${c1.length}-${c1.length + c2.length - 1}`, 'content-length': String(c2.length) },
  });
  await p2.body.dump();
  assert.equal(p2.statusCode, 202);
  assert.equal(header(p2.headers, 'range'), `0-${c1.length + c2.length - 1}`);

  // The final PUT on B, carrying the last chunk.
  const put = await request(`${b.url}${location}?digest=${digest}`, {
    method: 'PUT', body: c3, headers: { 'content-type': 'application/octet-stream', 'content-length': String(c3.length) },
  });
  await put.body.dump();
  assert.equal(put.statusCode, 201);
  assert.equal(header(put.headers, 'docker-content-digest'), digest);
  assert.equal(header(put.headers, 'location'), `/v2/ci/app/blobs/${digest}`);

  for (const replica of [a, b]) {
    const got = await pullHash(replica.url, 'ci/app', digest);
    assert.deepEqual(got, { status: 200, digest, bytes: blob.length }, `pulled from ${replica.id}`);
  }
  const stored = (await cluster.store.blobs()).find((s) => s.digest === digest);
  assert.equal(stored?.hashesTo, digest);
  // The session is gone on both.
  for (const replica of [a, b]) {
    const gone = await request(`${replica.url}${location}`);
    assert.equal(gone.statusCode, 404);
    assert.equal((await errorOf(gone)).code, 'BLOB_UPLOAD_UNKNOWN');
  }
});

test('a wrong digest on the forwarded PUT is DIGEST_INVALID and stores nothing; DELETE on the other replica cancels', async () => {
  const [a, b] = cluster.replicas;
  assert.ok(a && b);
  const blob = seededBytes('replica-wrong', 200_000);
  const location = await start(a.url, 'ci/wrong');
  const p = await request(`${b.url}${location}`, { method: 'PATCH', body: blob, headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.length) } });
  await p.body.dump();
  assert.equal(p.statusCode, 202);
  const other = digestOf(seededBytes('replica-wrong-other', 10));
  const put = await request(`${b.url}${location}?digest=${other}`, { method: 'PUT', headers: { 'content-length': '0' } });
  assert.equal(put.statusCode, 400);
  assert.equal((await errorOf(put)).code, 'DIGEST_INVALID');
  const digests = (await cluster.store.blobs()).map((s) => s.digest);
  assert.ok(!digests.includes(other) && !digests.includes(digestOf(blob)), 'nothing stored');

  const second = await start(a.url, 'ci/wrong');
  const del = await request(`${b.url}${second}`, { method: 'DELETE' });
  await del.body.dump();
  assert.equal(del.statusCode, 204);
  const gone = await request(`${a.url}${second}`);
  assert.equal(gone.statusCode, 404);
  assert.equal((await errorOf(gone)).code, 'BLOB_UPLOAD_UNKNOWN');
});

test('a client breaking off a PATCH sent to the other replica: the owner drops the session, nothing is staged or stored', async () => {
  const [a, b] = cluster.replicas;
  assert.ok(a && b);
  const location = await start(a.url, 'ci/cut');
  const sent = seededBytes('replica-cut', 300_000);
  await new Promise<void>((resolve, reject) => {
    const sock = connect(Number(new URL(b.url).port), '127.0.0.1', () => {
      sock.write(`PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n`);
      sock.write(sent, () => setTimeout(() => {
        sock.destroy();
        resolve();
      }, 300));
    });
    sock.on('error', reject);
  });
  // The owner sees the forwarded body break off and drops the session with its staged bytes.
  let status = 0;
  for (let i = 0; i < 50; i++) {
    const r = await request(`${a.url}${location}`);
    await r.body.dump();
    status = r.statusCode;
    if (status === 404) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.equal(status, 404);
  assert.ok(!(await cluster.store.blobs()).some((x) => x.digest === digestOf(sent)));
  // Every earlier session here ended (committed, refused or cancelled): nothing is left staged.
  assert.deepEqual(await readdir(join(String(cluster.store.config['root']), 'spool')).catch(() => []), []);
});

test('the internal upload endpoint refuses a request without the cluster secret', async () => {
  const [a] = cluster.replicas;
  assert.ok(a);
  const location = await start(a.url, 'ci/secret');
  const id = location.slice(location.lastIndexOf('/') + 1);
  for (const auth of [undefined, 'Bearer not-the-secret-at-all']) {
    const r: Dispatcher.ResponseData = await request(`${a.url}/_berth/cluster/uploads/${id}?name=ci/secret`, {
      method: 'PATCH', body: Buffer.from('x'), headers: { 'content-length': '1', ...(auth ? { authorization: auth } : {}) },
    });
    assert.equal(r.statusCode, 401);
    await r.body.dump();
  }
  const st = await request(`${a.url}${location}`);
  await st.body.dump();
  assert.equal(header(st.headers, 'range'), '0-0', 'nothing was written');
});

test('with the owner dead, the other replica answers BLOB_UPLOAD_UNKNOWN naming it, and nothing is stored', async () => {
  const [a, b] = cluster.replicas;
  assert.ok(a && b);
  const blob = seededBytes('replica-owner-gone', 500_000);
  const digest = digestOf(blob);
  const location = await start(a.url, 'ci/gone');
  const first = blob.subarray(0, 100_000);
  const p = await request(`${a.url}${location}`, { method: 'PATCH', body: first, headers: { 'content-type': 'application/octet-stream', 'content-length': String(first.length) } });
  await p.body.dump();
  assert.equal(p.statusCode, 202);
  // The owner dies (SIGKILL: no shutdown drops its sessions' records).
  a.proc.kill('SIGKILL');
  await a.proc.exited;
  const rest = blob.subarray(100_000);
  const p2 = await request(`${b.url}${location}`, { method: 'PATCH', body: rest, headers: { 'content-type': 'application/octet-stream', 'content-length': String(rest.length) } });
  assert.equal(p2.statusCode, 404);
  const e = await errorOf(p2);
  assert.equal(e.code, 'BLOB_UPLOAD_UNKNOWN');
  assert.match(e.message, /cannot be reached/);
  assert.ok(e.message.includes(a.url), e.message);
  const put = await request(`${b.url}${location}?digest=${digest}`, { method: 'PUT', headers: { 'content-length': '0' } });
  assert.equal(put.statusCode, 404);
  assert.equal((await errorOf(put)).code, 'BLOB_UPLOAD_UNKNOWN');
  const head = await request(`${b.url}/v2/ci/gone/blobs/${digest}`, { method: 'HEAD' });
  await head.body.dump();
  assert.equal(head.statusCode, 404);
  assert.ok(!(await cluster.store.blobs()).some((s) => s.digest === digest), 'nothing stored');
});
