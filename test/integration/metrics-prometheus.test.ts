// The dashboard and the alert rules against the live service, through a real Prometheus: it
// scrapes Berth every second and loads dashboards/alerts.yaml; real pulls go through Berth
// (Distribution upstream behind the counting proxy, which adds Docker Hub's rate-limit headers).
// Every dashboard query must evaluate and return data, every rule must evaluate cleanly, a
// healthy mirror must raise no alert, and a spent pull budget and a dead upstream must.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import {
  buildImage, pushImage, fetchManifest, fetchBlob, rateLimitHeaders, startProcess, requireBinary,
  freePort, makeTempDir, removeTempDir, type FaultProxy, type BuiltImage, type ProcessHandle,
} from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';

const DASHBOARDS = new URL('../../../dashboards/', import.meta.url);

let rig: Rig;
let proxy: FaultProxy;
let berth: BerthHandle;
let image: BuiltImage;
let prometheus: ProcessHandle;
let promUrl: string;
let promDir: string;

interface PromResult {
  metric: Record<string, string>;
  value: [number, string];
}

async function api<T>(path: string): Promise<T> {
  const res = await request(`${promUrl}${path}`);
  const body = (await res.body.json()) as { status: string; data: T; error?: string };
  assert.equal(body.status, 'success', `${path}: ${body.error ?? res.statusCode}`);
  return body.data;
}

async function query(expr: string): Promise<PromResult[]> {
  const data = await api<{ resultType: string; result: PromResult[] | [number, string] }>(`/api/v1/query?query=${encodeURIComponent(expr)}`);
  if (data.resultType === 'scalar') return [{ metric: {}, value: data.result as [number, string] }];
  return data.result as PromResult[];
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

before(async () => {
  const bin = requireBinary('prometheus', 'prometheus');
  image = buildImage({ seed: 'metrics-prometheus', layers: [5000, 60_000] });
  const deadPort = await freePort();
  rig = await startRig({
    seed: async (upstream) => {
      await pushImage(upstream.url, 'library/scraped', '1.0', image);
      await pushImage(upstream.url, 'library/scraped', '2.0', buildImage({ seed: 'metrics-prometheus-2', layers: [1000] }));
    },
    faults: [rateLimitHeaders({ limit: 100, remaining: 90 }, { match: { kind: 'manifest' } })],
    upstreams: { 'docker.io': { tagTtl: '1h' }, 'ghcr.io': { url: `http://127.0.0.1:${deadPort}`, tagTtl: '1h' } },
    berthConfig: { storage: { maxSize: '512MiB' } },
  });
  ({ proxy, berth } = rig);

  promDir = await makeTempDir('prometheus');
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  const config = {
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: [fileURLToPath(new URL('alerts.yaml', DASHBOARDS))],
    scrape_configs: [{ job_name: 'berth', static_configs: [{ targets: [berth.host] }] }],
  };
  await writeFile(join(promDir, 'prometheus.yml'), stringify(config));
  prometheus = await startProcess(bin, [
    `--config.file=${join(promDir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(promDir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
  ], { cwd: promDir, readyUrl: `${promUrl}/-/ready`, readyTimeoutMs: 20_000, unref: true });
  await until('Prometheus to be ready', async () => {
    const res = await request(`${promUrl}/-/ready`);
    await res.body.dump();
    return res.statusCode === 200 ? true : undefined;
  });
  // Target discovery hands targets to the scraper in 5 s batches: the first scrape takes ~5 s.
  await until('Prometheus to scrape Berth', async () => ((await query('up{job="berth"} == 1')).length === 1 ? true : undefined));

  // A cold pull, then a warm one, each seen by a scrape of its own, while Prometheus watches: so
  // rates and increases see them as a dashboard would.
  const blobs = 1 + image.layers.length;
  for (const [result, n] of [['miss', 1 + blobs], ['hit', 1 + blobs]] as const) {
    const m = await fetchManifest(berth.url, 'library/scraped', '1.0');
    assert.equal(m.status, 200);
    for (const d of [image.configDigest, ...image.layers.map((l) => l.digest)]) assert.equal((await fetchBlob(berth.url, 'library/scraped', d)).status, 200);
    await until(`the ${result}es to be scraped`, async () => {
      const r = await query(`sum(berth_cache_requests_total{result="${result}"})`);
      return Number(r[0]?.value[1] ?? 0) >= n ? true : undefined;
    });
  }
  // A few more scrapes after the last change, so every rate window holds it between two samples.
  await new Promise((r) => setTimeout(r, 2500));
});

after(async () => {
  await prometheus?.stop();
  if (promDir) await removeTempDir(promDir);
  await rig?.stop();
});

interface Panel {
  type: string;
  title: string;
  targets?: Array<{ expr: string; refId: string }>;
}

/** What Grafana would send: the variables replaced by their values. */
function substitute(expr: string): string {
  return expr.replaceAll('$instance', '.*').replaceAll('$__rate_interval', '30s').replaceAll('$__range', '1m');
}

/** Panels that legitimately show nothing here: no image is pinned for pre-warm in this test. */
const EMPTY_HERE = new Set(['Time since last successful pre-warm']);

test('every dashboard query evaluates in Prometheus and returns data from the live service', async () => {
  const d = JSON.parse(await readFile(new URL('berth-overview.json', DASHBOARDS), 'utf8')) as { panels: Panel[]; templating: { list: Array<{ name: string; definition?: string }> } };
  const instances = await api<string[]>(`/api/v1/label/instance/values?match[]=berth_http_requests_total`);
  assert.deepEqual(instances, [berth.host], 'the instance variable finds this Berth');
  const empty: string[] = [];
  for (const p of d.panels.filter((x) => x.type !== 'row')) {
    for (const t of p.targets ?? []) {
      const result = await query(substitute(t.expr));
      if (result.length === 0 && !EMPTY_HERE.has(p.title)) empty.push(`${p.title} (${t.refId}): ${t.expr}`);
    }
  }
  assert.deepEqual(empty, [], 'dashboard queries without data');
});

test('the dashboard hit ratio and byte panels show what the pulls did', async () => {
  const hitRatio = await query(substitute(`sum(increase(berth_cache_requests_total{instance=~"$instance",result=~"hit|revalidated|stale"}[$__range])) / sum(increase(berth_cache_requests_total{instance=~"$instance"}[$__range]))`));
  const ratio = Number(hitRatio[0]?.value[1]);
  // One cold pull (all misses) and one warm pull (all hits) of the same image.
  assert.ok(ratio > 0.4 && ratio < 0.6, `hit ratio ${ratio}`);
  const bySource = await query('sum by (source) (increase(berth_served_bytes_total[1m]))');
  const source = (s: string) => Number(bySource.find((r) => r.metric['source'] === s)?.value[1] ?? 0);
  assert.ok(source('cache') > 0 && source('upstream') > 0, `served bytes by source: ${JSON.stringify(bySource)}`);
  const p99 = await query('histogram_quantile(0.99, sum by (le, route) (rate(berth_http_request_duration_seconds_bucket[30s])))');
  assert.ok(p99.some((r) => r.metric['route'] === 'blob' && Number.isFinite(Number(r.value[1]))), `p99 by route: ${JSON.stringify(p99)}`);
});

interface RuleGroup {
  rules: Array<{ name: string; health: string; lastError?: string; type: string }>;
}

test('every alert rule evaluates cleanly against the live series, and a healthy mirror raises no alert', async () => {
  const expected = (await readFile(new URL('alerts.yaml', DASHBOARDS), 'utf8')).match(/^\s*- alert: /gm)?.length ?? 0;
  const rules = await until('every rule to be evaluated', async () => {
    const groups = (await api<{ groups: RuleGroup[] }>('/api/v1/rules')).groups;
    const all = groups.flatMap((g) => g.rules);
    return all.length === expected && all.every((r) => r.health !== 'unknown') ? all : undefined;
  });
  for (const r of rules) assert.equal(r.health, 'ok', `${r.name}: ${r.lastError ?? ''}`);
  const { alerts } = await api<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>('/api/v1/alerts');
  assert.deepEqual(alerts.map((a) => `${a.labels['alertname']} ${a.state}`), [], 'no alert on a healthy mirror');
});

test('a nearly spent pull budget and a dead upstream raise their alerts from the live series', async () => {
  proxy.setRules([rateLimitHeaders({ limit: 100, remaining: 4 }, { match: { kind: 'manifest' } })]);
  const moved = await fetchManifest(berth.url, 'library/scraped', '2.0');
  assert.equal(moved.status, 200);
  const dead = await fetchManifest(berth.url, 'ghcr.io/team/app', 'v1');
  assert.equal(dead.status, 503, dead.body.toString());
  const active = await until('the alerts to become active', async () => {
    const { alerts } = await api<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>('/api/v1/alerts');
    const names = alerts.map((a) => `${a.labels['alertname']}{upstream=${a.labels['upstream']}}`).sort();
    return names.includes('BerthUpstreamDown{upstream=ghcr.io}') && names.includes('BerthUpstreamRateLimitLow{upstream=docker.io}') ? names : undefined;
  });
  // Their `for:` is minutes, so here they are pending; the firing side is in alerts.test.yaml.
  assert.deepEqual(active, ['BerthUpstreamDown{upstream=ghcr.io}', 'BerthUpstreamRateLimitLow{upstream=docker.io}']);
});
