// Keeps the deployment files true to Berth: every YAML document under deploy/ parses; the
// Kubernetes objects agree with each other (selectors, named ports, volumes, claims, the Redis
// URL) and with Berth (the ConfigMap loads through Berth's config parser; its port and storage root
// are the container port and the volume; the probe and scrape paths answer on a running Berth);
// every container is non-root with a read-only root filesystem and volumes for what it writes;
// the Dockerfile is multi-stage, non-root, starts the CLI that the build produces, and its
// HEALTHCHECK command really tells a live Berth from a dead one. `docker build` cannot run here
// (no route to Docker Hub for the base images); the kustomizations are rendered with
// `kubectl kustomize` when a kubectl is installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { parseSize } from '../../src/config/units.js';
import { which } from '../helpers/index.js';
import { startBerth, startBerthProcess } from '../helpers/berth.js';
import { runCommand } from '../helpers/clients.js';

// ---------------------------------------------------------------------------------------------
// Minimal typed views of the Kubernetes objects the checks read.

interface Meta {
  name: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Probe {
  httpGet?: { path: string; port: string | number };
  tcpSocket?: { port: string | number };
  exec?: { command: string[] };
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: EnvVar[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  securityContext?: { readOnlyRootFilesystem?: boolean; runAsNonRoot?: boolean; allowPrivilegeEscalation?: boolean; capabilities?: { drop?: string[] } };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface Volume {
  name: string;
  persistentVolumeClaim?: { claimName: string };
  configMap?: { name: string };
  emptyDir?: unknown;
  secret?: unknown;
}
interface PodSpec {
  enableServiceLinks?: boolean;
  containers: Container[];
  volumes?: Volume[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; fsGroup?: number };
  affinity?: { podAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: { labelSelector: { matchLabels: Record<string, string> }; topologyKey: string }[] } };
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
  source: string;
}
interface Deployment extends K8sObject {
  spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: { metadata: Meta; spec: PodSpec } };
}
interface Service extends K8sObject {
  spec: { selector: Record<string, string>; ports: { name?: string; port: number; targetPort: string | number }[] };
}
interface Kustomization {
  resources?: string[];
  patches?: { path: string }[];
}

// ---------------------------------------------------------------------------------------------
// Loading

async function yamlFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    // The Helm chart's templates are not YAML until rendered; test/unit/helm.test.ts renders them.
    // The replicated overlay patches the with-redis objects by name; test/unit/deploy-replicated.test.ts
    // checks what `kubectl kustomize` makes of it.
    const skip = [join('deploy', 'helm'), join('deploy', 'kubernetes', 'replicated')];
    if (e.isDirectory() && !skip.includes(p)) out.push(...(await yamlFiles(p)));
    else if (/\.ya?ml$/.test(e.name)) out.push(p);
  }
  return out.sort();
}

interface Loaded {
  objects: K8sObject[];
  kustomizations: Map<string, Kustomization>;
  patchFiles: Set<string>;
}

async function loadDeploy(): Promise<Loaded> {
  const objects: K8sObject[] = [];
  const kustomizations = new Map<string, Kustomization>();
  for (const file of await yamlFiles('deploy')) {
    const docs = parseAllDocuments(await readFile(file, 'utf8'));
    for (const d of docs) {
      assert.deepEqual(d.errors.map((e) => e.message), [], `${file} parses`);
      const v = d.toJS() as Record<string, unknown> | null;
      if (v === null) continue;
      if (v['kind'] === 'Kustomization') kustomizations.set(dirname(file), v as Kustomization);
      else if (typeof v['kind'] === 'string') objects.push({ ...(v as unknown as K8sObject), source: file });
    }
  }
  const patchFiles = new Set<string>();
  for (const [dir, k] of kustomizations) for (const p of k.patches ?? []) patchFiles.add(join(dir, p.path));
  return { objects, kustomizations, patchFiles };
}

function inFiles(l: Loaded, prefix: string): K8sObject[] {
  return l.objects.filter((o) => o.source.startsWith(prefix) && !l.patchFiles.has(o.source));
}

function find<T extends K8sObject>(objs: K8sObject[], kind: string, name: string): T {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind}/${name} exists`);
  return o as T;
}

function containerPort(c: Container, port: string | number): number {
  if (typeof port === 'number') return port;
  const p = c.ports?.find((x) => x.name === port);
  assert.ok(p, `${c.name}: named port ${port} exists`);
  return p.containerPort;
}

function envOf(c: Container, name: string): string | undefined {
  return c.env?.find((e) => e.name === name)?.value;
}

function mountOf(c: Container, volume: string): string {
  const m = c.volumeMounts?.find((v) => v.name === volume);
  assert.ok(m, `${c.name} mounts ${volume}`);
  return m.mountPath;
}

function matches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

function onlyContainer(d: Deployment): Container {
  assert.equal(d.spec.template.spec.containers.length, 1, `${d.metadata.name} has one container`);
  return d.spec.template.spec.containers[0] as Container;
}

function serverConfigText(objs: K8sObject[]): string {
  const text = find(objs, 'ConfigMap', 'berth-config').data?.['berth.yaml'];
  assert.ok(text, 'the ConfigMap carries berth.yaml');
  return text;
}

// ---------------------------------------------------------------------------------------------

test('every YAML document under deploy/ parses, and every object has apiVersion, kind and a name', async () => {
  const l = await loadDeploy();
  assert.ok(l.objects.length >= 8);
  for (const o of l.objects) {
    assert.ok(typeof o.apiVersion === 'string' && o.apiVersion !== '', `${o.source}: apiVersion`);
    assert.ok(typeof o.metadata?.name === 'string' && o.metadata.name !== '', `${o.source}: metadata.name`);
  }
});

test('the kustomizations name files that exist, and the overlay\'s patch targets a Deployment and container of the base', async () => {
  const l = await loadDeploy();
  assert.deepEqual([...l.kustomizations.keys()].sort(), ['deploy/kubernetes/base', 'deploy/kubernetes/with-redis']);
  for (const [dir, k] of l.kustomizations) {
    for (const r of [...(k.resources ?? []), ...(k.patches ?? []).map((p) => p.path)]) await stat(join(dir, r));
  }
  const base = inFiles(l, 'deploy/kubernetes/base/');
  assert.deepEqual(base.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
    'ConfigMap/berth-config', 'Deployment/berth', 'PersistentVolumeClaim/berth-data', 'Service/berth',
  ]);
  for (const file of l.patchFiles) {
    const patch = l.objects.find((o) => o.source === file) as Deployment | undefined;
    assert.ok(patch);
    const target = find<Deployment>(base, patch.kind, patch.metadata.name);
    for (const c of patch.spec.template.spec.containers) {
      assert.ok(target.spec.template.spec.containers.some((t) => t.name === c.name), `${file}: container ${c.name} exists in the base`);
    }
  }
});

test('every Deployment: selector matches its pods, non-root, read-only root, no privilege escalation, volumes for every mount', async () => {
  const l = await loadDeploy();
  const deployments = l.objects.filter((o) => o.kind === 'Deployment' && !l.patchFiles.has(o.source)) as Deployment[];
  assert.ok(deployments.length >= 3);
  const claims = new Set(l.objects.filter((o) => o.kind === 'PersistentVolumeClaim').map((o) => o.metadata.name));
  const configMaps = new Set(l.objects.filter((o) => o.kind === 'ConfigMap').map((o) => o.metadata.name));
  for (const d of deployments) {
    const pod = d.spec.template.spec;
    const name = d.metadata.name;
    assert.ok(matches(d.spec.selector.matchLabels, d.spec.template.metadata.labels), `${name}: selector matches the pod labels`);
    assert.equal(pod.enableServiceLinks, false, `${name}: enableServiceLinks: false (no BERTH_PORT=tcp://… from the Service berth)`);
    assert.equal(pod.securityContext?.runAsNonRoot, true, `${name}: runAsNonRoot`);
    assert.ok((pod.securityContext?.runAsUser ?? 0) > 0, `${name}: a non-zero uid`);
    for (const c of pod.containers) {
      assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${name}/${c.name}: readOnlyRootFilesystem`);
      assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${name}/${c.name}: allowPrivilegeEscalation false`);
      assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${name}/${c.name}: drops every capability`);
      for (const m of c.volumeMounts ?? []) {
        const v = pod.volumes?.find((x) => x.name === m.name);
        assert.ok(v, `${name}/${c.name}: volume ${m.name} is defined`);
        if (v.persistentVolumeClaim) assert.ok(claims.has(v.persistentVolumeClaim.claimName), `claim ${v.persistentVolumeClaim.claimName} exists`);
        if (v.configMap) assert.ok(configMaps.has(v.configMap.name), `ConfigMap ${v.configMap.name} exists`);
      }
      for (const p of [c.livenessProbe, c.readinessProbe]) {
        assert.ok(p, `${name}/${c.name}: liveness and readiness probes`);
        const port = p.httpGet?.port ?? p.tcpSocket?.port;
        if (port !== undefined) containerPort(c, port);
      }
    }
    const ann = d.spec.template.metadata.annotations ?? {};
    if (ann['prometheus.io/scrape'] !== undefined) {
      assert.equal(ann['prometheus.io/scrape'], 'true');
      assert.equal(ann['prometheus.io/path'], '/metrics');
      const c = onlyContainer(d);
      assert.ok(c.ports?.some((p) => p.containerPort === Number(ann['prometheus.io/port'])), `${name}: prometheus.io/port is a container port`);
    }
  }
});

test('every Service selects a Deployment\'s pods and targets a port its container has', async () => {
  const l = await loadDeploy();
  const services = l.objects.filter((o) => o.kind === 'Service') as Service[];
  const deployments = l.objects.filter((o) => o.kind === 'Deployment' && !l.patchFiles.has(o.source)) as Deployment[];
  assert.ok(services.length >= 2);
  for (const s of services) {
    const targets = deployments.filter((d) => matches(s.spec.selector, d.spec.template.metadata.labels));
    assert.equal(targets.length, 1, `Service ${s.metadata.name} selects exactly one Deployment`);
    const c = onlyContainer(targets[0] as Deployment);
    for (const p of s.spec.ports) containerPort(c, p.targetPort);
  }
});

test('berth serve: the ConfigMap loads through Berth\'s parser and its port, storage root and config path match the Deployment', async () => {
  const l = await loadDeploy();
  const base = inFiles(l, 'deploy/kubernetes/base/');
  const cfg = parseConfig({ text: serverConfigText(base), fileName: 'berth-config/berth.yaml' });
  const d = find<Deployment>(base, 'Deployment', 'berth');
  const c = onlyContainer(d);
  assert.deepEqual(c.args, ['serve']);
  assert.equal(containerPort(c, 'http'), cfg.http.port);
  assert.equal(cfg.http.host, '0.0.0.0', 'listens on the pod address');
  assert.equal(mountOf(c, 'data'), cfg.storage.root);
  assert.equal(envOf(c, 'BERTH_CONFIG'), `${mountOf(c, 'config')}/berth.yaml`);
  assert.equal(mountOf(c, 'tmp'), '/tmp');
  assert.equal(c.livenessProbe?.httpGet?.path, '/healthz');
  assert.equal(c.readinessProbe?.httpGet?.path, '/readyz');
  assert.equal(d.spec.replicas, 1, 'one replica on a ReadWriteOnce filesystem cache');
  assert.equal((d.spec as unknown as { strategy: { type: string } }).strategy.type, 'Recreate');
  const pvc = find(base, 'PersistentVolumeClaim', 'berth-data') as K8sObject & { spec: { resources: { requests: { storage: string } } } };
  const requested = parseSize(pvc.spec.resources.requests.storage.replace(/i$/, 'iB'), 'pvc');
  assert.ok(cfg.storage.maxSize !== null && cfg.storage.maxSize < requested, 'storage.maxSize stays below the volume size');
  const svc = find<Service>(base, 'Service', 'berth');
  assert.equal(svc.spec.ports[0]?.port, cfg.http.port);
});

test('the probe and scrape paths of the manifests answer 200 on a Berth running the ConfigMap\'s config', async () => {
  const l = await loadDeploy();
  const base = inFiles(l, 'deploy/kubernetes/base/');
  const raw = parseYaml(serverConfigText(base)) as Record<string, Record<string, unknown>>;
  const c = onlyContainer(find<Deployment>(base, 'Deployment', 'berth'));
  const ann = find<Deployment>(base, 'Deployment', 'berth').spec.template.metadata.annotations ?? {};
  // Same config, but a temp cache, a loopback port and no pre-warm run against the real Docker Hub.
  const { root: _root, ...storage } = raw['storage'] ?? {};
  const berth = await startBerth({ ...raw, storage, prewarm: { ...(raw['prewarm'] ?? {}), images: [] } });
  try {
    for (const path of [c.livenessProbe?.httpGet?.path, c.readinessProbe?.httpGet?.path, ann['prometheus.io/path']]) {
      assert.ok(path);
      const res = await request(`${berth.url}${path}`);
      await res.body.dump();
      assert.equal(res.statusCode, 200, path);
    }
  } finally {
    await berth.stop();
  }
});

test('with-redis: the worker runs `berth worker --port N` on the server\'s cache and node, and both talk to the Redis Service', async () => {
  const l = await loadDeploy();
  const all = l.objects.filter((o) => !l.patchFiles.has(o.source));
  const server = find<Deployment>(all, 'Deployment', 'berth');
  const worker = find<Deployment>(all, 'Deployment', 'berth-worker');
  const wc = onlyContainer(worker);
  const sc = onlyContainer(server);
  assert.equal(wc.args?.[0], 'worker');
  const portArg = wc.args?.[(wc.args?.indexOf('--port') ?? -2) + 1];
  assert.equal(Number(portArg), containerPort(wc, 'health'));
  assert.equal(wc.livenessProbe?.httpGet?.path, '/healthz');
  assert.equal(wc.readinessProbe?.httpGet?.path, '/readyz');
  assert.equal(wc.image, sc.image, 'worker and server run the same image');
  for (const v of ['data', 'config']) assert.equal(mountOf(wc, v), mountOf(sc, v));
  const claim = (d: Deployment) => d.spec.template.spec.volumes?.find((v) => v.name === 'data')?.persistentVolumeClaim?.claimName;
  assert.equal(claim(worker), claim(server), 'the worker fills the same cache');
  const affinity = worker.spec.template.spec.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.[0];
  assert.ok(affinity && matches(affinity.labelSelector.matchLabels, server.spec.template.metadata.labels), 'scheduled next to the server');
  assert.equal(affinity.topologyKey, 'kubernetes.io/hostname');
  const redisSvc = find<Service>(all, 'Service', 'berth-redis');
  const patch = l.objects.find((o) => l.patchFiles.has(o.source)) as Deployment | undefined;
  assert.ok(patch);
  const serverRedis = envOf(onlyContainer(patch), 'BERTH_REDIS_URL');
  const workerRedis = envOf(wc, 'BERTH_REDIS_URL');
  assert.equal(serverRedis, workerRedis);
  assert.equal(workerRedis, `redis://${redisSvc.metadata.name}:${redisSvc.spec.ports[0]?.port ?? 0}`);
  const cfg = parseConfig({ text: serverConfigText(all), env: { BERTH_REDIS_URL: workerRedis } });
  assert.equal(cfg.redis.url, workerRedis, 'the variable is the one Berth reads for redis.url');
  const redis = onlyContainer(find<Deployment>(all, 'Deployment', 'berth-redis'));
  assert.deepEqual(redis.args?.slice(-2), ['--maxmemory-policy', 'noeviction'], 'BullMQ needs noeviction');
});

test('the server and worker environments load with the service-link variables of every Service in deploy/, in case a cluster injects them anyway', async () => {
  const l = await loadDeploy();
  const all = l.objects.filter((o) => !l.patchFiles.has(o.source));
  const services = all.filter((o) => o.kind === 'Service') as Service[];
  assert.deepEqual(services.map((svc) => svc.metadata.name).sort(), ['berth', 'berth-redis']);
  // What a kubelet writes for each Service (docs: "Environment variables" under Services).
  const links: Record<string, string> = {};
  services.forEach((svc, i) => {
    const v = svc.metadata.name.toUpperCase().replace(/-/g, '_');
    const ip = `10.96.0.${10 + i}`;
    const first = svc.spec.ports[0];
    assert.ok(first);
    links[`${v}_SERVICE_HOST`] = ip;
    links[`${v}_SERVICE_PORT`] = String(first.port);
    links[`${v}_PORT`] = `tcp://${ip}:${first.port}`;
    for (const p of svc.spec.ports) {
      if (p.name !== undefined) links[`${v}_SERVICE_PORT_${p.name.toUpperCase().replace(/-/g, '_')}`] = String(p.port);
      const base = `${v}_PORT_${p.port}_TCP`;
      Object.assign(links, { [base]: `tcp://${ip}:${p.port}`, [`${base}_PROTO`]: 'tcp', [`${base}_PORT`]: String(p.port), [`${base}_ADDR`]: ip });
    }
  });
  assert.equal(links['BERTH_PORT'], 'tcp://10.96.0.10:5000', 'the variable that used to stop Berth with exit 78');
  for (const name of ['berth', 'berth-worker']) {
    const c = onlyContainer(find<Deployment>(all, 'Deployment', name));
    const patch = l.objects.find((o) => l.patchFiles.has(o.source) && o.metadata.name === name) as Deployment | undefined;
    const env: Record<string, string> = { ...links };
    for (const e of [...(c.env ?? []), ...(patch ? onlyContainer(patch).env ?? [] : [])]) {
      if (e.value !== undefined && e.name !== 'BERTH_CONFIG') env[e.name] = e.value;
    }
    const cfg = parseConfig({ text: serverConfigText(all), fileName: 'berth-config/berth.yaml', env });
    assert.equal(cfg.http.port, 5000, `${name}: loads`);
  }
});

// ---------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  op: string;
  args: string;
}

async function dockerfile(): Promise<Instruction[]> {
  const text = (await readFile('Dockerfile', 'utf8')).replace(/\\\n/g, ' ');
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const m = /^(\S+)\s+(.*)$/.exec(l);
      assert.ok(m, `Dockerfile line: ${l}`);
      return { op: (m[1] ?? '').toUpperCase(), args: (m[2] ?? '').trim() };
    });
}

function finalStage(ins: Instruction[]): Instruction[] {
  const lastFrom = ins.map((i) => i.op).lastIndexOf('FROM');
  return ins.slice(lastFrom);
}

function one(ins: Instruction[], op: string): string {
  const found = ins.filter((i) => i.op === op);
  assert.equal(found.length, 1, `one ${op} in the final stage`);
  return (found[0] as Instruction).args;
}

test('Dockerfile: a Node 20 build stage, a slim Node 20 runtime that copies only the build output, non-root, volume, port', async () => {
  const ins = await dockerfile();
  const froms = ins.filter((i) => i.op === 'FROM').map((i) => i.args);
  assert.equal(froms.length, 2);
  assert.match(froms[0] ?? '', /^node:20[-\w.]* AS build$/);
  assert.match(froms[1] ?? '', /^node:20[-\w.]*-slim$/);
  const final = finalStage(ins);
  const copies = final.filter((i) => i.op === 'COPY').map((i) => i.args);
  const fromBuild = copies.filter((c) => c.startsWith('--from=build ')).map((c) => c.split(/\s+/)[1]?.replace(/^\/src\//, ''));
  assert.deepEqual(fromBuild.sort(), ['dist/src', 'dist/workers', 'node_modules', 'package.json'], 'only the build output (no sources, no tests)');
  const user = one(final, 'USER');
  assert.doesNotMatch(user, /^(root|0)(:|$)/, 'runs as an unprivileged user');
  const imageConfig = parseConfig({ text: await readFile('deploy/docker/berth.yaml', 'utf8'), fileName: 'deploy/docker/berth.yaml' });
  assert.equal(one(final, 'EXPOSE'), String(imageConfig.http.port));
  assert.deepEqual(JSON.parse(one(final, 'VOLUME')), [imageConfig.storage.root], 'the cache directory is the volume');
  assert.match(one(final, 'ENV'), /BERTH_CONFIG=\/etc\/berth\/berth\.yaml/);
  assert.ok(copies.includes('deploy/docker/berth.yaml /etc/berth/berth.yaml'), 'the image carries its default config where BERTH_CONFIG points');
  const l = await loadDeploy();
  const pod = find<Deployment>(l.objects, 'Deployment', 'berth').spec.template.spec;
  assert.equal(user.split(':')[0], String(pod.securityContext?.runAsUser), 'the manifests run the image\'s user');
});

test('Dockerfile: ENTRYPOINT starts the CLI the build produces; CMD serves', async () => {
  const final = finalStage(await dockerfile());
  const entry = JSON.parse(one(final, 'ENTRYPOINT')) as string[];
  assert.deepEqual(entry, ['node', 'dist/src/cli.js']);
  assert.deepEqual(JSON.parse(one(final, 'CMD')), ['serve']);
  await stat(entry[1] ?? '');
  await stat('dist/workers');
  const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { bin: Record<string, string> };
  assert.equal(pkg.bin['berth'], entry[1], 'the same entry point as the berth bin');
});

test('Dockerfile: the HEALTHCHECK command passes against a running Berth and fails once it is gone', async () => {
  const hc = one(finalStage(await dockerfile()), 'HEALTHCHECK');
  const m = /CMD\s+(\[.*\])\s*$/.exec(hc);
  assert.ok(m, 'HEALTHCHECK uses the exec form');
  const [cmd, ...args] = JSON.parse(m[1] ?? '[]') as string[];
  assert.equal(cmd, 'node');
  assert.match(args.join(' '), /\/healthz/);
  const berth = await startBerthProcess();
  const env = { BERTH_HTTP_PORT: String(berth.port) };
  try {
    const ok = await runCommand(process.execPath, args, { env, check: false, timeoutMs: 10_000 });
    assert.equal(ok.code, 0, ok.stderr);
  } finally {
    await berth.stop();
  }
  const gone = await runCommand(process.execPath, args, { env, check: false, timeoutMs: 10_000 });
  assert.notEqual(gone.code, 0);
});

test('.dockerignore keeps local state out of the build context but not what the Dockerfile copies', async () => {
  const ignored = (await readFile('.dockerignore', 'utf8')).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const p of ['node_modules', 'dist', '.git', 'data']) assert.ok(ignored.includes(p), `${p} is ignored`);
  const copied = (await dockerfile())
    .filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'))
    .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
  for (const c of copied) {
    const top = c.replace(/^\.\//, '').split('/')[0] ?? '';
    assert.ok(!ignored.includes(top), `${c} is copied, so ${top} must not be ignored`);
    await stat(c);
  }
});

test('kubectl kustomize renders both kustomizations (when kubectl is installed)', { skip: which('kubectl') === null ? 'kubectl not installed' : false }, async () => {
  const kinds = async (dir: string): Promise<string[]> => {
    const r = await runCommand('kubectl', ['kustomize', dir], { timeoutMs: 60_000 });
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject);
    return docs.map((d) => `${d.kind}/${d.metadata.name}`).sort();
  };
  assert.deepEqual(await kinds('deploy/kubernetes/base'), ['ConfigMap/berth-config', 'Deployment/berth', 'PersistentVolumeClaim/berth-data', 'Service/berth']);
  const overlay = await runCommand('kubectl', ['kustomize', 'deploy/kubernetes/with-redis'], { timeoutMs: 60_000 });
  const objs = parseAllDocuments(overlay.stdout).map((d) => d.toJS() as K8sObject);
  assert.deepEqual(objs.map((d) => `${d.kind}/${d.metadata.name}`).sort(), [
    'ConfigMap/berth-config', 'Deployment/berth', 'Deployment/berth-redis', 'Deployment/berth-worker',
    'PersistentVolumeClaim/berth-data', 'Service/berth', 'Service/berth-redis',
  ]);
  const server = onlyContainer(find<Deployment>(objs, 'Deployment', 'berth'));
  assert.ok(envOf(server, 'BERTH_REDIS_URL')?.startsWith('redis://'), 'the patch added redis.url');
  assert.equal(envOf(server, 'BERTH_CONFIG'), '/etc/berth/berth.yaml', 'and kept the rest of the environment');
});
