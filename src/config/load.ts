/**
 * Configuration loading: the entry point of src/config/.
 *
 * Layers, later wins: schema defaults (schema.ts) → YAML file → Distribution's `REGISTRY_*`
 * variables → `BERTH_*` variables → programmatic overrides (CLI flags, tests). Then derived
 * defaults are filled in, cross-key rules are checked, and (loadConfig only) the files and
 * directories the config names are checked on disk. Every failure is a ConfigError that names
 * the key, and where the value came from when known.
 *
 * This folder imports only node built-ins and `yaml`; every other layer imports it.
 */
import { constants as fsConstants } from 'node:fs';
import { access, open, readFile, stat } from 'node:fs/promises';
import { BlockList, isIP } from 'node:net';
import path from 'node:path';
import { LineCounter, isMap, isNode, isScalar, parseDocument, type Document } from 'yaml';
import { ConfigError } from './errors.js';
import {
  POLICY_ACTIONS,
  berthSchema,
  isRecord,
  splitList,
  yamlText,
  type ListNode,
  type ObjectNode,
  type SchemaNode,
} from './schema.js';
import type { BerthConfig } from './types.js';

export type ConfigPath = ReadonlyArray<string | number>;

export interface LoadOptions {
  /** YAML file to read. `undefined`: the file named by `BERTH_CONFIG`, if any. `null`: no file. */
  file?: string | null;
  /** Environment to read `BERTH_*` / `REGISTRY_*` from. Default: `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** YAML-shaped values applied after the environment (`{ http: { port: 0 } }`). */
  overrides?: object;
}

export interface ParseOptions {
  /** YAML text, as if read from a file. */
  text?: string | null;
  /** Name used for the text in error messages. */
  fileName?: string;
  /** Environment to read. Default: none at all, so the result depends only on the arguments. */
  env?: NodeJS.ProcessEnv;
  overrides?: object;
}

/**
 * Load, layer and validate the configuration, including the checks that touch the disk (certificate
 * bundle and JWKS file readable, storage root writable). Async because it reads files; it is called
 * once at boot by `berth serve`, `berth worker` and `berth config check`.
 */
export async function loadConfig(opts: LoadOptions = {}): Promise<BerthConfig> {
  const env = opts.env ?? process.env;
  const file = opts.file === undefined ? nonEmpty(env['BERTH_CONFIG']) : opts.file;
  let text: string | null = null;
  if (file !== null) {
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new ConfigError(file, `cannot read config file: ${errorCode(err)}`);
    }
  }
  const config = parseConfig({
    text,
    ...(file === null ? {} : { fileName: file }),
    env,
    ...(opts.overrides === undefined ? {} : { overrides: opts.overrides }),
  });
  await checkConfigFiles(config);
  return config;
}

/**
 * Everything loadConfig does except touching the disk: synchronous and pure, for tests and tools
 * that need a complete, validated config from a few overrides (`parseConfig({ overrides })`).
 */
export function parseConfig(opts: ParseOptions = {}): BerthConfig {
  const env = opts.env ?? {};
  let cfg = defaultsOf(berthSchema) as Record<string, unknown>;
  if (opts.text !== undefined && opts.text !== null) {
    const { raw, source } = readYaml(opts.text, opts.fileName ?? '<config>');
    cfg = applyLayer(berthSchema, raw, cfg, [], source) as Record<string, unknown>;
  }
  applyRegistryEnv(cfg, env);
  applyBerthEnv(cfg, env);
  if (opts.overrides !== undefined) {
    cfg = applyLayer(berthSchema, opts.overrides, cfg, [], () => 'from overrides') as Record<string, unknown>;
  }
  fillDerived(berthSchema, cfg, cfg, []);
  // The one place the untyped tree becomes typed. schema.ts proves at compile time that the schema
  // produces exactly BerthConfig, and applyLayer/fillDerived have checked every value against it.
  const config = cfg as unknown as BerthConfig;
  validate(config);
  return config;
}

/** The configuration with nothing set: every default from the schema. */
export function defaultConfig(): BerthConfig {
  return parseConfig({});
}

/** `['upstreams', 0, 'tagTtl']` → `upstreams[0].tagTtl`. */
export function formatKey(p: ConfigPath): string {
  let out = '';
  for (const seg of p) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  return out === '' ? '<root>' : out;
}

// ---------------------------------------------------------------------------------------------
// YAML

/**
 * Describes where the value at a path came from (`at berth.yaml:3:9`, `from BERTH_HTTP_PORT`).
 * `atKey` asks for the key's own position rather than its value's (for unknown keys).
 */
type Source = (p: ConfigPath, atKey?: boolean) => string | undefined;

function readYaml(text: string, fileName: string): { raw: unknown; source: Source } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  const syntax = doc.errors[0];
  if (syntax !== undefined) {
    const pos = syntax.linePos?.[0] ?? lineCounter.linePos(syntax.pos[0]);
    // yaml appends " at line L, column C:" and a code frame; the position is reported on its own.
    const reason = (syntax.message.split('\n')[0] ?? syntax.message).replace(/ at line \d+, column \d+:?$/, '');
    throw new ConfigError({
      key: fileName,
      detail: `YAML syntax error at line ${pos.line}, column ${pos.col}: ${reason}`,
      line: pos.line,
      column: pos.col,
    });
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 }) as unknown;
  } catch (err) {
    throw new ConfigError(fileName, `cannot read YAML: ${err instanceof Error ? err.message : String(err)}`);
  }
  // An empty file (or one with only comments) means "all defaults".
  return { raw: raw ?? {}, source: (p, atKey) => positionOf(doc, lineCounter, fileName, p, atKey === true) };
}

function positionOf(doc: Document, lines: LineCounter, fileName: string, p: ConfigPath, atKey: boolean): string {
  const at = (offset: number): string => {
    const { line, col } = lines.linePos(offset);
    return `at ${fileName}:${line}:${col}`;
  };
  const last = p[p.length - 1];
  if (atKey && typeof last === 'string') {
    const parent: unknown = p.length === 1 ? doc.contents : doc.getIn(p.slice(0, -1), true);
    if (isMap(parent)) {
      const pair = parent.items.find((item) => (isScalar(item.key) ? String(item.key.value) : item.key) === last);
      if (pair !== undefined && isNode(pair.key) && pair.key.range) return at(pair.key.range[0]);
    }
  }
  // A value produced by a shorthand (`- alpine:3.20` read as `{ ref: … }`) has no node of its own
  // at the full path, so fall back to the nearest enclosing node that exists in the file.
  for (let n = p.length; n > 0; n--) {
    const node: unknown = doc.getIn(p.slice(0, n), true);
    if (isNode(node) && node.range) return at(node.range[0]);
  }
  return `in ${fileName}`;
}

// ---------------------------------------------------------------------------------------------
// Layering: one walk over the schema, shared by the file, YAML-valued variables and overrides.

function defaultsOf(node: SchemaNode): unknown {
  switch (node.kind) {
    case 'leaf':
      // Cloned so no two configs share a default array.
      return node.defaultValue === undefined ? undefined : structuredClone(node.defaultValue);
    case 'map':
      return {};
    case 'object':
      return Object.fromEntries(Object.entries(node.fields).map(([k, child]) => [k, defaultsOf(child)]));
    case 'list':
      return node.defaultItems.map((item, i) =>
        applyLayer(node.item, item, defaultsOf(node.item), ['<built-in>', i], () => undefined),
      );
  }
}

/**
 * Lay `raw` (YAML-shaped, unchecked) over `base` (already checked). Mappings merge key by key;
 * lists replace the list below them (a file's `upstreams` replaces the built-in docker.io, rather
 * than mixing with it); an explicit null on a mapping leaves it as it was, on a list empties it.
 */
function applyLayer(node: SchemaNode, raw: unknown, base: unknown, p: ConfigPath, source: Source): unknown {
  const key = formatKey(p);
  switch (node.kind) {
    case 'leaf': {
      if (raw === undefined) return base;
      try {
        return node.fromValue(raw, key);
      } catch (err) {
        throw located(err, source, p);
      }
    }
    case 'map': {
      if (raw === null || raw === undefined) return base;
      if (!isRecord(raw)) throw ConfigError.expected(key, node.expected, raw).from(source(p));
      const out: Record<string, unknown> = { ...(isRecord(base) ? base : {}) };
      for (const [name, value] of Object.entries(raw)) {
        setOwn(out, name, applyLayer(node.value, value, undefined, [...p, name], source));
      }
      return out;
    }
    case 'object': {
      const value = typeof raw === 'string' && node.shorthand !== undefined ? { [node.shorthand]: raw } : raw;
      if (value === null || value === undefined) return base;
      if (!isRecord(value)) {
        const expected = node.shorthand === undefined ? node.expected : `a string or ${node.expected}`;
        throw ConfigError.expected(key, expected, value).from(source(p));
      }
      const below = isRecord(base) ? base : (defaultsOf(node) as Record<string, unknown>);
      const out: Record<string, unknown> = { ...below };
      for (const [name, v] of Object.entries(value)) {
        const child = Object.hasOwn(node.fields, name) ? node.fields[name] : undefined;
        if (child === undefined) {
          const known = Object.keys(node.fields).join(', ');
          throw new ConfigError(formatKey([...p, name]), `unknown key (known: ${known})`).from(source([...p, name], true));
        }
        out[name] = applyLayer(child, v, below[name], [...p, name], source);
      }
      return out;
    }
    case 'list': {
      if (raw === null) return [];
      if (raw === undefined) return base;
      if (!Array.isArray(raw)) throw ConfigError.expected(key, node.expected, raw).from(source(p));
      return raw.map((item: unknown, i) => applyLayer(node.item, item, defaultsOf(node.item), [...p, i], source));
    }
  }
}

/** Fill derived defaults (read after every layer) and refuse required keys nobody set. */
function fillDerived(node: ObjectNode, value: Record<string, unknown>, root: Record<string, unknown>, p: ConfigPath): void {
  for (const [name, child] of Object.entries(node.fields)) {
    const here = [...p, name];
    const current = value[name];
    if (child.kind === 'leaf') {
      if (current !== undefined) continue;
      if (child.derive === undefined) throw new ConfigError(formatKey(here), 'required, but not set');
      value[name] = child.derive({ siblings: value, root });
    } else if (child.kind === 'object' && isRecord(current)) {
      fillDerived(child, current, root, here);
    } else if (child.kind === 'list' && Array.isArray(current)) {
      current.forEach((item: unknown, i) => {
        if (isRecord(item)) fillDerived(child.item, item, root, [...here, i]);
      });
    }
  }
}

function located(err: unknown, source: Source, p: ConfigPath): unknown {
  return err instanceof ConfigError ? err.from(source(p)) : err;
}

/** Map keys come from users (header names); never let one named `__proto__` touch a prototype. */
function setOwn(target: Record<string, unknown>, name: string, value: unknown): void {
  Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true });
}

// ---------------------------------------------------------------------------------------------
// Environment: BERTH_*

interface Slot {
  node: SchemaNode;
  holder: Record<string, unknown>;
  field: string;
  path: ConfigPath;
}

const BERTH_PREFIX = 'BERTH_';
/** Names the config file; every other BERTH_* variable must name a key. */
const BERTH_CONFIG = 'BERTH_CONFIG';

/**
 * `BERTH_<SECTION>_<KEY>`: segments are matched case-insensitively against the schema, and a key
 * may span several segments (`BERTH_HTTP_PUBLIC_URL` = `BERTH_HTTP_PUBLICURL`). List items are
 * addressed by index or by name (`BERTH_UPSTREAMS_0_PASSWORD`, `BERTH_UPSTREAMS_GHCR_IO_PASSWORD`);
 * map entries keep the variable's case (`BERTH_HTTP_HEADERS_X-Frame-Options`).
 */
function applyBerthEnv(cfg: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  const names = Object.keys(env).filter((n) => n.startsWith(BERTH_PREFIX) && n !== BERTH_CONFIG);
  // Coarse before fine, so `BERTH_UPSTREAMS=[…]` lands before `BERTH_UPSTREAMS_0_PASSWORD` edits it.
  names.sort((a, b) => a.split('_').length - b.split('_').length || a.localeCompare(b));
  const setBy = new Map<string, string>();
  for (const name of names) {
    const text = env[name];
    if (text === undefined) continue;
    const slot = locate(berthSchema, cfg, name.slice(BERTH_PREFIX.length).split('_'), [], name);
    const key = formatKey(slot.path);
    const earlier = setBy.get(key);
    if (earlier !== undefined) throw new ConfigError(name, `sets ${key}, which ${earlier} already sets`);
    setBy.set(key, name);
    setOwn(slot.holder, slot.field, valueFromText(slot.node, text, slot.holder[slot.field], slot.path, name));
  }
}

function locate(node: ObjectNode, holder: Record<string, unknown>, segs: string[], p: ConfigPath, varName: string): Slot {
  let leafWithRest: string | undefined;
  for (let i = 1; i <= segs.length; i++) {
    const wanted = segs.slice(0, i).join('').toLowerCase();
    const field = Object.keys(node.fields).find((k) => k.toLowerCase() === wanted);
    const child = field === undefined ? undefined : node.fields[field];
    if (field === undefined || child === undefined) continue;
    const rest = segs.slice(i);
    const here = [...p, field];
    if (rest.length === 0) return { node: child, holder, field, path: here };
    const value = holder[field];
    if (child.kind === 'object' && isRecord(value)) return locate(child, value, rest, here, varName);
    if (child.kind === 'map' && isRecord(value)) {
      const entry = rest.join('_');
      return { node: child.value, holder: value, field: entry, path: [...here, entry] };
    }
    if (child.kind === 'list' && Array.isArray(value)) return locateItem(child, value, rest, here, varName);
    leafWithRest = formatKey(here);
  }
  if (leafWithRest !== undefined) {
    throw new ConfigError(varName, `unknown environment variable: ${leafWithRest} is a single value, not a section`);
  }
  const missing = (segs[0] ?? '').toLowerCase();
  const where = p.length === 0 ? 'there is no top-level key' : `${formatKey(p)} has no key`;
  const known = Object.keys(node.fields).join(', ');
  throw new ConfigError(varName, `unknown environment variable: ${where} "${missing}" (known: ${known})`);
}

function locateItem(node: ListNode, items: unknown[], segs: string[], p: ConfigPath, varName: string): Slot {
  const identity = node.item.identity;
  const names = identity === undefined ? [] : items.map((it) => (isRecord(it) ? String(it[identity]) : ''));
  // Leave at least one segment for the key inside the item.
  for (let j = 1; j < segs.length; j++) {
    const selector = segs.slice(0, j).join('_');
    const index = j === 1 && /^\d+$/.test(selector) ? Number(selector) : names.findIndex((n) => envName(n) === selector.toUpperCase());
    const item = items[index];
    if (index >= 0 && isRecord(item)) return locate(node.item, item, segs.slice(j), [...p, index], varName);
  }
  const by = identity === undefined ? '' : ` or by ${identity} (${names.map(envName).join(', ')})`;
  const range = items.length === 0 ? 'the list is empty' : `name one by index 0-${items.length - 1}${by}`;
  throw new ConfigError(varName, `unknown environment variable: ${formatKey(p)} has no item "${segs[0] ?? ''}"; ${range}`);
}

/** `ghcr.io` → `GHCR_IO`, the form an upstream's name takes inside a variable name. */
function envName(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

/** An environment variable's text for any node: leaves parse text, containers take YAML flow. */
function valueFromText(node: SchemaNode, text: string, current: unknown, p: ConfigPath, varName: string): unknown {
  const key = formatKey(p);
  const source: Source = () => `from ${varName}`;
  const trimmed = text.trim();
  switch (node.kind) {
    case 'leaf':
      try {
        return node.fromText(text, key);
      } catch (err) {
        throw located(err, source, p);
      }
    case 'list':
      // `alpine:3.20,nginx:1.27` for the string shorthand, `[{…}, …]` for anything richer.
      return applyLayer(node, trimmed.startsWith('[') ? envYaml(text, key, varName) : splitList(text), current, p, source);
    case 'object':
    case 'map':
      if (!trimmed.startsWith('{')) throw ConfigError.expected(key, 'a YAML mapping like "{key: value}"', text).from(`from ${varName}`);
      return applyLayer(node, envYaml(text, key, varName), current, p, source);
  }
}

function envYaml(text: string, key: string, varName: string): unknown {
  try {
    return yamlText(text, key);
  } catch (err) {
    throw located(err, () => `from ${varName}`, []);
  }
}

// ---------------------------------------------------------------------------------------------
// Environment: REGISTRY_* (Distribution's names, so a registry:2 deployment drops in)

const REGISTRY_PATHS: Readonly<Record<string, ConfigPath>> = {
  REGISTRY_AUTH_TOKEN_REALM: ['auth', 'token', 'realm'],
  REGISTRY_AUTH_TOKEN_SERVICE: ['auth', 'token', 'service'],
  REGISTRY_AUTH_TOKEN_ISSUER: ['auth', 'token', 'issuer'],
  REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE: ['auth', 'token', 'rootCertBundle'],
  REGISTRY_AUTH_TOKEN_JWKS: ['auth', 'token', 'jwks'],
  REGISTRY_STORAGE_DELETE_ENABLED: ['storage', 'deleteEnabled'],
  REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: ['storage', 'root'],
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
function applyRegistryEnv(cfg: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
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

/** Set the key at a full path from text, parsed by that key's schema node. */
function setFromText(cfg: Record<string, unknown>, p: ConfigPath, text: string, varName: string): void {
  let node: SchemaNode = berthSchema;
  let holder: unknown = cfg;
  for (let i = 0; i < p.length - 1; i++) {
    const seg = p[i];
    if (seg === undefined) break;
    node = childNode(node, seg);
    holder = isRecord(holder) ? holder[String(seg)] : Array.isArray(holder) ? (holder as unknown[])[Number(seg)] : undefined;
  }
  const last = p[p.length - 1];
  if (last === undefined || !isRecord(holder)) throw new Error(`no config slot at ${formatKey(p)}`);
  const field = String(last);
  setOwn(holder, field, valueFromText(childNode(node, last), text, holder[field], p, varName));
}

function childNode(node: SchemaNode, seg: string | number): SchemaNode {
  if (node.kind === 'object') {
    const child = node.fields[String(seg)];
    if (child !== undefined) return child;
  } else if (node.kind === 'list') {
    return node.item;
  } else if (node.kind === 'map') {
    return node.value;
  }
  // Only reachable from the fixed tables above; a typo there is a bug, not bad config.
  throw new Error(`schema has no key ${String(seg)}`);
}

// ---------------------------------------------------------------------------------------------
// Cross-key validation (no I/O). May normalise values: trailing slashes off URLs, and
// defaultUpstream given as an alias becomes the upstream's name.

function validate(cfg: BerthConfig): void {
  const { http, storage, auth, prewarm } = cfg;

  if (http.publicUrl !== null) http.publicUrl = httpUrl(http.publicUrl, 'http.publicUrl');
  http.cors.origins.forEach((origin, i) => {
    if (origin !== '*') httpUrl(origin, `http.cors.origins[${i}]`);
  });
  http.trustedProxies.forEach((cidr, i) => checkCidr(cidr, `http.trustedProxies[${i}]`));
  for (const [name, value] of Object.entries(http.headers)) {
    const key = `http.headers.${name}`;
    // RFC 9110 token characters; anything else would make Node refuse the header at request time.
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new ConfigError(key, 'is not a valid header name');
    if (/[\r\n\0]/.test(value)) throw new ConfigError(key, 'header value contains a line break or NUL');
  }

  if (storage.maxSize !== null && storage.maxSize <= 0) throw ConfigError.expected('storage.maxSize', 'a size above zero or null', storage.maxSize);
  if (!(storage.lowWatermark > 0 && storage.lowWatermark < storage.highWatermark && storage.highWatermark <= 1)) {
    throw new ConfigError(
      'storage.lowWatermark',
      `watermarks must satisfy 0 < lowWatermark < highWatermark <= 1, got ${storage.lowWatermark} and ${storage.highWatermark}`,
    );
  }
  positive(storage.gcInterval, 'storage.gcInterval');

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

  if (cfg.redis.url !== null) {
    const url = parseUrl(cfg.redis.url);
    if (url === null || (url.protocol !== 'redis:' && url.protocol !== 'rediss:')) {
      throw ConfigError.expected('redis.url', 'a URL like "redis://host:6379"', maskUrlPassword(cfg.redis.url));
    }
  }

  checkCron(prewarm.schedule, 'prewarm.schedule');
  prewarm.images.forEach((image, i) => {
    const key = `prewarm.images[${i}]`;
    if (/\s/.test(image.ref)) throw ConfigError.expected(`${key}.ref`, 'an image reference like "docker.io/library/alpine:3.20"', image.ref);
    image.platforms.forEach((platform, j) => {
      if (!/^[a-z0-9]+\/[a-z0-9_]+(?:\/[a-z0-9]+)?$/i.test(platform)) {
        throw ConfigError.expected(`${key}.platforms[${j}]`, 'a platform like "linux/amd64" or "linux/arm64/v8"', platform);
      }
    });
    checkCron(image.schedule, `${key}.schedule`);
  });
  // log.level and storage.driver need no check here: their schema enums refuse anything else.
}

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

function looksLikeUrl(s: string): boolean {
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
// Checks on disk (loadConfig only)

/**
 * The files and directories the config names: the certificate bundle and a JWKS file must be
 * readable; the storage root must be a writable directory, or creatable under its nearest
 * existing parent. Exported for `berth config check`.
 */
export async function checkConfigFiles(cfg: BerthConfig): Promise<void> {
  const { rootCertBundle, jwks } = cfg.auth.token;
  if (rootCertBundle !== null) await readableFile(rootCertBundle, 'auth.token.rootCertBundle');
  if (jwks !== null && !looksLikeUrl(jwks)) await readableFile(jwks, 'auth.token.jwks');
  if (cfg.storage.driver === 'filesystem') await writableDirectory(cfg.storage.root, 'storage.root');
}

async function readableFile(file: string, key: string): Promise<void> {
  let code: string | null = null;
  try {
    const handle = await open(file, 'r');
    try {
      if (!(await handle.stat()).isFile()) code = 'EISDIR';
    } finally {
      await handle.close();
    }
  } catch (err) {
    code = errorCode(err);
  }
  if (code !== null) throw new ConfigError(key, `cannot read ${file}: ${code}`);
}

async function writableDirectory(dir: string, key: string): Promise<void> {
  const abs = path.resolve(dir);
  const existing = await nearestExisting(abs, key);
  if (!existing.isDirectory) {
    const detail = existing.path === abs ? `${abs} is not a directory` : `cannot create ${abs}: ${existing.path} is not a directory`;
    throw new ConfigError(key, detail);
  }
  try {
    // Writing needs search (X) permission too, or entries cannot be created inside.
    await access(existing.path, fsConstants.W_OK | fsConstants.X_OK);
  } catch (err) {
    const detail = existing.path === abs ? `${abs} is not writable` : `cannot create ${abs}: ${existing.path} is not writable`;
    throw new ConfigError(key, `${detail} (${errorCode(err)})`);
  }
}

async function nearestExisting(abs: string, key: string): Promise<{ path: string; isDirectory: boolean }> {
  let current = abs;
  for (;;) {
    try {
      return { path: current, isDirectory: (await stat(current)).isDirectory() };
    } catch (err) {
      const code = errorCode(err);
      // ENOTDIR: some parent is a file; keep walking up to report that file.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new ConfigError(key, `cannot use ${abs}: ${code}`);
      const parent = path.dirname(current);
      if (parent === current) throw new ConfigError(key, `cannot use ${abs}: no parent directory exists`);
      current = parent;
    }
  }
}

function errorCode(err: unknown): string {
  if (isRecord(err) && typeof err['code'] === 'string') return err['code'];
  return err instanceof Error ? err.message : String(err);
}

function nonEmpty(s: string | undefined): string | null {
  return s === undefined || s.trim() === '' ? null : s;
}

// ---------------------------------------------------------------------------------------------
// Printing

/**
 * The loaded config in the shape a YAML file takes: durations and sizes spelled as text again
 * (`tagTtl: 10m`, not milliseconds), so `berth config check` output can be fed back as a config.
 */
export function toYamlShape(cfg: BerthConfig): unknown {
  return shape(berthSchema, cfg);
}

function shape(node: SchemaNode, value: unknown): unknown {
  switch (node.kind) {
    case 'leaf':
      return node.toYaml(value);
    case 'map':
      return value;
    case 'list':
      return Array.isArray(value) ? value.map((item: unknown) => shape(node.item, item)) : value;
    case 'object': {
      if (!isRecord(value)) return value;
      const out: Record<string, unknown> = {};
      for (const [k, child] of Object.entries(node.fields)) out[k] = shape(child, value[k]);
      return out;
    }
  }
}

const SECRET_KEY = /password|passphrase|secret|token|api_?key|credential|authorization|cookie/i;
const MASK = '***';

/**
 * A deep copy safe to print or serve from the admin API: string values under secret-sounding keys
 * (password, secret, token, …) become `***`, and so does the password inside any URL
 * (`redis://:pw@host` → `redis://:***@host`). Nulls stay null, so "unset" remains visible.
 */
export function maskSecrets(cfg: unknown): unknown {
  return mask(cfg, false);
}

/**
 * `secret` covers a string or a list of strings under a secret key; a mapping under one (such as
 * `auth.token`, whose realm and issuer are public) is judged key by key instead.
 */
function mask(value: unknown, secret: boolean): unknown {
  if (typeof value === 'string') return secret ? MASK : maskUrlPassword(value);
  if (Array.isArray(value)) return value.map((item: unknown) => mask(item, secret));
  if (isRecord(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) setOwn(out, k, mask(v, SECRET_KEY.test(k)));
    return out;
  }
  return value;
}

function maskUrlPassword(s: string): string {
  // Text surgery rather than URL round-tripping, so the rest of the string prints as written.
  return s.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*:)[^@/?#]*@/i, `$1${MASK}@`);
}
