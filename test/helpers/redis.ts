// A private redis-server per test run: foreground child on a free loopback port, no persistence,
// `maxmemory-policy noeviction` (what BullMQ requires), working dir in a temp dir.
import { connect } from 'node:net';
import { freePort } from './ports.js';
import { startProcess, type ProcessHandle } from './proc.js';
import { makeTempDir, removeTempDir } from './tmp.js';

export interface RedisServer {
  /** `redis://127.0.0.1:<port>` */
  url: string;
  port: number;
  host: string;
  process: ProcessHandle;
  /** Kills redis-server and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** Sends PING over a raw socket; resolves true on +PONG. */
export function pingRedis(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    let buf = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'));
    });
    sock.once('error', () => done(false));
  });
}

export async function startRedis(opts: { readyTimeoutMs?: number } = {}): Promise<RedisServer> {
  const dir = await makeTempDir('redis');
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      const proc = await startProcess(
        'redis-server',
        [
          '--port', String(port),
          '--bind', '127.0.0.1',
          '--daemonize', 'no',
          '--save', '',
          '--appendonly', 'no',
          '--maxmemory-policy', 'noeviction',
          '--dir', dir,
          '--logfile', '',
        ],
        { cwd: dir, readyOutput: /Ready to accept connections/, readyTimeoutMs: opts.readyTimeoutMs ?? 10_000, unref: true },
      );
      if (!(await pingRedis(port))) {
        await proc.stop();
        throw new Error(`redis-server on ${port} did not answer PING\n${proc.output()}`);
      }
      let stopped = false;
      return {
        url: `redis://127.0.0.1:${port}`,
        port,
        host: '127.0.0.1',
        process: proc,
        async stop() {
          if (stopped) return;
          stopped = true;
          await proc.stop();
          await removeTempDir(dir);
        },
      };
    } catch (err) {
      lastError = err;
      const msg = err instanceof Error ? err.message : String(err);
      if (!/address already in use/i.test(msg)) break;
    }
  }
  await removeTempDir(dir);
  throw lastError;
}
