// Real container clients for end-to-end tests: skopeo, containerd + ctr, podman and dockerd (with
// its own private containerd), each confined to a temp dir and talking to loopback only. Also the
// reader for client configuration snippets in docs/*.md, so a test runs exactly what the docs say.
//
// API (stable; other tests build on it):
//
//   runCommand(cmd, args, {env, cwd, timeoutMs, check}) → {command, code, signal, stdout, stderr, durationMs}
//       check (default true) throws with the output when the exit code is not 0.
//
//   skopeoCopy({src, dest, all?, registriesConf?, authfile?, srcTlsVerify?, destTlsVerify?, format?, extraArgs?})
//   skopeoInspect({image, raw?, config?, registriesConf?, authfile?, tlsVerify?}) → CommandResult & {json}
//       skopeo 1.9 reads a registries.conf only from the global `--registries-conf` flag (it ignores
//       CONTAINERS_REGISTRIES_CONF); TLS verification is off by default here (plain-HTTP loopback).
//       Signature policy checks are skipped (`--insecure-policy`), so no /etc/containers/policy.json is needed.
//   readOciLayout(dir) / readDirImage(dir)
//       What a skopeo `oci:` / `dir:` destination holds, every blob re-hashed: a file whose bytes do
//       not hash to its name throws.
//
//   startContainerd({namespace?}) → {address, root, state, dir, namespace, ctr(args, opts), output(), stop()}
//       containerd as root with root/state/sockets under a temp dir, the CRI plugin and every
//       snapshotter but `native` disabled, and namespaces isolated (content_sharing_policy
//       "isolated"): a pull into a fresh namespace downloads everything again.
//   writeHostsToml(hostsDir, registryHost, mirrorUrl, {server?, capabilities?, content?}) → file path
//       `<hostsDir>/<registryHost>/hosts.toml`; `content` (e.g. a snippet from docs/clients.md) is
//       written as given instead of the generated file.
//   ctrPull(cd, ref, {hostsDir, user?, platform?, allPlatforms?, plainHttp?, namespace?})
//       → {result, image: {ref, digest, mediaType}, manifests, blobs}
//       `ctr images pull --hosts-dir …` (plain HTTP by default), then the image's content walked
//       from its target: every manifest and blob present in the content store, by digest.
//
//   startPodman({registriesConf, storageDriver?}) → {dir, env, podman(args, opts), inspect(ref), stop()}
//       podman with the vfs driver and CONTAINERS_REGISTRIES_CONF / CONTAINERS_STORAGE_CONF /
//       CONTAINERS_CONF pointing at temp files.
//   startDockerd({daemonConfig?}) → {host, dir, containerd, docker(args, opts), inspect(ref), output(), stop()}
//       dockerd as root with a private containerd, data-root/exec-root/pidfile/socket under a temp
//       dir, `bridge: none`, `iptables: false`, the vfs storage driver; `docker` runs the CLI that
//       ships with this dockerd (same version), with DOCKER_HOST and DOCKER_CONFIG set.
//
//   readDocSnippets(markdownFile) / docSnippet(markdownFile, id, replacements)
//       Fenced blocks whose info string carries `snippet=<id>` (```toml snippet=containerd-docker-io),
//       with every key of `replacements` replaced by its value (e.g. 'mirror.example.com:5000' → the
//       test mirror's host:port).
//
// Every child is started through proc.ts (killed at exit if a test forgets) and every temp dir
// through tmp.ts. Missing binaries fail with the Debian package to install. Left outside the temp
// dirs, because these programs hard-code the paths: skopeo and podman (as root) keep a blob
// location cache in /var/lib/containers/cache and podman a lock in /var/cache/containers;
// dockerd 20.10 creates an empty /run/docker/plugins. Nothing else of the system is touched: no
// system dockerd or containerd socket, no /etc/docker/key.json, no iptables rules, no /opt/containerd.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { delimiter, join } from 'node:path';
import { guardProcess } from './cleanup.js';
import { requireBinary, startProcess, which, type ProcessHandle } from './proc.js';
import { makeTempDir, removeTempDir } from './tmp.js';

// ---------------------------------------------------------------------------------------------
// Running commands

export interface CommandResult {
  command: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

export interface RunOptions {
  /** Added on top of process.env; a key set to undefined removes that variable. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Killed (SIGKILL) after this long; default 120_000 ms. */
  timeoutMs?: number;
  /** Throw when the exit code is not 0 (default true). */
  check?: boolean;
  /** Debian package named when the binary is missing. */
  aptPackage?: string;
}

function tail(text: string, max = 3000): string {
  return text.length > max ? `...${text.slice(-max)}` : text;
}

/** Runs a command to completion with separate stdout/stderr; see RunOptions. */
export async function runCommand(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
  const bin = requireBinary(cmd, opts.aptPackage);
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const command = [cmd, ...args].join(' ');
  const started = Date.now();
  const child = spawn(bin, [...args], { cwd: opts.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  const unguard = child.pid === undefined ? () => undefined : guardProcess(child.pid);
  const timeoutMs = opts.timeoutMs ?? 120_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c, s) => resolve({ code: c, signal: s }));
  }).finally(() => {
    clearTimeout(timer);
    unguard();
  });
  const result: CommandResult = {
    command,
    code,
    signal,
    stdout: Buffer.concat(out).toString('utf8'),
    stderr: Buffer.concat(err).toString('utf8'),
    durationMs: Date.now() - started,
  };
  if ((opts.check ?? true) && code !== 0) {
    const why = timedOut ? `timed out after ${timeoutMs} ms` : `exit code ${String(code)}${signal ? ` (${signal})` : ''}`;
    throw new Error(`${command}: ${why}\n--- stderr ---\n${tail(result.stderr)}\n--- stdout ---\n${tail(result.stdout)}`);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Digests of files

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) h.update(chunk as Buffer);
  return `sha256:${h.digest('hex')}`;
}

function sha256Bytes(buf: Uint8Array): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

// ---------------------------------------------------------------------------------------------
// skopeo

export interface SkopeoGlobalOptions {
  /** Path of a registries.conf (skopeo's global `--registries-conf`). */
  registriesConf?: string;
  /** Path of an auth.json (credentials keyed by registry or mirror host). */
  authfile?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  check?: boolean;
}

export interface SkopeoCopyOptions extends SkopeoGlobalOptions {
  /** e.g. `docker://127.0.0.1:5001/library/alpine:3` or `docker://docker.io/library/alpine:3`. */
  src: string;
  /** e.g. `oci:/tmp/x:tag` or `dir:/tmp/x`. */
  dest: string;
  /** `--all`: copy every image of an index / manifest list. */
  all?: boolean;
  /** Default false (plain-HTTP loopback registries). */
  srcTlsVerify?: boolean;
  destTlsVerify?: boolean;
  /** `--format` for the destination (oci, v2s2). */
  format?: 'oci' | 'v2s2';
  extraArgs?: string[];
}

function skopeoGlobals(o: SkopeoGlobalOptions): string[] {
  const args = ['--insecure-policy'];
  if (o.registriesConf !== undefined) args.push('--registries-conf', o.registriesConf);
  return args;
}

/** `skopeo copy`; throws with skopeo's output on failure unless check is false. */
export function skopeoCopy(o: SkopeoCopyOptions): Promise<CommandResult> {
  const args = [...skopeoGlobals(o), 'copy', '--retry-times', '0'];
  if (o.all === true) args.push('--all');
  if (o.src.startsWith('docker://')) args.push(`--src-tls-verify=${String(o.srcTlsVerify ?? false)}`);
  if (o.dest.startsWith('docker://')) args.push(`--dest-tls-verify=${String(o.destTlsVerify ?? false)}`);
  if (o.authfile !== undefined) args.push('--src-authfile', o.authfile);
  if (o.format !== undefined) args.push('--format', o.format);
  args.push(...(o.extraArgs ?? []), o.src, o.dest);
  return runCommand('skopeo', args, { env: o.env, timeoutMs: o.timeoutMs, check: o.check });
}

export interface SkopeoInspectOptions extends SkopeoGlobalOptions {
  /** e.g. `docker://127.0.0.1:5001/library/alpine:3`. */
  image: string;
  /** `--raw`: the manifest bytes as served. */
  raw?: boolean;
  /** `--config`: the image config. */
  config?: boolean;
  tlsVerify?: boolean;
}

/** `skopeo inspect`; `json` is the parsed stdout (undefined if it is not JSON). */
export async function skopeoInspect(o: SkopeoInspectOptions): Promise<CommandResult & { json: unknown }> {
  const args = [...skopeoGlobals(o), 'inspect', '--retry-times', '0'];
  if (o.image.startsWith('docker://')) args.push(`--tls-verify=${String(o.tlsVerify ?? false)}`);
  if (o.authfile !== undefined) args.push('--authfile', o.authfile);
  if (o.raw === true) args.push('--raw');
  if (o.config === true) args.push('--config');
  args.push(o.image);
  const r = await runCommand('skopeo', args, { env: o.env, timeoutMs: o.timeoutMs, check: o.check });
  let json: unknown;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = undefined;
  }
  return { ...r, json };
}

export interface OciLayoutContent {
  /** index.json, parsed. */
  index: { manifests?: { mediaType?: string; digest: string; size: number; annotations?: Record<string, string> }[] };
  /** Every blob under blobs/<alg>/ (manifests included), by digest → size; each re-hashed. */
  blobs: Map<string, number>;
}

/** Reads an OCI image layout (a skopeo `oci:` destination), verifying every blob's digest. */
export async function readOciLayout(dir: string): Promise<OciLayoutContent> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as OciLayoutContent['index'];
  const blobs = new Map<string, number>();
  for (const alg of await readdir(join(dir, 'blobs'))) {
    for (const name of await readdir(join(dir, 'blobs', alg))) {
      const path = join(dir, 'blobs', alg, name);
      const digest = `${alg}:${name}`;
      const actual = await sha256File(path);
      if (alg === 'sha256' && actual !== digest) throw new Error(`${path}: content hashes to ${actual}`);
      blobs.set(digest, (await stat(path)).size);
    }
  }
  return { index, blobs };
}

export interface DirImageContent {
  /** manifest.json: the top-level manifest (an index / list with --all), byte-exact. */
  manifest: Buffer;
  manifestDigest: string;
  /** `<hex>.manifest.json` files (the instances copied with --all), by digest; each re-hashed. */
  instances: Map<string, Buffer>;
  /** Every other blob file (configs and layers, named by hex), by digest → size; each re-hashed. */
  blobs: Map<string, number>;
}

/** Reads a skopeo `dir:` destination, verifying that every file's bytes hash to its name. */
export async function readDirImage(dir: string): Promise<DirImageContent> {
  const manifest = await readFile(join(dir, 'manifest.json'));
  const instances = new Map<string, Buffer>();
  const blobs = new Map<string, number>();
  for (const name of await readdir(dir)) {
    const inst = /^([a-f0-9]{64})\.manifest\.json$/.exec(name);
    if (inst) {
      const bytes = await readFile(join(dir, name));
      const digest = `sha256:${inst[1] ?? ''}`;
      if (sha256Bytes(bytes) !== digest) throw new Error(`${name}: content hashes to ${sha256Bytes(bytes)}`);
      instances.set(digest, bytes);
    } else if (/^[a-f0-9]{64}$/.test(name)) {
      const digest = `sha256:${name}`;
      const actual = await sha256File(join(dir, name));
      if (actual !== digest) throw new Error(`${name}: content hashes to ${actual}`);
      blobs.set(digest, (await stat(join(dir, name))).size);
    }
  }
  return { manifest, manifestDigest: sha256Bytes(manifest), instances, blobs };
}

/** A registries.conf mirroring `prefix` (default docker.io) through `mirrorHost` over plain HTTP. */
export function registriesConf(mirrorHost: string, opts: { prefix?: string; location?: string; shortNames?: boolean } = {}): string {
  const prefix = opts.prefix ?? 'docker.io';
  const lines = [];
  if (opts.shortNames === true) lines.push(`unqualified-search-registries = ["${prefix}"]`, 'short-name-mode = "permissive"', '');
  lines.push(
    '[[registry]]',
    `prefix = "${prefix}"`,
    `location = "${opts.location ?? (prefix === 'docker.io' ? 'registry-1.docker.io' : prefix)}"`,
    '',
    '[[registry.mirror]]',
    `location = "${mirrorHost}"`,
    'insecure = true',
    '',
  );
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// containerd + ctr

export interface ContainerdOptions {
  /** Default namespace for ctr(); default `berth-test`. */
  namespace?: string;
  readyTimeoutMs?: number;
  /** Extra TOML appended to the generated config.toml. */
  extraConfig?: string;
}

export interface Containerd {
  /** The gRPC socket path (ctr's --address, dockerd's "containerd"). */
  address: string;
  root: string;
  state: string;
  /** Temp dir holding everything (config.toml, root, state, sockets). */
  dir: string;
  namespace: string;
  process: ProcessHandle;
  /** `ctr --address <address> -n <namespace> <args…>`. */
  ctr(args: readonly string[], opts?: RunOptions & { namespace?: string }): Promise<CommandResult>;
  /** containerd's log so far. */
  output(): string;
  /** Stops containerd and removes its dir. Idempotent. */
  stop(): Promise<void>;
}

const DISABLED_SNAPSHOTTERS = ['aufs', 'btrfs', 'devmapper', 'overlayfs', 'zfs'].map((s) => `io.containerd.snapshotter.v1.${s}`);

/** Starts a private containerd (1.6 config version 2) and waits until it serves. */
export async function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  const dir = await makeTempDir('containerd');
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  const address = join(dir, 'containerd.sock');
  const configPath = join(dir, 'config.toml');
  const toml = [
    'version = 2',
    `root = ${JSON.stringify(root)}`,
    `state = ${JSON.stringify(state)}`,
    `disabled_plugins = ${JSON.stringify(['io.containerd.grpc.v1.cri', ...DISABLED_SNAPSHOTTERS])}`,
    '',
    '[grpc]',
    `  address = ${JSON.stringify(address)}`,
    '[ttrpc]',
    `  address = ${JSON.stringify(`${address}.ttrpc`)}`,
    '[debug]',
    `  address = ${JSON.stringify(join(dir, 'debug.sock'))}`,
    '  level = "info"',
    '[metrics]',
    '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${JSON.stringify(join(dir, 'opt'))}`,
    // Each namespace downloads its own content: a pull in a fresh namespace really fetches.
    '[plugins."io.containerd.metadata.v1.bolt"]',
    '  content_sharing_policy = "isolated"',
    '',
    opts.extraConfig ?? '',
  ].join('\n');
  await writeFile(configPath, toml);
  let proc: ProcessHandle;
  try {
    proc = await startProcess('containerd', ['--config', configPath], {
      readyOutput: /containerd successfully booted/,
      readyTimeoutMs: opts.readyTimeoutMs ?? 15_000,
      maxOutputBytes: 4 * 1024 * 1024,
      unref: true,
    });
  } catch (err) {
    await removeTempDir(dir);
    throw err;
  }
  const namespace = opts.namespace ?? 'berth-test';
  let stopped = false;
  return {
    address,
    root,
    state,
    dir,
    namespace,
    process: proc,
    ctr: (args, o = {}) =>
      runCommand('ctr', ['--address', address, '--namespace', o.namespace ?? namespace, ...args], { timeoutMs: 120_000, ...o }),
    output: () => proc.output(),
    async stop() {
      if (stopped) return;
      stopped = true;
      await proc.stop();
      await removeTempDir(dir);
    },
  };
}

export interface HostsTomlOptions {
  /** `server = …` (the fallback after every host); omitted when not given. */
  server?: string;
  /** Default ["pull", "resolve"]. */
  capabilities?: string[];
  /** Write this text verbatim instead of the generated file (e.g. a docs snippet). */
  content?: string;
}

/** Writes `<hostsDir>/<registryHost>/hosts.toml` naming `mirrorUrl` as a host; returns its path. */
export async function writeHostsToml(hostsDir: string, registryHost: string, mirrorUrl: string, opts: HostsTomlOptions = {}): Promise<string> {
  const dir = join(hostsDir, registryHost);
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'hosts.toml');
  const text =
    opts.content ??
    [
      ...(opts.server !== undefined ? [`server = ${JSON.stringify(opts.server)}`, ''] : []),
      `[host.${JSON.stringify(mirrorUrl)}]`,
      `  capabilities = ${JSON.stringify(opts.capabilities ?? ['pull', 'resolve'])}`,
      '',
    ].join('\n');
  await writeFile(file, text);
  return file;
}

export interface CtrPullOptions {
  /** `--hosts-dir`. */
  hostsDir: string;
  /** `--user user[:password]`. */
  user?: string;
  /** `--platform`, e.g. linux/arm64/v8. */
  platform?: string;
  /** `--all-platforms`. */
  allPlatforms?: boolean;
  /** `--plain-http`; default true. */
  plainHttp?: boolean;
  /** Default the containerd's namespace. */
  namespace?: string;
  /** Default native. */
  snapshotter?: string;
  timeoutMs?: number;
  check?: boolean;
}

export interface CtrPulled {
  result: CommandResult;
  /** From `ctr images ls` (undefined when the pull failed). */
  image: { ref: string; digest: string; mediaType: string } | undefined;
  /** Manifests (index and image manifests) reachable from the target and present in the store. */
  manifests: Set<string>;
  /** Configs and layers reachable from the present manifests and present in the store. */
  blobs: Set<string>;
}

interface ContentDescriptor {
  mediaType?: string;
  digest: string;
}

/** Parses `ctr images ls` (REF TYPE DIGEST SIZE PLATFORMS LABELS). */
export function parseCtrImages(text: string): { ref: string; mediaType: string; digest: string }[] {
  const rows: { ref: string; mediaType: string; digest: string }[] = [];
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length >= 3 && cols[2]?.startsWith('sha256:')) rows.push({ ref: cols[0] ?? '', mediaType: cols[1] ?? '', digest: cols[2] });
  }
  return rows;
}

/** Digests listed by `ctr content ls` in the namespace. */
export async function ctrContentDigests(cd: Containerd, namespace?: string): Promise<Set<string>> {
  const r = await cd.ctr(['content', 'ls', '-q'], { namespace });
  return new Set(r.stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('sha256:')));
}

/**
 * `ctr images pull` through `hostsDir`, then walks the pulled image from its target digest: every
 * manifest present (reading each with `ctr content get`, re-hashed) and the configs and layers
 * they name that are present.
 */
export async function ctrPull(cd: Containerd, ref: string, o: CtrPullOptions): Promise<CtrPulled> {
  const ns = o.namespace ?? cd.namespace;
  const args = ['images', 'pull', '--hosts-dir', o.hostsDir, '--snapshotter', o.snapshotter ?? 'native'];
  if (o.plainHttp ?? true) args.push('--plain-http');
  if (o.user !== undefined) args.push('--user', o.user);
  if (o.platform !== undefined) args.push('--platform', o.platform);
  if (o.allPlatforms === true) args.push('--all-platforms');
  args.push(ref);
  const result = await cd.ctr(args, { namespace: ns, timeoutMs: o.timeoutMs ?? 120_000, check: o.check });
  const manifests = new Set<string>();
  const blobs = new Set<string>();
  if (result.code !== 0) return { result, image: undefined, manifests, blobs };
  const images = parseCtrImages((await cd.ctr(['images', 'ls'], { namespace: ns })).stdout);
  const image = images.find((i) => i.ref === ref);
  if (image === undefined) throw new Error(`ctr pull ${ref} succeeded but ctr images ls does not list it:\n${images.map((i) => i.ref).join('\n')}`);
  const present = await ctrContentDigests(cd, ns);
  const walk = async (digest: string): Promise<void> => {
    if (!present.has(digest) || manifests.has(digest)) return;
    const bytes = await ctrContentGet(cd, digest, ns);
    if (sha256Bytes(bytes) !== digest) throw new Error(`containerd content ${digest} hashes to ${sha256Bytes(bytes)}`);
    manifests.add(digest);
    const doc = JSON.parse(bytes.toString('utf8')) as { manifests?: ContentDescriptor[]; config?: ContentDescriptor; layers?: ContentDescriptor[] };
    for (const child of doc.manifests ?? []) await walk(child.digest);
    for (const b of [...(doc.config ? [doc.config] : []), ...(doc.layers ?? [])]) if (present.has(b.digest)) blobs.add(b.digest);
  };
  await walk(image.digest);
  return { result, image, manifests, blobs };
}

/** The bytes of one content blob (`ctr content get`). */
export async function ctrContentGet(cd: Containerd, digest: string, namespace?: string): Promise<Buffer> {
  const bin = requireBinary('ctr');
  return new Promise<Buffer>((resolve, reject) => {
    const child = spawn(bin, ['--address', cd.address, '--namespace', namespace ?? cd.namespace, 'content', 'get', digest], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`ctr content get ${digest}: exit ${String(code)}: ${Buffer.concat(err).toString('utf8')}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// podman

export interface PodmanOptions {
  /** registries.conf text (e.g. from registriesConf() or a docs snippet). */
  registriesConf: string;
  /** Default vfs. */
  storageDriver?: string;
}

export interface PodmanImage {
  /** Image id = the config digest's hex. */
  id: string;
  /** The manifest digest pulled by the reference. */
  digest: string;
  repoDigests: string[];
  /** Uncompressed layer digests (the config's diff_ids). */
  diffIds: string[];
}

export interface Podman {
  dir: string;
  /** The CONTAINERS_* variables podman runs with. */
  env: Record<string, string>;
  podman(args: readonly string[], opts?: RunOptions): Promise<CommandResult>;
  inspect(ref: string): Promise<PodmanImage>;
  /** Removes the storage (as podman itself, for vfs layers) and the temp dir. */
  stop(): Promise<void>;
}

/** A podman confined to a temp dir: its own storage, registries.conf and containers.conf. */
export async function startPodman(o: PodmanOptions): Promise<Podman> {
  requireBinary('podman');
  const dir = await makeTempDir('podman');
  const storageConf = join(dir, 'storage.conf');
  const regConf = join(dir, 'registries.conf');
  const containersConf = join(dir, 'containers.conf');
  await writeFile(regConf, o.registriesConf);
  await writeFile(
    storageConf,
    ['[storage]', `driver = ${JSON.stringify(o.storageDriver ?? 'vfs')}`, `runroot = ${JSON.stringify(join(dir, 'run'))}`, `graphroot = ${JSON.stringify(join(dir, 'storage'))}`, ''].join('\n'),
  );
  await writeFile(
    containersConf,
    [
      '[engine]',
      'events_logger = "file"',
      `events_logfile_path = ${JSON.stringify(join(dir, 'events.log'))}`,
      'cgroup_manager = "cgroupfs"',
      `tmp_dir = ${JSON.stringify(join(dir, 'tmp'))}`,
      `static_dir = ${JSON.stringify(join(dir, 'storage', 'libpod'))}`,
      `volume_path = ${JSON.stringify(join(dir, 'storage', 'volumes'))}`,
      '[network]',
      `network_config_dir = ${JSON.stringify(join(dir, 'networks'))}`,
      '',
    ].join('\n'),
  );
  const env = {
    CONTAINERS_REGISTRIES_CONF: regConf,
    CONTAINERS_STORAGE_CONF: storageConf,
    CONTAINERS_CONF: containersConf,
    TMPDIR: join(dir, 'tmp'),
    XDG_RUNTIME_DIR: join(dir, 'xdg'),
  };
  await mkdir(env.TMPDIR, { recursive: true });
  await mkdir(env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
  const podman = (args: readonly string[], ro: RunOptions = {}): Promise<CommandResult> =>
    runCommand('podman', [...args], { ...ro, env: { ...env, ...(ro.env ?? {}) } });
  return {
    dir,
    env,
    podman,
    async inspect(ref) {
      const r = await podman(['image', 'inspect', ref]);
      const parsed = JSON.parse(r.stdout) as { Id: string; Digest: string; RepoDigests: string[] | null; RootFS?: { Layers?: string[] } }[];
      const first = parsed[0];
      if (first === undefined) throw new Error(`podman image inspect ${ref}: no image`);
      return { id: first.Id, digest: first.Digest, repoDigests: first.RepoDigests ?? [], diffIds: first.RootFS?.Layers ?? [] };
    },
    async stop() {
      await podman(['system', 'reset', '--force'], { check: false, timeoutMs: 60_000 });
      await removeTempDir(dir);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// dockerd

export interface DockerdOptions {
  /** Merged over the generated daemon.json (registry-mirrors, insecure-registries, …). */
  daemonConfig?: Record<string, unknown>;
  readyTimeoutMs?: number;
}

export interface DockerImage {
  /** `sha256:<config digest hex>`. */
  id: string;
  repoDigests: string[];
  diffIds: string[];
}

export interface Dockerd {
  /** `unix://<dir>/docker.sock`. */
  host: string;
  dir: string;
  /** The private containerd dockerd runs on. */
  containerd: Containerd;
  process: ProcessHandle;
  /** The docker CLI matching this dockerd, with DOCKER_HOST and a private DOCKER_CONFIG. */
  docker(args: readonly string[], opts?: RunOptions): Promise<CommandResult>;
  inspect(ref: string): Promise<DockerImage>;
  output(): string;
  stop(): Promise<void>;
}

/** Version text of a `docker`/`dockerd` binary (`Docker version 20.10.24+dfsg1, build …` → `20.10.24+dfsg1`). */
async function dockerVersion(bin: string): Promise<string | null> {
  const r = await runCommand(bin, ['--version'], { check: false, timeoutMs: 10_000 }).catch(() => null);
  return /version ([^\s,]+)/.exec(r?.stdout ?? '')?.[1] ?? null;
}

/**
 * The docker CLI shipped with this dockerd: the first `docker` on PATH with the same version. A
 * newer CLI elsewhere on PATH would insist on a buildx plugin for DOCKER_BUILDKIT=1.
 */
export async function dockerCliFor(dockerdBin: string): Promise<string> {
  const want = await dockerVersion(dockerdBin);
  const candidates: string[] = [];
  for (const d of (process.env['PATH'] ?? '').split(delimiter)) {
    if (d === '') continue;
    const p = which(join(d, 'docker'));
    if (p !== null && !candidates.includes(p)) candidates.push(p);
  }
  for (const c of candidates) if (want !== null && (await dockerVersion(c)) === want) return c;
  const first = candidates[0];
  if (first === undefined) throw new Error('docker not found: apt-get install -y docker.io');
  return first;
}

function unixGet(socketPath: string, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest({ socketPath, path, method: 'GET', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', () => resolve(0));
    req.end();
  });
}

/** Starts dockerd on a private containerd; see the file header. */
export async function startDockerd(o: DockerdOptions = {}): Promise<Dockerd> {
  const dockerdBin = requireBinary('dockerd', 'docker.io');
  const cli = await dockerCliFor(dockerdBin);
  const containerd = await startContainerd({ namespace: 'moby' });
  const dir = await makeTempDir('dockerd');
  const sock = join(dir, 'docker.sock');
  const config = {
    'data-root': join(dir, 'data'),
    'exec-root': join(dir, 'exec'),
    pidfile: join(dir, 'docker.pid'),
    hosts: [`unix://${sock}`],
    containerd: containerd.address,
    bridge: 'none',
    iptables: false,
    'ip-forward': false,
    'ip-masq': false,
    'storage-driver': 'vfs',
    // dockerd 20.10 would otherwise write its libtrust key to /etc/docker/key.json.
    'deprecated-key-path': join(dir, 'key.json'),
    'log-level': 'info',
    ...(o.daemonConfig ?? {}),
  };
  const configFile = join(dir, 'daemon.json');
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const dockerConfig = join(dir, 'cli');
  await mkdir(dockerConfig);
  let proc: ProcessHandle;
  try {
    proc = await startProcess(dockerdBin, ['--config-file', configFile], {
      env: { DOCKER_HOST: undefined, DOCKER_CONFIG: dockerConfig },
      readyOutput: /API listen on|Daemon has completed initialization/,
      readyTimeoutMs: o.readyTimeoutMs ?? 30_000,
      maxOutputBytes: 4 * 1024 * 1024,
      unref: true,
    });
    const deadline = Date.now() + 10_000;
    while ((await unixGet(sock, '/_ping')) !== 200) {
      if (Date.now() > deadline || proc.hasExited()) throw new Error(`dockerd did not answer /_ping:\n${tail(proc.output())}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await containerd.stop();
    await removeTempDir(dir);
    throw err;
  }
  const docker = (args: readonly string[], ro: RunOptions = {}): Promise<CommandResult> =>
    runCommand(cli, [...args], { ...ro, env: { DOCKER_HOST: `unix://${sock}`, DOCKER_CONFIG: dockerConfig, DOCKER_CONTEXT: undefined, ...(ro.env ?? {}) } });
  let stopped = false;
  return {
    host: `unix://${sock}`,
    dir,
    containerd,
    process: proc,
    docker,
    async inspect(ref) {
      const r = await docker(['image', 'inspect', ref]);
      const parsed = JSON.parse(r.stdout) as { Id: string; RepoDigests: string[] | null; RootFS?: { Layers?: string[] } }[];
      const first = parsed[0];
      if (first === undefined) throw new Error(`docker image inspect ${ref}: no image`);
      return { id: first.Id, repoDigests: first.RepoDigests ?? [], diffIds: first.RootFS?.Layers ?? [] };
    },
    output: () => proc.output(),
    async stop() {
      if (stopped) return;
      stopped = true;
      await proc.stop(15_000);
      await containerd.stop();
      await removeTempDir(dir);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Snippets in the docs

export interface DocSnippet {
  id: string;
  /** The fence's language (first word of the info string). */
  lang: string;
  text: string;
}

/** Every fenced block in `markdown` whose info string has `snippet=<id>`, by id (ids must be unique). */
export function parseDocSnippets(markdown: string, source = 'markdown'): Map<string, DocSnippet> {
  const out = new Map<string, DocSnippet>();
  const fence = /^(```+|~~~+)([^\n]*)\n([\s\S]*?)^\1[ \t]*$/gm;
  for (const m of markdown.matchAll(fence)) {
    const info = (m[2] ?? '').trim();
    const id = /(?:^|\s)snippet=([A-Za-z0-9._-]+)/.exec(info)?.[1];
    if (id === undefined) continue;
    if (out.has(id)) throw new Error(`${source}: snippet id ${id} is used twice`);
    out.set(id, { id, lang: info.split(/\s+/)[0] ?? '', text: m[3] ?? '' });
  }
  return out;
}

/** Reads a markdown file's snippets; see parseDocSnippets. */
export async function readDocSnippets(markdownFile: string): Promise<Map<string, DocSnippet>> {
  return parseDocSnippets(await readFile(markdownFile, 'utf8'), markdownFile);
}

/** One snippet's text with every `replacements` key replaced by its value (longest keys first). */
export async function docSnippet(markdownFile: string, id: string, replacements: Record<string, string> = {}): Promise<string> {
  const s = (await readDocSnippets(markdownFile)).get(id);
  if (s === undefined) throw new Error(`${markdownFile}: no snippet ${id}`);
  return fillPlaceholders(s.text, replacements);
}

/** Replaces every occurrence of each key (longest first, so `http://h` wins over `h`). */
export function fillPlaceholders(text: string, replacements: Record<string, string>): string {
  let out = text;
  for (const key of Object.keys(replacements).sort((a, b) => b.length - a.length)) out = out.split(key).join(replacements[key] ?? '');
  return out;
}
