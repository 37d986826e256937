/**
 * The one table of Berth's configuration: every key, its type and its default, as a tree of
 * nodes. The loader (layer.ts) walks this tree for YAML, environment variables and overrides alike,
 * so a key added here is at once a YAML key, a `BERTH_*` variable, type-checked and defaulted.
 *
 * A compile-time check at the bottom proves the tree produces exactly `BerthConfig` from
 * types.ts; if the two drift apart, `tsc` fails here rather than a pull failing in production.
 */
import {
  boolean, dockerHubRealms, duration, fraction, headerMap, integer, list, nullableInteger, nullableSize,
  nullableText, object, oneOf, realmHostList, required, size, text, textList, textOrEmpty, type Infer,
} from './schema-nodes.js';
import type { BerthConfig } from './types.js';

export * from './schema-nodes.js';

// ---------------------------------------------------------------------------------------------
// The schema. Defaults here are the only defaults in Berth.

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** `auto`: pretty (pino-pretty) when stdout is a terminal, JSON lines otherwise. */
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export const POLICY_ACTIONS = ['pull', 'push', 'delete', 'admin', '*'] as const;

export const upstreamSchema = object(
  {
    name: required(),
    url: required(),
    aliases: textList([]),
    username: nullableText(),
    password: nullableText(),
    tagTtl: duration('10m'),
    staleWhileRevalidate: duration('0s'),
    maxFails: integer(5, 1),
    failTimeout: duration('30s'),
    maxConnections: integer(64, 1),
    notFoundTtl: duration('0s'),
    connectTimeout: duration('10s'),
    headersTimeout: duration('30s'),
    bodyTimeout: duration('60s'),
    // Only Docker Hub files one-component names under `library/`; other registries do not.
    libraryPrefix: boolean(undefined, ({ siblings }) => siblings['name'] === 'docker.io'),
    // Credentials go to the upstream's own origin and to these token realms only (Docker Hub:
    // auth.docker.io). Any other realm gets an anonymous token request.
    realmHosts: realmHostList(dockerHubRealms),
    // Caps on what an upstream may make this process buffer or wait for (a hostile or broken
    // upstream must not grow memory or hold requests forever).
    maxBodySize: size('4MiB'),
    maxTokenSize: size('64KiB'),
    maxTags: integer(100_000, 1),
    requestDeadline: duration('60s'),
  },
  { identity: 'name' },
);

export const prewarmImageSchema = object(
  {
    ref: required(),
    platforms: textList([]),
    tags: nullableText(),
    // An image without its own schedule follows prewarm.schedule, read after every layer.
    schedule: text(undefined, ({ root }) => prewarmSchedule(root)),
  },
  { shorthand: 'ref' },
);

export const policyRuleSchema = object({
  subjects: textList(undefined),
  actions: textList(undefined),
  repositories: textList(['*']),
});

// --- hosted repositories (issue 14) ---------------------------------------------------------
/** Which names are hosted (push) and which mirrored; first match wins (src/registry/hosted-rules.ts). */
export const REPOSITORY_MODES = ['hosted', 'mirror'] as const;
export const repositoryRuleSchema = object({
  match: required(),
  mode: oneOf(REPOSITORY_MODES, 'hosted'),
});
export const hostedSchema = object({
  // An upload session not written to for this long is dropped with its staged bytes.
  uploadTtl: duration('24h'),
  // A manifest PUT larger than this is refused with 413 before it is parsed.
  maxManifestSize: size('4MiB'),
  // Tag globs (`v*`, `release-*`) whose tags may be pushed once and never moved (DENIED).
  immutableTags: textList([]),
});
// --- end hosted repositories -----------------------------------------------------------------

export const BUILTIN_UPSTREAMS: readonly unknown[] = [
  {
    name: 'docker.io',
    url: 'https://registry-1.docker.io',
    aliases: ['index.docker.io', 'registry-1.docker.io'],
    libraryPrefix: true,
  },
];

export const berthSchema = object({
  http: object({
    host: text('0.0.0.0'),
    port: integer(5000, 0, 65535),
    publicUrl: nullableText(),
    cors: object({ origins: textList([]) }),
    trustedProxies: textList([]),
    headers: headerMap(),
    // Who may use /api/v1 when auth.mode is none (src/http/admin-guard.ts).
    adminNetworks: textList(['127.0.0.0/8', '::1/128']),
    // Client connections (src/http/limits.ts): a cap (null = derived from the fd soft limit) and
    // timeouts that cut stalled clients. None bounds a response: slow readers of blobs are fine.
    maxConnections: nullableInteger(1),
    headersTimeout: duration('30s'),
    requestTimeout: duration('10m'),
    idleTimeout: duration('2m'),
    keepAliveTimeout: duration('5s'),
    // HTTPS on http.port when both PEM files are set (src/http/tls.ts); they are re-read when
    // they change, checked every reloadInterval, so a rotated certificate needs no restart.
    tls: object({ certificate: nullableText(), key: nullableText(), reloadInterval: duration('2s') }),
  }),
  storage: object({
    driver: oneOf(['filesystem', 's3'], 'filesystem'),
    // With driver s3, root is the local staging (spool) folder of fills.
    root: text('./data'),
    maxSize: nullableSize(),
    highWatermark: fraction(0.95),
    lowWatermark: fraction(0.85),
    deleteEnabled: boolean(false),
    gcInterval: duration('1h'),
    // --- S3 driver (storage.driver: s3; src/storage/s3.ts). endpoint and bucket are required then.
    s3: object({
      endpoint: nullableText(),
      region: text('us-east-1'),
      bucket: nullableText(),
      prefix: textOrEmpty(''),
      forcePathStyle: boolean(true),
      accessKeyId: nullableText(),
      secretAccessKey: nullableText(),
      // A blob GET answered with 307 to a presigned URL on publicEndpoint (default: endpoint).
      redirect: object({ enabled: boolean(false), publicEndpoint: nullableText(), ttl: duration('10m'), minSize: size('1MiB') }),
    }),
  }),
  // A list in the file replaces this built-in list; it is not merged item by item.
  upstreams: list(upstreamSchema, BUILTIN_UPSTREAMS),
  defaultUpstream: text('docker.io'),
  auth: object({
    mode: oneOf(['none', 'token'], 'none'),
    token: object({
      realm: nullableText(),
      service: nullableText(),
      issuer: nullableText(),
      rootCertBundle: nullableText(),
      jwks: nullableText(),
      jwksRefresh: duration('5m'),
    }),
    anonymous: object({ pull: boolean(false), networks: textList([]) }),
    policy: list(policyRuleSchema),
  }),
  redis: object({ url: nullableText(), prefix: text('berth') }),
  // Replicas (src/registry/cluster.ts): advertiseUrl turns on cross-replica blob fills (needs
  // redis.url and secret); replicaId defaults to host name + process id at start.
  cluster: object({ replicaId: nullableText(), advertiseUrl: nullableText(), secret: nullableText() }),
  prewarm: object({
    schedule: text('0 */6 * * *'),
    reservePulls: integer(10, 0),
    concurrency: integer(2, 1),
    attempts: integer(5, 1),
    retryDelay: duration('30s'),
    lockDuration: duration('30s'),
    images: list(prewarmImageSchema),
    // One-off runs (POST /api/v1/prewarm of a ref not in images): a rate and a cap on their records.
    oneOff: object({ perMinute: integer(10, 0), maxRecords: integer(50, 1) }),
  }),
  // networks: who may scrape /metrics (empty: any); port: serve it on its own listener instead.
  metrics: object({ enabled: boolean(true), networks: textList([]), port: nullableInteger(0, 65535) }),
  log: object({ level: oneOf(LOG_LEVELS, 'info'), format: oneOf(LOG_FORMATS, 'auto') }),
  // Hosted repositories (issue 14): default, none; everything is mirrored.
  repositories: list(repositoryRuleSchema),
  hosted: hostedSchema,
  // --- ui (issue 15): the web UI at /ui/ (src/ui/); ui.oidc turns on the OpenID Connect login.
  ui: object({
    enabled: boolean(true),
    oidc: object({
      issuer: nullableText(),
      clientId: nullableText(),
      clientSecret: nullableText(),
      scopes: textList(['openid', 'profile', 'email']),
      rolesClaim: text('realm_access.roles'),
    }),
    sessionSecret: nullableText(),
  }),
});

function prewarmSchedule(root: Readonly<Record<string, unknown>>): string {
  const prewarm = root['prewarm'];
  const schedule = isRecord(prewarm) ? prewarm['schedule'] : undefined;
  // Derived defaults run after every layer, when prewarm.schedule always holds a string; getting
  // here without one means the loader's steps were reordered, which is a bug, not bad config.
  if (typeof schedule !== 'string') throw new Error('prewarm.schedule is not resolved before prewarm.images');
  return schedule;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Proof that the schema and types.ts describe the same thing. Mutual assignability catches a
// missing key, an extra key, a wrong type and a wrong nullability in either direction.

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const schemaMatchesTypes: Same<Infer<typeof berthSchema>, BerthConfig> = true;
void schemaMatchesTypes;
