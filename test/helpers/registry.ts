// A real CNCF Distribution 2.8 (`/usr/bin/docker-registry serve`) per test: plain registry,
// pull-through cache (proxy.remoteurl) or token-auth registry, storage in a temp dir.
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from './ports.js';
import { startProcess, type ProcessHandle } from './proc.js';
import { makeTempDir, removeTempDir } from './tmp.js';

export interface DistributionAuth {
  /** Token endpoint URL put in WWW-Authenticate. */
  realm: string;
  service: string;
  issuer: string;
  /** Path of a PEM file with the certificate(s) whose keys sign tokens. */
  rootCertBundle: string;
}

export interface DistributionOptions {
  /** Run as a pull-through cache of this registry (`proxy.remoteurl`). */
  proxyRemoteUrl?: string;
  /** Upstream credentials for the pull-through cache (`proxy.username` / `proxy.password`). */
  proxyUsername?: string;
  proxyPassword?: string;
  /** Require bearer tokens (`auth.token`). */
  auth?: DistributionAuth;
  /** `storage.delete.enabled`. */
  deleteEnabled?: boolean;
  /** Distribution log level; default 'warn'. */
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /** Top-level keys merged over the generated config (shallow, per top-level key). */
  extraConfig?: Record<string, unknown>;
  readyTimeoutMs?: number;
}

export interface Distribution {
  /** `http://127.0.0.1:<port>` (no trailing slash). */
  url: string;
  port: number;
  /** Temp dir holding config.yml and the storage root (`<root>/storage`). */
  root: string;
  configPath: string;
  process: ProcessHandle;
  /** Kills the registry and removes `root`. Idempotent. */
  stop(): Promise<void>;
}

/** Starts docker-registry on a free loopback port and waits until `GET /v2/` answers. */
export async function startDistribution(opts: DistributionOptions = {}): Promise<Distribution> {
  const root = await makeTempDir('registry');
  const storageDir = join(root, 'storage');
  await mkdir(storageDir);
  const configPath = join(root, 'config.yml');

  // A port probed free can be taken before the child binds it; retry on that race only.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const config: Record<string, unknown> = {
      version: '0.1',
      log: { level: opts.logLevel ?? 'warn', accesslog: { disabled: true } },
      storage: {
        filesystem: { rootdirectory: storageDir },
        delete: { enabled: opts.deleteEnabled === true },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: { addr: `127.0.0.1:${port}`, secret: 'berth-test-secret' },
    };
    if (opts.proxyRemoteUrl !== undefined) {
      const proxy: Record<string, string> = { remoteurl: opts.proxyRemoteUrl };
      if (opts.proxyUsername !== undefined) proxy['username'] = opts.proxyUsername;
      if (opts.proxyPassword !== undefined) proxy['password'] = opts.proxyPassword;
      config['proxy'] = proxy;
    }
    if (opts.auth !== undefined) {
      config['auth'] = {
        token: {
          realm: opts.auth.realm,
          service: opts.auth.service,
          issuer: opts.auth.issuer,
          rootcertbundle: opts.auth.rootCertBundle,
        },
      };
    }
    Object.assign(config, opts.extraConfig ?? {});
    await writeFile(configPath, stringify(config));

    const url = `http://127.0.0.1:${port}`;
    // REGISTRY_* variables override config.yml in Distribution; keep the caller's out.
    const env: NodeJS.ProcessEnv = {};
    for (const k of Object.keys(process.env)) if (k.startsWith('REGISTRY_')) env[k] = undefined;
    try {
      const proc = await startProcess('docker-registry', ['serve', configPath], {
        env,
        cwd: root,
        readyUrl: `${url}/v2/`,
        readyTimeoutMs: opts.readyTimeoutMs ?? 10_000,
        unref: true,
      });
      let stopped = false;
      return {
        url,
        port,
        root,
        configPath,
        process: proc,
        async stop() {
          if (stopped) return;
          stopped = true;
          await proc.stop();
          await removeTempDir(root);
        },
      };
    } catch (err) {
      lastError = err;
      const msg = err instanceof Error ? err.message : String(err);
      if (!/address already in use/i.test(msg)) break;
    }
  }
  await removeTempDir(root);
  throw lastError;
}
