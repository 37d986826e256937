/**
 * `BERTH_<SECTION>_<KEY>` environment variables, and the text-to-value step every variable
 * (BERTH_* and REGISTRY_*) goes through. Kubernetes service-link variables that share the
 * BERTH_ prefix are recognised by shape (service-links.ts) and left alone.
 */
import { ConfigError } from './errors.js';
import { applyLayer, formatKey, located, setOwn, type ConfigPath, type Source } from './layer.js';
import { berthSchema, isRecord, splitList, yamlText, type ListNode, type ObjectNode, type SchemaNode } from './schema.js';
import { isServiceLink, serviceOf } from './service-links.js';
import { nearestName } from './suggest.js';

interface Slot {
  node: SchemaNode;
  holder: Record<string, unknown>;
  field: string;
  path: ConfigPath;
}

const BERTH_PREFIX = 'BERTH_';
/** Names the config file; every other BERTH_* variable must name a key (or be a service link). */
const BERTH_CONFIG = 'BERTH_CONFIG';

/**
 * `BERTH_<SECTION>_<KEY>`: segments are matched case-insensitively against the schema, and a key
 * may span several segments (`BERTH_HTTP_PUBLIC_URL` = `BERTH_HTTP_PUBLICURL`). List items are
 * addressed by index or by name (`BERTH_UPSTREAMS_0_PASSWORD`, `BERTH_UPSTREAMS_GHCR_IO_PASSWORD`);
 * map entries keep the variable's case (`BERTH_HTTP_HEADERS_X-Frame-Options`).
 */
export function applyBerthEnv(cfg: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  const names = Object.keys(env).filter((n) => n.startsWith(BERTH_PREFIX) && n !== BERTH_CONFIG);
  // Coarse before fine, so `BERTH_UPSTREAMS=[…]` lands before `BERTH_UPSTREAMS_0_PASSWORD` edits it.
  names.sort((a, b) => a.split('_').length - b.split('_').length || a.localeCompare(b));
  const setBy = new Map<string, string>();
  for (const name of names) {
    const text = env[name];
    if (text === undefined) continue;
    let slot: Slot;
    try {
      slot = locate(berthSchema, cfg, name.slice(BERTH_PREFIX.length).split('_'), [], name);
    } catch (err) {
      // Not a config key. The kubelet's `BERTH_PORT=tcp://…` & co. are expected here; anything
      // else is a typo and stays an error.
      if (err instanceof ConfigError && isServiceLink(name, text)) continue;
      throw err;
    }
    const key = formatKey(slot.path);
    const earlier = setBy.get(key);
    if (earlier !== undefined) throw new ConfigError(name, `sets ${key}, which ${earlier} already sets`);
    setBy.set(key, name);
    let value: unknown;
    try {
      value = valueFromText(slot.node, text, slot.holder[slot.field], slot.path, name);
    } catch (err) {
      throw err instanceof ConfigError && isServiceLink(name, text) ? serviceLinkClash(err, name) : err;
    }
    setOwn(slot.holder, slot.field, value);
  }
}

/**
 * A config variable whose value has a service link's shape: a Service whose name collides with a
 * config key (`berth-http` → `BERTH_HTTP_PORT=tcp://…`). It is not silently skipped, since it does
 * address a key; the message says where it came from and how to stop it.
 */
function serviceLinkClash(err: ConfigError, name: string): ConfigError {
  return new ConfigError({
    key: err.key,
    detail:
      `${err.detail}. This looks like a Kubernetes service link for a Service named "${serviceOf(name)}"; ` +
      'set enableServiceLinks: false in the pod spec (or rename the Service)',
    source: err.source,
  });
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
  const known = Object.keys(node.fields);
  throw new ConfigError(varName, `unknown environment variable: ${where} "${missing}" (known: ${known.join(', ')})${suggestVariable(varName, segs, known)}`);
}

/** `BERTH_HTTP_PROT` → `; did you mean BERTH_HTTP_PORT?` (the key may span segments: PUBLC_URL). */
function suggestVariable(varName: string, segs: string[], known: string[]): string {
  const prefix = varName.slice(0, varName.length - segs.join('_').length);
  for (let i = 1; i <= segs.length; i++) {
    const hit = nearestName(segs.slice(0, i).join(''), known);
    if (hit !== undefined) return `; did you mean ${[`${prefix}${hit.toUpperCase()}`, ...segs.slice(i)].join('_')}?`;
  }
  return '';
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
export function valueFromText(node: SchemaNode, text: string, current: unknown, p: ConfigPath, varName: string): unknown {
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

/** Set the key at a full path from text, parsed by that key's schema node. */
export function setFromText(cfg: Record<string, unknown>, p: ConfigPath, text: string, varName: string): void {
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
  // Only reachable from the fixed tables of REGISTRY_* paths; a typo there is a bug, not bad config.
  throw new Error(`schema has no key ${String(seg)}`);
}
