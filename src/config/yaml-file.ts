/**
 * Reading a YAML config file: syntax errors with their line and column, positions of every key
 * for later messages (`at berth.yaml:3:9`), and recognising a registry:2 (Distribution)
 * `config.yml` handed to Berth by mistake, which gets a message pointing at the `REGISTRY_*`
 * environment support and at the Berth keys its settings become, instead of "unknown key version".
 */
import { LineCounter, isMap, isNode, isScalar, parseDocument, type Document } from 'yaml';
import { ConfigError } from './errors.js';
import type { ConfigPath, Source } from './layer.js';
import { isRecord } from './schema.js';

export function readYaml(text: string, fileName: string): { raw: unknown; source: Source } {
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
  const source: Source = (p, atKey) => positionOf(doc, lineCounter, fileName, p, atKey === true);
  refuseDistributionConfig(raw, fileName, source);
  // An empty file (or one with only comments) means "all defaults".
  return { raw: raw ?? {}, source };
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
// registry:2 config.yml

/** Keys only a Distribution config has; any one of them marks the file as one. */
const DISTRIBUTION_MARKERS: readonly ConfigPath[] = [
  ['version'],
  ['proxy'],
  ['storage', 'filesystem'],
  ['storage', 'inmemory'],
  ['storage', 'cache'],
  ['storage', 'delete'],
  ['storage', 'maintenance'],
  ['http', 'addr'],
  ['http', 'secret'],
];

/** What each Distribution setting becomes: its environment variable (read by Berth) and its Berth key. */
const DISTRIBUTION_EQUIVALENTS: ReadonlyArray<{ path: ConfigPath; variable: string; berth: string }> = [
  { path: ['proxy', 'remoteurl'], variable: 'REGISTRY_PROXY_REMOTEURL', berth: 'upstreams[].url' },
  { path: ['proxy', 'username'], variable: 'REGISTRY_PROXY_USERNAME', berth: 'upstreams[].username' },
  { path: ['proxy', 'password'], variable: 'REGISTRY_PROXY_PASSWORD', berth: 'upstreams[].password' },
  { path: ['storage', 'filesystem', 'rootdirectory'], variable: 'REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY', berth: 'storage.root' },
  { path: ['storage', 'delete', 'enabled'], variable: 'REGISTRY_STORAGE_DELETE_ENABLED', berth: 'storage.deleteEnabled' },
  { path: ['http', 'addr'], variable: 'REGISTRY_HTTP_ADDR', berth: 'http.host and http.port' },
  { path: ['http', 'headers'], variable: 'REGISTRY_HTTP_HEADERS_<NAME>', berth: 'http.headers' },
  { path: ['auth', 'token', 'realm'], variable: 'REGISTRY_AUTH_TOKEN_REALM', berth: 'auth.token.realm' },
  { path: ['auth', 'token', 'service'], variable: 'REGISTRY_AUTH_TOKEN_SERVICE', berth: 'auth.token.service' },
  { path: ['auth', 'token', 'issuer'], variable: 'REGISTRY_AUTH_TOKEN_ISSUER', berth: 'auth.token.issuer' },
  { path: ['auth', 'token', 'rootcertbundle'], variable: 'REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE', berth: 'auth.token.rootCertBundle' },
];

function valueAt(raw: unknown, p: ConfigPath): unknown {
  let v = raw;
  for (const seg of p) {
    if (!isRecord(v)) return undefined;
    v = v[String(seg)];
  }
  return v;
}

/**
 * A Distribution config fails on its first key anyway ("unknown key version"); this says what the
 * file is and how to keep its settings: as REGISTRY_* variables, or as the Berth keys listed.
 */
function refuseDistributionConfig(raw: unknown, fileName: string, source: Source): void {
  if (!isRecord(raw)) return;
  const marker = DISTRIBUTION_MARKERS.find((p) => valueAt(raw, p) !== undefined);
  if (marker === undefined) return;
  const found = DISTRIBUTION_EQUIVALENTS.filter((e) => valueAt(raw, e.path) !== undefined);
  const shown = found.length > 0 ? found : DISTRIBUTION_EQUIVALENTS.slice(0, 4);
  const dotted = (p: ConfigPath): string => p.join('.');
  const variables = shown.map((e) => `${e.variable} (${dotted(e.path)})`).join(', ');
  const keys = shown.map((e) => `${dotted(e.path)} → ${e.berth}`).join(', ');
  throw new ConfigError({
    key: fileName,
    detail:
      `this is a registry:2 (Distribution) config.yml (it has "${dotted(marker)}"), not a Berth config. ` +
      `Berth reads Distribution's settings from REGISTRY_* environment variables instead: set ${variables} ` +
      `and start Berth without this file; or write a Berth config (config/berth.example.yaml) where ${keys}`,
    source: source(marker, true),
  });
}
