/**
 * Cross-key validation, without I/O: URLs, CIDRs, header names, watermarks, upstream names and
 * aliases, token-auth requirements, cron patterns, and the grammar of every pre-warm reference.
 * May normalise values: trailing slashes off URLs, and defaultUpstream given as an alias becomes
 * the upstream's name. `checkPrewarmUpstreams` is the one rule loadConfig adds on top (see load.ts).
 */
import { BlockList, isIP } from 'node:net';
import { checkDigest, isValidName, isValidTag } from '../oci/reference.js';
import { ConfigError } from './errors.js';
import { maskUrlPassword } from './print.js';
import { POLICY_ACTIONS } from './schema.js';
import type { BerthConfig } from './types.js';

export function validate(cfg: BerthConfig): void {
  const { http, storage, auth, prewarm } = cfg;

  if (http.publicUrl !== null) http.publicUrl = httpUrl(http.publicUrl, 'http.publicUrl');
  http.cors.origins.forEach((origin, i) => {
    if (origin !== '*') httpUrl(origin, `http.cors.origins[${i}]`);
  });
  http.trustedProxies.forEach((cidr, i) => checkCidr(cidr, `http.trustedProxies[${i}]`));
  http.adminNetworks.forEach((cidr, i) => checkCidr(cidr, `http.adminNetworks[${i}]`));
  cfg.metrics.networks.forEach((cidr, i) => checkCidr(cidr, `metrics.networks[${i}]`));
  for (const [name, value] of Object.entries(http.headers)) {
    const key = `http.headers.${name}`;
    // RFC 9110 token characters; anything else would make Node refuse the header at request time.
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new ConfigError(key, 'is not a valid header name');
    if (/[\r\n\0]/.test(value)) throw new ConfigError(key, 'header value contains a line break or NUL');
  }

  if ((http.tls.certificate === null) !== (http.tls.key === null)) {
    const [missing, given] = http.tls.certificate === null ? ['certificate', 'key'] : ['key', 'certificate'];
    throw new ConfigError(`http.tls.${missing}`, `required when http.tls.${given} is set (HTTPS needs both PEM files; REGISTRY_HTTP_TLS_CERTIFICATE and REGISTRY_HTTP_TLS_KEY)`);
  }
  positive(http.tls.reloadInterval, 'http.tls.reloadInterval');

  if (storage.maxSize !== null && storage.maxSize <= 0) throw ConfigError.expected('storage.maxSize', 'a size above zero or null', storage.maxSize);
  if (!(storage.lowWatermark > 0 && storage.lowWatermark < storage.highWatermark && storage.highWatermark <= 1)) {
    throw new ConfigError(
      'storage.lowWatermark',
      `watermarks must satisfy 0 < lowWatermark < highWatermark <= 1, got ${storage.lowWatermark} and ${storage.highWatermark}`,
    );
  }
  positive(storage.gcInterval, 'storage.gcInterval');
  validateS3(cfg);

  validateUpstreams(cfg);

  if (auth.mode === 'token') {
    const t = auth.token;
    if (t.realm === null) throw new ConfigError('auth.token.realm', 'required when auth.mode is token (the URL clients get tokens from)');
    if (t.service === null) throw new ConfigError('auth.token.service', 'required when auth.mode is token');
    if (t.issuer === null) throw new ConfigError('auth.token.issuer', 'required when auth.mode is token');
    if (t.rootCertBundle === null && t.jwks === null) {
      throw new ConfigError('auth.token.rootCertBundle', 'auth.mode token needs rootCertBundle or jwks to verify token signatures');
    }
  }
  if (auth.token.realm !== null) auth.token.realm = httpUrl(auth.token.realm, 'auth.token.realm');
  if (auth.token.jwks !== null && looksLikeUrl(auth.token.jwks)) httpUrl(auth.token.jwks, 'auth.token.jwks');
  positive(auth.token.jwksRefresh, 'auth.token.jwksRefresh');
  auth.anonymous.networks.forEach((cidr, i) => checkCidr(cidr, `auth.anonymous.networks[${i}]`));
  auth.policy.forEach((rule, i) => {
    const key = `auth.policy[${i}]`;
    for (const field of ['subjects', 'actions', 'repositories'] as const) {
      if (rule[field].length === 0) throw new ConfigError(`${key}.${field}`, 'must not be empty');
    }
    rule.actions.forEach((action, j) => {
      if (!(POLICY_ACTIONS as readonly string[]).includes(action)) {
        throw ConfigError.expected(`${key}.actions[${j}]`, `one of ${POLICY_ACTIONS.join(', ')}`, action);
      }
    });
  });

  validateHosted(cfg);

  if (cfg.redis.url !== null) {
    const url = parseUrl(cfg.redis.url);
    if (url === null || (url.protocol !== 'redis:' && url.protocol !== 'rediss:')) {
      throw ConfigError.expected('redis.url', 'a URL like "redis://host:6379"', maskUrlPassword(cfg.redis.url));
    }
  }

  validateCluster(cfg);

  checkCron(prewarm.schedule, 'prewarm.schedule');
  prewarm.images.forEach((image, i) => {
    const key = `prewarm.images[${i}]`;
    parseImageRef(image.ref, `${key}.ref`);
    image.platforms.forEach((platform, j) => {
      if (!/^[a-z0-9]+\/[a-z0-9_]+(?:\/[a-z0-9]+)?$/i.test(platform)) {
        throw ConfigError.expected(`${key}.platforms[${j}]`, 'a platform like "linux/amd64" or "linux/arm64/v8"', platform);
      }
    });
    checkCron(image.schedule, `${key}.schedule`);
  });
  // log.level and storage.driver need no check here: their schema enums refuse anything else.
  validateUi(cfg);
}

// --- ui (issue 15)
/** Shortest ui.sessionSecret accepted: the cookie keys are derived from it (src/ui/session.ts). */
export const UI_SESSION_SECRET_MIN = 32;

function validateUi(cfg: BerthConfig): void {
  const { oidc } = cfg.ui;
  if (oidc.issuer === null) {
    if (oidc.clientId !== null || oidc.clientSecret !== null) {
      throw new ConfigError('ui.oidc.issuer', 'required when ui.oidc.clientId or clientSecret is set (the OpenID provider, e.g. https://kc.example.com/realms/<realm>)');
    }
  } else {
    oidc.issuer = httpUrl(oidc.issuer, 'ui.oidc.issuer');
    if (oidc.clientId === null) throw new ConfigError('ui.oidc.clientId', 'required when ui.oidc.issuer is set (the client created for Berth at the provider)');
    if (!oidc.scopes.includes('openid')) throw new ConfigError('ui.oidc.scopes', 'must include "openid" (an OpenID Connect login needs it)');
    if (cfg.ui.sessionSecret === null) {
      throw new ConfigError('ui.sessionSecret', `required when ui.oidc is set (at least ${UI_SESSION_SECRET_MIN} random characters; it keys the login cookies, and every replica needs the same)`);
    }
  }
  if (!/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/.test(oidc.rolesClaim)) {
    throw ConfigError.expected('ui.oidc.rolesClaim', 'a dotted claim path like "realm_access.roles"', oidc.rolesClaim);
  }
  if (cfg.ui.sessionSecret !== null && cfg.ui.sessionSecret.length < UI_SESSION_SECRET_MIN) {
    throw new ConfigError('ui.sessionSecret', `must be at least ${UI_SESSION_SECRET_MIN} characters, got ${cfg.ui.sessionSecret.length}`);
  }
}

/** storage.s3: what the S3 driver needs when it is chosen, and URLs that parse whenever set. */
function validateS3(cfg: BerthConfig): void {
  const s3 = cfg.storage.s3;
  if (cfg.storage.driver === 's3') {
    if (s3.endpoint === null) {
      throw new ConfigError('storage.s3.endpoint', 'required when storage.driver is s3 (the store\'s URL, e.g. "http://rgw.example:7480"; REGISTRY_STORAGE_S3_REGIONENDPOINT)');
    }
    if (s3.bucket === null) throw new ConfigError('storage.s3.bucket', 'required when storage.driver is s3 (REGISTRY_STORAGE_S3_BUCKET)');
    if ((s3.accessKeyId === null) !== (s3.secretAccessKey === null)) {
      const [missing, given] = s3.accessKeyId === null ? ['accessKeyId', 'secretAccessKey'] : ['secretAccessKey', 'accessKeyId'];
      throw new ConfigError(`storage.s3.${missing}`, `required when storage.s3.${given} is set (or set neither and use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)`);
    }
  }
  if (s3.endpoint !== null) s3.endpoint = httpUrl(s3.endpoint, 'storage.s3.endpoint');
  if (s3.redirect.publicEndpoint !== null) s3.redirect.publicEndpoint = httpUrl(s3.redirect.publicEndpoint, 'storage.s3.redirect.publicEndpoint');
  positive(s3.redirect.ttl, 'storage.s3.redirect.ttl');
  // SigV4 presigned URLs live at most 7 days.
  if (s3.redirect.ttl > 7 * 24 * 3_600_000) throw ConfigError.expected('storage.s3.redirect.ttl', 'a duration of at most 7d (the longest a presigned URL lives)', `${s3.redirect.ttl}ms`);
  if (s3.prefix.split('/').some((p) => p === '.' || p === '..')) throw ConfigError.expected('storage.s3.prefix', 'a key prefix without "." or ".." segments', s3.prefix);
}

/** Replicas: an advertised replica needs Redis (leases) and the secret its endpoint checks. */
function validateCluster(cfg: BerthConfig): void {
  const c = cfg.cluster;
  if (c.replicaId !== null && !/^[A-Za-z0-9._-]{1,64}$/.test(c.replicaId)) {
    throw ConfigError.expected('cluster.replicaId', '1 to 64 letters, digits, ".", "_" or "-"', c.replicaId);
  }
  if (c.secret !== null && c.secret.length < 16) {
    throw new ConfigError('cluster.secret', 'must be at least 16 characters (it guards the internal fill endpoint)');
  }
  if (c.advertiseUrl === null) return;
  c.advertiseUrl = httpUrl(c.advertiseUrl, 'cluster.advertiseUrl');
  if (c.secret === null) throw new ConfigError('cluster.secret', 'required when cluster.advertiseUrl is set (other replicas authenticate with it)');
  if (cfg.redis.url === null) throw new ConfigError('redis.url', 'required when cluster.advertiseUrl is set (replicas coordinate fills through Redis)');
}
// --- hosted repositories (issue 14) ---------------------------------------------------------
/** A repository-name glob: name characters, `/` between components, `*`, `**` and `?`. */
const NAME_GLOB = /^[a-z0-9*?]+(?:(?:[._]|__|-+)[a-z0-9*?]+|[*?]+)*(?:\/[a-z0-9*?]+(?:(?:[._]|__|-+)[a-z0-9*?]+|[*?]+)*)*$/;
/** A tag glob: tag characters plus `*` and `?`. */
const TAG_GLOB = /^[A-Za-z0-9_*?][A-Za-z0-9._*?-]{0,127}$/;

function validateHosted(cfg: BerthConfig): void {
  cfg.repositories.forEach((rule, i) => {
    const key = `repositories[${i}].match`;
    if (rule.match === '') throw new ConfigError(key, 'must not be empty');
    if (rule.match.startsWith('/') || rule.match.endsWith('/') || rule.match.includes('//')) {
      throw ConfigError.expected(key, 'a glob over repository names such as "ci/**" (no leading, trailing or double "/")', rule.match);
    }
    if (!NAME_GLOB.test(rule.match)) {
      throw ConfigError.expected(key, 'a glob over repository names: lower-case letters, digits, ".", "_", "-", "/", "*", "**" and "?"', rule.match);
    }
  });
  positive(cfg.hosted.uploadTtl, 'hosted.uploadTtl');
  if (cfg.hosted.maxManifestSize <= 0) throw ConfigError.expected('hosted.maxManifestSize', 'a size above zero', cfg.hosted.maxManifestSize);
  cfg.hosted.immutableTags.forEach((glob, i) => {
    if (!TAG_GLOB.test(glob)) {
      throw ConfigError.expected(`hosted.immutableTags[${i}]`, 'a tag glob: letters, digits, ".", "_", "-", "*" and "?"', glob);
    }
  });
}
// --- end hosted repositories -----------------------------------------------------------------

function validateUpstreams(cfg: BerthConfig): void {
  if (cfg.upstreams.length === 0) throw new ConfigError('upstreams', 'at least one upstream is required');
  // Names and aliases share one namespace: each is matched against `?ns=` and the first path
  // component, so one string naming two upstreams would make routing ambiguous.
  const owners = new Map<string, string>();
  const claim = (name: string, key: string): void => {
    if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/i.test(name)) {
      throw ConfigError.expected(key, 'a registry host name like "ghcr.io" or "registry.local:5000"', name);
    }
    const earlier = owners.get(name.toLowerCase());
    if (earlier !== undefined) throw new ConfigError(key, `"${name}" is already used by ${earlier}`);
    owners.set(name.toLowerCase(), key);
  };
  cfg.upstreams.forEach((u, i) => {
    const key = `upstreams[${i}]`;
    claim(u.name, `${key}.name`);
    u.aliases.forEach((alias, j) => claim(alias, `${key}.aliases[${j}]`));
    u.url = httpUrl(u.url, `${key}.url`);
    if (/\/v2$/.test(u.url)) throw new ConfigError(`${key}.url`, `give the registry's base URL without /v2, got "${u.url}"`);
    if ((u.username === null) !== (u.password === null)) {
      throw new ConfigError(`${key}.${u.username === null ? 'username' : 'password'}`, 'username and password are set together or not at all');
    }
    positive(u.connectTimeout, `${key}.connectTimeout`);
    positive(u.failTimeout, `${key}.failTimeout`);
  });
  const wanted = cfg.defaultUpstream.toLowerCase();
  const chosen = cfg.upstreams.find((u) => u.name.toLowerCase() === wanted || u.aliases.some((a) => a.toLowerCase() === wanted));
  if (chosen === undefined) {
    const names = cfg.upstreams.map((u) => u.name).join(', ');
    throw new ConfigError('defaultUpstream', `"${cfg.defaultUpstream}" names no configured upstream (configured: ${names})`);
  }
  cfg.defaultUpstream = chosen.name;
}

function parseUrl(s: string): URL | null {
  try {
    return new URL(s);
  } catch {
    return null;
  }
}

/** Check an http(s) URL and return it without trailing slashes, so callers can append paths. */
function httpUrl(s: string, key: string): string {
  const url = parseUrl(s);
  if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
    throw ConfigError.expected(key, 'an http:// or https:// URL', maskUrlPassword(s));
  }
  return s.replace(/\/+$/, '');
}

export function looksLikeUrl(s: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(s);
}

function positive(ms: number, key: string): void {
  if (ms <= 0) throw ConfigError.expected(key, 'a duration above zero', `${ms}ms`);
}

/** An address (`10.1.2.3`, `::1`) or a CIDR block (`10.0.0.0/8`, `fd00::/8`). */
function checkCidr(s: string, key: string): void {
  const fail = (): ConfigError => ConfigError.expected(key, 'an IP address or CIDR like "10.0.0.0/8"', s);
  const parts = s.split('/');
  const [address, prefix] = parts;
  const family = isIP(address ?? '');
  if (address === undefined || family === 0 || parts.length > 2) throw fail();
  if (prefix === undefined) return;
  const bits = Number(prefix);
  if (!/^\d{1,3}$/.test(prefix) || bits > (family === 4 ? 32 : 128)) throw fail();
  try {
    // The same parser the access controller will use, so what passes here works there.
    new BlockList().addSubnet(address, bits, family === 4 ? 'ipv4' : 'ipv6');
  } catch {
    throw fail();
  }
}

/**
 * A light check: 5 fields (minute … weekday) or 6 (with seconds) of cron characters. The queue's
 * cron parser has the final word; this catches a pasted duration or a missing field at boot.
 */
function checkCron(s: string, key: string): void {
  const fields = s.trim().split(/\s+/);
  if ((fields.length !== 5 && fields.length !== 6) || !fields.every((f) => /^[0-9A-Za-z*/,?#-]+$/.test(f))) {
    throw ConfigError.expected(key, 'a cron pattern with 5 or 6 fields like "0 */6 * * *"', s);
  }
}

// ---------------------------------------------------------------------------------------------
// Pre-warm references

const REF_EXAMPLE = 'an image reference like "docker.io/library/alpine:3.20"';

/** `[host/]name[:tag][@digest]` split as the docker reference grammar does. */
interface ImageRef {
  /** The registry host when the first component is one (has a dot or a colon, or is localhost). */
  host: string | null;
  name: string;
}

function parseImageRef(ref: string, key: string): ImageRef {
  const fail = (why: string): ConfigError => new ConfigError(key, `${JSON.stringify(ref)} is not a valid image reference: ${why}`);
  if (ref.trim() === '' || /\s/.test(ref)) throw ConfigError.expected(key, REF_EXAMPLE, ref);
  let rest = ref;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const digest = checkDigest(rest.slice(at + 1));
    if (!digest.ok) throw fail(digest.reason);
    rest = rest.slice(0, at);
  }
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    const tag = rest.slice(colon + 1);
    if (!isValidTag(tag)) throw fail(`${JSON.stringify(tag)} is not a valid tag`);
    rest = rest.slice(0, colon);
  }
  const slash = rest.indexOf('/');
  const first = slash > 0 ? rest.slice(0, slash) : '';
  const host = first !== '' && isRegistryHost(first) ? first : null;
  const name = host === null ? rest : rest.slice(slash + 1);
  if (!isValidName(name)) {
    const lower = name.toLowerCase() !== name && isValidName(name.toLowerCase()) ? ' (repository names are lower case)' : '';
    throw fail(`${JSON.stringify(name)} is not a valid repository name${lower}`);
  }
  return { host, name };
}

/** The docker reference grammar's rule for a first component that names a registry. */
function isRegistryHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

/**
 * Every pre-warm reference that names a registry names a configured upstream (or alias):
 * pre-warm never reaches a registry the mirror does not serve, and `serve` refuses to start on it.
 */
export function checkPrewarmUpstreams(cfg: BerthConfig): void {
  const served = new Set(cfg.upstreams.flatMap((u) => [u.name, ...u.aliases].map((n) => n.toLowerCase())));
  cfg.prewarm.images.forEach((image, i) => {
    const key = `prewarm.images[${i}].ref`;
    const { host } = parseImageRef(image.ref, key);
    if (host !== null && !served.has(host.toLowerCase())) {
      const names = cfg.upstreams.map((u) => u.name).join(', ');
      throw new ConfigError(key, `"${image.ref}" names the registry "${host}", which is not a configured upstream (configured: ${names}); add it under upstreams or drop the image`);
    }
  });
}
