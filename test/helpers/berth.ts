// A whole Berth for tests: in-process (createServices from the composition root + listen on a free loopback port, logs
// captured) or as a child process running the built CLI (for kill -9 and real-client tests).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { createServices, type ServiceOptions, type Services } from '../../src/app/serve.js';
import { makeTempDir, removeTempDir } from './tmp.js';
import { freePort } from './ports.js';
import { startProcess, type ProcessHandle } from './proc.js';

export interface BerthHandle {
  url: string;
  port: number;
  /** host:port, as a client config names the mirror. */
  host: string;
  root: string;
  services: Services;
  /** Log lines (JSON) written so far. */
  logs(): string[];
  stop(): Promise<void>;
}

/** `{ upstreams: [...] }`-style overrides on top of the defaults; storage.root defaults to a temp dir. */
export type Overrides = Record<string, unknown>;

export function upstreamOverride(url: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'docker.io', url, aliases: ['index.docker.io', 'registry-1.docker.io'], ...extra };
}

export async function startBerth(overrides: Overrides = {}, opts: ServiceOptions & { keepRoot?: boolean } = {}): Promise<BerthHandle> {
  const storage = (overrides['storage'] as Record<string, unknown> | undefined) ?? {};
  const root = (storage['root'] as string | undefined) ?? (await makeTempDir('berth-root'));
  const config = await loadConfig({
    file: null,
    env: {},
    overrides: { ...overrides, http: { host: '127.0.0.1', port: 0, ...(overrides['http'] as object | undefined) }, storage: { ...storage, root } },
  });
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(l);
      if (process.env['BERTH_TEST_LOG']) process.stderr.write(chunk);
      cb();
    },
  });
  const log = createLogger(process.env['BERTH_TEST_LOG'] ?? config.log.level, sink);
  const services = await createServices(config, log, opts);
  const address = await services.app.listen({ host: '127.0.0.1', port: 0 });
  const port = Number(new URL(address).port);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    host: `127.0.0.1:${port}`,
    root,
    services,
    logs: () => lines,
    async stop() {
      await services.close();
      if (!opts.keepRoot && storage['root'] === undefined) await removeTempDir(root);
    },
  };
}

export interface BerthProcess {
  url: string;
  port: number;
  host: string;
  root: string;
  configFile: string;
  proc: ProcessHandle;
  stop(): Promise<void>;
}

/** Run `node dist/src/cli.js serve` with a YAML config built from the overrides. */
export async function startBerthProcess(overrides: Overrides = {}, env: Record<string, string> = {}): Promise<BerthProcess> {
  const dir = await makeTempDir('berth-proc');
  const port = await freePort();
  const storage = (overrides['storage'] as Record<string, unknown> | undefined) ?? {};
  const root = (storage['root'] as string | undefined) ?? join(dir, 'data');
  const cfg = { ...overrides, http: { host: '127.0.0.1', port, ...(overrides['http'] as object | undefined) }, storage: { ...storage, root } };
  const configFile = join(dir, 'berth.yaml');
  await writeFile(configFile, stringify(cfg));
  const proc = await startProcess(process.execPath, ['dist/src/cli.js', 'serve'], {
    env: { BERTH_CONFIG: configFile, ...env },
    readyUrl: `http://127.0.0.1:${port}/healthz`,
    readyTimeoutMs: 15_000,
  });
  return {
    url: `http://127.0.0.1:${port}`, port, host: `127.0.0.1:${port}`, root, configFile, proc,
    async stop() {
      await proc.stop();
      await removeTempDir(dir);
    },
  };
}
