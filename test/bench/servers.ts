// The benchmark's servers and probes beside the ones test/helpers already starts: nginx serving
// blob files from disk (the machine's limit), a byte-counting TCP proxy in front of the upstream,
// the load generator and wrk as child processes, peak-RSS readings from /proc, and the bare
// node:http server that shows one Node process's ceiling for a manifest (ceiling-server.ts).
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, makeTempDir, removeTempDir, startProcess, type ProcessHandle } from '../helpers/index.js';
import type { Job, JobResult } from './load-client.js';

const here = dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------------------------
// nginx

export interface Nginx {
  url: string;
  port: number;
  /** Directory served as the document root: files at `<root>/v2/<name>/blobs/<digest>`. */
  root: string;
  process: ProcessHandle;
  stop(): Promise<void>;
}

/**
 * Debian's nginx (nginx-light) in the foreground with a private prefix: sendfile on, no access
 * log, one worker per core, keep-alive without a request cap. Files are served from `docroot`.
 */
export async function startNginx(docroot: string, workers: number): Promise<Nginx> {
  const prefix = await makeTempDir('nginx');
  for (const d of ['tmp', 'logs']) await mkdir(join(prefix, d));
  // Workers drop root privileges (user nobody): the served tree must be world-readable.
  await chmod(docroot, 0o755);
  const port = await freePort();
  const conf = `daemon off;
master_process on;
worker_processes ${workers};
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  default_type application/octet-stream;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  server {
    listen 127.0.0.1:${port};
    root ${docroot};
    location ~ /manifests/ { default_type application/vnd.oci.image.manifest.v1+json; }
  }
}
`;
  const confPath = join(prefix, 'nginx.conf');
  await writeFile(confPath, conf);
  const proc = await startProcess('nginx', ['-p', prefix, '-e', join(prefix, 'logs', 'error.log'), '-c', confPath], {
    readyUrl: `http://127.0.0.1:${port}/`,
    readyTimeoutMs: 10_000,
    unref: true,
    aptPackage: 'nginx-light',
    // Signal the master and its workers together: a master killed alone (the exit-time SIGKILL
    // after an error or Ctrl-C) would leave its workers running.
    processGroup: true,
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    root: docroot,
    process: proc,
    async stop() {
      await proc.stop();
      await removeTempDir(prefix);
    },
  };
}

/** Writes `data` where nginx serves `/v2/<repository>/<kind>/<reference>`. */
export async function publish(docroot: string, repository: string, kind: 'blobs' | 'manifests', reference: string, data: Uint8Array): Promise<void> {
  const dir = join(docroot, 'v2', repository, kind);
  await mkdir(dir, { recursive: true });
  // Every directory on the way must be readable by nginx's unprivileged workers.
  for (let d = dir; d.startsWith(docroot) && d !== docroot; d = dirname(d)) await chmod(d, 0o755);
  await writeFile(join(dir, reference), data, { mode: 0o644 });
}

// ---------------------------------------------------------------------------------------------
// The node:http ceiling

export interface CeilingServer {
  url: string;
  port: number;
  process: ProcessHandle;
  stop(): Promise<void>;
}

/**
 * A bare node:http server in a process of its own (ceiling-server.ts) answering every request
 * with `manifest` and the headers Berth sends for a warm manifest: what one Node process can
 * serve on this machine, measured in the same run as Berth and nginx.
 */
export async function startCeilingServer(manifest: Uint8Array, mediaType: string): Promise<CeilingServer> {
  const dir = await makeTempDir('ceiling');
  const file = join(dir, 'manifest.json');
  await writeFile(file, manifest);
  const port = await freePort();
  const proc = await startProcess(process.execPath, [join(here, 'ceiling-server.js'), String(port), file, mediaType], {
    readyUrl: `http://127.0.0.1:${port}/healthz`,
    readyTimeoutMs: 10_000,
    unref: true,
  });
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    process: proc,
    async stop() {
      await proc.stop();
      await removeTempDir(dir);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A byte-counting TCP proxy

export interface CountingProxy {
  url: string;
  port: number;
  /** Bytes the target sent back (response headers and bodies) since the last reset. */
  bytesFromTarget(): number;
  /** Connections accepted since the last reset. */
  connections(): number;
  reset(): void;
  stop(): Promise<void>;
}

/**
 * Forwards TCP connections to `127.0.0.1:targetPort` and counts what the target sends back. It
 * works below HTTP, so it adds no parsing cost and every byte a server fetches is counted
 * (response headers included: a few hundred bytes per request, noise against a blob).
 *
 * With `bytesPerSecond`, everything the target sends (over all connections together) is paced to
 * that rate, like an internet uplink shared by every download: each chunk is released at the
 * earliest moment the shared budget allows, in arrival order.
 */
export async function startCountingProxy(targetPort: number, opts: { bytesPerSecond?: number } = {}): Promise<CountingProxy> {
  let bytes = 0;
  let accepted = 0;
  const rate = opts.bytesPerSecond ?? 0;
  /** When the shared link is free again (ms, performance.now()). */
  let linkFreeAt = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    accepted += 1;
    const target = connect({ host: '127.0.0.1', port: targetPort, noDelay: true });
    client.setNoDelay(true);
    sockets.add(client);
    sockets.add(target);
    if (rate > 0) {
      target.on('data', (b: Buffer) => {
        bytes += b.length;
        const t = performance.now();
        linkFreeAt = Math.max(linkFreeAt, t) + (b.length / rate) * 1000;
        const wait = linkFreeAt - t;
        const drained = client.write(b);
        // Hold this connection until its chunk has "crossed the link" (and the client took it).
        if (wait >= 1 || !drained) {
          target.pause();
          let timePassed = wait < 1;
          let clientReady = drained;
          const go = (): void => {
            if (timePassed && clientReady && !target.destroyed) target.resume();
          };
          if (!timePassed) setTimeout(() => { timePassed = true; go(); }, wait);
          if (!clientReady) client.once('drain', () => { clientReady = true; go(); });
        }
      });
      target.once('end', () => client.end());
    } else {
      target.on('data', (b: Buffer) => {
        bytes += b.length;
      });
      target.pipe(client);
    }
    client.pipe(target);
    const done = (): void => {
      client.destroy();
      target.destroy();
      sockets.delete(client);
      sockets.delete(target);
    };
    client.once('error', done);
    target.once('error', done);
    client.once('close', done);
    target.once('close', done);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('counting proxy: no TCP address');
  return {
    url: `http://127.0.0.1:${addr.port}`,
    port: addr.port,
    bytesFromTarget: () => bytes,
    connections: () => accepted,
    reset() {
      bytes = 0;
      accepted = 0;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Load generators as child processes

/** Runs one job in a fresh load-client process and returns its result. */
export async function runClient<R extends JobResult>(job: Job, budgetMs: number): Promise<R> {
  const proc = await startProcess(process.execPath, [join(here, 'load-client.js'), JSON.stringify(job)]);
  const timer = setTimeout(() => proc.kill('SIGKILL'), budgetMs);
  const exit = await proc.exited;
  clearTimeout(timer);
  const out = proc.output();
  const line = out.split('\n').reverse().find((l) => l.startsWith('{'));
  if (exit.code !== 0 || line === undefined) {
    throw new Error(`load client failed (code ${String(exit.code)}, signal ${String(exit.signal)}): ${out.slice(-2000)}`);
  }
  return JSON.parse(line) as R;
}

export interface WrkResult {
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  non2xx: number;
  socketErrors: number;
  /** wrk's socket-error breakdown, e.g. `connect 0, read 3, write 0, timeout 17` ('' when none). */
  socketErrorKinds: string;
}

function toMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!m) return NaN;
  const v = Number(m[1]);
  switch (m[2]) {
    case 'us': return v / 1000;
    case 'ms': return v;
    case 's': return v * 1000;
    default: return v * 60_000;
  }
}

/** `wrk --latency` against a URL with extra headers; parses requests/s, p50 and p99. wrk takes whole seconds. */
export async function runWrk(url: string, opts: { threads: number; connections: number; durationS: number; headers: Record<string, string>; script?: string }): Promise<WrkResult> {
  const args = ['-t', String(opts.threads), '-c', String(opts.connections), '-d', `${Math.max(1, Math.round(opts.durationS))}s`, '--latency', '--timeout', '10s'];
  for (const [k, v] of Object.entries(opts.headers)) args.push('-H', `${k}: ${v}`);
  if (opts.script !== undefined) args.push('-s', opts.script);
  args.push(url);
  const proc = await startProcess('wrk', args, { aptPackage: 'wrk' });
  const timer = setTimeout(() => proc.kill('SIGKILL'), (opts.durationS + 30) * 1000);
  const exit = await proc.exited;
  clearTimeout(timer);
  const out = proc.output();
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out)?.[1];
  const p50 = /^\s+50%\s+(\S+)/m.exec(out)?.[1];
  const p99 = /^\s+99%\s+(\S+)/m.exec(out)?.[1];
  const total = /(\d+) requests in/.exec(out)?.[1];
  if (exit.code !== 0 || rps === undefined || p50 === undefined || p99 === undefined || total === undefined) {
    throw new Error(`wrk failed (code ${String(exit.code)}): ${out.slice(-2000)}`);
  }
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? '0');
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = se ? se.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return {
    requestsPerSec: Number(rps), p50Ms: toMs(p50), p99Ms: toMs(p99), requests: Number(total), non2xx, socketErrors,
    socketErrorKinds: se ? `connect ${se[1]}, read ${se[2]}, write ${se[3]}, timeout ${se[4]}` : '',
  };
}

// ---------------------------------------------------------------------------------------------
// Memory: peak RSS of a process tree

/** The process and all its descendants (nginx workers, cluster workers), from /proc. */
export async function processTree(root: number): Promise<number[]> {
  const parent = new Map<number, number>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      // Field 4 (ppid) follows the command name, which may itself hold spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(name), Number(fields[1]));
    } catch {
      // the process went away while we looked
    }
  }
  const out = [root];
  for (let i = 0; i < out.length && i < 1000; i++) {
    for (const [pid, ppid] of parent) if (ppid === out[i] && !out.includes(pid)) out.push(pid);
  }
  return out;
}

/** Resets VmHWM (peak RSS) of each process to its current RSS (`clear_refs` 5, Linux ≥ 4.0). */
export async function resetPeakRss(pids: readonly number[]): Promise<void> {
  for (const pid of pids) await writeFile(`/proc/${pid}/clear_refs`, '5').catch(() => undefined);
}

async function statusField(pid: number, field: 'VmHWM' | 'VmRSS'): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1];
    return kb === undefined ? 0 : Number(kb) * 1024;
  } catch {
    return 0;
  }
}

/** Sum of the processes' VmHWM in bytes (an upper bound on the tree's simultaneous peak). */
export async function peakRss(pids: readonly number[]): Promise<number> {
  let sum = 0;
  for (const pid of pids) sum += await statusField(pid, 'VmHWM');
  return sum;
}

export async function currentRss(pids: readonly number[]): Promise<number> {
  let sum = 0;
  for (const pid of pids) sum += await statusField(pid, 'VmRSS');
  return sum;
}

/** CPU time (user + system, all threads) the processes have used so far, in seconds. */
export async function cpuSeconds(pids: readonly number[]): Promise<number> {
  const tick = 100; // USER_HZ: 100 on every Linux architecture Node supports
  let sum = 0;
  for (const pid of pids) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
      sum += (Number(fields[11]) + Number(fields[12])) / tick;
    } catch {
      // gone
    }
  }
  return sum;
}
