/**
 * The parsed, validated configuration every other layer reads. Durations are milliseconds and
 * sizes are bytes here: parsing happens once at boot (src/config/load.ts), never on a hot path.
 * The YAML shape and the defaults live in src/config/schema.ts.
 */

export interface UpstreamConfig {
  /** Matched against `?ns=` and a leading path component; also the cache key's first part. */
  name: string;
  /** Base URL of the registry API, without `/v2`. */
  url: string;
  aliases: string[];
  username: string | null;
  password: string | null;
  /** How long a tag's last check is trusted before revalidating upstream (ms). */
  tagTtl: number;
  /** After tagTtl, answer from cache at once and revalidate in the background for this long (ms). 0 = off. */
  staleWhileRevalidate: number;
  /** Consecutive failures that open the breaker. */
  maxFails: number;
  /** How long an open breaker stays open before one probe is let through (ms). */
  failTimeout: number;
  /** Cap on concurrent connections to this upstream. */
  maxConnections: number;
  /** How long an upstream 404 for a manifest is remembered (ms). 0 = off. */
  notFoundTtl: number;
  /** Timeouts for upstream requests (ms). */
  connectTimeout: number;
  headersTimeout: number;
  bodyTimeout: number;
  /** Add `library/` to one-component names (Docker Hub's official images). Default: true for docker.io. */
  libraryPrefix: boolean;
  /** Origins (besides the upstream's own) whose token realm may receive the credentials. */
  realmHosts: string[];
  /** Cap on one buffered body: a manifest, a tag-list page (bytes). */
  maxBodySize: number;
  /** Cap on a token response, and so on a token (bytes). */
  maxTokenSize: number;
  /** Cap on the tags read for one repository, over all pages. */
  maxTags: number;
  /** Total time for a manifest, tag-list or token exchange, headers and body (ms). */
  requestDeadline: number;
}

export interface PrewarmImageConfig {
  ref: string;
  /** `os/arch[/variant]` filters for an index; empty = all platforms. */
  platforms: string[];
  /** A tag pattern (glob: `3.19.*`) expanded against the upstream tag list, or null for the ref's own tag. */
  tags: string | null;
  /** Cron pattern; defaults to prewarm.schedule. */
  schedule: string;
}

export interface PolicyRule {
  /** Username globs; `anonymous` names unauthenticated clients; `*` everyone. */
  subjects: string[];
  /** `pull`, `push`, `delete`, `admin`, `*`. */
  actions: string[];
  /** Globs over `<upstream>/<repository>` (e.g. `docker.io/library/*`, `*`). */
  repositories: string[];
}

export interface BerthConfig {
  http: {
    host: string;
    port: number;
    publicUrl: string | null;
    cors: { origins: string[] };
    /** CIDRs of reverse proxies whose X-Forwarded-For is believed. */
    trustedProxies: string[];
    /** Extra headers added to every response (Distribution's REGISTRY_HTTP_HEADERS_*). */
    headers: Record<string, string>;
    /** CIDRs allowed to use /api/v1 when auth.mode is none. */
    adminNetworks: string[];
    /** Cap on open client connections; null = derived from the file-descriptor soft limit. */
    maxConnections: number | null;
    /** Client timeouts (ms): all headers, the whole request (headers + body; 0 = off), socket inactivity, keep-alive between requests. */
    headersTimeout: number;
    requestTimeout: number;
    idleTimeout: number;
    keepAliveTimeout: number;
    /** HTTPS: PEM certificate (chain) and private key files; both null = plain HTTP. */
    tls: {
      certificate: string | null;
      key: string | null;
      /** How often the two files are checked for a change (ms); a changed pair is loaded without a restart. */
      reloadInterval: number;
    };
  };
  storage: {
    driver: 'filesystem' | 's3';
    /** The store's folder (filesystem), or the local staging (spool) folder of fills (s3). */
    root: string;
    maxSize: number | null;
    /** Fractions of maxSize: evict when use passes high, down to low. */
    highWatermark: number;
    lowWatermark: number;
    deleteEnabled: boolean;
    /** How often garbage collection and temp-file sweeping run (ms). */
    gcInterval: number;
    /** The S3 driver (storage.driver: s3): blobs and records in a bucket. */
    s3: {
      endpoint: string | null;
      region: string;
      bucket: string | null;
      /** Key prefix inside the bucket ("" = the top). */
      prefix: string;
      forcePathStyle: boolean;
      /** Null: from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the SDK's credential chain). */
      accessKeyId: string | null;
      secretAccessKey: string | null;
      redirect: {
        enabled: boolean;
        /** Where clients reach the store; null = endpoint. */
        publicEndpoint: string | null;
        /** Lifetime of a presigned URL (ms). */
        ttl: number;
        /** Smaller blobs are served by Berth (bytes). */
        minSize: number;
      };
    };
  };
  upstreams: UpstreamConfig[];
  defaultUpstream: string;
  auth: {
    mode: 'none' | 'token';
    token: {
      realm: string | null;
      service: string | null;
      issuer: string | null;
      rootCertBundle: string | null;
      jwks: string | null;
      /** How often a JWKS URL is fetched again (ms). */
      jwksRefresh: number;
    };
    anonymous: { pull: boolean; networks: string[] };
    policy: PolicyRule[];
  };
  redis: {
    url: string | null;
    /** Namespace of every key Berth keeps in Redis (the BullMQ queue, pre-warm status and locks). */
    prefix: string;
  };
  /** Replicas sharing one store and Redis (src/registry/cluster.ts). */
  cluster: {
    /** This replica's name in leases and logs; null: host name and process id. */
    replicaId: string | null;
    /** Where other replicas reach this one's internal fill endpoint; null: no cross-replica joins. */
    advertiseUrl: string | null;
    /** Bearer secret of the internal endpoint (/_berth/cluster/...), shared by every replica. */
    secret: string | null;
  };
  prewarm: {
    schedule: string;
    reservePulls: number;
    /** Pre-warm runs at once (per worker process). */
    concurrency: number;
    /** Tries per run, the first included, before it is recorded as failed. */
    attempts: number;
    /** First retry delay (ms); doubles with each attempt, never shorter than an upstream Retry-After. */
    retryDelay: number;
    /** How long a worker's claim on a run lasts unrenewed (ms): a crashed worker's run is retried after about this long. */
    lockDuration: number;
    images: PrewarmImageConfig[];
    /** One-off runs of refs not in `images`: per minute (0 = refused), and how many of their status records are kept. */
    oneOff: { perMinute: number; maxRecords: number };
  };
  metrics: {
    enabled: boolean;
    /** CIDRs allowed to scrape /metrics; empty = any. */
    networks: string[];
    /** Serve /metrics on this port (on http.host) instead of http.port; null = the main port. */
    port: number | null;
  };
  log: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'; format: 'auto' | 'json' | 'pretty' };
  /** Hosted repositories (issue 14): rules in order, first match wins; none = everything mirrored. */
  repositories: RepositoryRule[];
  hosted: {
    /** An upload session untouched for this long is dropped with its staged bytes (ms). */
    uploadTtl: number;
    /** Largest manifest a PUT may carry (bytes). */
    maxManifestSize: number;
    /** Tag globs that may not be moved once pushed. */
    immutableTags: string[];
  };
  // --- ui (issue 15): the web UI at /ui/ and its OpenID Connect login (src/ui/).
  ui: {
    enabled: boolean;
    /** Login with OpenID Connect (authorization code + PKCE); all null = no login (read-only UI). */
    oidc: {
      /** The provider's issuer URL (Keycloak: `https://kc.example.com/realms/<realm>`). */
      issuer: string | null;
      clientId: string | null;
      /** Null for a public client (PKCE only). */
      clientSecret: string | null;
      scopes: string[];
      /** Dotted path of the roles claim in the ID token (or access token); its entries match `role:NAME` subjects. */
      rolesClaim: string;
    };
    /** Key material for the session and login cookies (at least 32 characters); required with ui.oidc. */
    sessionSecret: string | null;
  };
}

/** One `repositories` rule: a glob over the repository name as the client sends it. */
export interface RepositoryRule {
  /** `*` matches within one path component, `**` across components, `?` one character. */
  match: string;
  mode: 'hosted' | 'mirror';
}
