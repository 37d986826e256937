// Property-based fuzzing of the HTTP surface (issue 18): fast-check generates hostile `/v2`
// requests (names, tags, digests, dot segments, percent-encoding, Range, Accept, ?ns/?n/?last,
// odd methods) and `/api/v1` calls (every route, JSON and non-JSON bodies), sent byte-exact to
// one running Berth in front of a real Distribution behind the counting proxy; then again to a
// token-auth Berth with forged, foreign-scoped and missing tokens. Every answer must be below
// 500, a 4xx on /v2 must be an OCI error body, and afterwards: no file appeared outside
// storage.root (a sandbox around it is compared before and after, with decoys at the spots a
// traversal would reach), a registry Berth is not configured for saw no request although the
// fuzz names it as ?ns, path prefix and pre-warm host, and every request the upstream saw was a
// well-formed pull.
//
// The seed is fixed so CI is reproducible: FUZZ_SEED=<n> replays another, FUZZ_RUNS=<n> scales
// the /v2 run (the others follow). A failure prints the seed and the shrunk counterexample.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  buildImage, buildIndex, pushImage, pushIndex, makeTempDir, removeTempDir, startFaultProxy, type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';
import { startKeycloakEmulator, type KeycloakEmulator } from '../helpers/keycloak.js';
import {
  v2RequestArb, apiRequestArb, rawSender, checkResponse, ociErrorProblem, listTree, escapesFrom, Tally, type FuzzRequest, type FuzzWorld,
} from '../helpers/fuzz.js';

const SEED = Number(process.env['FUZZ_SEED'] ?? 18_0018);
const V2_RUNS = Number(process.env['FUZZ_RUNS'] ?? 2000);
const API_RUNS = Math.max(20, Math.round(V2_RUNS / 4));
const AUTH_RUNS = Math.max(20, Math.round(V2_RUNS / 3));

/** A valid OCI repository name, tag or digest path, as a pull-through mirror may send upstream. */
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const DIGEST = '(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})';
const UPSTREAM_PULL = new RegExp(
  `^/v2/(?:${COMPONENT}(?:/${COMPONENT})*/(?:manifests/(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|${DIGEST})|blobs/${DIGEST}|tags/list))?/?$`,
);

let sandbox: string;
let root: string;
let decoys: Map<string, string>;
let treeBefore: string[];
let rig: Rig;
let foreign: FaultProxy;
let berth: BerthHandle;
let world: FuzzWorld;
let image: BuiltImage;
let small: BuiltImage;

before(async () => {
  // storage.root sits three levels down a sandbox; decoys sit where `..` from the root, from
  // its blobs folder and from a repository folder would land.
  sandbox = await makeTempDir('fuzz');
  root = join(sandbox, 'a', 'b', 'storage');
  await mkdir(join(sandbox, 'a', 'b'), { recursive: true });
  decoys = new Map([
    [join(sandbox, 'decoy'), 'top'],
    [join(sandbox, 'a', 'decoy'), 'a'],
    [join(sandbox, 'a', 'b', 'decoy'), 'b'],
  ]);
  for (const [p, v] of decoys) await writeFile(p, v);

  image = buildImage({ seed: 'fuzz-image', layers: [1500, 60_000] });
  small = buildImage({ seed: 'fuzz-small', layers: [700] });
  const index = buildIndex({ seed: 'fuzz-index', format: 'oci', layers: 1 });
  rig = await startRig({
    seed: async (upstream) => {
      await pushImage(upstream.url, 'library/fuzz', 'v1', image);
      await pushImage(upstream.url, 'library/fuzz', 'latest', small);
      await pushIndex(upstream.url, 'library/fuzz', 'multi', index);
      await pushImage(upstream.url, 'org/app', '1.0', small);
    },
    // Default breaker knobs: the fuzz makes Distribution answer 500 (a manifest GET by a blob's
    // digest) often, and those must not open the breaker (see the breaker test below); an open
    // breaker would turn the rest of the run into 503s the oracle refuses.
    upstreams: { 'docker.io': { tagTtl: '1h' }, 'ghcr.io': { tagTtl: '1h' } },
    berthConfig: { storage: { root } },
  });
  berth = rig.berth;
  // A real registry Berth is not configured for: the fuzz names it, it must never be contacted.
  foreign = await startFaultProxy(rig.upstream.url);
  rig.defer(() => foreign.stop());

  const digests = (img: BuiltImage): string[] => [img.manifestDigest, img.configDigest, ...img.layers.map((l) => l.digest)];
  world = {
    repos: [
      { name: 'library/fuzz', tags: ['v1', 'latest', 'multi'], digests: [...digests(image), ...digests(small), index.manifestDigest, ...index.images.flatMap(digests)] },
      { name: 'org/app', tags: ['1.0'], digests: digests(small) },
    ],
    upstreamNames: ['docker.io', 'ghcr.io', 'index.docker.io', 'registry-1.docker.io'],
    foreignHost: `127.0.0.1:${foreign.port}`,
  };
  treeBefore = await listTree(sandbox, root);
});

after(async () => {
  await rig?.stop();
  if (sandbox) await removeTempDir(sandbox);
});

/** Runs a property over one Berth, tallying statuses; fails with the seed and counterexample. */
async function fuzz(t: { diagnostic(msg: string): void }, url: string, arb: fc.Arbitrary<FuzzRequest>, numRuns: number, extra?: (req: FuzzRequest) => Record<string, string>): Promise<Tally> {
  const sender = rawSender(url);
  const tally = new Tally();
  t.diagnostic(`seed ${SEED}, ${numRuns} runs (replay with FUZZ_SEED=${SEED})`);
  try {
    await fc.assert(
      fc.asyncProperty(arb, async (req) => {
        const sent = extra ? { ...req, headers: { ...req.headers, ...extra(req) } } : req;
        const upstream5xx = (): number => rig.proxy.requests.filter((r) => r.status >= 500).length;
        const failedBefore = upstream5xx();
        let res;
        try {
          res = await sender.send(sent);
        } catch (err) {
          throw new Error(`${sent.method} ${sent.path}: no HTTP answer: ${(err as Error).message}`);
        }
        tally.add(res);
        const upstreamFailed = upstream5xx() > failedBefore;
        if (upstreamFailed) tally.addKnown('upstream answered 5xx, relayed as an upstream failure');
        const problems = checkResponse(sent, res, upstreamFailed);
        if (problems.length > 0) throw new Error(`${sent.method} ${sent.path} ${JSON.stringify(sent.headers)} → ${problems.join('; ')}`);
      }),
      { seed: SEED, numRuns },
    );
  } finally {
    t.diagnostic(tally.toString());
    await sender.close();
  }
  return tally;
}

describe('auth.mode none', () => {
  test('hostile /v2 requests: never a 5xx, every 4xx an OCI error body', async (t) => {
    const tally = await fuzz(t, berth.url, v2RequestArb(world), V2_RUNS);
    assert.equal(tally.requests, V2_RUNS);
    assert.ok([...tally.statuses.keys()].some((s) => s === 200 || s === 206), 'the fuzz reached real content, not only errors');
  });

  test('hostile /api/v1 calls: never a 5xx, always a JSON body', async (t) => {
    const tally = await fuzz(t, berth.url, apiRequestArb(world), API_RUNS);
    assert.equal(tally.requests, API_RUNS);
  });
  test('a /v2 request line Node refuses (a raw 0xA0 byte in the path) still gets an OCI error body', async () => {
    const sender = rawSender(berth.url);
    try {
      const req: FuzzRequest = { method: 'GET', path: '/v2/library/fuzz/manifests/v1\u00a0', headers: {} };
      const res = await sender.send(req);
      assert.equal(res.status, 400);
      assert.equal(ociErrorProblem(res), null);
      assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
      const head = await sender.send({ ...req, method: 'HEAD' });
      assert.equal(head.status, 400);
      assert.equal(head.body.length, 0, 'no body after a HEAD');
      // The connection it came on is closed; the next one is served as usual.
      const ok = await sender.send({ method: 'GET', path: '/v2/library/fuzz/manifests/v1', headers: {} });
      assert.equal(ok.status, 200);
    } finally {
      await sender.close();
    }
  });
  test('a /v2 path whose percent-encoding decodes to invalid UTF-8 gets an OCI error body', async () => {
    const sender = rawSender(berth.url);
    try {
      const res = await sender.send({ method: 'GET', path: '/v2/%c0%ae%c0%ae/library/fuzz/manifests/v1', headers: {} });
      assert.equal(res.status, 400);
      assert.equal(ociErrorProblem(res), null);
      assert.match(res.body.toString('utf8'), /"code":"NAME_INVALID"/);
      assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
    } finally {
      await sender.close();
    }
  });
  test('requests the upstream answers 500 to do not open the breaker for every other client', async () => {
    // Default breaker knobs (maxFails 5, failTimeout 30s), and a store of its own: every request cold.
    const b = await rig.addBerth({ upstreams: rig.upstreamsConfig({ 'docker.io': {} }), storage: { root: join(root, '..', 'storage-breaker') } });
    try {
      const blobs = [image.configDigest, ...image.layers.map((l) => l.digest), small.configDigest, ...small.layers.map((l) => l.digest)];
      assert.equal(blobs.length, 5);
      const sender = rawSender(b.url);
      try {
        // Twice maxFails of them, from one anonymous client.
        for (const d of [...blobs, ...blobs]) {
          const res = await sender.send({ method: 'GET', path: `/v2/library/fuzz/manifests/${d}`, headers: {} });
          assert.equal(res.status, 503, 'Distribution answered 500, relayed as UNAVAILABLE');
        }
        const cold = await sender.send({ method: 'GET', path: '/v2/org/app/manifests/1.0', headers: {} });
        assert.equal(cold.status, 200, cold.body.toString('utf8'));
      } finally {
        await sender.close();
      }
    } finally {
      await b.stop();
    }
  });
});

describe('auth.mode token', () => {
  let kc: KeycloakEmulator;
  let guarded: BerthHandle;
  let tokens: string[];

  before(async () => {
    kc = await startKeycloakEmulator();
    rig.defer(() => kc.stop());
    guarded = await rig.addBerth({
      storage: { root: join(root, '..', 'storage-token') },
      auth: { mode: 'token', token: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: kc.trustBundlePath } },
    });
    tokens = [
      kc.mintToken({ scope: 'repository:library/fuzz:pull' }),
      kc.mintToken({ scope: 'repository:org/app:pull' }),
      kc.mintToken({ scope: 'repository:*:*' }),
      kc.mintToken({ scope: 'repository:library/fuzz:pull', lifetimeSeconds: 1, issuedAt: Math.floor(Date.now() / 1000) - 3600 }),
      kc.mintToken({ scope: 'repository:library/fuzz:pull', claims: { aud: 'someone-else' } }),
      kc.mintToken({ scope: 'repository:library/fuzz:pull', header: { alg: 'none' } }),
      kc.mintToken({ scope: 'registry:catalog:*' }),
      kc.mintToken({ access: [{ type: 'repository', name: '../../etc', actions: ['pull'] }] }),
    ];
  });

  test('forged, foreign-scoped and missing tokens on hostile /v2 requests: never a 5xx, 401/403 as OCI errors', async (t) => {
    const authArb = fc.oneof(
      fc.constant(null),
      fc.constantFrom(...tokens.map((tk) => `Bearer ${tk}`)),
      fc.constantFrom('Bearer', 'Bearer ', 'Bearer a.b.c', 'Bearer ..', 'Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=', 'Basic !!!', 'Negotiate x', 'bearer x'),
      fc.tuple(fc.constantFrom(...tokens), fc.nat(400)).map(([tk, i]) => `Bearer ${tk.slice(0, i)}${tk.slice(i + 1)}`),
    );
    // The token rides in the generated request, so a counterexample shows which one failed.
    const arb = fc.tuple(v2RequestArb(world), authArb).map(([req, auth]) => (auth === null ? req : { ...req, headers: { ...req.headers, authorization: auth } }));
    const tally = await fuzz(t, guarded.url, arb, AUTH_RUNS);
    assert.ok((tally.statuses.get(401) ?? 0) > 0, 'requests without a valid token were challenged');
  });
});

describe('after the fuzz', () => {
  test('no file was created, changed or removed outside storage.root', async () => {
    for (const d of ['decoy', 'a/decoy', 'a/b/decoy']) assert.ok(treeBefore.includes(d), `the sandbox listing sees ${d}`);
    assert.ok((await listTree(root)).some((p) => !p.endsWith('/')), 'Berth wrote its cache under storage.root');
    const after = await listTree(sandbox, root);
    // Each Berth's storage.root is a/b/storage* (the fuzzed one's contents are not listed).
    const added = after.filter((p) => !treeBefore.includes(p) && !p.startsWith('a/b/storage'));
    const removed = treeBefore.filter((p) => !after.includes(p));
    assert.deepEqual({ added, removed }, { added: [], removed: [] });
    for (const [p, v] of decoys) assert.equal(await readFile(p, 'utf8'), v, `${p} unchanged`);
    assert.deepEqual(await escapesFrom(root), [], 'nothing under storage.root links or resolves outside it');
  });

  test('the registry Berth is not configured for saw no request', () => {
    assert.deepEqual(foreign.requests.map((r) => `${r.method} ${r.path}`), []);
  });

  test('control: a Berth that IS configured for that registry gets requests to it from the same generator', async () => {
    // Without this the check above could pass because the fuzz never names the registry well enough.
    const before = foreign.requests.length;
    const control = await rig.addBerth({
      upstreams: [...rig.upstreamsConfig(), { name: world.foreignHost, url: foreign.url }],
      storage: { root: join(root, '..', 'storage-control') },
    });
    const sender = rawSender(control.url);
    try {
      for (const req of fc.sample(v2RequestArb(world), { seed: SEED, numRuns: 300 })) await sender.send(req);
    } finally {
      await sender.close();
      await control.stop();
    }
    assert.ok(foreign.requests.length > before, 'the generator names the foreign registry in ways a misrouting Berth would follow');
  });

  test('every request the upstream saw was a well-formed pull of a valid name', (t) => {
    const seen = rig.proxy.requests;
    t.diagnostic(`the upstream saw ${seen.length} requests: ${JSON.stringify(rig.proxy.counts.byKind())}`);
    const bad = seen.filter((r) => !['GET', 'HEAD'].includes(r.method) || !UPSTREAM_PULL.test(r.pathname));
    assert.deepEqual(bad.map((r) => `${r.method} ${r.path}`), []);
    assert.ok(seen.length > 0, 'the fuzz reached the upstream');
  });
});
