/**
 * Distribution's `REGISTRY_*` environment variables, so a registry:2 deployment's environment
 * works unchanged: token auth, headers, storage root and delete, the listen address and TLS files, and the
 * pull-through upstream (`REGISTRY_PROXY_*` → the default upstream). Applied before BERTH_*.
 */
import { setFromText } from './env-berth.js';
import { ConfigError } from './errors.js';
import type { ConfigPath } from './layer.js';
import { isRecord } from './schema.js';

const REGISTRY_PATHS: Readonly<Record<string, ConfigPath>> = {
  REGISTRY_AUTH_TOKEN_REALM: ['auth', 'token', 'realm'],
  REGISTRY_AUTH_TOKEN_SERVICE: ['auth', 'token', 'service'],
  REGISTRY_AUTH_TOKEN_ISSUER: ['auth', 'token', 'issuer'],
  REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE: ['auth', 'token', 'rootCertBundle'],
  REGISTRY_AUTH_TOKEN_JWKS: ['auth', 'token', 'jwks'],
  REGISTRY_STORAGE_DELETE_ENABLED: ['storage', 'deleteEnabled'],
  REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: ['storage', 'root'],
  REGISTRY_HTTP_TLS_CERTIFICATE: ['http', 'tls', 'certificate'],
  REGISTRY_HTTP_TLS_KEY: ['http', 'tls', 'key'],
  // The S3 driver (REGISTRY_STORAGE=s3 chooses it; see applyRegistryEnv).
  REGISTRY_STORAGE_S3_REGIONENDPOINT: ['storage', 's3', 'endpoint'],
  REGISTRY_STORAGE_S3_REGION: ['storage', 's3', 'region'],
  REGISTRY_STORAGE_S3_BUCKET: ['storage', 's3', 'bucket'],
  REGISTRY_STORAGE_S3_ACCESSKEY: ['storage', 's3', 'accessKeyId'],
  REGISTRY_STORAGE_S3_SECRETKEY: ['storage', 's3', 'secretAccessKey'],
  REGISTRY_STORAGE_S3_ROOTDIRECTORY: ['storage', 's3', 'prefix'],
};

const REGISTRY_PROXY: Readonly<Record<string, 'url' | 'username' | 'password'>> = {
  REGISTRY_PROXY_REMOTEURL: 'url',
  REGISTRY_PROXY_USERNAME: 'username',
  REGISTRY_PROXY_PASSWORD: 'password',
};

const REGISTRY_HEADERS = 'REGISTRY_HTTP_HEADERS_';

/**
 * Distribution's variables, applied before BERTH_* (so a BERTH_* variable wins). Any
 * `REGISTRY_AUTH_TOKEN_*` we read turns token auth on, as it does in registry:2, where such a
 * variable creates the `auth.token` section by itself; an explicit `REGISTRY_AUTH` still decides.
 * Distribution variables Berth has no use for (registry:2 images set several) are ignored silently.
 */
export function applyRegistryEnv(cfg: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  let tokenImplied = false;
  for (const [name, text] of Object.entries(env)) {
    if (text === undefined || !name.toUpperCase().startsWith('REGISTRY_')) continue;
    const upper = name.toUpperCase();
    const direct = REGISTRY_PATHS[upper];
    if (direct !== undefined) {
      setFromText(cfg, direct, text, name);
      if (upper.startsWith('REGISTRY_AUTH_TOKEN_')) tokenImplied = true;
    } else if (upper.startsWith(REGISTRY_HEADERS)) {
      const header = name.slice(REGISTRY_HEADERS.length);
      if (header === '') throw new ConfigError(name, 'names no header');
      setFromText(cfg, ['http', 'headers', header], text, name);
    } else if (upper === 'REGISTRY_HTTP_ADDR') {
      applyListenAddress(cfg, text, name);
    } else {
      const proxyField = REGISTRY_PROXY[upper];
      if (proxyField !== undefined) setFromText(cfg, ['upstreams', defaultUpstreamIndex(cfg, name), proxyField], text, name);
    }
  }
  const storage = env['REGISTRY_STORAGE'];
  if (storage !== undefined && storage.trim() !== '') {
    const driver = storage.trim().toLowerCase();
    if (driver !== 's3' && driver !== 'filesystem') {
      throw new ConfigError('REGISTRY_STORAGE', `"${storage}" is not supported by Berth (supported: filesystem, s3)`);
    }
    setFromText(cfg, ['storage', 'driver'], driver, 'REGISTRY_STORAGE');
  }
  const auth = env['REGISTRY_AUTH'];
  if (auth !== undefined && auth.trim() !== '') {
    const mode = auth.trim().toLowerCase();
    // Silently staying open when the operator asked for htpasswd auth would be a security hole.
    if (mode !== 'token' && mode !== 'none') {
      throw new ConfigError('REGISTRY_AUTH', `"${auth}" is not supported by Berth (supported: token, none)`);
    }
    setFromText(cfg, ['auth', 'mode'], mode, 'REGISTRY_AUTH');
  } else if (tokenImplied) {
    setFromText(cfg, ['auth', 'mode'], 'token', 'REGISTRY_AUTH_TOKEN_*');
  }
}

/** `:5000` (all interfaces), `host:5000` or `[::1]:5000`, as Go's net.Listen takes it. */
function applyListenAddress(cfg: Record<string, unknown>, text: string, varName: string): void {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(text.trim());
  if (m === null) throw ConfigError.expected(varName, 'an address like ":5000" or "127.0.0.1:5000"', text);
  const host = m[1] ?? m[2] ?? '';
  setFromText(cfg, ['http', 'host'], host === '' ? '0.0.0.0' : host, varName);
  setFromText(cfg, ['http', 'port'], m[3] ?? '', varName);
}

/** REGISTRY_PROXY_* configure "the" upstream of a registry:2 proxy: Berth's default upstream. */
function defaultUpstreamIndex(cfg: Record<string, unknown>, varName: string): number {
  const wanted = String(cfg['defaultUpstream']).toLowerCase();
  const upstreams = Array.isArray(cfg['upstreams']) ? cfg['upstreams'] : [];
  const index = upstreams.findIndex(
    (u: unknown) =>
      isRecord(u) &&
      (String(u['name']).toLowerCase() === wanted ||
        (Array.isArray(u['aliases']) && u['aliases'].some((a: unknown) => String(a).toLowerCase() === wanted))),
  );
  if (index < 0) throw new ConfigError(varName, `defaultUpstream "${wanted}" names no configured upstream to apply it to`);
  return index;
}
