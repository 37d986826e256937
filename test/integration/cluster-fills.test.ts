// One upstream download per blob across replicas: two Berth processes share one store and one
// Redis; the first to miss leads (a Redis lease), the other streams the leader's bytes over the
// internal endpoint as they arrive. The store is a bucket on a real Ceph RGW. Upstream blob GETs
// are counted at the fault proxy, the replicas' requests to the store at a counting relay (one
// multipart upload per blob: the joiner never uploads a copy); every body is hashed; the owner is
// SIGKILLed mid-download to show the lease lapsing and nothing unverified landing in the bucket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Agent, request } from 'undici';
import { buildLargeBlobImage, drip, pushImage, type BuiltLayer } from '../helpers/index.js';
import { metric, sharedRgw, startCluster, uploadsOf, type ClusterRig, type Replica } from './cluster-support.js';

const MiB = 1024 * 1024;

let cluster: ClusterRig;

before(async () => {
  cluster = await startCluster({ replicas: 2, upstream: { tagTtl: '1h' }, storage: sharedRgw });
});

after(async () => {
  await cluster?.stop();
});

interface Pulled {
  status: number;
  bytes: number;
  digest: string;
  firstByteAt: number;
  doneAt: number;
  error: string | null;
}

async function pull(url: string, dispatcher: Agent): Promise<Pulled> {
  const hash = createHash('sha256');
  let bytes = 0;
  let firstByteAt = 0;
  let status = 0;
  try {
    const res = await request(url, { dispatcher });
    status = res.statusCode;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      if (firstByteAt === 0) firstByteAt = Date.now();
      bytes += chunk.length;
      hash.update(chunk);
    }
    return { status, bytes, digest: `sha256:${hash.digest('hex')}`, firstByteAt, doneAt: Date.now(), error: null };
  } catch (err) {
    return { status, bytes, digest: '', firstByteAt, doneAt: Date.now(), error: (err as Error).message };
  }
}

function s3(): NonNullable<ClusterRig['store']['s3']> {
  const store = cluster.store.s3;
  assert.ok(store, 'the replicas run on the RGW bucket');
  return store;
}

function blobKey(digest: string): string {
  return `${s3().prefix}/blobs/sha256/${digest.slice('sha256:'.length)}`;
}

/** Multipart uploads still open under a blob's key. */
async function openUploads(digest: string): Promise<number> {
  const { ceph, bucket } = s3();
  return (await ceph.listMultipartUploads(bucket)).filter((u) => u.key === blobKey(digest)).length;
}

/** What the shared store holds under this digest, each with what its bytes hash to. */
async function storedCopies(digest: string): Promise<{ ok: boolean }[]> {
  return (await cluster.store.blobs()).filter((b) => b.digest === digest).map((b) => ({ ok: b.hashesTo === digest }));
}

/** The bigger layer of a freshly pushed image, pulled by tag through every replica first (manifests cached). */
async function pushBig(repo: string, seed: string, size: number): Promise<BuiltLayer> {
  const img = buildLargeBlobImage({ seed, size });
  const layer = img.layers[0];
  assert.ok(layer);
  await pushImage(cluster.rig.upstream.url, repo, 'v1', img);
  for (const r of cluster.replicas) {
    const res = await request(`${r.url}/v2/${repo}/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(res.statusCode, 200, await res.body.text());
  }
  return layer;
}

test('32 concurrent cold GETs of one 64 MiB blob split 16/16 over two replicas: one upstream GET, every body verifies, first bytes on both long before the download ends', async () => {
  const { rig, replicas } = cluster;
  const [a, b] = replicas as [Replica, Replica];
  const layer = await pushBig('library/big', 'cluster-64mib', 64 * MiB);
  rig.resetProxy();
  // Paced at the proxy: 32 KiB pieces, one per millisecond tick (about 2–4 s for 64 MiB).
  rig.proxy.setRules([drip(32 * 1024, 1, { match: { kind: 'blob', method: 'GET' } })]);
  const agent = new Agent({ connections: 64 });
  try {
    const t0 = Date.now();
    const pulls = Array.from({ length: 32 }, (_, i) => pull(`${(i % 2 === 0 ? a : b).url}/v2/library/big/blobs/${layer.digest}`, agent));
    const results = await Promise.all(pulls);
    const upstreamGets = rig.proxy.requests.filter((r) => r.kind === 'blob' && r.method === 'GET');
    assert.equal(upstreamGets.length, 1, 'exactly one upstream blob GET across both replicas');
    for (const r of results) {
      assert.equal(r.error, null);
      assert.equal(r.status, 200);
      assert.equal(r.bytes, layer.size);
      assert.equal(r.digest, layer.digest, 'every body hashes to the digest');
    }
    const downloadEnd = Math.min(...results.map((r) => r.doneAt)) - t0;
    const firstA = Math.max(...results.filter((_, i) => i % 2 === 0).map((r) => r.firstByteAt - t0));
    const firstB = Math.max(...results.filter((_, i) => i % 2 === 1).map((r) => r.firstByteAt - t0));
    assert.ok(downloadEnd > 1_000, `the paced download took ${downloadEnd} ms`);
    assert.ok(firstA < downloadEnd / 2 && firstB < downloadEnd / 2,
      `every client on both replicas had its first byte (A by ${firstA} ms, B by ${firstB} ms) before half the download (${downloadEnd} ms)`);
    const remote = (await metric(a.url, 'berth_cluster_fill_joins_total', { where: 'remote' })) +
      (await metric(b.url, 'berth_cluster_fill_joins_total', { where: 'remote' }));
    const local = (await metric(a.url, 'berth_cluster_fill_joins_total', { where: 'local' })) +
      (await metric(b.url, 'berth_cluster_fill_joins_total', { where: 'local' }));
    assert.equal(remote, 1, 'one replica streamed the other\'s fill');
    assert.equal(local, 30, 'the other 30 clients joined a fill on their own replica');
    const copies = await storedCopies(layer.digest);
    assert.deepEqual(copies.map((c) => c.ok), [true], 'one stored copy, and it verifies');
    // The joiner copied the fill into a spool of its own; its commit found the owner's object and
    // uploaded nothing: one multipart upload created and completed under the key, no single PUT.
    const uploads = uploadsOf(s3().requests, blobKey(layer.digest));
    assert.deepEqual(uploads, { puts: 0, created: 1, completed: 1 }, `one upload of the blob in all (${JSON.stringify(uploads)})`);
    assert.equal(await openUploads(layer.digest), 0, 'no multipart upload left open');
    console.log(`# 2 replicas × 16 clients × 64 MiB: download ${downloadEnd} ms, last first byte A ${firstA} ms, B ${firstB} ms, ` +
      `last client done ${Math.max(...results.map((r) => r.doneAt)) - t0} ms`);
  } finally {
    await agent.close();
    rig.proxy.setRules([]);
  }
});

test('the owner SIGKILLed at about half of the download: the next pull succeeds, at most 2 upstream GETs, nothing unverified in the store', async () => {
  const { rig, replicas } = cluster;
  const [a, b] = replicas as [Replica, Replica];
  const layer = await pushBig('library/killed', 'cluster-kill', 32 * MiB);
  rig.resetProxy();
  rig.proxy.setRules([drip(32 * 1024, 1, { match: { kind: 'blob', method: 'GET' } })]);
  const agent = new Agent({ connections: 16 });
  try {
    // A leads (its client arrives first), then B joins over the internal endpoint.
    const onA = pull(`${a.url}/v2/library/killed/blobs/${layer.digest}`, agent);
    await rig.proxy.waitForCount({ kind: 'blob', method: 'GET' }, 1);
    const onB = pull(`${b.url}/v2/library/killed/blobs/${layer.digest}`, agent);
    const get = (): number => rig.proxy.requests.find((r) => r.kind === 'blob' && r.method === 'GET')?.bytesSent ?? 0;
    const deadline = Date.now() + 30_000;
    while (get() < layer.size / 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(get() >= layer.size / 2, 'the download reached half');
    a.proc.kill('SIGKILL');
    await a.proc.exited;
    const [gotA, gotB] = await Promise.all([onA, onB]);
    // The clients in flight could only be cut: never a complete body with wrong bytes.
    for (const got of [gotA, gotB]) assert.ok(got.bytes < layer.size || got.digest === layer.digest, 'no client got a wrong complete body');
    // The next pull, on the survivor: the dead owner's lease lapses and B takes over.
    const t = Date.now();
    const next = await pull(`${b.url}/v2/library/killed/blobs/${layer.digest}`, agent);
    assert.equal(next.error, null);
    assert.equal(next.status, 200);
    assert.equal(next.digest, layer.digest);
    const gets = rig.proxy.requests.filter((r) => r.kind === 'blob' && r.method === 'GET').length;
    assert.ok(gets <= 2, `at most 2 upstream GETs in all (saw ${gets})`);
    const copies = await storedCopies(layer.digest);
    assert.ok(copies.length === 1 && copies.every((c) => c.ok), `only a verified copy under the bucket key (${JSON.stringify(copies)})`);
    // The dead owner's multipart upload was never completed: at most it is left open (GC's staging
    // sweep aborts it); the survivor's upload is the one completed.
    const uploads = uploadsOf(s3().requests, blobKey(layer.digest));
    assert.equal(uploads.completed + uploads.puts, 1, `one completed upload under the key (${JSON.stringify(uploads)})`);
    const open = await openUploads(layer.digest);
    assert.ok(open <= 1, `only the dead owner's upload can be left open (${open})`);
    console.log(`# owner killed at 50 %: next pull took ${Date.now() - t} ms, ${gets} upstream GETs in all; uploads ${JSON.stringify(uploads)}, ${open} left open`);
  } finally {
    await agent.close();
    rig.proxy.setRules([]);
    // Bring a replica back under A's name for the tests after this one.
    cluster.replicas.splice(cluster.replicas.indexOf(a), 1);
    cluster.replicas.unshift(await cluster.addReplica('r1'));
  }
});

test('the internal fill endpoint serves a byte range of a running fill to a holder of the secret', async () => {
  const { rig, replicas } = cluster;
  const [a] = replicas as [Replica];
  const layer = await pushBig('library/ranged', 'cluster-range', 8 * MiB);
  rig.resetProxy();
  rig.proxy.setRules([drip(32 * 1024, 5, { match: { kind: 'blob', method: 'GET' } })]);
  const agent = new Agent({ connections: 4 });
  try {
    const whole = pull(`${a.url}/v2/library/ranged/blobs/${layer.digest}`, agent);
    await rig.proxy.waitForCount({ kind: 'blob', method: 'GET' }, 1);
    const start = 6 * MiB;
    const res = await request(`${a.url}/_berth/cluster/fills/${layer.digest}`, {
      dispatcher: agent, headers: { authorization: `Bearer ${cluster.secret}`, range: `bytes=${start}-${start + 99_999}` },
    });
    assert.equal(res.statusCode, 206);
    assert.equal(res.headers['content-range'], `bytes ${start}-${start + 99_999}/${layer.size}`);
    assert.ok(typeof res.headers['berth-fill-epoch'] === 'string', 'the owner names its lease epoch');
    const part = Buffer.from(await res.body.arrayBuffer());
    assert.ok(part.equals(layer.data.subarray(start, start + 100_000)), 'the range holds the right bytes, sent as they landed');
    const got = await whole;
    assert.equal(got.digest, layer.digest);
    assert.equal(rig.proxy.count({ kind: 'blob', method: 'GET' }), 1);
  } finally {
    await agent.close();
    rig.proxy.setRules([]);
  }
});

test('the internal fill endpoint refuses a request without the cluster secret', async () => {
  const [a] = cluster.replicas as [Replica];
  const digest = `sha256:${'0'.repeat(64)}`;
  const none = await request(`${a.url}/_berth/cluster/fills/${digest}`);
  assert.equal(none.statusCode, 401);
  assert.equal(((await none.body.json()) as { errors: { code: string }[] }).errors[0]?.code, 'UNAUTHORIZED');
  const wrong = await request(`${a.url}/_berth/cluster/fills/${digest}`, { headers: { authorization: 'Bearer not-the-secret' } });
  assert.equal(wrong.statusCode, 401);
  await wrong.body.dump();
  const right = await request(`${a.url}/_berth/cluster/fills/${digest}`, { headers: { authorization: `Bearer ${cluster.secret}` } });
  assert.equal(right.statusCode, 404, 'no fill of that blob runs there');
  await right.body.dump();
  const bad = await request(`${a.url}/_berth/cluster/fills/not-a-digest`, { headers: { authorization: `Bearer ${cluster.secret}` } });
  assert.equal(bad.statusCode, 400);
  await bad.body.dump();
});
