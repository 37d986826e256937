// Rate-limit awareness: ratelimit-* headers are recorded from every upstream answer (GET and
// HEAD); a 429 marks the upstream exhausted, after which no manifest GET goes upstream until the
// window passes, cached tags are served stale, and uncached requests get 429 TOOMANYREQUESTS with
// Retry-After at once — never a 500, never a retry storm. The state shows at /api/v1/upstreams
// and in the rate-limit gauges.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import {
  buildImage, pushImage, fetchManifest, fetchBlob, digestOf, dockerHubRateLimit, rateLimitHeaders,
  type Distribution, type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';

const TTL = 60_000;
let rig: Rig;
let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;
let skew = 0;
const now = (): number => Date.now() + skew;

before(async () => {
  rig = await startRig({ upstreams: { 'docker.io': { tagTtl: '60s' } }, berthOptions: { now } });
  ({ upstream, proxy, berth } = rig);
});

after(async () => {
  await rig?.stop();
});

beforeEach(() => {
  rig.resetProxy();
});

interface UpstreamState {
  name: string;
  rateLimit: { limit: number | null; remaining: number | null; windowSeconds: number | null; exhausted: boolean; retryAfterSeconds: number };
}

async function upstreamState(): Promise<UpstreamState> {
  const res = await request(`${berth.url}/api/v1/upstreams`);
  const body = (await res.body.json()) as { upstreams: UpstreamState[] };
  const u = body.upstreams.find((x) => x.name === 'docker.io');
  assert.ok(u);
  return u;
}

async function gauge(name: string): Promise<number | undefined> {
  const m = (await berth.services.metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
  return m.find((v) => v.labels['upstream'] === 'docker.io')?.value;
}

async function seed(repo: string, tag: string, seedText: string): Promise<BuiltImage> {
  const img = buildImage({ seed: seedText, layers: 1 });
  await pushImage(upstream.url, repo, tag, img);
  return img;
}

test('ratelimit-limit and ratelimit-remaining are recorded from HEAD and from GET answers', async () => {
  await seed('library/counted', 'v1', 'rl-counted');
  proxy.setRules([rateLimitHeaders({ limit: 100, remaining: 77, window: 21600 }, { match: { kind: 'manifest', method: 'HEAD' } })]);
  const m = await fetchManifest(berth.url, 'library/counted', 'v1');
  assert.equal(m.status, 200);
  // The GET by digest that followed carried no headers: the HEAD's figures stand.
  let s = await upstreamState();
  assert.deepEqual([s.rateLimit.limit, s.rateLimit.remaining, s.rateLimit.windowSeconds, s.rateLimit.exhausted], [100, 77, 21600, false]);
  assert.equal(await gauge('berth_upstream_ratelimit_remaining'), 77);
  assert.equal(await gauge('berth_upstream_ratelimit_limit'), 100);

  await seed('library/counted', 'v2', 'rl-counted-2');
  proxy.setRules([rateLimitHeaders({ limit: 100, remaining: 76, window: 21600 }, { match: { kind: 'manifest', method: 'GET' } })]);
  assert.equal((await fetchManifest(berth.url, 'library/counted', 'v2')).status, 200);
  s = await upstreamState();
  assert.equal(s.rateLimit.remaining, 76, 'a GET answer updates the figures too');
  assert.equal(await gauge('berth_upstream_ratelimit_remaining'), 76);
});

test('under a 429 the upstream is sent no manifest GET until Retry-After passes; uncached pulls get 429 at once, cached ones are served stale', async () => {
  const cached = await seed('library/warm', 'v1', 'rl-warm');
  assert.equal((await fetchManifest(berth.url, 'library/warm', 'v1')).status, 200);
  await seed('library/warm', 'v1', 'rl-warm-moved'); // the tag moves upstream: refreshing it would need a GET
  const others = await Promise.all([1, 2, 3, 4, 5].map((i) => seed(`library/cold${i}`, 'v1', `rl-cold-${i}`)));
  skew += TTL + 1_000;
  proxy.reset();
  proxy.setRules([dockerHubRateLimit({ retryAfter: 3, limit: 100, remaining: 0, window: 21600 }, { match: { kind: 'manifest', method: 'GET' } })]);

  // The first uncached pull spends the one GET that meets the 429.
  const first = await fetchManifest(berth.url, 'library/cold1', 'v1');
  assert.equal(first.status, 429);
  assert.equal(JSON.parse(first.body.toString()).errors[0].code, 'TOOMANYREQUESTS');
  const blockedAt = Date.now();
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 1);
  const manifestRequests = proxy.count({ kind: 'manifest' });

  // Meanwhile: many clients, uncached tags and digests: 429 + Retry-After, quickly, no GET upstream.
  const started = Date.now();
  const answers = await Promise.all([
    ...Array.from({ length: 20 }, (_, i) => fetchManifest(berth.url, `library/cold${(i % 4) + 2}`, 'v1')),
    fetchManifest(berth.url, 'library/cold2', others[1]?.manifestDigest ?? ''),
  ]);
  const took = Date.now() - started;
  for (const a of answers) {
    assert.equal(a.status, 429, a.body.toString());
    assert.equal(JSON.parse(a.body.toString()).errors[0].code, 'TOOMANYREQUESTS');
    const retry = Number(a.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= 3, `Retry-After ${String(a.headers['retry-after'])}`);
  }
  assert.ok(took < 1_000, `answered in ${took} ms`);
  assert.equal(proxy.count({ kind: 'manifest' }), manifestRequests, 'uncached: answered without asking the upstream at all');

  const warm = await fetchManifest(berth.url, 'library/warm', 'v1');
  assert.equal(warm.status, 200);
  assert.equal(warm.digest, cached.manifestDigest, 'the cached manifest');
  assert.equal(warm.headers['warning'], '110 - "Response is Stale"');
  assert.equal(proxy.count({ kind: 'manifest', method: 'HEAD' }), 2, 'a cached tag still revalidates with a free HEAD');
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 1, 'but its new digest is not fetched while exhausted');

  const s = await upstreamState();
  assert.equal(s.rateLimit.exhausted, true);
  assert.equal(s.rateLimit.remaining, 0);
  assert.equal(s.rateLimit.limit, 100);
  assert.ok(s.rateLimit.retryAfterSeconds >= 1 && s.rateLimit.retryAfterSeconds <= 3);
  assert.equal(await gauge('berth_upstream_ratelimit_remaining'), 0);
  assert.equal(await gauge('berth_upstream_up'), 1, 'a rate-limited upstream is up: it answers');

  // Wait the window out: the next pull sends its GET again (and the upstream now serves it).
  await new Promise((r) => setTimeout(r, Math.max(0, blockedAt + 3_100 - Date.now())));
  proxy.setRules([]);
  const later = await fetchManifest(berth.url, 'library/cold3', 'v1');
  assert.equal(later.status, 200);
  assert.equal(later.digest, others[2]?.manifestDigest);
  assert.equal(proxy.count({ kind: 'manifest', method: 'GET' }), 2, 'one GET once the window passed');
  assert.equal((await upstreamState()).rateLimit.exhausted, false);
  const img = others[2];
  assert.ok(img);
  for (const l of img.layers) assert.equal(digestOf((await fetchBlob(berth.url, 'library/cold3', l.digest)).body), l.digest);
});

test('a 429 without Retry-After holds GETs back until the upstream reports pulls left again', async () => {
  await seed('library/abuse', 'v0', 'rl-abuse-0');
  await seed('library/abuse', 'v1', 'rl-abuse-1');
  const second = await seed('library/abuse', 'v2', 'rl-abuse-2');
  assert.equal((await fetchManifest(berth.url, 'library/abuse', 'v0')).status, 200);
  proxy.setRules([dockerHubRateLimit({ retryAfter: null, remaining: 0, window: 21600 }, { match: { kind: 'manifest', method: 'GET' }, times: 1 })]);
  assert.equal((await fetchManifest(berth.url, 'library/abuse', 'v1')).status, 429);
  let s = await upstreamState();
  assert.equal(s.rateLimit.exhausted, true);
  assert.ok(s.rateLimit.retryAfterSeconds > 21000, 'held for the reported window');
  assert.equal((await fetchManifest(berth.url, 'library/abuse', 'v2')).status, 429, 'still held');

  // A cached tag's revalidating HEAD reports pulls left: that lifts the block.
  skew += TTL + 1_000;
  proxy.setRules([rateLimitHeaders({ limit: 100, remaining: 40, window: 21600 }, { match: { kind: 'manifest', method: 'HEAD' } })]);
  assert.equal((await fetchManifest(berth.url, 'library/abuse', 'v0')).status, 200);
  s = await upstreamState();
  assert.equal(s.rateLimit.exhausted, false);
  assert.equal(s.rateLimit.remaining, 40);
  const m = await fetchManifest(berth.url, 'library/abuse', 'v2');
  assert.equal(m.status, 200);
  assert.equal(m.digest, second.manifestDigest);
});
