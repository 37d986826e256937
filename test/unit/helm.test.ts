// The Helm chart (deploy/helm/berth), rendered with the real `helm template` (scripts/install-helm.sh
// puts a helm on PATH; CI runs it) for the default values, the Redis values and a custom port, and
// checked as Kubernetes would wire it: selectors match pod labels, Services and probes name ports
// the containers have, the ServiceMonitor and PodDisruptionBudget select real objects, every pod
// opts out of service links and runs non-root with a read-only root filesystem, and the rendered
// berth.yaml loads through Berth's own parser and answers the probe paths on a running Berth.
// Values the chart cannot honour (several replicas on one ReadWriteOnce volume, a worker without
// Redis) must fail the render with a sentence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { parseSize } from '../../src/config/units.js';
import { startBerth } from '../helpers/berth.js';
import { runCommand } from '../helpers/clients.js';
import { podEnv } from '../helpers/k8s-env.js';

const CHART = 'deploy/helm/berth';

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  // Rendered Kubernetes objects are read structurally; their schemas are not typed here.
  spec?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  data?: Record<string, string>;
}

async function helm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await runCommand('helm', args, { timeoutMs: 60_000, check: false, aptPackage: 'helm (scripts/install-helm.sh)' });
  return { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function render(release: string, extra: string[] = []): Promise<Obj[]> {
  const r = await helm(['template', release, CHART, '--namespace', 'mirror', ...extra]);
  assert.equal(r.code, 0, r.stderr);
  const out: Obj[] = [];
  for (const d of parseAllDocuments(r.stdout)) {
    assert.deepEqual(d.errors.map((e) => e.message), [], 'rendered YAML parses');
    const v = d.toJS() as Obj | null;
    if (v) out.push(v);
  }
  return out;
}

function get(objs: Obj[], kind: string, name: string): Obj {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} is rendered (have: ${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')})`);
  return o;
}

function selects(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

const podTemplates = (objs: Obj[]) => objs.filter((o) => o.kind === 'Deployment');

/** Checks every rendered release must pass, whatever the values. */
function wiringHolds(objs: Obj[]): void {
  const kinds = new Set(objs.map((o) => o.kind));
  for (const k of kinds) assert.ok(['ConfigMap', 'PersistentVolumeClaim', 'Deployment', 'Service', 'PodDisruptionBudget', 'ServiceMonitor'].includes(k), `unexpected kind ${k}`);
  for (const d of podTemplates(objs)) {
    const pod = d.spec.template;
    assert.ok(selects(d.spec.selector.matchLabels, pod.metadata.labels), `${d.metadata.name}: selector matches its pods`);
    assert.equal(pod.spec.enableServiceLinks, false, `${d.metadata.name}: no service-link variables`);
    assert.equal(pod.spec.securityContext.runAsNonRoot, true);
    for (const c of pod.spec.containers) {
      assert.equal(c.securityContext.readOnlyRootFilesystem, true, `${c.name}: read-only root`);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
      for (const probe of [c.livenessProbe, c.readinessProbe]) {
        const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port;
        if (typeof port === 'string') assert.ok(c.ports.some((p: { name: string }) => p.name === port), `${c.name}: probe port ${port} exists`);
      }
      for (const m of c.volumeMounts ?? []) {
        assert.ok(pod.spec.volumes.some((v: { name: string }) => v.name === m.name), `${c.name}: volume ${m.name} exists`);
      }
    }
    for (const v of pod.spec.volumes ?? []) {
      if (v.persistentVolumeClaim) get(objs, 'PersistentVolumeClaim', v.persistentVolumeClaim.claimName);
      if (v.configMap) get(objs, 'ConfigMap', v.configMap.name);
    }
  }
  for (const s of objs.filter((o) => o.kind === 'Service')) {
    const backing = podTemplates(objs).filter((d) => selects(s.spec.selector, d.spec.template.metadata.labels));
    assert.equal(backing.length, 1, `Service ${s.metadata.name} selects exactly one Deployment's pods`);
    const containers = backing[0]!.spec.template.spec.containers;
    for (const p of s.spec.ports) {
      assert.ok(containers.some((c: { ports: { name: string }[] }) => c.ports.some((cp) => cp.name === p.targetPort)), `Service ${s.metadata.name}: target port ${p.targetPort} exists`);
    }
  }
  for (const pdb of objs.filter((o) => o.kind === 'PodDisruptionBudget')) {
    const server = get(objs, 'Deployment', pdb.metadata.name);
    assert.ok(selects(pdb.spec.selector.matchLabels, server.spec.template.metadata.labels), 'the PDB covers the serve pods');
    assert.ok(pdb.spec.maxUnavailable >= 1 || server.spec.replicas > 1, 'a PDB never blocks every node drain');
  }
  for (const sm of objs.filter((o) => o.kind === 'ServiceMonitor')) {
    const services = objs.filter((o) => o.kind === 'Service' && selects(sm.spec.selector.matchLabels, o.metadata.labels));
    for (const ep of sm.spec.endpoints) {
      assert.equal(ep.path, '/metrics');
      assert.ok(services.some((s) => s.spec.ports.some((p: { name: string }) => p.name === ep.port)), `ServiceMonitor port ${ep.port} is on a selected Service`);
    }
  }
}

function serverOf(objs: Obj[], release: string) {
  const d = get(objs, 'Deployment', release);
  const c = d.spec.template.spec.containers[0];
  const env = (n: string): string | undefined => c.env.find((e: { name: string }) => e.name === n)?.value;
  const mount = (n: string): string => c.volumeMounts.find((m: { name: string }) => m.name === n).mountPath;
  return { d, c, env, mount };
}

test('helm lint passes for the default, the Redis and the replicated values', async () => {
  for (const extra of [[], ['-f', `${CHART}/values-redis.yaml`], ['-f', `${CHART}/values-replicated.yaml`]]) {
    const r = await helm(['lint', CHART, ...extra]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  }
});

test('default values: one serve pod on a volume, its berth.yaml loads through Berth and matches the pod', async () => {
  const objs = await render('berth');
  wiringHolds(objs);
  assert.deepEqual(objs.map((o) => o.kind).sort(), ['ConfigMap', 'Deployment', 'PersistentVolumeClaim', 'PodDisruptionBudget', 'Service']);
  const { d, c, env, mount } = serverOf(objs, 'berth');
  assert.deepEqual(c.args, ['serve']);
  assert.equal(d.spec.replicas, 1);
  assert.equal(d.spec.strategy.type, 'Recreate');
  assert.equal(c.livenessProbe.httpGet.path, '/healthz');
  assert.equal(c.readinessProbe.httpGet.path, '/readyz');
  assert.equal(env('BERTH_REDIS_URL'), undefined, 'no Redis by default');
  const cm = get(objs, 'ConfigMap', 'berth-config');
  assert.equal(env('BERTH_CONFIG'), `${mount('config')}/berth.yaml`);
  const cfg = parseConfig({ text: cm.data!['berth.yaml']!, fileName: 'berth-config/berth.yaml' });
  assert.equal(cfg.http.host, '0.0.0.0');
  assert.equal(cfg.http.port, c.ports[0].containerPort);
  assert.equal(cfg.storage.root, mount('data'));
  const pvc = get(objs, 'PersistentVolumeClaim', 'berth-data');
  const volume = parseSize(String(pvc.spec.resources.requests.storage).replace(/i$/, 'iB'), 'pvc');
  assert.ok(cfg.storage.maxSize !== null && cfg.storage.maxSize < volume, 'eviction starts before the volume is full');
  assert.equal(get(objs, 'Service', 'berth').spec.ports[0].port, cfg.http.port);
});

test('Redis values: Redis, a worker on the same cache and node, one Redis URL, and a ServiceMonitor', async () => {
  const objs = await render('mirror', ['-f', `${CHART}/values-redis.yaml`]);
  wiringHolds(objs);
  const server = serverOf(objs, 'mirror-berth');
  const worker = get(objs, 'Deployment', 'mirror-berth-worker');
  const wc = worker.spec.template.spec.containers[0];
  assert.equal(wc.args[0], 'worker');
  assert.equal(Number(wc.args[wc.args.indexOf('--port') + 1]), wc.ports.find((p: { name: string }) => p.name === 'health').containerPort);
  assert.equal(wc.image, server.c.image);
  const redisSvc = get(objs, 'Service', 'mirror-berth-redis');
  const url = `redis://${redisSvc.metadata.name}:${redisSvc.spec.ports[0].port}`;
  assert.equal(server.env('BERTH_REDIS_URL'), url);
  assert.equal(wc.env.find((e: { name: string }) => e.name === 'BERTH_REDIS_URL').value, url);
  assert.deepEqual(get(objs, 'Deployment', 'mirror-berth-redis').spec.template.spec.containers[0].args.slice(-2), ['--maxmemory-policy', 'noeviction']);
  const aff = worker.spec.template.spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0];
  assert.ok(selects(aff.labelSelector.matchLabels, server.d.spec.template.metadata.labels), 'the worker runs next to the server (ReadWriteOnce)');
  const claim = (o: Obj) => o.spec.template.spec.volumes.find((v: { name: string }) => v.name === 'data').persistentVolumeClaim.claimName;
  assert.equal(claim(worker), claim(server.d));
  const sm = get(objs, 'ServiceMonitor', 'mirror-berth');
  assert.deepEqual(sm.spec.endpoints.map((e: { port: string }) => e.port).sort(), ['health', 'http']);
  const cfg = parseConfig({ text: get(objs, 'ConfigMap', 'mirror-berth-config').data!['berth.yaml']!, env: { BERTH_REDIS_URL: url } });
  assert.equal(cfg.redis.url, url);
  assert.deepEqual(cfg.prewarm.images.map((i) => i.ref), ['docker.io/library/alpine:3.20']);
});

test('a custom port and extra config keys reach berth.yaml, the container, the probes and the Service', async () => {
  const objs = await render('berth', ['--set', 'service.port=5080', '--set', 'config.storage.deleteEnabled=true', '--set', 'persistence.cacheMaxSize=9GiB', '--set', 'persistence.size=10Gi']);
  wiringHolds(objs);
  const { c, mount } = serverOf(objs, 'berth');
  const cfg = parseConfig({ text: get(objs, 'ConfigMap', 'berth-config').data!['berth.yaml']! });
  assert.equal(cfg.http.port, 5080);
  assert.equal(c.ports[0].containerPort, 5080);
  assert.equal(get(objs, 'Service', 'berth').spec.ports[0].port, 5080);
  assert.equal(cfg.storage.deleteEnabled, true);
  assert.equal(cfg.storage.root, mount('data'), 'the cache root stays on the volume');
  assert.equal(cfg.storage.maxSize, 9 * 1024 ** 3);
});

test('values the chart cannot honour fail the render with a sentence', async () => {
  const cases: [string[], RegExp][] = [
    [['--set', 'replicaCount=2'], /replicaCount > 1 needs a cache shared by every replica/],
    [['--set', 'worker.enabled=true'], /worker.enabled needs Redis/],
    [['--set', 'redis.enabled=true', '--set', 'redis.url=redis://elsewhere:6379'], /either redis.enabled .* or redis.url/],
  ];
  for (const [args, msg] of cases) {
    const r = await helm(['template', 'berth', CHART, ...args]);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, msg);
  }
});

test('the rendered probe and metrics paths answer 200 on a Berth running the rendered berth.yaml', async () => {
  const objs = await render('berth', ['-f', `${CHART}/values-redis.yaml`, '--set', 'redis.enabled=false', '--set', 'worker.enabled=false']);
  const { c } = serverOf(objs, 'berth');
  const raw = parseYaml(get(objs, 'ConfigMap', 'berth-config').data!['berth.yaml']!) as Record<string, Record<string, unknown>>;
  // Same config, with a temporary cache, a loopback port and no pre-warm run against Docker Hub.
  const { root: _root, ...storage } = raw['storage'] ?? {};
  const berth = await startBerth({ ...raw, storage, prewarm: { ...(raw['prewarm'] ?? {}), images: [] } });
  try {
    for (const path of [c.livenessProbe.httpGet.path, c.readinessProbe.httpGet.path, '/metrics']) {
      const res = await request(`${berth.url}${path}`);
      await res.body.dump();
      assert.equal(res.statusCode, 200, path);
    }
  } finally {
    await berth.stop();
  }
});

test('replicated values: several serve pods on the S3 bucket, no claim, cluster wiring, and a berth.yaml that loads with the pod environment', async () => {
  const objs = await render('berth', ['-f', `${CHART}/values-replicated.yaml`]);
  wiringHolds(objs);
  assert.ok(!objs.some((o) => o.kind === 'PersistentVolumeClaim'), 'the bucket is the cache: no volume claim');
  const { d, c, mount } = serverOf(objs, 'berth');
  assert.ok(d.spec.replicas > 1);
  assert.equal(d.spec.strategy.type, 'RollingUpdate');
  assert.equal(d.spec.strategy.rollingUpdate.maxUnavailable, 0, 'a new pod is ready before an old one goes');
  for (const dep of podTemplates(objs).filter((o) => o.metadata.name !== 'berth-redis')) {
    const data = dep.spec.template.spec.volumes.find((v: { name: string }) => v.name === 'data');
    assert.ok(data.emptyDir, `${dep.metadata.name}: staging on an emptyDir`);
  }
  const worker = get(objs, 'Deployment', 'berth-worker');
  assert.equal(worker.spec.template.spec.affinity, undefined, 'the worker is no longer tied to the server\'s node');
  const pdb = get(objs, 'PodDisruptionBudget', 'berth');
  assert.ok(pdb.spec.maxUnavailable < d.spec.replicas);
  const secrets = { 'berth-cluster/secret': 's'.repeat(64), 'berth-s3/AWS_ACCESS_KEY_ID': 'AKIA', 'berth-s3/AWS_SECRET_ACCESS_KEY': 'shh' };
  const env = podEnv(c, { 'metadata.name': 'berth-7d9f-abcde', 'status.podIP': '10.1.2.3' }, secrets);
  const cfg = parseConfig({ text: get(objs, 'ConfigMap', 'berth-config').data!['berth.yaml']!, env });
  assert.equal(cfg.storage.driver, 's3');
  assert.equal(cfg.storage.root, mount('data'), 'staging on the pod\'s emptyDir');
  assert.equal(cfg.storage.maxSize, null, 'no per-pod cap on a shared bucket');
  assert.equal(cfg.cluster.advertiseUrl, `http://10.1.2.3:${c.ports[0].containerPort}`);
  assert.equal(cfg.cluster.replicaId, 'berth-7d9f-abcde');
  assert.equal(cfg.cluster.secret, secrets['berth-cluster/secret']);
  assert.ok(cfg.redis.url);
  assert.equal(env['AWS_ACCESS_KEY_ID'], 'AKIA', 'the bucket credentials come from the Secret');
});

test('several replicas need S3, Redis and a cluster secret; S3 needs a bucket', async () => {
  const s3 = ['--set', 'config.storage.driver=s3', '--set', 'config.storage.s3.bucket=b'];
  const cases: [string[], RegExp][] = [
    [['--set', 'replicaCount=3', '--set', 'redis.enabled=true', '--set', 'cluster.secretName=c'], /replicaCount > 1 needs a cache shared by every replica/],
    [['--set', 'replicaCount=3', ...s3, '--set', 'cluster.secretName=c'], /replicaCount > 1 needs Redis/],
    [['--set', 'replicaCount=3', ...s3, '--set', 'redis.enabled=true'], /replicaCount > 1 needs cluster.secretName/],
    [['--set', 'config.storage.driver=s3'], /needs config.storage.s3.bucket/],
  ];
  for (const [args, msg] of cases) {
    const r = await helm(['template', 'berth', CHART, ...args]);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, msg);
  }
});
