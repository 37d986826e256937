// Child processes for tests (docker-registry, redis-server, skopeo, ...): started with captured,
// bounded output, optionally waited on until an HTTP endpoint or an output line says "ready",
// stopped with SIGTERM then SIGKILL, and killed at process exit if a test forgot to.
import { spawn } from 'node:child_process';
import { createWriteStream, accessSync, constants as fsConstants, type WriteStream } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { delimiter, join } from 'node:path';
import { guardProcess } from './cleanup.js';

/** Debian package that provides each binary the tests use, for "not found" messages. */
const APT_PACKAGES: Readonly<Record<string, string>> = {
  'docker-registry': 'docker-registry',
  'redis-server': 'redis-server',
  'redis-cli': 'redis-tools',
  skopeo: 'skopeo',
  containerd: 'containerd',
  ctr: 'containerd',
  umoci: 'umoci',
  jq: 'jq',
  nginx: 'nginx-light',
  openssl: 'openssl',
  tar: 'tar',
  podman: 'podman',
  buildah: 'buildah',
  dockerd: 'docker.io',
  promtool: 'prometheus',
};

/** Absolute path of `bin` on PATH (or `bin` itself if it contains a '/' and is executable), else null. */
export function which(bin: string): string | null {
  const executable = (p: string): boolean => {
    try {
      accessSync(p, fsConstants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (bin.includes('/')) return executable(bin) ? bin : null;
  for (const dir of (process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, bin);
    if (executable(p)) return p;
  }
  return null;
}

/**
 * Like which(), but throws `"<bin> not found: apt-get install -y <package>"` when missing.
 * `aptPackage` defaults to the known package for well-known binaries.
 */
export function requireBinary(bin: string, aptPackage?: string): string {
  const found = which(bin);
  if (found !== null) return found;
  const base = bin.split('/').pop() ?? bin;
  const pkg = aptPackage ?? APT_PACKAGES[base];
  throw new Error(pkg ? `${bin} not found: apt-get install -y ${pkg}` : `${bin} not found on PATH`);
}

export interface StartProcessOptions {
  /** Added on top of process.env; a key set to undefined removes that variable. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Resolve only once this URL answers any HTTP response. */
  readyUrl?: string;
  /** Resolve only once stdout+stderr matches this pattern. */
  readyOutput?: RegExp;
  /** Budget for readyUrl/readyOutput; default 10_000 ms. */
  readyTimeoutMs?: number;
  /** Also append stdout+stderr to this file. */
  logFile?: string;
  /** Bound for output(); the oldest text is dropped first. Default 1 MiB. */
  maxOutputBytes?: number;
  /** Run in its own process group and signal the whole group (for children that fork). */
  processGroup?: boolean;
  /** Package named in the "not found" error; defaults from a table of known binaries. */
  aptPackage?: string;
  /**
   * Don't let the child (and its output pipes) keep the test process alive: a server a test
   * forgot to stop then dies with the process (exit hook) instead of hanging the run. While
   * readiness or stop() is awaited the child is referenced again. Leave false for commands you
   * await with `exited` (skopeo, ctr): an unref'd child alone does not keep Node waiting.
   */
  unref?: boolean;
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ProcessHandle {
  readonly pid: number;
  /** The command line, for messages. */
  readonly command: string;
  /** Captured stdout+stderr interleaved (bounded: the oldest bytes are dropped). */
  output(): string;
  /** Settles (never rejects) when the child has exited. */
  readonly exited: Promise<ProcessExit>;
  hasExited(): boolean;
  /** Sends a signal (default SIGTERM) to the child (or its group); no-op once exited. */
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after graceMs (default 5000); resolves when the child is gone. */
  stop(graceMs?: number): Promise<ProcessExit>;
}

class BoundedText {
  private chunks: Buffer[] = [];
  private size = 0;
  private dropped = 0;
  constructor(private readonly max: number) {}
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.max && this.chunks.length > 0) {
      const first = this.chunks[0] as Buffer;
      const excess = this.size - this.max;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
        this.dropped += first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
        this.dropped += excess;
      }
    }
  }
  text(): string {
    const body = Buffer.concat(this.chunks).toString('utf8');
    return this.dropped > 0 ? `[... ${this.dropped} bytes dropped ...]\n${body}` : body;
  }
}

function tail(text: string, max = 4000): string {
  return text.length > max ? `...${text.slice(-max)}` : text;
}

/** Starts a child process; see StartProcessOptions. Rejects (after killing it) if it is not ready in time. */
export async function startProcess(
  cmd: string,
  args: readonly string[],
  opts: StartProcessOptions = {},
): Promise<ProcessHandle> {
  const bin = requireBinary(cmd, opts.aptPackage);
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const command = [cmd, ...args].join(' ');
  const group = opts.processGroup === true;
  const child = spawn(bin, [...args], {
    cwd: opts.cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: group,
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const setRef = (on: boolean): void => {
    for (const h of [child, child.stdout, child.stderr] as unknown as { ref?: () => void; unref?: () => void }[]) {
      if (on) h.ref?.();
      else h.unref?.();
    }
  };
  const pid = child.pid;
  if (pid === undefined) {
    throw new Error(`${command}: spawn failed: ${(await spawnError).message}`);
  }

  const captured = new BoundedText(opts.maxOutputBytes ?? 1024 * 1024);
  let log: WriteStream | undefined;
  if (opts.logFile !== undefined) log = createWriteStream(opts.logFile, { flags: 'a' });
  const outputListeners = new Set<() => void>();
  const onData = (chunk: Buffer): void => {
    captured.push(chunk);
    log?.write(chunk);
    for (const l of outputListeners) l();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);

  let exitInfo: ProcessExit | undefined;
  const signalTarget = group ? -pid : pid;
  const unregister = guardProcess(signalTarget);
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once('exit', (code, signal) => {
      const info: ProcessExit = { code, signal };
      unregister();
      // 'close' (all output read) normally follows at once; a grandchild still holding the
      // pipes must not hold up the exit, so stop waiting for it after a moment.
      const finish = (): void => {
        clearTimeout(timer);
        child.stdout.destroy();
        child.stderr.destroy();
        log?.end();
        exitInfo = info;
        resolve(info);
      };
      const timer = setTimeout(finish, 500);
      child.once('close', finish);
    });
  });

  const kill = (signal: NodeJS.Signals = 'SIGTERM'): void => {
    if (exitInfo !== undefined) return;
    try {
      process.kill(signalTarget, signal);
    } catch {
      // raced with exit
    }
  };
  const stop = async (graceMs = 5000): Promise<ProcessExit> => {
    if (exitInfo !== undefined) return exitInfo;
    setRef(true);
    kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    const first = await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (first === 'timeout') kill('SIGKILL');
    return exited;
  };

  const handle: ProcessHandle = {
    pid,
    command,
    output: () => captured.text(),
    exited,
    hasExited: () => exitInfo !== undefined,
    kill,
    stop,
  };

  const unref = opts.unref === true;
  if (opts.readyUrl === undefined && opts.readyOutput === undefined) {
    if (unref) setRef(false);
    return handle;
  }

  const timeoutMs = opts.readyTimeoutMs ?? 10_000;
  const abort = new AbortController();
  try {
    const waits: Promise<void>[] = [];
    if (opts.readyUrl !== undefined) waits.push(waitForHttp(opts.readyUrl, timeoutMs, abort.signal));
    if (opts.readyOutput !== undefined) {
      const pattern = opts.readyOutput;
      waits.push(
        new Promise<void>((resolve, reject) => {
          const check = (): void => {
            if (pattern.test(captured.text())) {
              outputListeners.delete(check);
              clearTimeout(t);
              resolve();
            }
          };
          const t = setTimeout(() => {
            outputListeners.delete(check);
            reject(new Error(`output did not match ${String(pattern)} within ${timeoutMs} ms`));
          }, timeoutMs);
          abort.signal.addEventListener('abort', () => {
            outputListeners.delete(check);
            clearTimeout(t);
            reject(new Error('aborted'));
          });
          outputListeners.add(check);
          check();
        }),
      );
    }
    const died = exited.then((e) => {
      throw new Error(`exited before ready (code ${String(e.code)}, signal ${String(e.signal)})`);
    });
    const failedToSpawn = spawnError.then((e) => {
      throw e;
    });
    await Promise.race([Promise.all(waits), died, failedToSpawn]);
    abort.abort();
    if (unref) setRef(false);
    // Keep the losing promises from surfacing as unhandled rejections later.
    died.catch(() => undefined);
    failedToSpawn.catch(() => undefined);
    return handle;
  } catch (err) {
    abort.abort();
    await stop(1000);
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(`${command}: ${why}\n--- output ---\n${tail(captured.text())}`, { cause: err });
  }
}

/**
 * Polls `url` with GET until any HTTP response arrives (status does not matter); rejects after
 * timeoutMs or when `signal` aborts. Uses a fresh connection per attempt (no pooled sockets).
 */
export async function waitForHttp(url: string, timeoutMs = 10_000, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no attempt';
  for (;;) {
    if (signal?.aborted) throw new Error('waitForHttp aborted');
    const answered = await new Promise<boolean>((resolve) => {
      const req = httpRequest(url, { method: 'GET', agent: false, timeout: 2000 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.once('timeout', () => req.destroy(new Error('timeout')));
      req.once('error', (e) => {
        lastError = e.message;
        resolve(false);
      });
      req.end();
    });
    if (answered) return;
    if (Date.now() > deadline) throw new Error(`no HTTP answer from ${url} within ${timeoutMs} ms (last: ${lastError})`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
