/**
 * Layering: one walk over the schema (schema.ts), shared by the YAML file, YAML-valued
 * environment variables and programmatic overrides. Each layer is laid over the one below and
 * checked against the schema as it goes; unknown keys are refused with the nearest known key.
 * Afterwards derived defaults are filled in and required keys nobody set are reported.
 */
import { ConfigError } from './errors.js';
import { isRecord, type ObjectNode, type SchemaNode } from './schema.js';
import { didYouMean } from './suggest.js';

export type ConfigPath = ReadonlyArray<string | number>;

/**
 * Describes where the value at a path came from (`at berth.yaml:3:9`, `from BERTH_HTTP_PORT`).
 * `atKey` asks for the key's own position rather than its value's (for unknown keys).
 */
export type Source = (p: ConfigPath, atKey?: boolean) => string | undefined;

/** `['upstreams', 0, 'tagTtl']` → `upstreams[0].tagTtl`. */
export function formatKey(p: ConfigPath): string {
  let out = '';
  for (const seg of p) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  return out === '' ? '<root>' : out;
}

export function defaultsOf(node: SchemaNode): unknown {
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
export function applyLayer(node: SchemaNode, raw: unknown, base: unknown, p: ConfigPath, source: Source): unknown {
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
        if (child === undefined) throw unknownKey(node, [...p, name]).from(source([...p, name], true));
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

/** `unknown key (known: a, b, c); did you mean "b"?` for the last segment of `p`. */
function unknownKey(node: ObjectNode, p: ConfigPath): ConfigError {
  const known = Object.keys(node.fields);
  const name = String(p[p.length - 1] ?? '');
  return new ConfigError(formatKey(p), `unknown key (known: ${known.join(', ')})${didYouMean(name, known)}`);
}

/** Fill derived defaults (read after every layer) and refuse required keys nobody set. */
export function fillDerived(node: ObjectNode, value: Record<string, unknown>, root: Record<string, unknown>, p: ConfigPath): void {
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

export function located(err: unknown, source: Source, p: ConfigPath): unknown {
  return err instanceof ConfigError ? err.from(source(p)) : err;
}

/** Map keys come from users (header names); never let one named `__proto__` touch a prototype. */
export function setOwn(target: Record<string, unknown>, name: string, value: unknown): void {
  Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true });
}
