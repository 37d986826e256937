// The files under dashboards/ as Grafana and Prometheus will load them: the dashboard JSON is
// importable (stable uid, datasource and instance variables, every query on the chosen data
// source, panels that do not overlap), and promtool accepts the alert rules and passes their
// unit tests. (That every metric they name is exported is checked against a live Berth in
// test/integration/metrics.test.ts; that Prometheus evaluates them, in metrics-prometheus.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { requireBinary } from '../helpers/index.js';

const DASHBOARDS = new URL('../../../dashboards/', import.meta.url);

interface Target {
  refId?: string;
  expr?: string;
  datasource?: { type?: string; uid?: string };
}

interface Panel {
  id?: number;
  type: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  gridPos?: { x: number; y: number; w: number; h: number };
  targets?: Target[];
  panels?: Panel[];
}

interface Variable {
  name: string;
  type: string;
  query?: unknown;
  datasource?: { type?: string; uid?: string };
}

interface Dashboard {
  uid?: string;
  title?: string;
  schemaVersion?: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

async function dashboard(): Promise<Dashboard> {
  return JSON.parse(await readFile(new URL('berth-overview.json', DASHBOARDS), 'utf8')) as Dashboard;
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

function run(cmd: string, args: string[], cwd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

test('the dashboard has a stable uid, a recent schema, and Prometheus datasource and instance variables', async () => {
  const d = await dashboard();
  assert.equal(d.uid, 'berth-overview');
  assert.ok(typeof d.title === 'string' && d.title.length > 0);
  assert.ok((d.schemaVersion ?? 0) >= 36, `schemaVersion ${d.schemaVersion}`);
  const ds = d.templating.list.find((v) => v.name === 'datasource');
  assert.ok(ds, 'a datasource variable');
  assert.equal(ds.type, 'datasource');
  assert.equal(ds.query, 'prometheus');
  const instance = d.templating.list.find((v) => v.name === 'instance');
  assert.ok(instance, 'an instance variable');
  assert.equal(instance.type, 'query');
  assert.deepEqual(instance.datasource, { type: 'prometheus', uid: '${datasource}' });
  assert.match(JSON.stringify(instance.query), /label_values\(berth_[a-z_]+, ?instance\)/);
});

test('every panel queries the chosen datasource and filters on the chosen instances', async () => {
  const d = await dashboard();
  const panels = allPanels(d.panels).filter((p) => p.type !== 'row');
  assert.ok(panels.length >= 15, `${panels.length} panels`);
  const ids = new Set<number>();
  for (const p of panels) {
    assert.deepEqual(p.datasource, { type: 'prometheus', uid: '${datasource}' }, `panel "${p.title}" datasource`);
    assert.ok(p.targets && p.targets.length > 0, `panel "${p.title}" has queries`);
    for (const t of p.targets) {
      assert.deepEqual(t.datasource, { type: 'prometheus', uid: '${datasource}' }, `panel "${p.title}" query ${t.refId}`);
      assert.ok(t.expr, `panel "${p.title}" query ${t.refId} has an expression`);
      assert.match(t.expr, /instance=~"\$instance"/, `panel "${p.title}" query ${t.refId} follows the instance variable`);
    }
    assert.ok(p.id !== undefined && !ids.has(p.id), `panel "${p.title}" has a unique id`);
    ids.add(p.id);
  }
});

test('the dashboard answers the operator questions the issue lists', async () => {
  const d = await dashboard();
  const exprs = allPanels(d.panels).flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? '')).join('\n');
  const wanted: Array<[string, RegExp]> = [
    ['hit ratio', /berth_cache_requests_total\{[^}]*result=~"hit\|revalidated\|stale"[^}]*\}[\s\S]*\/\s*sum/],
    ['bytes from cache vs upstream', /sum by \(source\) \(rate\(berth_served_bytes_total/],
    ['upstream requests by status', /sum by \(upstream, status\) \(rate\(berth_upstream_requests_total/],
    ['rate-limit remaining per upstream', /berth_upstream_ratelimit_remaining/],
    ['stale serves', /result="stale"/],
    ['coalesced serves', /result="coalesced"/],
    ['p50 by route', /histogram_quantile\(0\.5, sum by \(le, route\) \(rate\(berth_http_request_duration_seconds_bucket/],
    ['p99 by route', /histogram_quantile\(0\.99, sum by \(le, route\) \(rate\(berth_http_request_duration_seconds_bucket/],
    ['storage use vs cap', /berth_storage_bytes[\s\S]*berth_storage_max_bytes/],
    ['evictions', /berth_evictions_total/],
    ['pre-warm runs', /berth_prewarm_runs_total/],
    ['time since last pre-warm success', /time\(\) - max by \(image\) \(berth_prewarm_last_success_timestamp_seconds/],
    ['upstream up', /berth_upstream_up/],
  ];
  for (const [what, re] of wanted) assert.match(exprs, re, what);
});

test('panels fit the 24-column grid without overlapping', async () => {
  const d = await dashboard();
  const taken = new Map<string, string>();
  for (const p of d.panels) {
    const g = p.gridPos;
    assert.ok(g, `panel "${p.title}" has a position`);
    assert.ok(g.x >= 0 && g.w > 0 && g.x + g.w <= 24, `panel "${p.title}" fits the grid`);
    for (let x = g.x; x < g.x + g.w; x++) {
      for (let y = g.y; y < g.y + g.h; y++) {
        const other = taken.get(`${x},${y}`);
        assert.equal(other, undefined, `panel "${p.title}" overlaps "${other}"`);
        taken.set(`${x},${y}`, p.title ?? '');
      }
    }
  }
});

test('promtool accepts the alert rules, and every alert has a severity and an actionable summary', async () => {
  const promtool = requireBinary('promtool');
  const dir = fileURLToPath(DASHBOARDS);
  const check = await run(promtool, ['check', 'rules', 'alerts.yaml'], dir);
  assert.equal(check.code, 0, `promtool check rules:\n${check.output}`);
  const doc = parseYaml(await readFile(new URL('alerts.yaml', DASHBOARDS), 'utf8')) as {
    groups: Array<{ rules: Array<{ alert?: string; labels?: Record<string, string>; annotations?: Record<string, string> }> }>;
  };
  const rules = doc.groups.flatMap((g) => g.rules);
  assert.ok(rules.length >= 8);
  for (const r of rules) {
    assert.ok(r.alert, 'alerting rules only');
    assert.match(r.labels?.['severity'] ?? '', /^(critical|warning)$/, `${r.alert} severity`);
    assert.ok((r.annotations?.['summary'] ?? '').length > 20, `${r.alert} summary`);
    assert.ok((r.annotations?.['description'] ?? '').length > 80, `${r.alert} description`);
  }
  const names = rules.map((r) => r.alert);
  for (const topic of [/RateLimit/, /UpstreamDown/, /Stale/, /Prewarm/, /Storage/, /5xx/]) {
    assert.ok(names.some((n) => topic.test(n ?? '')), `an alert for ${topic}`);
  }
});

test('promtool runs the alert unit tests, and every alert has a firing and a not-firing case', async () => {
  const promtool = requireBinary('promtool');
  const dir = fileURLToPath(DASHBOARDS);
  const r = await run(promtool, ['test', 'rules', 'alerts.test.yaml'], dir);
  assert.equal(r.code, 0, `promtool test rules:\n${r.output}`);
  assert.match(r.output, /SUCCESS/);
  const rules = parseYaml(await readFile(new URL('alerts.yaml', DASHBOARDS), 'utf8')) as { groups: Array<{ rules: Array<{ alert: string }> }> };
  const tests = parseYaml(await readFile(new URL('alerts.test.yaml', DASHBOARDS), 'utf8')) as {
    tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }> }>;
  };
  const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
  for (const { alert } of rules.groups.flatMap((g) => g.rules)) {
    assert.ok(cases.some((c) => c.alertname === alert && (c.exp_alerts ?? []).length > 0), `${alert} has a firing case`);
    assert.ok(cases.some((c) => c.alertname === alert && (c.exp_alerts ?? []).length === 0), `${alert} has a not-firing case`);
  }
});
