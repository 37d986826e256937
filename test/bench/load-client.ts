// The benchmark's HTTP load generator, run as its own process (`node load-client.js '<json>'`) so
// that it never shares an event loop with a server under test or with the orchestrator.
//
// It speaks just enough HTTP/1.1 over raw sockets: keep-alive GETs, Content-Length bodies only,
// no pipelining. Body bytes are counted, never kept (except a manifest body in `pull` mode), and
// every socket reads into one shared 1 MiB buffer (net's `onread`): no per-chunk allocation and
// few read syscalls, so the generator costs less CPU per byte than a general-purpose client
// (undici, wrk's 8 KiB reads) and leaves as much of the shared cores as possible to the server.
//
// Modes (the JSON's `mode`):
//   throughput  N connections GET one path back to back for a fixed time → body bytes/s
//   once        N connections send one GET each at the same moment → time until all complete
//   pull        an image pull: manifest by tag, then config and layers over P connections
import { connect, type Socket } from 'node:net';

export interface ThroughputJob {
  mode: 'throughput';
  port: number;
  path: string;
  connections: number;
  durationMs: number;
  /** Run this long before counting starts (connections open, caches warm). */
  warmupMs: number;
  /** Every response must be 200 with this Content-Length. */
  expectLength: number;
}

export interface OnceJob {
  mode: 'once';
  port: number;
  path: string;
  connections: number;
  expectLength: number;
  timeoutMs: number;
}

export interface PullJob {
  mode: 'pull';
  port: number;
  /** Repository path as the server expects it (`library/multi`). */
  repository: string;
  tag: string;
  accept: string;
  parallel: number;
  timeoutMs: number;
}

export type Job = ThroughputJob | OnceJob | PullJob;

export interface ThroughputResult {
  mode: 'throughput';
  bytes: number;
  seconds: number;
  responses: number;
  errors: string[];
}

export interface OnceResult {
  mode: 'once';
  /** From the moment the requests were sent until the last body byte, per client (ms). */
  clientMs: number[];
  totalMs: number;
  bytes: number;
  errors: string[];
}

export interface PullResult {
  mode: 'pull';
  totalMs: number;
  bytes: number;
  blobs: number;
  errors: string[];
}

export type JobResult = ThroughputResult | OnceResult | PullResult;

const READ_BUFFER = Buffer.allocUnsafe(1024 * 1024);
const HEADER_END = Buffer.from('\r\n\r\n');
const MAX_HEADER_BYTES = 64 * 1024;

interface Response {
  status: number;
  headers: Map<string, string>;
  bodyBytes: number;
  /** Only when asked to keep the body. */
  body: Buffer | null;
}

/** One keep-alive HTTP/1.1 connection that runs one request at a time. */
class Connection {
  private socket: Socket | null = null;
  private connecting: Promise<void> | null = null;
  private pending: {
    resolve: (r: Response) => void;
    reject: (e: Error) => void;
    keep: boolean;
    onBody: ((n: number) => void) | null;
  } | null = null;
  private head: Buffer[] = [];
  private headLength = 0;
  private response: Response | null = null;
  private contentLength = 0;
  private kept: Buffer[] = [];
  private closeAfter = false;

  constructor(private readonly port: number) {}

  /** Opens the connection now (before a timed request). */
  open(): Promise<void> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve();
    if (this.connecting) return this.connecting;
    this.connecting = new Promise<void>((resolve, reject) => {
      const s = connect({
        host: '127.0.0.1',
        port: this.port,
        noDelay: true,
        onread: { buffer: READ_BUFFER, callback: (n: number, buf: Buffer) => this.onRead(buf, n) },
      });
      s.once('connect', () => {
        this.connecting = null;
        this.socket = s;
        resolve();
      });
      s.once('error', (err) => {
        this.connecting = null;
        this.fail(err);
        reject(err);
      });
      s.once('close', () => {
        if (this.socket === s) this.socket = null;
        this.fail(new Error('connection closed by the server'));
      });
    });
    return this.connecting;
  }

  private fail(err: Error): void {
    const p = this.pending;
    this.pending = null;
    this.reset();
    p?.reject(err);
  }

  private reset(): void {
    this.head = [];
    this.headLength = 0;
    this.response = null;
    this.contentLength = 0;
    this.kept = [];
  }

  async get(path: string, headers: Record<string, string>, opts: { keep?: boolean; onBody?: (n: number) => void } = {}): Promise<Response> {
    await this.open();
    const s = this.socket;
    if (!s) throw new Error('not connected');
    return new Promise<Response>((resolve, reject) => {
      this.pending = { resolve, reject, keep: opts.keep === true, onBody: opts.onBody ?? null };
      let text = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${this.port}\r\n`;
      for (const [k, v] of Object.entries(headers)) text += `${k}: ${v}\r\n`;
      s.write(`${text}\r\n`);
    });
  }

  private onRead(buf: Buffer, n: number): boolean {
    let chunk = buf.subarray(0, n);
    const p = this.pending;
    if (!p) return true; // bytes after a response we gave up on: ignore
    if (!this.response) {
      // Header bytes are copied out: the read buffer is shared and reused by the next read.
      this.head.push(Buffer.from(chunk));
      this.headLength += chunk.length;
      const all = this.head.length === 1 ? (this.head[0] as Buffer) : Buffer.concat(this.head, this.headLength);
      const end = all.indexOf(HEADER_END);
      if (end < 0) {
        if (this.headLength > MAX_HEADER_BYTES) this.socket?.destroy(new Error('response headers too large'));
        return true;
      }
      this.response = parseHead(all.subarray(0, end).toString('latin1'));
      const cl = this.response.headers.get('content-length');
      if (cl === undefined) {
        this.socket?.destroy(new Error(`response without Content-Length (status ${this.response.status})`));
        return true;
      }
      this.contentLength = Number(cl);
      this.closeAfter = this.response.headers.get('connection')?.toLowerCase() === 'close';
      chunk = all.subarray(end + 4);
      this.head = [];
    }
    const r = this.response;
    if (chunk.length > 0) {
      r.bodyBytes += chunk.length;
      p.onBody?.(chunk.length);
      if (p.keep) this.kept.push(Buffer.from(chunk));
    }
    if (r.bodyBytes >= this.contentLength) {
      if (p.keep) r.body = Buffer.concat(this.kept);
      this.pending = null;
      this.reset();
      if (this.closeAfter) this.socket?.destroy();
      p.resolve(r);
    }
    return true;
  }

  close(): void {
    this.fail(new Error('closed by the client'));
    this.socket?.destroy();
    this.socket = null;
  }
}

function parseHead(text: string): Response {
  const lines = text.split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? '0');
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  return { status, headers, bodyBytes: 0, body: null };
}

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

function note(errors: string[], msg: string): void {
  if (errors.length < 20) errors.push(msg);
}

async function runThroughput(job: ThroughputJob): Promise<ThroughputResult> {
  const errors: string[] = [];
  let bytes = 0;
  let responses = 0;
  let counting = false;
  let failures = 0;
  const start = now();
  const countFrom = start + job.warmupMs;
  const stopAt = countFrom + job.durationMs;
  const onBody = (n: number): void => {
    if (counting) bytes += n;
  };
  const warm = setTimeout(() => {
    counting = true;
  }, job.warmupMs);
  const conns = Array.from({ length: job.connections }, () => new Connection(job.port));
  let stopped = false;
  const stopTimer = setTimeout(() => {
    stopped = true;
    for (const c of conns) c.close();
  }, job.warmupMs + job.durationMs);
  const countedStart = { t: countFrom };
  await Promise.all(
    conns.map(async (c) => {
      // Bounded: the loop ends at the deadline (sockets are closed then), or after 50 failures.
      while (!stopped && now() < stopAt && failures < 50) {
        try {
          const r = await c.get(job.path, { accept: '*/*' }, { onBody });
          if (r.status !== 200 || r.bodyBytes !== job.expectLength) {
            failures += 1;
            note(errors, `status ${r.status}, ${r.bodyBytes} of ${job.expectLength} bytes`);
            continue;
          }
          if (counting) responses += 1;
        } catch (err) {
          if (!stopped) {
            failures += 1;
            note(errors, (err as Error).message);
          }
        }
      }
    }),
  );
  clearTimeout(warm);
  clearTimeout(stopTimer);
  const end = Math.min(now(), stopAt);
  for (const c of conns) c.close();
  return { mode: 'throughput', bytes, seconds: (end - countedStart.t) / 1000, responses, errors };
}

async function runOnce(job: OnceJob): Promise<OnceResult> {
  const errors: string[] = [];
  const conns = Array.from({ length: job.connections }, () => new Connection(job.port));
  // Connect first, so every request leaves at the same moment.
  await Promise.all(conns.map((c) => c.open()));
  const timer = setTimeout(() => {
    note(errors, `timed out after ${job.timeoutMs} ms`);
    for (const c of conns) c.close();
  }, job.timeoutMs);
  const t0 = now();
  let bytes = 0;
  const clientMs = await Promise.all(
    conns.map(async (c) => {
      try {
        const r = await c.get(job.path, { accept: '*/*' });
        bytes += r.bodyBytes;
        if (r.status !== 200 || r.bodyBytes !== job.expectLength) note(errors, `status ${r.status}, ${r.bodyBytes} of ${job.expectLength} bytes`);
      } catch (err) {
        note(errors, (err as Error).message);
      }
      return now() - t0;
    }),
  );
  const totalMs = now() - t0;
  clearTimeout(timer);
  for (const c of conns) c.close();
  return { mode: 'once', clientMs, totalMs, bytes, errors };
}

interface ManifestDoc {
  config?: { digest?: unknown };
  layers?: { digest?: unknown; size?: unknown }[];
}

async function runPull(job: PullJob): Promise<PullResult> {
  const errors: string[] = [];
  const conns = Array.from({ length: Math.max(1, job.parallel) }, () => new Connection(job.port));
  const timer = setTimeout(() => {
    note(errors, `timed out after ${job.timeoutMs} ms`);
    for (const c of conns) c.close();
  }, job.timeoutMs);
  const t0 = now();
  let bytes = 0;
  let blobs = 0;
  try {
    const first = conns[0] as Connection;
    const m = await first.get(`/v2/${job.repository}/manifests/${job.tag}`, { accept: job.accept }, { keep: true });
    if (m.status !== 200 || !m.body) throw new Error(`manifest: status ${m.status}`);
    bytes += m.bodyBytes;
    const doc = JSON.parse(m.body.toString('utf8')) as ManifestDoc;
    const digests: string[] = [];
    if (typeof doc.config?.digest === 'string') digests.push(doc.config.digest);
    for (const l of doc.layers ?? []) if (typeof l.digest === 'string') digests.push(l.digest);
    let next = 0;
    await Promise.all(
      conns.map(async (c) => {
        for (;;) {
          const d = digests[next++];
          if (d === undefined) return;
          const r = await c.get(`/v2/${job.repository}/blobs/${d}`, { accept: '*/*' });
          if (r.status !== 200) throw new Error(`blob ${d}: status ${r.status}`);
          bytes += r.bodyBytes;
          blobs += 1;
        }
      }),
    );
  } catch (err) {
    note(errors, (err as Error).message);
  }
  const totalMs = now() - t0;
  clearTimeout(timer);
  for (const c of conns) c.close();
  return { mode: 'pull', totalMs, bytes, blobs, errors };
}

export async function runJob(job: Job): Promise<JobResult> {
  switch (job.mode) {
    case 'throughput':
      return runThroughput(job);
    case 'once':
      return runOnce(job);
    case 'pull':
      return runPull(job);
  }
}

if (process.argv[1]?.endsWith('load-client.js') && process.argv[2] !== undefined) {
  const job = JSON.parse(process.argv[2]) as Job;
  runJob(job).then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`load-client: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
