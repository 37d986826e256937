// The seams of registry/: the fill coordinator (lead or join a manifest, tag or blob fill; list
// fills in progress), the Repository interface /v2 depends on (a resolver may answer a request
// with any Repository, which receives typed references), references parsed once at the edge,
// and the status() views the admin API renders.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import Fastify, { type FastifyInstance } from 'fastify';
import { SingleFlight } from '../../src/registry/singleflight.js';
import { InProcessFills, type SharedFill } from '../../src/registry/fills.js';
import {
  blobDigest, manifestRef, type BlobHandle, type ManifestRef, type Repository, type RepositoryResolver,
} from '../../src/registry/repository.js';
import { Router, type Routed } from '../../src/registry/routing.js';
import { v2Routes } from '../../src/http/routes/v2.js';
import { installHooks } from '../../src/http/hooks.js';
import { OpenAccess } from '../../src/auth/access.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { Breaker } from '../../src/upstream/breaker.js';
import { RateLimitState } from '../../src/upstream/ratelimit.js';
import { defaultConfig } from '../../src/config/load.js';
import { isRegistryError } from '../../src/errors.js';
import { parseDigest, type Digest } from '../../src/oci/reference.js';

const sha = (b: Buffer): Digest => {
  const d = parseDigest(`sha256:${createHash('sha256').update(b).digest('hex')}`);
  assert.ok(d);
  return d;
};

/** A promise settled from outside. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A stand-in for a running blob fill: its progress fields and a `finished` the test settles. */
function fakeFill(digest: Digest, finished: Promise<void>): SharedFill {
  return {
    digest, upstream: 'docker.io', size: 100, state: 'running', error: null, written: 40, finished,
    reader: () => Readable.from([]),
  };
}

test('single-flight with until: a resolved run stays joinable until its until() settles', async () => {
  const sf = new SingleFlight<string, { done: Promise<void> }>(() => 1000);
  const done = deferred<void>();
  const a = sf.join('k', async () => ({ done: done.promise }), (v) => v.done);
  await a.promise;
  const b = sf.join('k', async () => assert.fail('a second run must not start'));
  assert.equal(b.shared, true);
  assert.deepEqual(sf.entries().map((e) => [e.key, e.startedAt, e.value !== undefined]), [['k', 1000, true]]);
  done.resolve();
  await done.promise;
  await new Promise((r) => setImmediate(r));
  assert.equal(sf.size, 0, 'forgotten once until() settled');
});

test('single-flight: forget drops only the run it names', async () => {
  const sf = new SingleFlight<string, number>();
  const gate = deferred<number>();
  const first = sf.join('k', () => gate.promise);
  sf.forget('k', Promise.resolve(1));
  assert.equal(sf.has('k'), true, 'another promise does not drop the run');
  sf.forget('k', first.promise);
  assert.equal(sf.has('k'), false);
  const second = sf.join('k', () => Promise.resolve(2));
  assert.equal(second.shared, false, 'the next caller starts afresh');
  gate.resolve(1);
  assert.equal(await second.promise, 2);
});

test('in-process fills: a blob fill is joinable and filling until it finishes, then gone', async () => {
  const fills = new InProcessFills(() => 5);
  const digest = sha(Buffer.from('blob-a'));
  const finished = deferred<void>();
  let starts = 0;
  const start = async (): Promise<SharedFill> => {
    starts += 1;
    return fakeFill(digest, finished.promise);
  };
  assert.equal(fills.runningBlob(digest), undefined);
  const lead = fills.blob(digest, start);
  assert.equal(lead.shared, false);
  await lead.promise;
  const join = fills.blob(digest, start);
  assert.equal(join.shared, true);
  assert.equal(starts, 1);
  assert.equal(fills.runningBlob(digest), lead.promise);
  assert.equal(fills.filling(digest), true);
  assert.deepEqual(fills.inProgress(), [
    { kind: 'blob', upstream: 'docker.io', name: null, reference: digest, startedAt: 5, bytes: 40, size: 100 },
  ]);
  let drained = false;
  const drain = fills.drain().then(() => {
    drained = true;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(drained, false, 'drain waits for the fill to end');
  finished.resolve();
  await drain;
  await new Promise((r) => setImmediate(r));
  assert.equal(fills.filling(digest), false);
  assert.deepEqual(fills.inProgress(), []);
});

test('in-process fills: an abandoned blob fill is not handed to the next client', async () => {
  const fills = new InProcessFills();
  const digest = sha(Buffer.from('blob-b'));
  const never = new Promise<void>(() => undefined);
  const first = fills.blob(digest, async () => fakeFill(digest, never));
  await first.promise;
  fills.abandonBlob(digest, first.promise);
  assert.equal(fills.filling(digest), false);
  const next = fills.blob(digest, async () => fakeFill(digest, never));
  assert.equal(next.shared, false);
});

test('in-process fills: manifest and tag fills are keyed by upstream, name and reference, and listed', async () => {
  const fills = new InProcessFills(() => 7);
  const digest = sha(Buffer.from('manifest'));
  const gate = deferred<never>();
  const lead = () => gate.promise;
  const m1 = fills.manifest({ upstream: 'docker.io', name: 'library/a', digest }, lead);
  const m2 = fills.manifest({ upstream: 'docker.io', name: 'library/a', digest }, lead);
  const m3 = fills.manifest({ upstream: 'ghcr.io', name: 'library/a', digest }, lead);
  const t1 = fills.tag({ upstream: 'docker.io', name: 'library/a', tag: 'v1' }, lead);
  assert.deepEqual([m1.shared, m2.shared, m3.shared, t1.shared], [false, true, false, false]);
  assert.deepEqual(fills.inProgress().map((f) => [f.kind, f.upstream, f.name, f.reference]).sort(), [
    ['manifest', 'docker.io', 'library/a', digest],
    ['manifest', 'ghcr.io', 'library/a', digest],
    ['tag', 'docker.io', 'library/a', 'v1'],
  ]);
  gate.reject(new Error('upstream down'));
  await assert.rejects(m2.promise, /upstream down/);
  await assert.rejects(t1.promise, /upstream down/);
  assert.deepEqual(fills.inProgress(), [], 'a failed fill is forgotten at once');
});

test('manifestRef and blobDigest parse once: typed tag or digest, or the OCI error', () => {
  const d = sha(Buffer.from('x'));
  assert.deepEqual(manifestRef('v1.2'), { kind: 'tag', tag: 'v1.2' });
  assert.deepEqual(manifestRef(d), { kind: 'digest', digest: d });
  assert.equal(blobDigest(d), d);
  const code = (fn: () => unknown): string => {
    try {
      fn();
    } catch (err) {
      assert.ok(isRegistryError(err));
      return err.code;
    }
    return assert.fail('expected an error');
  };
  assert.equal(code(() => manifestRef('sha256:abc')), 'DIGEST_INVALID');
  assert.equal(code(() => manifestRef('-bad-tag')), 'MANIFEST_UNKNOWN');
  assert.equal(code(() => blobDigest('md5:abc')), 'DIGEST_INVALID');
});

test('breaker and rate-limit status(): plain JSON the admin API renders', () => {
  let t = 1_000_000;
  const breaker = new Breaker(2, 30_000, () => t);
  assert.deepEqual(breaker.status(), { state: 'closed', failures: 0, maxFails: 2, failTimeoutSeconds: 30, retryInSeconds: 0 });
  breaker.failure();
  breaker.failure();
  t += 10_000;
  assert.deepEqual(breaker.status(), { state: 'open', failures: 2, maxFails: 2, failTimeoutSeconds: 30, retryInSeconds: 20 });

  const rl = new RateLimitState(() => t);
  assert.deepEqual(rl.status(), {
    limit: null, remaining: null, windowSeconds: null, observedAt: null, exhausted: false, exhaustedUntil: null, retryAfterSeconds: 0,
  });
  rl.observe({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '7;w=21600' });
  rl.markExhausted(60);
  const s = rl.status();
  assert.deepEqual(s, {
    limit: 100, remaining: 0, windowSeconds: 21600, observedAt: new Date(t).toISOString(),
    exhausted: true, exhaustedUntil: new Date(t + 60_000).toISOString(), retryAfterSeconds: 60,
  });
  assert.deepEqual(JSON.parse(JSON.stringify(s)), s, 'survives JSON unchanged');
});

// ---------------------------------------------------------------------------------------------
// /v2 through a RepositoryResolver: the route depends on the interface, not on MirrorService.

interface Call { method: string; name: string; arg: unknown }

/** An in-memory repository holding one manifest and one blob, recording what the route passes it. */
function memoryRepository(calls: Call[], manifest: Buffer, blob: Buffer): Repository {
  const mDigest = sha(manifest);
  const bDigest = sha(blob);
  return {
    async getManifest(r: Routed, ref: ManifestRef) {
      calls.push({ method: 'getManifest', name: r.name, arg: ref });
      const hit = ref.kind === 'tag' ? ref.tag === 'v1' : ref.digest === mDigest;
      if (!hit) throw new Error('not held');
      return { bytes: manifest, mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: mDigest, stale: false };
    },
    async statBlob(r: Routed, digest: Digest) {
      calls.push({ method: 'statBlob', name: r.name, arg: digest });
      return { size: blob.length, source: 'cache' as const };
    },
    async getBlob(r: Routed, digest: Digest): Promise<BlobHandle> {
      calls.push({ method: 'getBlob', name: r.name, arg: digest });
      assert.equal(digest, bDigest);
      return {
        digest, size: blob.length, source: 'cache',
        open: async (range) => Readable.from([range ? blob.subarray(range.start, range.end + 1) : blob]),
      };
    },
    async listTags(r: Routed) {
      calls.push({ method: 'listTags', name: r.name, arg: null });
      return ['v1', 'v2'];
    },
  };
}

async function v2App(resolver: RepositoryResolver): Promise<FastifyInstance> {
  const config = defaultConfig();
  const app = Fastify() as unknown as FastifyInstance;
  app.decorate('router', new Router(config.upstreams, config.defaultUpstream));
  app.decorate('access', new OpenAccess());
  app.decorate('metrics', new Metrics());
  app.decorate('manifestDelete', null);
  app.decorateRequest('clientIp', '');
  installHooks(app, {});
  await app.register(v2Routes, { repositories: resolver });
  await app.ready();
  return app;
}

test('/v2 answers from the Repository the resolver picks, passing typed references', async () => {
  const manifest = Buffer.from('{"schemaVersion":2}');
  const blob = Buffer.from('0123456789');
  const calls: Call[] = [];
  const resolved: string[] = [];
  const repo = memoryRepository(calls, manifest, blob);
  const app = await v2App({
    resolve(r) {
      resolved.push(`${r.upstream.name}/${r.name}`);
      return repo;
    },
    async catalog(publicName) {
      return [publicName('docker.io', 'ci/app'), publicName('ghcr.io', 'org/tool')];
    },
  });
  try {
    const byTag = await app.inject({ method: 'GET', url: '/v2/ci/app/manifests/v1' });
    assert.equal(byTag.statusCode, 200);
    assert.ok(byTag.rawPayload.equals(manifest));
    assert.equal(byTag.headers['docker-content-digest'], sha(manifest));
    const byDigest = await app.inject({ method: 'HEAD', url: `/v2/ci/app/manifests/${sha(manifest)}` });
    assert.equal(byDigest.statusCode, 200);

    const range = await app.inject({ method: 'GET', url: `/v2/ci/app/blobs/${sha(blob)}`, headers: { range: 'bytes=2-5' } });
    assert.equal(range.statusCode, 206);
    assert.equal(range.body, '2345');
    const head = await app.inject({ method: 'HEAD', url: `/v2/ci/app/blobs/${sha(blob)}` });
    assert.equal(head.headers['content-length'], String(blob.length));

    const tags = await app.inject({ method: 'GET', url: '/v2/ci/app/tags/list?n=1' });
    assert.deepEqual(tags.json(), { name: 'ci/app', tags: ['v1'] });
    const catalog = await app.inject({ method: 'GET', url: '/v2/_catalog' });
    assert.deepEqual(catalog.json(), { repositories: ['ci/app', 'ghcr.io/org/tool'] });

    // Bad references are refused at the edge: the repository is never asked.
    const before = calls.length;
    const badDigest = await app.inject({ method: 'GET', url: '/v2/ci/app/blobs/sha256:nothex' });
    assert.equal(badDigest.statusCode, 400);
    assert.equal((badDigest.json() as { errors: { code: string }[] }).errors[0]?.code, 'DIGEST_INVALID');
    const badTag = await app.inject({ method: 'GET', url: '/v2/ci/app/manifests/-x' });
    assert.equal(badTag.statusCode, 404);
    assert.equal((badTag.json() as { errors: { code: string }[] }).errors[0]?.code, 'MANIFEST_UNKNOWN');
    assert.equal(calls.length, before);

    assert.deepEqual(calls.map((c) => [c.method, c.name, c.arg]), [
      ['getManifest', 'ci/app', { kind: 'tag', tag: 'v1' }],
      ['getManifest', 'ci/app', { kind: 'digest', digest: sha(manifest) }],
      ['getBlob', 'ci/app', sha(blob)],
      ['statBlob', 'ci/app', sha(blob)],
      ['listTags', 'ci/app', null],
    ]);
    assert.ok(resolved.every((r) => r === 'docker.io/ci/app'), resolved.join(', '));
  } finally {
    await app.close();
  }
});
