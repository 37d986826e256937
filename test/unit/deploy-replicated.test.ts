// The replicated Kubernetes overlay (deploy/kubernetes/replicated), checked on what
// `kubectl kustomize` renders from it, since it patches the with-redis objects by name: the volume
// claim is gone and every mount is backed by a volume, the server runs several replicas with
// rolling updates and a PodDisruptionBudget that lets drains through one pod at a time, the worker
// is free of the server's node, every `$(VAR)` and Secret reference resolves, and the rendered
// berth.yaml loads through Berth's parser with the environment a kubelet would give the pod, and a
// Berth running it on a real Ceph RGW bucket and a real Redis answers the probe and scrape paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { startBerth } from '../helpers/berth.js';
import { startCeph } from '../helpers/ceph.js';
import { runCommand } from '../helpers/clients.js';
import { podEnv, type EnvEntry } from '../helpers/k8s-env.js';
import { startRedis } from '../helpers/redis.js';

interface Container {
  name: string;
  args?: string[];
  env?: EnvEntry[];
  ports?: { name?: string; containerPort: number }[];
  volumeMounts?: { name: string; mountPath: string }[];
}
interface Obj {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  // Rendered objects are read structurally; their schemas are not typed here.
  spec?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  data?: Record<string, string>;
}

async function rendered(): Promise<Obj[]> {
  const r = await runCommand('kubectl', ['kustomize', 'deploy/kubernetes/replicated'], { timeoutMs: 60_000, check: false, aptPackage: 'kubectl' });
  assert.equal(r.code, 0, r.stderr);
  return parseAllDocuments(r.stdout).map((d) => {
    assert.deepEqual(d.errors.map((e) => e.message), []);
    return d.toJS() as Obj;
  });
}

function get(objs: Obj[], kind: string, name: string): Obj {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} is rendered`);
  return o;
}

const selects = (sel: Record<string, string>, labels: Record<string, string> | undefined) =>
  Object.entries(sel).every(([k, v]) => labels?.[k] === v);

test('replicated overlay: no claim, several rolling serve replicas, a PDB, the worker off the server\'s node, every mount backed', async () => {
  const objs = await rendered();
  assert.ok(!objs.some((o) => o.kind === 'PersistentVolumeClaim'), 'the bucket is the cache');
  const server = get(objs, 'Deployment', 'berth');
  assert.ok(server.spec.replicas > 1);
  assert.equal(server.spec.strategy.type, 'RollingUpdate');
  assert.equal(server.spec.strategy.rollingUpdate.maxUnavailable, 0);
  const pdb = get(objs, 'PodDisruptionBudget', 'berth');
  assert.ok(selects(pdb.spec.selector.matchLabels, server.spec.template.metadata.labels), 'the PDB covers the serve pods');
  assert.ok(pdb.spec.maxUnavailable >= 1 && pdb.spec.maxUnavailable < server.spec.replicas);
  const worker = get(objs, 'Deployment', 'berth-worker');
  assert.equal(worker.spec.template.spec.affinity?.podAffinity, undefined);
  for (const d of objs.filter((o) => o.kind === 'Deployment')) {
    const pod = d.spec.template.spec;
    assert.equal(pod.enableServiceLinks, false, `${d.metadata.name}: no service links`);
    for (const v of pod.volumes ?? []) assert.equal(v.persistentVolumeClaim, undefined, `${d.metadata.name}: no claim`);
    for (const c of pod.containers as Container[]) {
      for (const m of c.volumeMounts ?? []) assert.ok(pod.volumes.some((v: { name: string }) => v.name === m.name), `${c.name}: volume ${m.name}`);
    }
  }
});

test('replicated overlay: berth.yaml loads with the serve and worker pods\' environment (S3, Redis, cluster)', async () => {
  const objs = await rendered();
  const text = get(objs, 'ConfigMap', 'berth-config').data?.['berth.yaml'];
  assert.ok(text);
  const secrets = { 'berth-cluster/secret': 'c'.repeat(64), 'berth-s3/AWS_ACCESS_KEY_ID': 'AKIA', 'berth-s3/AWS_SECRET_ACCESS_KEY': 'shh' };
  const fields = { 'metadata.name': 'berth-5f6d-xk2lp', 'status.podIP': '10.4.0.7' };
  const server = get(objs, 'Deployment', 'berth').spec.template.spec.containers[0] as Container;
  const cfg = parseConfig({ text, fileName: 'berth-config/berth.yaml', env: podEnv(server, fields, secrets) });
  assert.equal(cfg.storage.driver, 's3');
  assert.ok(cfg.storage.s3.bucket);
  assert.equal(cfg.storage.root, server.volumeMounts?.find((m) => m.name === 'data')?.mountPath, 'staging on the emptyDir');
  const port = server.ports?.find((p) => p.name === 'http')?.containerPort;
  assert.equal(cfg.http.port, port);
  assert.equal(cfg.cluster.advertiseUrl, `http://10.4.0.7:${port}`, 'the other replicas reach this pod at its own address');
  assert.equal(cfg.cluster.replicaId, 'berth-5f6d-xk2lp');
  assert.equal(cfg.cluster.secret, secrets['berth-cluster/secret']);
  const redis = get(objs, 'Service', 'berth-redis');
  assert.equal(cfg.redis.url, `redis://berth-redis:${redis.spec.ports[0].port}`);
  const worker = get(objs, 'Deployment', 'berth-worker').spec.template.spec.containers[0] as Container;
  const wcfg = parseConfig({ text, fileName: 'berth-config/berth.yaml', env: podEnv(worker, fields, secrets) });
  assert.equal(wcfg.storage.driver, 's3');
  assert.equal(wcfg.redis.url, cfg.redis.url);
});

test('replicated overlay: a Berth running its berth.yaml on a real RGW bucket and Redis answers the probe and scrape paths', async () => {
  const objs = await rendered();
  const server = get(objs, 'Deployment', 'berth');
  const c = server.spec.template.spec.containers[0] as { livenessProbe: { httpGet: { path: string } }; readinessProbe: { httpGet: { path: string } } };
  const raw = parseYaml(get(objs, 'ConfigMap', 'berth-config').data?.['berth.yaml'] ?? '') as Record<string, Record<string, unknown>>;
  const s3 = raw['storage']?.['s3'] as Record<string, unknown>;
  const bucket = String(s3['bucket']);
  const rgw = await startCeph({ buckets: [bucket] });
  const redis = await startRedis();
  try {
    // The manifest's config, on this machine's store and Redis: the endpoint, keys (the pod gets
    // them from the berth-s3 Secret), a temp staging folder and a loopback port; no pre-warm run.
    const { root: _root, ...storage } = raw['storage'] ?? {};
    const berth = await startBerth({
      ...raw,
      storage: { ...storage, s3: { ...s3, endpoint: rgw.endpoint, accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey } },
      redis: { url: redis.url },
      cluster: { replicaId: 'berth-0', advertiseUrl: 'http://127.0.0.1:5000', secret: 'c'.repeat(64) },
      prewarm: { ...(raw['prewarm'] ?? {}), images: [] },
    });
    try {
      const ann = server.spec.template.metadata.annotations as Record<string, string>;
      for (const path of [c.livenessProbe.httpGet.path, c.readinessProbe.httpGet.path, ann['prometheus.io/path']]) {
        assert.ok(path);
        const res = await request(`${berth.url}${path}`);
        const body = await res.body.text();
        assert.equal(res.statusCode, 200, `${path}: ${body}`);
      }
      const ready = await request(`${berth.url}/readyz`);
      const report = (await ready.body.json()) as { status: string; checks: Record<string, { ok: boolean }> };
      assert.equal(report.checks['storage']?.ok, true, 'the bucket answers');
      assert.equal(report.status, 'ready');
    } finally {
      await berth.stop();
    }
  } finally {
    await redis.stop();
    await rgw.stop();
  }
});
