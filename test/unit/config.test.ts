// Config loading: defaults, YAML, BERTH_* and REGISTRY_* variables, validation messages that name
// the key, and secret masking. Files live in a fresh temp directory per test run.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../src/config/errors.js';
import { defaultConfig, loadConfig, maskSecrets, parseConfig } from '../../src/config/load.js';
import { formatDuration, formatSize, parseDuration, parseSize } from '../../src/config/units.js';
import type { BerthConfig } from '../../src/config/types.js';
import { makeCertificate } from '../helpers/keycloak.js';

let dir = '';
let certFile = '';

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'berth-config-'));
  certFile = path.join(dir, 'localhost_trust_chain.pem');
  // A real certificate: the bundle's blocks are parsed at load time, as auth/ will parse them.
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await writeFile(certFile, makeCertificate({ subjectKey: publicKey, signerKey: privateKey, subject: 'berth-config-test' }));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Write a YAML file in the temp dir; the storage root points into the temp dir too. */
async function yamlFile(name: string, body: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, body);
  return file;
}

/** Load with a storage root in the temp dir, so tests never depend on the working directory. */
function load(opts: { file?: string | null; env?: NodeJS.ProcessEnv; overrides?: object } = {}): Promise<BerthConfig> {
  return loadConfig({
    file: opts.file ?? null,
    env: { BERTH_STORAGE_ROOT: path.join(dir, 'data'), ...opts.env },
    ...(opts.overrides === undefined ? {} : { overrides: opts.overrides }),
  });
}

/** Assert a ConfigError for `key` whose message matches `message`. */
function isConfigError(key: string, message: RegExp | string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_BERTH_CONFIG');
    assert.equal(err.key, key);
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  };
}

describe('defaults', () => {
  it('loads every documented default when there is no file and no environment', async () => {
    // parseConfig is loadConfig without the disk checks, which would depend on the working directory.
    const cfg = parseConfig({ env: {} });
    assert.deepEqual(cfg.http, {
      host: '0.0.0.0',
      port: 5000,
      publicUrl: null,
      cors: { origins: [] },
      trustedProxies: [],
      headers: {},
      adminNetworks: ['127.0.0.0/8', '::1/128'],
      maxConnections: null,
      headersTimeout: 30_000,
      requestTimeout: 600_000,
      idleTimeout: 120_000,
      keepAliveTimeout: 5_000,
      tls: { certificate: null, key: null, reloadInterval: 2_000 },
    });
    assert.deepEqual(cfg.storage, {
      driver: 'filesystem',
      root: './data',
      maxSize: null,
      highWatermark: 0.95,
      lowWatermark: 0.85,
      deleteEnabled: false,
      gcInterval: 3_600_000,
      s3: {
        endpoint: null, region: 'us-east-1', bucket: null, prefix: '', forcePathStyle: true, accessKeyId: null, secretAccessKey: null,
        redirect: { enabled: false, publicEndpoint: null, ttl: 600_000, minSize: 1024 * 1024 },
      },
    });
    assert.deepEqual(cfg.upstreams, [
      {
        name: 'docker.io',
        url: 'https://registry-1.docker.io',
        aliases: ['index.docker.io', 'registry-1.docker.io'],
        username: null,
        password: null,
        tagTtl: 600_000,
        staleWhileRevalidate: 0,
        maxFails: 5,
        failTimeout: 30_000,
        maxConnections: 64,
        notFoundTtl: 0,
        connectTimeout: 10_000,
        headersTimeout: 30_000,
        bodyTimeout: 60_000,
        libraryPrefix: true,
        realmHosts: ['auth.docker.io'],
        maxBodySize: 4 * 1024 * 1024,
        maxTokenSize: 64 * 1024,
        maxTags: 100_000,
        requestDeadline: 60_000,
      },
    ]);
    assert.equal(cfg.defaultUpstream, 'docker.io');
    assert.deepEqual(cfg.auth, {
      mode: 'none',
      token: { realm: null, service: null, issuer: null, rootCertBundle: null, jwks: null, jwksRefresh: 300_000 },
      anonymous: { pull: false, networks: [] },
      policy: [],
    });
    assert.deepEqual(cfg.redis, { url: null, prefix: 'berth' });
    assert.deepEqual(cfg.prewarm, {
      schedule: '0 */6 * * *', reservePulls: 10, concurrency: 2, attempts: 5, retryDelay: 30_000, lockDuration: 30_000, images: [],
      oneOff: { perMinute: 10, maxRecords: 50 },
    });
    assert.deepEqual(cfg.metrics, { enabled: true, networks: [], port: null });
    assert.deepEqual(cfg.log, { level: 'info', format: 'auto' });

    const loaded = await load();
    assert.deepEqual(loaded, { ...cfg, storage: { ...cfg.storage, root: path.join(dir, 'data') } });
  });

  it('gives each call its own copy, so mutating one config never leaks into the next', () => {
    const a = defaultConfig();
    a.upstreams[0]?.aliases.push('mutated.example');
    a.http.cors.origins.push('https://x.example');
    const b = defaultConfig();
    assert.deepEqual(b.upstreams[0]?.aliases, ['index.docker.io', 'registry-1.docker.io']);
    assert.deepEqual(b.http.cors.origins, []);
  });

  it('reads the file named by BERTH_CONFIG when no file is passed', async () => {
    const file = await yamlFile('via-env.yaml', 'http:\n  port: 5123\n');
    const cfg = await loadConfig({ env: { BERTH_CONFIG: file, BERTH_STORAGE_ROOT: path.join(dir, 'data') } });
    assert.equal(cfg.http.port, 5123);
  });

  it('names the config file when it cannot be read', async () => {
    const missing = path.join(dir, 'missing.yaml');
    await assert.rejects(load({ file: missing }), isConfigError(missing, `config: ${missing}: cannot read config file: ENOENT`));
    await assert.rejects(
      loadConfig({ env: { BERTH_CONFIG: missing } }),
      isConfigError(missing, `config: ${missing}: cannot read config file: ENOENT (from BERTH_CONFIG)`),
    );
  });

  it('treats an empty file as all defaults', async () => {
    const cfg = await load({ file: await yamlFile('empty.yaml', '# nothing here\n') });
    assert.equal(cfg.http.port, 5000);
  });
});

describe('YAML file', () => {
  it('overrides defaults key by key and parses durations and sizes', async () => {
    const file = await yamlFile(
      'full.yaml',
      [
        'http:',
        '  port: 5001',
        '  publicUrl: https://mirror.example.com/',
        '  headers:',
        '    X-Content-Type-Options: [nosniff]',
        '    Access-Control-Allow-Methods: [GET, HEAD]',
        'storage:',
        `  root: ${path.join(dir, 'store')}`,
        '  maxSize: 50GiB',
        '  gcInterval: 30m',
        'upstreams:',
        '  - name: docker.io',
        '    url: https://registry-1.docker.io',
        '    tagTtl: 1h30m',
        '  - name: ghcr.io',
        '    url: https://ghcr.io',
        '    notFoundTtl: 30s',
        'defaultUpstream: docker.io',
        'log:',
        '  level: debug',
        '',
      ].join('\n'),
    );
    const cfg = await loadConfig({ file, env: {} });
    assert.equal(cfg.http.port, 5001);
    assert.equal(cfg.http.host, '0.0.0.0', 'keys the file does not name keep their defaults');
    assert.equal(cfg.http.publicUrl, 'https://mirror.example.com', 'trailing slash removed so paths can be appended');
    assert.deepEqual(cfg.http.headers, {
      'X-Content-Type-Options': 'nosniff',
      'Access-Control-Allow-Methods': 'GET, HEAD',
    });
    assert.equal(cfg.storage.maxSize, 50 * 2 ** 30);
    assert.equal(cfg.storage.gcInterval, 30 * 60_000);
    assert.equal(cfg.upstreams.length, 2, 'a file list replaces the built-in list');
    assert.equal(cfg.upstreams[0]?.tagTtl, 90 * 60_000);
    assert.deepEqual(cfg.upstreams[0]?.aliases, [], 'the built-in aliases are not merged into a replaced list');
    assert.equal(cfg.upstreams[1]?.notFoundTtl, 30_000);
    assert.equal(cfg.upstreams[1]?.tagTtl, 600_000, 'per-upstream defaults apply to file items');
    assert.equal(cfg.log.level, 'debug');
  });

  it('adds library/ only for docker.io unless an upstream says otherwise', () => {
    const cfg = parseConfig({
      text: [
        'upstreams:',
        '  - { name: docker.io, url: "https://registry-1.docker.io" }',
        '  - { name: ghcr.io, url: "https://ghcr.io" }',
        '  - { name: hub.local, url: "https://hub.local", libraryPrefix: true }',
      ].join('\n'),
    });
    assert.deepEqual(
      cfg.upstreams.map((u) => u.libraryPrefix),
      [true, false, true],
    );
  });

  it('reports a YAML syntax error with its line and column', () => {
    const text = 'http:\n  port: 5000\n   host: x\n';
    assert.throws(
      () => parseConfig({ text, fileName: 'berth.yaml' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.key, 'berth.yaml');
        assert.equal(err.line, 2);
        assert.equal(err.column, 9);
        assert.match(err.message, /^config: berth\.yaml: YAML syntax error at line 2, column 9: /);
        return true;
      },
    );
  });

  it('refuses duplicate keys, which YAML would otherwise resolve silently', () => {
    assert.throws(() => parseConfig({ text: 'http:\n  port: 1\n  port: 2\n', fileName: 'dup.yaml' }), isConfigError('dup.yaml', /unique/));
  });
});

describe('unknown keys and wrong types', () => {
  it('names a nested unknown key and lists the known ones', () => {
    assert.throws(
      () => parseConfig({ text: 'http:\n  prot: 5001\n', fileName: 'berth.yaml' }),
      isConfigError(
        'http.prot',
        'config: http.prot: unknown key (known: host, port, publicUrl, cors, trustedProxies, headers, adminNetworks, maxConnections, headersTimeout, requestTimeout, idleTimeout, keepAliveTimeout, tls); did you mean "port"? (at berth.yaml:2:3)',
      ),
    );
  });

  it('names a top-level unknown key', () => {
    assert.throws(() => parseConfig({ text: 'htpp:\n  port: 1\n' }), isConfigError('htpp', /^config: htpp: unknown key \(known: http, storage, upstreams,/));
  });

  it('names an unknown key inside a list item by index', () => {
    const text = 'upstreams:\n  - name: ghcr.io\n    url: https://ghcr.io\n    tagTTL: 5m\n';
    assert.throws(() => parseConfig({ text }), isConfigError('upstreams[0].tagTTL', /unknown key \(known: name, url, aliases,/));
  });

  it('suggests the nearest known key for a misspelt one, in files and variables', () => {
    const text = 'upstreams:\n  - name: ghcr.io\n    url: https://ghcr.io\n    tagTTL: 5m\n';
    assert.throws(() => parseConfig({ text }), isConfigError('upstreams[0].tagTTL', /; did you mean "tagTtl"\?/));
    assert.throws(() => parseConfig({ text: 'storge:\n  root: /x\n' }), isConfigError('storge', /; did you mean "storage"\?/));
    assert.throws(() => parseConfig({ text: 'prewarm:\n  image: [alpine]\n' }), isConfigError('prewarm.image', /; did you mean "images"\?/));
    assert.throws(() => parseConfig({ env: { BERTH_HTTP_PROT: '5001' } }), isConfigError('BERTH_HTTP_PROT', /; did you mean BERTH_HTTP_PORT\?$/));
    assert.throws(() => parseConfig({ env: { BERTH_HTTP_PUBLC_URL: 'https://a.example' } }), isConfigError('BERTH_HTTP_PUBLC_URL', /did you mean BERTH_HTTP_PUBLICURL\?$/));
    // Nothing close: no guess is offered.
    assert.throws(() => parseConfig({ text: 'database:\n  url: x\n' }), (err: unknown) => err instanceof ConfigError && !/did you mean/.test(err.message));
  });

  it('names key, expected type and the value it got', () => {
    assert.throws(
      () => parseConfig({ text: 'http:\n  port: "5001x"\n' }),
      isConfigError('http.port', /^config: http\.port: expected an integer from 0 to 65535, got "5001x"/),
    );
    assert.throws(() => parseConfig({ text: 'http:\n  port: 70000\n' }), isConfigError('http.port', /got 70000/));
    assert.throws(() => parseConfig({ text: 'upstreams: {}\n' }), isConfigError('upstreams', /expected a list, got a mapping/));
    assert.throws(() => parseConfig({ text: 'http: [1]\n' }), isConfigError('http', /expected a mapping, got a list/));
    assert.throws(() => parseConfig({ text: 'metrics:\n  enabled: yes\n' }), isConfigError('metrics.enabled', /expected true or false, got "yes"/));
    assert.throws(() => parseConfig({ text: 'log:\n  level: verbose\n' }), isConfigError('log.level', /expected one of fatal, error, warn, info, debug, trace, silent/));
    assert.throws(
      () => parseConfig({ text: 'upstreams:\n  - name: docker.io\n    url: https://registry-1.docker.io\n    password: 123456\n' }),
      isConfigError('upstreams[0].password', /got 123456 \(quote it in YAML/),
    );
  });

  it('uses the documented message for a bad duration', () => {
    const text = 'upstreams:\n  - name: docker.io\n    url: https://registry-1.docker.io\n    tagTtl: ten\n';
    assert.throws(
      () => parseConfig({ text }),
      isConfigError('upstreams[0].tagTtl', /^config: upstreams\[0\]\.tagTtl: expected a duration like "10m", got "ten"/),
    );
  });

  it('requires keys that have no default', () => {
    assert.throws(() => parseConfig({ text: 'upstreams:\n  - name: ghcr.io\n' }), isConfigError('upstreams[0].url', /required, but not set/));
  });
});

describe('durations and sizes', () => {
  const durations: Array<[string | number, number]> = [
    ['500ms', 500],
    ['30s', 30_000],
    ['10m', 600_000],
    ['6h', 21_600_000],
    ['1d', 86_400_000],
    ['1h30m', 5_400_000],
    ['1m30s500ms', 90_500],
    ['1.5s', 1_500],
    ['0', 0],
    [' 10m ', 600_000],
    [0, 0],
  ];
  for (const [input, ms] of durations) {
    it(`parses duration ${JSON.stringify(input)} as ${ms}ms`, () => {
      assert.equal(parseDuration(input, 'k'), ms);
    });
  }

  const badDurations: Array<string | number> = ['ten', '', '-5s', '5x', '10M', '1h 30m', 'h', '1.h', -1, Number.NaN, Number.POSITIVE_INFINITY];
  for (const input of badDurations) {
    it(`refuses duration ${JSON.stringify(input) ?? String(input)}`, () => {
      assert.throws(() => parseDuration(input, 'upstreams[0].tagTtl'), isConfigError('upstreams[0].tagTtl', /expected a duration like "10m"/));
    });
  }

  // Is `600` seconds or milliseconds? A bare number was read as seconds; now it is refused, with the units named.
  for (const input of ['45', 30, '600', 1.5]) {
    it(`refuses the bare number ${JSON.stringify(input)} as a duration, naming the units`, () => {
      assert.throws(
        () => parseDuration(input, 'upstreams[0].tagTtl'),
        isConfigError('upstreams[0].tagTtl', /expected a duration like "10m", got .*: a duration needs a unit, one of ms, s, m, h, d \(write "[\d.]+s" for/),
      );
    });
  }

  it('names the key, the units and the file position for `tagTtl: 600` in a file', () => {
    const text = 'upstreams:\n  - name: docker.io\n    url: https://registry-1.docker.io\n    tagTtl: 600\n';
    assert.throws(
      () => parseConfig({ text, fileName: 'berth.yaml' }),
      isConfigError('upstreams[0].tagTtl', 'config: upstreams[0].tagTtl: expected a duration like "10m", got 600: a duration needs a unit, one of ms, s, m, h, d (write "600s" for 600 seconds) (at berth.yaml:4:13)'),
    );
    assert.throws(() => parseConfig({ env: { BERTH_UPSTREAMS_0_TAGTTL: '600' } }), isConfigError('upstreams[0].tagTtl', /needs a unit.*\(from BERTH_UPSTREAMS_0_TAGTTL\)/));
  });

  const sizes: Array<[string | number, number]> = [
    ['512MiB', 512 * 2 ** 20],
    ['50GiB', 50 * 2 ** 30],
    ['1.5GB', 1_500_000_000],
    ['100KB', 100_000],
    ['1024', 1024],
    ['10B', 10],
    ['2TB', 2e12],
    ['1TiB', 2 ** 40],
    ['512mib', 512 * 2 ** 20],
    ['20Gi', 20 * 2 ** 30],
    [1024, 1024],
  ];
  for (const [input, bytes] of sizes) {
    it(`parses size ${JSON.stringify(input)} as ${bytes} bytes`, () => {
      assert.equal(parseSize(input, 'k'), bytes);
    });
  }

  const badSizes: Array<string | number> = ['lots', '', '-1', '1.5', '5XB', '10 MiBs', -5, 1.5];
  for (const input of badSizes) {
    it(`refuses size ${JSON.stringify(input)}`, () => {
      assert.throws(() => parseSize(input, 'storage.maxSize'), isConfigError('storage.maxSize', /expected a size like "512MiB"/));
    });
  }

  it('formats durations and sizes for printing', () => {
    assert.equal(formatDuration(5_400_000), '1h30m');
    assert.equal(formatDuration(500), '500ms');
    assert.equal(formatDuration(0), '0s');
    assert.equal(formatDuration(86_400_000 + 1_000), '1d1s');
    assert.equal(formatSize(512 * 2 ** 20), '512MiB');
    assert.equal(formatSize(1.5 * 2 ** 30), '1.5GiB');
    assert.equal(formatSize(100), '100B');
    for (const ms of [1, 999, 61_000, 5_400_000, 90_061_001]) assert.equal(parseDuration(formatDuration(ms), 'k'), ms);
  });
});

describe('BERTH_* environment', () => {
  it('overrides the file, top-level, nested and list keys, matching key names case-insensitively', async () => {
    const file = await yamlFile('env-base.yaml', 'http:\n  port: 5001\nlog:\n  level: warn\n');
    const cfg = await loadConfig({
      file,
      env: {
        BERTH_HTTP_PORT: '5002',
        BERTH_HTTP_PUBLIC_URL: 'https://mirror.example.com',
        BERTH_STORAGE_ROOT: path.join(dir, 'env-data'),
        BERTH_STORAGE_MAXSIZE: '512MiB',
        BERTH_REDIS_URL: 'redis://redis:6379',
        BERTH_DEFAULTUPSTREAM: 'docker.io',
        BERTH_LOG_LEVEL: 'debug',
        BERTH_METRICS_ENABLED: 'false',
        BERTH_PREWARM_RESERVEPULLS: '3',
        BERTH_AUTH_ANONYMOUS_NETWORKS: '10.0.0.0/8, 192.168.0.0/16',
        BERTH_AUTH_ANONYMOUS_PULL: 'yes',
        BERTH_AUTH_TOKEN_REALM: 'https://kc.example.com/realms/ci/protocol/docker-v2/auth',
        BERTH_Http_Cors_Origins: '[https://ui.example.com]',
      },
    });
    assert.equal(cfg.http.port, 5002, 'environment beats the file');
    assert.equal(cfg.http.publicUrl, 'https://mirror.example.com');
    assert.equal(cfg.storage.root, path.join(dir, 'env-data'));
    assert.equal(cfg.storage.maxSize, 512 * 2 ** 20);
    assert.equal(cfg.redis.url, 'redis://redis:6379');
    assert.equal(cfg.log.level, 'debug');
    assert.equal(cfg.metrics.enabled, false);
    assert.equal(cfg.prewarm.reservePulls, 3);
    assert.deepEqual(cfg.auth.anonymous, { pull: true, networks: ['10.0.0.0/8', '192.168.0.0/16'] });
    assert.equal(cfg.auth.token.realm, 'https://kc.example.com/realms/ci/protocol/docker-v2/auth');
    assert.equal(cfg.auth.mode, 'none', 'BERTH_AUTH_TOKEN_* alone does not switch modes; BERTH_AUTH_MODE does');
    assert.deepEqual(cfg.http.cors.origins, ['https://ui.example.com']);
  });

  it('addresses upstreams by index or by name and sets headers with their case kept', () => {
    const cfg = parseConfig({
      text: 'upstreams:\n  - { name: docker.io, url: "https://registry-1.docker.io" }\n  - { name: ghcr.io, url: "https://ghcr.io" }\n',
      env: {
        BERTH_UPSTREAMS_0_TAGTTL: '1h',
        BERTH_UPSTREAMS_GHCR_IO_USERNAME: 'bot',
        BERTH_UPSTREAMS_GHCR_IO_PASSWORD: 's3cret',
        'BERTH_HTTP_HEADERS_X-Frame-Options': 'DENY',
      },
    });
    assert.equal(cfg.upstreams[0]?.tagTtl, 3_600_000);
    assert.equal(cfg.upstreams[1]?.username, 'bot');
    assert.equal(cfg.upstreams[1]?.password, 's3cret');
    assert.deepEqual(cfg.http.headers, { 'X-Frame-Options': 'DENY' });
  });

  it('takes prewarm images as a comma list, and images follow an environment-set schedule', () => {
    const cfg = parseConfig({
      text: 'prewarm:\n  images:\n    - { ref: "docker.io/library/nginx:1.27", schedule: "0 3 * * *" }\n',
      env: { BERTH_PREWARM_SCHEDULE: '0 * * * *', BERTH_UPSTREAMS_0_PASSWORD: 'p', BERTH_UPSTREAMS_0_USERNAME: 'u' },
    });
    assert.deepEqual(cfg.prewarm.images, [{ ref: 'docker.io/library/nginx:1.27', platforms: [], tags: null, schedule: '0 3 * * *' }]);
    const fromEnv = parseConfig({ env: { BERTH_PREWARM_IMAGES: 'alpine:3.20, busybox', BERTH_PREWARM_SCHEDULE: '0 * * * *' } });
    assert.deepEqual(
      fromEnv.prewarm.images.map((i) => [i.ref, i.schedule]),
      [
        ['alpine:3.20', '0 * * * *'],
        ['busybox', '0 * * * *'],
      ],
    );
  });

  it('names the variable when its value does not parse', () => {
    assert.throws(
      () => parseConfig({ env: { BERTH_HTTP_PORT: 'abc' } }),
      isConfigError('http.port', 'config: http.port: expected an integer from 0 to 65535, got "abc" (from BERTH_HTTP_PORT)'),
    );
    assert.throws(() => parseConfig({ env: { BERTH_STORAGE_GCINTERVAL: 'soon' } }), isConfigError('storage.gcInterval', /from BERTH_STORAGE_GCINTERVAL/));
  });

  it('refuses an unknown BERTH_ variable by name, but not BERTH_CONFIG', () => {
    assert.throws(
      () => parseConfig({ env: { BERTH_HTTP_PROT: '5001' } }),
      isConfigError('BERTH_HTTP_PROT', /unknown environment variable: http has no key "prot" \(known: host, port,/),
    );
    assert.throws(() => parseConfig({ env: { BERTH_LOGLEVEL: 'debug' } }), isConfigError('BERTH_LOGLEVEL', /no top-level key "loglevel"/));
    assert.throws(() => parseConfig({ env: { BERTH_HTTP_PORT_NUMBER: '1' } }), isConfigError('BERTH_HTTP_PORT_NUMBER', /http\.port is a single value/));
    assert.throws(() => parseConfig({ env: { BERTH_UPSTREAMS_QUAY_IO_URL: 'https://quay.io' } }), isConfigError('BERTH_UPSTREAMS_QUAY_IO_URL', /no item "QUAY"/));
    assert.equal(parseConfig({ env: { BERTH_CONFIG: '/etc/berth/berth.yaml' } }).http.port, 5000);
  });

  it('refuses two variables that set the same key', () => {
    assert.throws(
      () => parseConfig({ env: { BERTH_HTTP_PUBLICURL: 'https://a.example', BERTH_HTTP_PUBLIC_URL: 'https://b.example' } }),
      (err: unknown) => err instanceof ConfigError && /already sets/.test(err.message),
    );
  });

  it('lets overrides beat the environment', () => {
    const cfg = parseConfig({ env: { BERTH_HTTP_PORT: '5002' }, overrides: { http: { port: 0 }, upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:1', tagTtl: '1s' }] } });
    assert.equal(cfg.http.port, 0);
    assert.equal(cfg.upstreams[0]?.tagTtl, 1_000);
  });
});

describe('REGISTRY_* aliases (registry:2 drop-in)', () => {
  // Keycloak's "Docker Compose YAML" installation snippet for a docker-v2 client.
  const keycloak = (): NodeJS.ProcessEnv => ({
    REGISTRY_AUTH_TOKEN_REALM: 'http://localhost:8080/realms/master/protocol/docker-v2/auth',
    REGISTRY_AUTH_TOKEN_SERVICE: 'docker-test',
    REGISTRY_AUTH_TOKEN_ISSUER: 'http://localhost:8080/realms/master',
    REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE: certFile,
  });

  it('configures token auth from the Keycloak env block with REGISTRY_AUTH=token', async () => {
    const cfg = await load({ env: { REGISTRY_AUTH: 'token', ...keycloak() } });
    assert.deepEqual(cfg.auth.token, {
      realm: 'http://localhost:8080/realms/master/protocol/docker-v2/auth',
      service: 'docker-test',
      issuer: 'http://localhost:8080/realms/master',
      rootCertBundle: certFile,
      jwks: null,
      jwksRefresh: 300_000,
    });
    assert.equal(cfg.auth.mode, 'token');
  });

  it('turns token auth on from REGISTRY_AUTH_TOKEN_* alone, as registry:2 does', async () => {
    const cfg = await load({ env: keycloak() });
    assert.equal(cfg.auth.mode, 'token');
  });

  it('lets an explicit BERTH_AUTH_MODE win over the implied token mode', async () => {
    const cfg = await load({ env: { ...keycloak(), BERTH_AUTH_MODE: 'none' } });
    assert.equal(cfg.auth.mode, 'none');
  });

  it('refuses a Distribution auth type Berth does not implement instead of running open', () => {
    assert.throws(() => parseConfig({ env: { REGISTRY_AUTH: 'htpasswd' } }), isConfigError('REGISTRY_AUTH', /not supported by Berth/));
  });

  it('maps headers, delete, storage root, listen address and proxy credentials; ignores the rest', () => {
    const cfg = parseConfig({
      env: {
        'REGISTRY_HTTP_HEADERS_Access-Control-Allow-Origin': "['http://registry.example.com']",
        'REGISTRY_HTTP_HEADERS_Access-Control-Allow-Credentials': '[true]',
        'REGISTRY_HTTP_HEADERS_Access-Control-Allow-Methods': "['HEAD', 'GET', 'OPTIONS']",
        'REGISTRY_HTTP_HEADERS_Strict-Transport-Security': 'max-age=31536000; includeSubDomains',
        REGISTRY_STORAGE_DELETE_ENABLED: 'true',
        REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/var/lib/registry',
        REGISTRY_HTTP_ADDR: ':5001',
        REGISTRY_PROXY_REMOTEURL: 'https://registry-1.docker.io',
        REGISTRY_PROXY_USERNAME: 'hubuser',
        REGISTRY_PROXY_PASSWORD: 'hubtoken',
        REGISTRY_LOG_LEVEL: 'info',
        REGISTRY_HTTP_SECRET: 'whatever',
        REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR: 'inmemory',
      },
    });
    assert.deepEqual(cfg.http.headers, {
      'Access-Control-Allow-Origin': 'http://registry.example.com',
      'Access-Control-Allow-Credentials': 'true',
      'Access-Control-Allow-Methods': 'HEAD, GET, OPTIONS',
      'Strict-Transport-Security': 'max-age=31536000; includeSubDomains',
    });
    assert.equal(cfg.storage.deleteEnabled, true);
    assert.equal(cfg.storage.root, '/var/lib/registry');
    assert.equal(cfg.http.host, '0.0.0.0');
    assert.equal(cfg.http.port, 5001);
    assert.equal(cfg.upstreams[0]?.url, 'https://registry-1.docker.io');
    assert.equal(cfg.upstreams[0]?.username, 'hubuser');
    assert.equal(cfg.upstreams[0]?.password, 'hubtoken');
    assert.equal(cfg.log.level, 'info');
  });

  it('reads host:port and [v6]:port listen addresses, and names a bad one', () => {
    assert.deepEqual(parseConfig({ env: { REGISTRY_HTTP_ADDR: '127.0.0.1:6000' } }).http, { ...defaultConfig().http, host: '127.0.0.1', port: 6000 });
    assert.equal(parseConfig({ env: { REGISTRY_HTTP_ADDR: '[::1]:6001' } }).http.host, '::1');
    assert.throws(() => parseConfig({ env: { REGISTRY_HTTP_ADDR: 'localhost' } }), isConfigError('REGISTRY_HTTP_ADDR', /expected an address like ":5000"/));
  });

  it('lets BERTH_* win over the REGISTRY_* alias for the same key', () => {
    const cfg = parseConfig({ env: { REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: '/var/lib/registry', BERTH_STORAGE_ROOT: '/srv/berth' } });
    assert.equal(cfg.storage.root, '/srv/berth');
  });
});

describe('validation', () => {
  it('requires realm in token mode', () => {
    assert.throws(
      () => parseConfig({ text: `auth:\n  mode: token\n  token:\n    service: docker-test\n    issuer: https://kc/realms/x\n    rootCertBundle: ${certFile}\n` }),
      isConfigError('auth.token.realm', /^config: auth\.token\.realm: required when auth\.mode is token/),
    );
  });

  it('requires a way to verify signatures in token mode', () => {
    const text = 'auth:\n  mode: token\n  token: { realm: "https://kc/auth", service: s, issuer: i }\n';
    assert.throws(() => parseConfig({ text }), isConfigError('auth.token.rootCertBundle', /rootCertBundle or jwks/));
  });

  it('accepts a JWKS URL without touching the disk', async () => {
    const cfg = await load({
      overrides: { auth: { mode: 'token', token: { realm: 'https://kc/auth', service: 's', issuer: 'i', jwks: 'https://kc/realms/x/protocol/openid-connect/certs' } } },
    });
    assert.equal(cfg.auth.token.jwks, 'https://kc/realms/x/protocol/openid-connect/certs');
  });

  it('names an unreadable rootCertBundle with the path and error code', async () => {
    const missing = path.join(dir, 'no-such-bundle.pem');
    await assert.rejects(
      load({ env: { REGISTRY_AUTH_TOKEN_REALM: 'https://kc/auth', REGISTRY_AUTH_TOKEN_SERVICE: 's', REGISTRY_AUTH_TOKEN_ISSUER: 'i', REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE: missing } }),
      isConfigError('auth.token.rootCertBundle', `config: auth.token.rootCertBundle: cannot read ${missing}: ENOENT`),
    );
    await assert.rejects(load({ overrides: { auth: { token: { jwks: dir } } } }), isConfigError('auth.token.jwks', `config: auth.token.jwks: cannot read ${dir}: EISDIR`));
  });

  it('refuses an invalid CIDR by key and index', () => {
    assert.throws(
      () => parseConfig({ env: { BERTH_AUTH_ANONYMOUS_NETWORKS: '10.0.0.0/8,10.0.0.0/33' } }),
      isConfigError('auth.anonymous.networks[1]', /expected an IP address or CIDR like "10\.0\.0\.0\/8", got "10\.0\.0\.0\/33"/),
    );
    assert.throws(() => parseConfig({ text: 'http:\n  trustedProxies: [not-an-ip]\n' }), isConfigError('http.trustedProxies[0]', /CIDR/));
    const ok = parseConfig({ text: 'http:\n  trustedProxies: ["10.1.2.3", "fd00::/8", "172.16.0.0/12"]\n' });
    assert.equal(ok.http.trustedProxies.length, 3);
  });

  it('refuses an upstream alias that collides with another upstream name', () => {
    const text = [
      'upstreams:',
      '  - { name: docker.io, url: "https://registry-1.docker.io" }',
      '  - { name: mirror.local, url: "https://mirror.local", aliases: [Docker.io] }',
    ].join('\n');
    assert.throws(() => parseConfig({ text }), isConfigError('upstreams[1].aliases[0]', /"Docker\.io" is already used by upstreams\[0\]\.name/));
  });

  it('refuses a defaultUpstream that names no upstream, and resolves an alias to its name', () => {
    assert.throws(
      () => parseConfig({ text: 'defaultUpstream: quay.io\n' }),
      isConfigError('defaultUpstream', 'config: defaultUpstream: "quay.io" names no configured upstream (configured: docker.io)'),
    );
    assert.equal(parseConfig({ text: 'defaultUpstream: index.docker.io\n' }).defaultUpstream, 'docker.io');
  });

  it('refuses upstream URLs that are not http(s), or that end in /v2', () => {
    assert.throws(() => parseConfig({ text: 'upstreams:\n  - { name: x.io, url: "ftp://x.io" }\ndefaultUpstream: x.io\n' }), isConfigError('upstreams[0].url', /http:\/\/ or https:\/\//));
    assert.throws(() => parseConfig({ text: 'upstreams:\n  - { name: x.io, url: "https://x.io/v2/" }\ndefaultUpstream: x.io\n' }), isConfigError('upstreams[0].url', /without \/v2/));
  });

  it('requires 0 < lowWatermark < highWatermark <= 1', () => {
    assert.throws(() => parseConfig({ text: 'storage:\n  lowWatermark: 0.9\n  highWatermark: 0.8\n' }), isConfigError('storage.lowWatermark', /0 < lowWatermark < highWatermark <= 1/));
    assert.throws(() => parseConfig({ text: 'storage:\n  highWatermark: 1.5\n' }), isConfigError('storage.highWatermark', /from 0 to 1/));
  });

  it('checks cron patterns lightly', () => {
    assert.throws(() => parseConfig({ text: 'prewarm:\n  schedule: 6h\n' }), isConfigError('prewarm.schedule', /5 or 6 fields/));
    assert.throws(() => parseConfig({ text: 'prewarm:\n  images:\n    - { ref: alpine, schedule: "* * *" }\n' }), isConfigError('prewarm.images[0].schedule', /5 or 6 fields/));
    assert.equal(parseConfig({ text: 'prewarm:\n  schedule: "30 0 */6 * * *"\n' }).prewarm.schedule, '30 0 */6 * * *');
  });

  it('refuses a storage root that is a file', async () => {
    const file = path.join(dir, 'plain-file');
    await writeFile(file, 'x');
    await assert.rejects(load({ env: { BERTH_STORAGE_ROOT: file } }), isConfigError('storage.root', `config: storage.root: ${file} is not a directory`));
    await assert.rejects(load({ env: { BERTH_STORAGE_ROOT: path.join(file, 'sub') } }), isConfigError('storage.root', /cannot create .*plain-file is not a directory/));
  });

  it('refuses a storage root under a directory it cannot write', { skip: process.getuid?.() === 0 ? 'root can write anywhere' : false }, async () => {
    const lockedDir = await mkdtemp(path.join(dir, 'locked-'));
    await chmod(lockedDir, 0o500);
    try {
      await assert.rejects(load({ env: { BERTH_STORAGE_ROOT: path.join(lockedDir, 'data') } }), isConfigError('storage.root', /is not writable \(EACCES\)/));
    } finally {
      await chmod(lockedDir, 0o700);
    }
  });

  it('accepts a storage root that does not exist yet under a writable parent', async () => {
    const cfg = await load({ env: { BERTH_STORAGE_ROOT: path.join(dir, 'later', 'data') } });
    assert.equal(cfg.storage.root, path.join(dir, 'later', 'data'));
  });
});

describe('prewarm images', () => {
  it('normalises a string and an object to the same shape, with the schedule defaulting to prewarm.schedule', () => {
    const text = [
      'prewarm:',
      '  schedule: "0 2 * * *"',
      '  images:',
      '    - docker.io/library/alpine:3.20',
      '    - ref: docker.io/library/node',
      '      tags: "20.*"',
      '      platforms: [linux/amd64, linux/arm64/v8]',
      '      schedule: "0 4 * * *"',
      '    - { ref: ghcr.io/org/app:1 }',
    ].join('\n');
    assert.deepEqual(parseConfig({ text }).prewarm.images, [
      { ref: 'docker.io/library/alpine:3.20', platforms: [], tags: null, schedule: '0 2 * * *' },
      { ref: 'docker.io/library/node', platforms: ['linux/amd64', 'linux/arm64/v8'], tags: '20.*', schedule: '0 4 * * *' },
      { ref: 'ghcr.io/org/app:1', platforms: [], tags: null, schedule: '0 2 * * *' },
    ]);
  });

  it('names a bad platform and an unknown image key', () => {
    assert.throws(() => parseConfig({ text: 'prewarm:\n  images:\n    - { ref: alpine, platforms: [amd64] }\n' }), isConfigError('prewarm.images[0].platforms[0]', /linux\/amd64/));
    assert.throws(() => parseConfig({ text: 'prewarm:\n  images:\n    - { ref: alpine, tag: "3.*" }\n' }), isConfigError('prewarm.images[0].tag', /unknown key \(known: ref, platforms, tags, schedule\)/));
  });
});

describe('maskSecrets', () => {
  it('hides upstream passwords, the redis password and token-ish keys, and leaves the original alone', () => {
    const cfg = parseConfig({
      env: {
        BERTH_UPSTREAMS_0_USERNAME: 'hubuser',
        BERTH_UPSTREAMS_0_PASSWORD: 'dckr_pat_abc',
        BERTH_REDIS_URL: 'redis://default:hunter2@redis:6379/0',
        BERTH_AUTH_TOKEN_REALM: 'https://kc.example.com/auth',
      },
    });
    const masked = maskSecrets(cfg) as BerthConfig;
    assert.equal(masked.upstreams[0]?.password, '***');
    assert.equal(masked.upstreams[0]?.username, 'hubuser');
    assert.equal(masked.redis.url, 'redis://default:***@redis:6379/0');
    assert.equal(masked.auth.token.realm, 'https://kc.example.com/auth', 'auth.token is a section, not a secret');
    assert.equal(cfg.upstreams[0]?.password, 'dckr_pat_abc', 'the original is untouched');
    assert.equal(cfg.redis.url, 'redis://default:hunter2@redis:6379/0');
    assert.doesNotMatch(JSON.stringify(masked), /dckr_pat_abc|hunter2/);

    assert.deepEqual(maskSecrets({ nested: { apiKey: 'k', clientSecret: 's', accessToken: 't', tokens: ['a'], password: null } }), {
      nested: { apiKey: '***', clientSecret: '***', accessToken: '***', tokens: ['***'], password: null },
    });
  });
});

describe('Kubernetes service links', () => {
  /** What a kubelet injects for a Service `name` with one named TCP port. */
  function links(service: string, ip: string, port: number, portName: string): NodeJS.ProcessEnv {
    const v = service.toUpperCase().replace(/-/g, '_');
    return {
      [`${v}_SERVICE_HOST`]: ip,
      [`${v}_SERVICE_PORT`]: String(port),
      [`${v}_SERVICE_PORT_${portName.toUpperCase()}`]: String(port),
      [`${v}_PORT`]: `tcp://${ip}:${port}`,
      [`${v}_PORT_${port}_TCP`]: `tcp://${ip}:${port}`,
      [`${v}_PORT_${port}_TCP_PROTO`]: 'tcp',
      [`${v}_PORT_${port}_TCP_PORT`]: String(port),
      [`${v}_PORT_${port}_TCP_ADDR`]: ip,
    };
  }

  it('ignores the variables a kubelet injects for the Services berth and berth-redis', () => {
    const env = { ...links('berth', '10.96.0.11', 5000, 'http'), ...links('berth-redis', '10.96.0.12', 6379, 'redis'), BERTH_HTTP_PORT: '5001' };
    const cfg = parseConfig({ env });
    assert.equal(cfg.http.port, 5001, 'real BERTH_* variables still apply');
    assert.equal(cfg.redis.url, null, 'BERTH_REDIS_PORT is not redis.url or anything else');
    assert.deepEqual(cfg, parseConfig({ env: { BERTH_HTTP_PORT: '5001' } }), 'the links change nothing');
    // IPv6 cluster addresses and UDP ports have the same shapes.
    assert.doesNotThrow(() => parseConfig({ env: { BERTH_PORT: 'tcp://[fd00::11]:5000', BERTH_PORT_53_UDP: 'udp://10.0.0.1:53', BERTH_PORT_53_UDP_PROTO: 'udp' } }));
  });

  it('still refuses typos and look-alikes whose value is not what a kubelet writes', () => {
    const bad: NodeJS.ProcessEnv[] = [
      { BERTH_PORT: '5000' }, // meant BERTH_HTTP_PORT
      { BERTH_PORT: 'http://10.0.0.1:5000' },
      { BERTH_SERVICE_HOST: 'mirror.example.com' },
      { BERTH_SERVICE_PORT: 'http' },
      { BERTH_PORT_5000_TCP: 'tcp://10.0.0.1:6000' }, // the port in the name and the value differ
      { BERTH_PORT_5000_TCP_PROTO: 'udp' },
      { BERTH_PORT_5000_TCP_ADDR: 'berth' },
      { BERTH_HTTP_PROT: 'tcp://10.0.0.1:5000' },
    ];
    for (const env of bad) {
      const name = Object.keys(env)[0] ?? '';
      assert.throws(() => parseConfig({ env }), isConfigError(name, /unknown environment variable/), name);
    }
  });

  it('does not skip a real config key whose value looks like a link, and says where it came from', () => {
    // A Service named berth-http would inject BERTH_HTTP_PORT=tcp://…, which does address http.port.
    assert.throws(
      () => parseConfig({ env: { BERTH_HTTP_PORT: 'tcp://10.96.0.13:80' } }),
      isConfigError('http.port', /got "tcp:\/\/10\.96\.0\.13:80".*a Kubernetes service link for a Service named "berth-http"; set enableServiceLinks: false/),
    );
  });
});

describe('registry:2 config.yml', () => {
  it('is recognised and answered with the REGISTRY_* variables and Berth keys its settings become', () => {
    const text = [
      'version: 0.1',
      'log:',
      '  fields:',
      '    service: registry',
      'storage:',
      '  cache:',
      '    blobdescriptor: inmemory',
      '  filesystem:',
      '    rootdirectory: /var/lib/registry',
      'http:',
      '  addr: :5000',
      'proxy:',
      '  remoteurl: https://registry-1.docker.io',
      '',
    ].join('\n');
    assert.throws(() => parseConfig({ text, fileName: 'config.yml' }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.key, 'config.yml');
      assert.match(err.message, /^config: config\.yml: this is a registry:2 \(Distribution\) config\.yml \(it has "version"\), not a Berth config/);
      assert.match(err.message, /REGISTRY_PROXY_REMOTEURL \(proxy\.remoteurl\)/);
      assert.match(err.message, /REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY/);
      assert.match(err.message, /REGISTRY_HTTP_ADDR/);
      assert.match(err.message, /proxy\.remoteurl → upstreams\[\]\.url/);
      assert.match(err.message, /storage\.filesystem\.rootdirectory → storage\.root/);
      assert.doesNotMatch(err.message, /REGISTRY_AUTH_TOKEN_REALM/, 'only what the file has');
      assert.match(err.message, /\(at config\.yml:1:1\)$/);
      return true;
    });
  });

  it('is recognised without a version line too, by its proxy section', () => {
    assert.throws(() => parseConfig({ text: 'proxy:\n  remoteurl: https://registry-1.docker.io\n' }), isConfigError('<config>', /registry:2 \(Distribution\).*\(it has "proxy"\)/));
  });
});

describe('what serve would refuse later is refused at load', () => {
  it('refuses a pre-warm image on a registry that is not a configured upstream (loadConfig; parseConfig leaves it to the wiring)', async () => {
    const text = 'prewarm:\n  images:\n    - alpine:3.20\n    - quay.io/org/app:1\n';
    const file = await yamlFile('prewarm-quay.yaml', text);
    await assert.rejects(
      load({ file }),
      isConfigError('prewarm.images[1].ref', 'config: prewarm.images[1].ref: "quay.io/org/app:1" names the registry "quay.io", which is not a configured upstream (configured: docker.io); add it under upstreams or drop the image'),
    );
    const aliased = await yamlFile('prewarm-alias.yaml', 'prewarm:\n  images: [index.docker.io/library/alpine:3.20, localhost/x:1]\n');
    await assert.rejects(load({ file: aliased }), isConfigError('prewarm.images[1].ref', /"localhost", which is not a configured upstream/));
    assert.equal(parseConfig({ text }).prewarm.images.length, 2);
  });

  it('refuses invalid image references, saying what is wrong with them', () => {
    const cases: Array<[string, RegExp]> = [
      ['Alpine:3.20', /"Alpine:3\.20" is not a valid image reference: "Alpine" is not a valid repository name \(repository names are lower case\)$/],
      ['alpine:-x', /"-x" is not a valid tag/],
      ['alpine@sha256:abc', /a sha256 digest has 64 lowercase hex characters/],
      ['docker.io/Library/alpine', /"Library\/alpine" is not a valid repository name/],
      ['alpine 3.20', /expected an image reference like "docker\.io\/library\/alpine:3\.20"/],
    ];
    for (const [ref, message] of cases) {
      assert.throws(() => parseConfig({ overrides: { prewarm: { images: [ref] } } }), isConfigError('prewarm.images[0].ref', message), ref);
    }
    assert.doesNotThrow(() => parseConfig({ overrides: { prewarm: { images: [`registry.local:5000/a/b:1@sha256:${'a'.repeat(64)}`] } } }));
  });

  it('refuses a rootCertBundle that holds no certificate, or a broken one, naming the block and never OpenSSL\'s text', async () => {
    const token = (bundle: string) => ({ auth: { mode: 'token', token: { realm: 'https://kc.example/auth', service: 's', issuer: 'i', rootCertBundle: bundle } } });
    const garbage = path.join(dir, 'garbage.pem');
    await writeFile(garbage, 'this is not PEM\n');
    await assert.rejects(load({ overrides: token(garbage) }), isConfigError('auth.token.rootCertBundle', /holds no PEM certificate or public key/));
    const broken = path.join(dir, 'broken.pem');
    await writeFile(broken, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    await assert.rejects(load({ overrides: token(broken) }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.key, 'auth.token.rootCertBundle');
      assert.match(err.message, /broken\.pem block 1 is not a valid PEM certificate/);
      assert.doesNotMatch(err.message, /error:[0-9A-F]{8}|asn1|routines/i);
      return true;
    });
    const dsa = path.join(dir, 'x25519.pem');
    await writeFile(dsa, generateKeyPairSync('x25519').publicKey.export({ type: 'spki', format: 'pem' }));
    await assert.rejects(load({ overrides: token(dsa) }), isConfigError('auth.token.rootCertBundle', /block 1: a x25519 key cannot verify token signatures/));
    const jwks = path.join(dir, 'jwks.json');
    await writeFile(jwks, '{"not": "jwks"}');
    await assert.rejects(load({ overrides: { auth: { token: { jwks } } } }), isConfigError('auth.token.jwks', /not a JWKS document/));
  });

  it('refuses a storage root under /proc at once, instead of hanging', { skip: process.platform !== 'linux' ? 'no /proc' : false }, async () => {
    const started = Date.now();
    await assert.rejects(load({ env: { BERTH_STORAGE_ROOT: '/proc/berth-data' } }), isConfigError('storage.root', /cannot create \/proc\/berth-data: \/proc /));
    await assert.rejects(load({ env: { BERTH_STORAGE_ROOT: '/proc/self' } }), isConfigError('storage.root', /\/proc\/self/));
    assert.ok(Date.now() - started < 5_000);
  });

  it('leaves no probe behind in a usable storage root', async () => {
    const root = await mkdtemp(path.join(dir, 'probe-'));
    await load({ env: { BERTH_STORAGE_ROOT: root } });
    assert.deepEqual(await readdir(root), []);
  });
});
