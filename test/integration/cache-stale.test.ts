// Stale on every failure: once a tag's tagTtl has passed, any upstream failure — 429, 5xx, a
// headers or body timeout, a reset, a refused connection, a failed DNS lookup — is answered with
// the last known manifest and `Warning: 110 - "Response is Stale"`, and counted as stale. That
// holds whether the revalidating HEAD fails or the HEAD succeeds with a new digest whose GET then
// fails. A tag is never answered with a digest the mirror cannot then serve.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import type { LookupFunction } from 'node:net';
import type { FastifyInstance } from 'fastify';
import {
  buildImage, pushImage, fetchManifest, fetchBlob, digestOf, freePort,
  status, dockerHubRateLimit, latency, refuse, cutAfter, flipByte, responseHeaders,
  type Distribution, type FaultProxy, type FaultRule, type BuiltImage,
} from '../helpers/index.js';
import { startBerth, upstreamOverride, type BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { MirrorService } from '../../src/registry/mirror.js';
import { Router } from '../../src/registry/routing.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import { OpenAccess } from '../../src/auth/access.js';
import { buildApp } from '../../src/http/app.js';

const STALE = '110 - "Response is Stale"';
const TTL = 60_000;
/** Upstream knobs for this file: short timeouts so the timeout classes are quick; a breaker that stays shut. */
const KNOBS = { tagTtl: '60s', headersTimeout: '400ms', bodyTimeout: '400ms', maxFails: 1000 };

let rig: Rig;
let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;
let skew = 0;
const now = (): number => Date.now() + skew;
let steady: BuiltImage;
let movingOld: BuiltImage;
let movingNew: BuiltImage;

before(async () => {
  rig = await startRig({ upstreams: { 'docker.io': KNOBS }, berthOptions: { now } });
  ({ upstream, proxy, berth } = rig);
  steady = buildImage({ seed: 'stale-steady', layers: 2 });
  await pushImage(upstream.url, 'library/steady', 'v1', steady);
  await pull('library/steady', 'v1', steady);
  // `moving`: the cache holds the old image; upstream has since moved the tag to a new one.
  movingOld = buildImage({ seed: 'stale-moving-old', layers: 1 });
  movingNew = buildImage({ seed: 'stale-moving-new', layers: 1 });
  await pushImage(upstream.url, 'library/moving', 'v1', movingOld);
  await pull('library/moving', 'v1', movingOld);
  await pushImage(upstream.url, 'library/moving', 'v1', movingNew);
});

after(async () => {
  await rig?.stop();
});

beforeEach(() => {
  rig.resetProxy();
});

async function pull(repo: string, tag: string, img: BuiltImage, url = berth.url): Promise<void> {
  const m = await fetchManifest(url, repo, tag);
  assert.equal(m.status, 200, m.body.toString());
  assert.equal(m.digest, img.manifestDigest);
  for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) {
    const b = await fetchBlob(url, repo, d);
    assert.equal(b.status, 200);
    assert.equal(digestOf(b.body), d);
  }
}

async function staleCount(metrics: Metrics = berth.services.metrics): Promise<number> {
  const m = (await metrics.registry.getSingleMetric('berth_cache_requests_total')?.get())?.values ?? [];
  return m.find((v) => v.labels['kind'] === 'manifest' && v.labels['result'] === 'stale')?.value ?? 0;
}

/**
 * After tagTtl, with `rules` in force: the tag is answered 200 with the cached digest, the
 * Warning header and one more stale count; and the image behind that answer pulls in full.
 */
async function expectStale(repo: string, tag: string, img: BuiltImage, rules: FaultRule[]): Promise<void> {
  skew += TTL + 1_000;
  proxy.setRules(rules);
  const before = await staleCount();
  const m = await fetchManifest(berth.url, repo, tag);
  assert.equal(m.status, 200, `stale answer expected: ${m.body.toString()}`);
  assert.equal(m.digest, img.manifestDigest, 'the last known digest');
  assert.ok(m.body.equals(img.manifest), 'the last known manifest, byte-exact');
  assert.equal(m.headers['warning'], STALE);
  assert.equal(await staleCount(), before + 1, 'counted as stale');
  assert.ok(proxy.count() >= 1, 'the upstream was asked (and failed)');
  proxy.setRules([]);
  // Never a 200 for a tag whose content cannot then be served: everything behind it pulls.
  await pull(repo, img.manifestDigest, img);
}

/** The cause recorded by the latest "serving stale" log line (each tag and cause logs once). */
function lastStaleCause(): string {
  const line = berth.logs().filter((l) => l.includes('serving the cached manifest stale')).pop() ?? '{}';
  const rec = JSON.parse(line) as { cause?: string; status?: number; code?: string };
  return `${rec.cause ?? ''} ${rec.status ?? ''} ${rec.code ?? ''}`.trim();
}

// ------------------------------------------------------------------ the revalidating HEAD fails

test('serves a stale tag when upstream answers 429 (Docker Hub pull limit)', async () => {
  await expectStale('library/steady', 'v1', steady, [dockerHubRateLimit({ retryAfter: 1 })]);
});

for (const code of [500, 502, 503]) {
  test(`serves a stale tag when upstream answers ${code}`, async () => {
    await expectStale('library/steady', 'v1', steady, [status(code, { body: 'upstream is unwell' })]);
  });
}

test('serves a stale tag when upstream sends no headers within headersTimeout', async () => {
  const started = Date.now();
  await expectStale('library/steady', 'v1', steady, [latency(3_000, { match: { kind: 'manifest' } })]);
  assert.match(lastStaleCause(), /UND_ERR_HEADERS_TIMEOUT/);
  assert.ok(Date.now() - started < 2_500, 'answered after the 400 ms headersTimeout, not the 3 s upstream delay');
});

test('serves a stale tag when upstream resets the connection', async () => {
  await expectStale('library/steady', 'v1', steady, [refuse()]);
  assert.match(lastStaleCause(), /UND_ERR_SOCKET|ECONNRESET/);
});

test('serves a stale tag when upstream refuses the mirror (401 without a token challenge)', async () => {
  await expectStale('library/steady', 'v1', steady, [status(401, { body: 'no' })]);
});

test('logs a stale answer once per tag and cause, however often it is served', async () => {
  const lines = (): number => berth.logs().filter((l) => l.includes('serving the cached manifest stale') && l.includes('library/steady')).length;
  const before = lines();
  for (let i = 0; i < 3; i++) await expectStale('library/steady', 'v1', steady, [status(504)]);
  assert.equal(lines(), before + 1);
});

// ------------------------------------------------ the HEAD succeeds with a new digest, its GET fails

const getManifest = { match: { kind: 'manifest' as const, method: 'GET' } };

test('serves the old manifest stale when the tag moved upstream and the GET by digest answers 429', async () => {
  await expectStale('library/moving', 'v1', movingOld, [dockerHubRateLimit({ retryAfter: 1 }, getManifest)]);
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET', pathIncludes: movingNew.manifestDigest }), 1,
    'the GET by the new digest was the one refused');
  // While the limit holds, the next client is answered stale without another GET.
  proxy.reset();
  const again = await fetchManifest(berth.url, 'library/moving', 'v1');
  assert.equal(again.headers['warning'], STALE);
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 0, 'no GET while the pull budget is spent');
});

test('serves the old manifest stale when the tag moved upstream and the GET by digest answers 500', async () => {
  await expectStale('library/moving', 'v1', movingOld, [status(500, {}, getManifest)]);
});

test('serves the old manifest stale when the tag moved upstream and the GET by digest is cut mid-body', async () => {
  await expectStale('library/moving', 'v1', movingOld, [cutAfter(20, getManifest)]);
  assert.match(lastStaleCause(), /^unavailable/);
});

test('serves the old manifest stale when the tag moved upstream and the new manifest does not match its digest', async () => {
  await expectStale('library/moving', 'v1', movingOld, [flipByte(5, getManifest)]);
  assert.match(lastStaleCause(), /^integrity/);
});

test('serves the old manifest stale when the tag moved upstream and the GET by digest stalls past bodyTimeout', async () => {
  // Announce more bytes than are sent: the body stalls after the real manifest bytes, which no
  // registry does on purpose but a dying connection does.
  await expectStale('library/moving', 'v1', movingOld, [responseHeaders({ 'content-length': '100000' }, getManifest)]);
  assert.match(lastStaleCause(), /UND_ERR_BODY_TIMEOUT/);
});

test('serves the old manifest stale when the tag moved upstream and the GET by digest hits a reset', async () => {
  await expectStale('library/moving', 'v1', movingOld, [refuse(getManifest)]);
});

test('takes the new manifest once the upstream recovers', async () => {
  skew += TTL + 1_000;
  const m = await fetchManifest(berth.url, 'library/moving', 'v1');
  assert.equal(m.status, 200);
  assert.equal(m.digest, movingNew.manifestDigest);
  assert.equal(m.headers['warning'], undefined);
});

test('never answers 200 for an uncached tag whose manifest cannot be fetched', async () => {
  const img = buildImage({ seed: 'stale-uncached', layers: 1 });
  await pushImage(upstream.url, 'library/uncached', 'v1', img);
  proxy.setRules([status(500, {}, getManifest)]);
  for (const method of ['GET', 'HEAD'] as const) {
    const m = await fetchManifest(berth.url, 'library/uncached', 'v1', { method });
    assert.equal(m.status, 503, `${method}: the HEAD upstream named a digest, but the mirror cannot serve it`);
  }
  assert.ok(proxy.count({ kind: 'manifest', method: 'HEAD' }) >= 1);
});

// ------------------------------------------------ failures another process (or resolver) sees

test('serves a stale tag when the upstream refuses connections (nothing listens on its port)', async () => {
  const closed = await freePort();
  const other = await startBerth({ storage: { root: berth.root }, upstreams: [upstreamOverride(`http://127.0.0.1:${closed}`, KNOBS)] }, { now });
  try {
    skew += TTL + 1_000;
    const m = await fetchManifest(other.url, 'library/steady', 'v1');
    assert.equal(m.status, 200);
    assert.equal(m.digest, steady.manifestDigest);
    assert.equal(m.headers['warning'], STALE);
    assert.equal(await staleCount(other.services.metrics), 1);
    const refused = (await other.services.metrics.registry.getSingleMetric('berth_upstream_requests_total')?.get())?.values ?? [];
    assert.ok(refused.some((v) => v.labels['status'] === 'ECONNREFUSED' && v.value >= 1), 'the cause was a refused connection');
    await pull('library/steady', steady.manifestDigest, steady, other.url);
  } finally {
    await other.stop();
  }
});

/**
 * A whole Berth app whose upstream has a host name, resolved by `lookup` (never by real DNS).
 * Built by hand because the DNS seam is a MirrorService dependency, not a configuration key.
 */
async function appWithResolver(root: string, upstreamUrl: string, lookup: LookupFunction): Promise<{ app: FastifyInstance; metrics: Metrics; close(): Promise<void> }> {
  const config = await loadConfig({ file: null, env: {}, overrides: { storage: { root }, upstreams: [upstreamOverride(upstreamUrl, KNOBS)] } });
  const log = createLogger('silent');
  const driver = new FilesystemDriver(root);
  await driver.init();
  const metrics = new Metrics({ defaults: false });
  const mirror = new MirrorService({ driver, upstreams: config.upstreams, metrics, log, now, lookup });
  const router = new Router(config.upstreams, config.defaultUpstream);
  const app = await buildApp({ config, mirror, router, access: new OpenAccess(), metrics, driver, logger: log });
  return {
    app, metrics,
    async close() {
      await app.close();
      await mirror.close();
    },
  };
}

test('serves a stale tag when the upstream host name does not resolve (ENOTFOUND)', async () => {
  let lookups = 0;
  const failing: LookupFunction = (hostname, _options, callback) => {
    lookups += 1;
    const err = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', errno: -3008, syscall: 'getaddrinfo', hostname });
    callback(err, '', 4);
  };
  const s = await appWithResolver(berth.root, `http://registry.berth.test:${proxy.port}`, failing);
  try {
    skew += TTL + 1_000;
    const res = await s.app.inject({ method: 'GET', url: '/v2/library/steady/manifests/v1', headers: { accept: steady.mediaType } });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['docker-content-digest'], steady.manifestDigest);
    assert.equal(res.headers['warning'], STALE);
    assert.equal(await staleCount(s.metrics), 1);
    assert.ok(lookups >= 1, 'the injected resolver was asked');
    assert.equal(proxy.count(), 0, 'nothing reached the upstream');
    const causes = (await s.metrics.registry.getSingleMetric('berth_upstream_requests_total')?.get())?.values ?? [];
    assert.ok(causes.some((v) => v.labels['status'] === 'ENOTFOUND'), 'the cause was the failed lookup');
    const uncached = await s.app.inject({ method: 'GET', url: '/v2/library/never-pulled/manifests/v1' });
    assert.equal(uncached.statusCode, 503, 'an uncached tag cannot be answered');
  } finally {
    await s.close();
  }
});
