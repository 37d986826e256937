// /metrics against real pulls: Distribution as the upstream (seeded by the image builder), the
// counting proxy in front of it adding Docker Hub's rate-limit headers, Berth in-process. What
// the live endpoint exports is checked with promtool, against the contract in ARCHITECTURE.md,
// against the upstream requests the proxy counted, and against the names the dashboard and the
// alert rules use.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, statfs } from 'node:fs/promises';
import { request } from 'undici';
import {
  buildImage, pushImage, fetchManifest, fetchBlob, digestOf, rateLimitHeaders, refuse, makeTempDir, removeTempDir,
  requireBinary, type Distribution, type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import { Metrics } from '../../src/metrics/metrics.js';

const REPO_ROOT = new URL('../../../', import.meta.url);
const CAP = 1024 * 1024 * 1024;

let rig: Rig;
let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;
let image: BuiltImage;
let second: BuiltImage;

before(async () => {
  image = buildImage({ seed: 'metrics-image', layers: [4096, 150_000, 40_000] });
  second = buildImage({ seed: 'metrics-second', layers: [8192] });
  rig = await startRig({
    seed: async (registry) => {
      await pushImage(registry.url, 'library/metered', '1.0', image);
      await pushImage(registry.url, 'team/second-app', 'v1', second);
    },
    upstreams: { 'docker.io': { tagTtl: '1h' }, 'ghcr.io': { tagTtl: '1h' } },
    berthConfig: { storage: { maxSize: '1GiB' } },
  });
  ({ upstream, proxy, berth } = rig);
});

after(async () => {
  await rig?.stop();
});

beforeEach(() => {
  // Docker Hub reports its pull budget on manifest requests; 100 per window, one less each time.
  proxy.setRules([rateLimitHeaders({ limit: 100 }, { match: { kind: 'manifest' } })]);
  proxy.reset();
});

// ------------------------------------------------------------------------- the text format

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Exposition {
  text: string;
  /** Metric family name → type, from `# TYPE` lines. */
  types: Map<string, string>;
  samples: Sample[];
}

function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) {
      types.set(t[1] ?? '', t[2] ?? '');
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1] ?? ''] = (l[2] ?? '').replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    samples.push({ name: m[1] ?? '', labels, value: Number(m[3]) });
  }
  return { text, types, samples };
}

async function scrape(): Promise<Exposition> {
  const res = await request(`${berth.url}/metrics`);
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain/);
  return parseExposition(await res.body.text());
}

/**
 * Blob responses are counted (served bytes, request count, duration) when the server's pipeline
 * ends, which can be a moment after the client has read the last byte: scrape until `ready`.
 */
async function scrapeWhen(ready: (e: Exposition) => boolean, timeoutMs = 3000): Promise<Exposition> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const e = await scrape();
    if (ready(e) || Date.now() > deadline) return e;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sum of the samples of `name` whose labels include `where`. */
function sum(e: Exposition, name: string, where: Record<string, string> = {}): number {
  return e.samples
    .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((acc, s) => acc + s.value, 0);
}

function has(e: Exposition, name: string, where: Record<string, string> = {}): boolean {
  return e.samples.some((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v));
}

/** Metric families a sample name can belong to: itself, or a histogram/summary minus its suffix. */
function familyOf(sampleName: string, types: Map<string, string>): string | undefined {
  if (types.has(sampleName)) return sampleName;
  const base = sampleName.replace(/_(bucket|sum|count)$/, '');
  return types.has(base) ? base : undefined;
}

function run(cmd: string, args: string[], stdin?: string, cwd?: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
    child.stdin.end(stdin ?? '');
  });
}

async function pull(repo: string, ref: string, img: BuiltImage): Promise<void> {
  const m = await fetchManifest(berth.url, repo, ref);
  assert.equal(m.status, 200, `manifest ${repo}:${ref}: ${m.body.toString()}`);
  assert.equal(m.digest, img.manifestDigest);
  for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) {
    const b = await fetchBlob(berth.url, repo, d);
    assert.equal(b.status, 200, `blob ${d}`);
    assert.equal(digestOf(b.body), d);
  }
}

function blobBytes(img: BuiltImage): number {
  return img.config.length + img.layers.reduce((a, l) => a + l.size, 0);
}

// ------------------------------------------------------------------------- tests

test('a cold pull counts misses and upstream bytes; a warm pull counts hits and bytes served from the cache', async () => {
  const before = await scrape();
  await pull('library/metered', '1.0', image);
  const blobs = 1 + image.layers.length;
  const blobResponses = (e: Exposition) => sum(e, 'berth_http_requests_total', { route: 'blob' });
  const cold = await scrapeWhen((e) => blobResponses(e) - blobResponses(before) === blobs);

  const delta = (e: Exposition, from: Exposition, name: string, where: Record<string, string>) => sum(e, name, where) - sum(from, name, where);
  assert.equal(delta(cold, before, 'berth_cache_requests_total', { kind: 'manifest', result: 'miss' }), 1);
  assert.equal(delta(cold, before, 'berth_cache_requests_total', { kind: 'blob', result: 'miss' }), blobs);
  assert.equal(delta(cold, before, 'berth_cache_requests_total', { result: 'hit' }), 0);
  assert.equal(delta(cold, before, 'berth_upstream_bytes_total', { upstream: 'docker.io' }), blobBytes(image) + image.manifest.length,
    'every byte received upstream is counted once: manifest, config, layers');
  assert.equal(delta(cold, before, 'berth_served_bytes_total', { source: 'upstream' }), blobBytes(image), 'blobs streamed from their fills');
  // The lifecycle layer tracks the store; /metrics shows its figures, which now hold this image.
  const stored = await scrapeWhen((e) => delta(e, before, 'berth_storage_blobs', {}) === blobs + 1);
  assert.equal(delta(stored, before, 'berth_storage_blobs', {}), blobs + 1, 'config, layers and the manifest are stored blobs');
  assert.equal(delta(stored, before, 'berth_storage_bytes', {}), blobBytes(image) + image.manifest.length);

  await pull('library/metered', '1.0', image);
  const warm = await scrapeWhen((e) => blobResponses(e) - blobResponses(cold) === blobs);
  assert.equal(proxy.count({ kind: ['manifest', 'blob'] }), 2 + blobs, 'the warm pull sent nothing upstream');
  assert.equal(delta(warm, cold, 'berth_cache_requests_total', { kind: 'manifest', result: 'hit' }), 1);
  assert.equal(delta(warm, cold, 'berth_cache_requests_total', { kind: 'blob', result: 'hit' }), blobs);
  assert.equal(delta(warm, cold, 'berth_cache_requests_total', { result: 'miss' }), 0);
  assert.equal(delta(warm, cold, 'berth_upstream_bytes_total', {}), 0);
  assert.equal(delta(warm, cold, 'berth_served_bytes_total', { source: 'cache' }), blobBytes(image) + image.manifest.length);
  assert.equal(delta(warm, cold, 'berth_served_bytes_total', { source: 'upstream' }), 0);
});

test('upstream request counters agree with the requests the upstream actually received', async () => {
  const before = await scrape();
  await pull('team/second-app', 'v1', second);
  const afterPull = await scrape();
  const counted = sum(afterPull, 'berth_upstream_requests_total') - sum(before, 'berth_upstream_requests_total');
  assert.equal(counted, proxy.count(), 'one count per request the proxy saw');
  const got = (where: Record<string, string>) => sum(afterPull, 'berth_upstream_requests_total', where) - sum(before, 'berth_upstream_requests_total', where);
  assert.equal(got({ upstream: 'docker.io', method: 'HEAD', kind: 'manifest', status: '200' }), proxy.count({ method: 'HEAD', kind: 'manifest' }));
  assert.equal(got({ upstream: 'docker.io', method: 'GET', kind: 'manifest', status: '200' }), proxy.count({ method: 'GET', kind: 'manifest' }));
  assert.equal(got({ upstream: 'docker.io', method: 'GET', kind: 'blob', status: '200' }), 1 + second.layers.length);
  // The proxy's rule counts down from 100 on each manifest request it has fired on since reset.
  assert.equal(sum(afterPull, 'berth_upstream_ratelimit_limit', { upstream: 'docker.io' }), 100);
  assert.equal(sum(afterPull, 'berth_upstream_ratelimit_remaining', { upstream: 'docker.io' }), 100 - proxy.count({ kind: 'manifest' }));
});

test('HTTP requests are counted by method, bounded route and status, and timed in buckets from 100 µs to minutes', async () => {
  const start = await scrape();
  await pull('library/metered', '1.0', image);
  const missing = await request(`${berth.url}/v2/library/metered/manifests/no-such-tag`);
  await missing.body.dump();
  assert.equal(missing.statusCode, 404);
  const blobs = 1 + image.layers.length;
  const e = await scrapeWhen((x) => sum(x, 'berth_http_request_duration_seconds_count', { route: 'blob' }) - sum(start, 'berth_http_request_duration_seconds_count', { route: 'blob' }) === blobs);
  assert.ok(sum(e, 'berth_http_requests_total', { method: 'GET', route: 'manifest', status: '200' }) >= 1);
  assert.ok(sum(e, 'berth_http_requests_total', { method: 'GET', route: 'blob', status: '200' }) >= 1 + image.layers.length);
  assert.ok(sum(e, 'berth_http_requests_total', { method: 'GET', route: 'manifest', status: '404' }) >= 1);
  assert.ok(sum(e, 'berth_http_requests_total', { route: 'metrics' }) >= 1, 'scrapes are counted too');
  const routes = new Set(e.samples.filter((s) => s.name === 'berth_http_requests_total').map((s) => s.labels['route']));
  for (const r of routes) assert.match(String(r), /^(v2|catalog|manifest|blob|tags|upload|referrers|unknown|api|healthz|readyz|metrics|other|ui)$/);

  const les = e.samples
    .filter((s) => s.name === 'berth_http_request_duration_seconds_bucket' && s.labels['route'] === 'blob' && s.labels['method'] === 'GET')
    .map((s) => s.labels['le']);
  assert.ok(les.includes('0.0001') && les.includes('0.001'), `sub-millisecond buckets for warm manifests: ${les.join(',')}`);
  assert.ok(les.includes('60') && les.includes('300') && les.includes('+Inf'), `minute buckets for large blobs: ${les.join(',')}`);
  const count = sum(e, 'berth_http_request_duration_seconds_count', { method: 'GET', route: 'blob' });
  assert.equal(count, sum(e, 'berth_http_requests_total', { method: 'GET', route: 'blob' }), 'every blob response is timed once');
});

test('no label value names a repository, a tag or a digest', async () => {
  await pull('library/metered', '1.0', image);
  await pull('team/second-app', 'v1', second);
  const e = await scrape();
  for (const s of e.samples) {
    for (const [k, v] of Object.entries(s.labels)) {
      assert.doesNotMatch(v, /sha256|metered|second-app|library\//, `${s.name}{${k}="${v}"} carries request data`);
    }
  }
});

test('promtool check metrics accepts the live /metrics', async () => {
  const promtool = requireBinary('promtool');
  await pull('library/metered', '1.0', image);
  const e = await scrape();
  const r = await run(promtool, ['check', 'metrics'], e.text);
  assert.equal(r.code, 0, `promtool check metrics failed:\n${r.output}`);
  assert.equal(r.output.trim(), '', `promtool has remarks:\n${r.output}`);
  assert.ok(e.types.has('process_cpu_seconds_total') && e.types.has('nodejs_eventloop_lag_p99_seconds'), 'process defaults are kept');
  assert.ok(e.types.has('nodejs_active_handles'), 'the per-type handle gauge is kept');
});

/** The contract table of ARCHITECTURE.md, plus the storage cap and disk-full gauges the alerts use, with types. */
const CONTRACT: ReadonlyArray<[string, string, string[]]> = [
  ['berth_http_requests_total', 'counter', ['method', 'route', 'status']],
  ['berth_http_request_duration_seconds', 'histogram', ['method', 'route']],
  ['berth_cache_requests_total', 'counter', ['kind', 'result']],
  ['berth_upstream_requests_total', 'counter', ['upstream', 'method', 'kind', 'status']],
  ['berth_upstream_bytes_total', 'counter', ['upstream']],
  ['berth_served_bytes_total', 'counter', ['source']],
  ['berth_upstream_ratelimit_remaining', 'gauge', ['upstream']],
  ['berth_upstream_ratelimit_limit', 'gauge', ['upstream']],
  ['berth_upstream_up', 'gauge', ['upstream']],
  ['berth_storage_bytes', 'gauge', []],
  ['berth_storage_blobs', 'gauge', []],
  ['berth_storage_max_bytes', 'gauge', []],
  ['berth_storage_full', 'gauge', []],
  ['berth_evictions_total', 'counter', []],
  ['berth_evicted_bytes_total', 'counter', []],
  ['berth_prewarm_runs_total', 'counter', ['result']],
  ['berth_prewarm_last_success_timestamp_seconds', 'gauge', ['image']],
  ['berth_prewarm_pulls_spent_total', 'counter', ['upstream']],
];

test('every contract metric is exported with its type and labels, and has a value before its first event where one is meaningful', async () => {
  await pull('library/metered', '1.0', image);
  const e = await scrape();
  for (const [name, type, labels] of CONTRACT) {
    assert.equal(e.types.get(name), type, `${name} is a ${type}`);
    for (const s of e.samples.filter((x) => familyOf(x.name, e.types) === name)) {
      const got = Object.keys(s.labels).filter((l) => l !== 'le').sort();
      assert.deepEqual(got, [...labels].sort(), `${s.name} labels`);
    }
  }
  // Series that exist before anything happened to them.
  for (const kind of ['manifest', 'blob']) {
    for (const result of ['hit', 'miss', 'stale', 'coalesced', 'revalidated']) {
      assert.ok(has(e, 'berth_cache_requests_total', { kind, result }), `berth_cache_requests_total{kind="${kind}",result="${result}"}`);
    }
  }
  for (const result of ['success', 'unchanged', 'failed']) assert.ok(has(e, 'berth_prewarm_runs_total', { result }));
  for (const source of ['cache', 'upstream']) assert.ok(has(e, 'berth_served_bytes_total', { source }));
  assert.equal(sum(e, 'berth_upstream_up', { upstream: 'ghcr.io' }), 1, 'a configured upstream never asked is not reported down');
  assert.ok(has(e, 'berth_upstream_bytes_total', { upstream: 'ghcr.io' }), 'byte counter per configured upstream from the start');
  assert.ok(has(e, 'berth_prewarm_pulls_spent_total', { upstream: 'ghcr.io' }));
  assert.ok(!has(e, 'berth_upstream_ratelimit_remaining', { upstream: 'ghcr.io' }), 'no made-up budget for an upstream that never reported one');
  assert.equal(sum(e, 'berth_upstream_up', { upstream: 'docker.io' }), 1);
  assert.equal(sum(e, 'berth_storage_max_bytes'), CAP);
  assert.ok(has(e, 'berth_storage_bytes') && has(e, 'berth_storage_blobs'));
  assert.ok(has(e, 'berth_evictions_total') && has(e, 'berth_evicted_bytes_total'));
});

test('berth_upstream_up drops to 0 when the upstream fails and returns to 1 with the next answer', async () => {
  const uncached = buildImage({ seed: 'metrics-updown', layers: [2048] });
  await pushImage(upstream.url, 'library/updown', '1', uncached);
  proxy.setRules([refuse()]);
  const failed = await fetchManifest(berth.url, 'library/updown', '1');
  assert.equal(failed.status, 503, failed.body.toString());
  assert.ok(proxy.count() >= 1, 'the request reached the (refusing) upstream');
  assert.equal(sum(await scrape(), 'berth_upstream_up', { upstream: 'docker.io' }), 0);
  proxy.setRules([]);
  // The breaker may hold the upstream off for failTimeout; wait for its half-open probe.
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ok = await fetchManifest(berth.url, 'library/updown', '1');
    if (ok.status === 200) break;
    assert.ok(Date.now() < deadline, `upstream never came back: ${ok.status} ${ok.body.toString()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(sum(await scrape(), 'berth_upstream_up', { upstream: 'docker.io' }), 1);
});

/** berth_*, process_* and nodejs_* names in a text (PromQL expressions, rule files). */
function metricNames(text: string): Set<string> {
  return new Set([...text.matchAll(/\b((?:berth|process|nodejs)_[a-z0-9_]+)\b/g)].map((m) => m[1] ?? ''));
}

test('every metric the Grafana dashboard and the alert rules query is exported by the live service', async () => {
  await pull('library/metered', '1.0', image);
  const e = await scrape();
  const dashboard = JSON.parse(await readFile(new URL('dashboards/berth-overview.json', REPO_ROOT), 'utf8')) as { panels: Array<{ targets?: Array<{ expr?: string }> }>; templating: { list: Array<{ definition?: string }> } };
  const exprs = [
    ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? '')),
    ...dashboard.templating.list.map((v) => v.definition ?? ''),
  ];
  const rules = await readFile(new URL('dashboards/alerts.yaml', REPO_ROOT), 'utf8');
  const exprLines = rules.split('\n').filter((l) => !/^\s*(#|summary:|description:)/.test(l));
  const used = new Map<string, string>();
  for (const x of exprs) for (const n of metricNames(x)) used.set(n, 'dashboards/berth-overview.json');
  // Annotations mention metrics in prose; only the rule expressions (non-annotation lines) count.
  let inAnnotations = false;
  for (const line of exprLines) {
    if (/^\s*annotations:/.test(line)) inAnnotations = true;
    else if (/^\s*- alert:/.test(line)) inAnnotations = false;
    if (!inAnnotations) for (const n of metricNames(line)) used.set(n, 'dashboards/alerts.yaml');
  }
  assert.ok(used.size >= 15, `found the expressions (${[...used.keys()].join(', ')})`);
  for (const [name, where] of used) {
    assert.ok(familyOf(name, e.types) !== undefined, `${where} uses ${name}, which /metrics does not export`);
  }
});

test('the storage gauges show the figures of the component that tracks the store, read at scrape time', async () => {
  const m = new Metrics({ defaults: false });
  let figures = { bytes: 123_456, blobs: 7 };
  m.reportStorageFrom(() => figures);
  const first = parseExposition(await m.registry.metrics());
  assert.equal(sum(first, 'berth_storage_bytes'), 123_456);
  assert.equal(sum(first, 'berth_storage_blobs'), 7);
  figures = { bytes: 99, blobs: 1 };
  const second = parseExposition(await m.registry.metrics());
  assert.equal(sum(second, 'berth_storage_bytes'), 99);
  assert.equal(sum(second, 'berth_storage_blobs'), 1);
  m.prepare({ upstreams: [], storageMaxBytes: null });
  assert.ok(!parseExposition(await m.registry.metrics()).types.has('berth_storage_max_bytes'), 'no cap and no volume to measure: no series (a 0 would read as full)');
});

test('berth_storage_max_bytes is exported without a cap too: the size of the volume under storage.root (the filesystem driver\'s space())', async () => {
  const m = new Metrics({ defaults: false });
  const root = await makeTempDir('berth-volume');
  try {
    m.prepare({ upstreams: [], storageMaxBytes: null, storageSpace: () => new FilesystemDriver(root).space() });
    const s = await statfs(root);
    assert.equal(sum(parseExposition(await m.registry.metrics()), 'berth_storage_max_bytes'), s.blocks * s.bsize);
    m.prepare({ upstreams: [], storageMaxBytes: 1234, storageSpace: () => new FilesystemDriver(root).space() });
    assert.equal(sum(parseExposition(await m.registry.metrics()), 'berth_storage_max_bytes'), 1234, 'a cap wins over the volume');
  } finally {
    await removeTempDir(root);
  }
});
