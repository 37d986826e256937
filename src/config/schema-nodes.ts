/**
 * The node kinds of the configuration tree (leaf, map, object, list) and the builders schema.ts
 * uses to write the table: each leaf knows how to parse a YAML value or an environment variable's
 * text, its default, and how to print itself. No key of Berth's is defined here.
 */
import { parse as parseYaml } from 'yaml';
import { ConfigError, describeValue } from './errors.js';
import { DURATION_EXPECTED, SIZE_EXPECTED, formatDuration, formatSize, parseDuration, parseSize } from './units.js';
/** What a derived default may look at: the object it sits in and the whole (layered) config. */
export interface DeriveContext {
  readonly siblings: Readonly<Record<string, unknown>>;
  readonly root: Readonly<Record<string, unknown>>;
}

/** A scalar-like value: parsed from a YAML value, or from an environment variable's text. */
export interface LeafNode<T> {
  readonly kind: 'leaf';
  /** Used in `expected <this>, got …` messages. */
  readonly expected: string;
  /** The default; `undefined` when the key is required or derived. */
  readonly defaultValue: T | undefined;
  /**
   * A default computed from other keys once every layer is applied (so an environment variable
   * that changes `prewarm.schedule` also moves every image that did not name its own).
   */
  readonly derive: ((ctx: DeriveContext) => T) | undefined;
  fromValue(value: unknown, key: string): T;
  fromText(text: string, key: string): T;
  /** The value as a config file would spell it (durations and sizes back to `10m`, `50GiB`). */
  toYaml(value: T): unknown;
}

/** A string-to-string mapping with free keys (response headers). */
export interface MapNode {
  readonly kind: 'map';
  readonly expected: string;
  readonly value: LeafNode<string>;
}

export interface ObjectNode<F extends Fields = Fields> {
  readonly kind: 'object';
  readonly expected: string;
  readonly fields: F;
  /** A bare string in place of the object means `{ [shorthand]: string }` (prewarm images). */
  readonly shorthand: string | undefined;
  /** The field that names an item in a list, so `BERTH_UPSTREAMS_GHCR_IO_PASSWORD` can find it. */
  readonly identity: string | undefined;
}

export interface ListNode<I extends ObjectNode = ObjectNode> {
  readonly kind: 'list';
  readonly expected: string;
  readonly item: I;
  /** Raw (YAML-shaped) items; run through `item` like any file's items, so they get its defaults. */
  readonly defaultItems: readonly unknown[];
}

export type SchemaNode = LeafNode<unknown> | MapNode | ObjectNode | ListNode;
export interface Fields {
  readonly [key: string]: SchemaNode;
}

/** The TypeScript type a node produces once loaded. */
export type Infer<N> =
  N extends LeafNode<infer T>
    ? T
    : N extends MapNode
      ? Record<string, string>
      : N extends ListNode<infer I>
        ? Array<Infer<I>>
        : N extends ObjectNode<infer F>
          ? { -readonly [K in keyof F]: Infer<F[K]> }
          : never;

// ---------------------------------------------------------------------------------------------
// Leaf builders. Each knows its YAML form and its environment-variable (text) form.

interface LeafSpec<T> {
  expected: string;
  defaultValue?: T;
  derive?: (ctx: DeriveContext) => T;
  fromValue: (value: unknown, key: string) => T;
  fromText: (text: string, key: string) => T;
  toYaml?: (value: T) => unknown;
}

export function leaf<T>(spec: LeafSpec<T>): LeafNode<T> {
  return {
    kind: 'leaf',
    expected: spec.expected,
    defaultValue: spec.defaultValue,
    derive: spec.derive,
    fromValue: spec.fromValue,
    fromText: spec.fromText,
    toYaml: spec.toYaml ?? ((v: T) => v),
  };
}

/** Text. A key with neither default nor derive is required (an upstream's name and url). */
export function text(defaultValue: string | undefined, derive?: (ctx: DeriveContext) => string): LeafNode<string> {
  const expected = 'a non-empty string';
  return leaf<string>({
    expected,
    ...(defaultValue === undefined ? {} : { defaultValue }),
    ...(derive === undefined ? {} : { derive }),
    fromValue: (v, key) => {
      if (typeof v !== 'string' || v === '') throw ConfigError.expected(key, expected, v);
      return v;
    },
    fromText: (t, key) => {
      if (t === '') throw ConfigError.expected(key, expected, t);
      return t;
    },
  });
}

export const required = (): LeafNode<string> => text(undefined);

/** Text that may be empty (an S3 key prefix: "" means the bucket's top). */
export function textOrEmpty(defaultValue: string): LeafNode<string> {
  const expected = 'a string';
  return leaf<string>({
    expected,
    defaultValue,
    fromValue: (v, key) => {
      if (v === null) return '';
      if (typeof v !== 'string') throw ConfigError.expected(key, expected, v);
      return v;
    },
    fromText: (t) => t,
  });
}

/** Text or null; an empty environment variable means null, as `FOO=` in a compose file intends. */
export function nullableText(): LeafNode<string | null> {
  const expected = 'a string or null';
  return leaf<string | null>({
    expected,
    defaultValue: null,
    fromValue: (v, key) => {
      if (v === null) return null;
      if (typeof v !== 'string') throw ConfigError.expected(key, expected, v);
      return v === '' ? null : v;
    },
    fromText: (t) => (t === '' ? null : t),
  });
}

export function integer(defaultValue: number, min: number, max = Number.MAX_SAFE_INTEGER): LeafNode<number> {
  const expected = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
  const check = (v: unknown, key: string): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw ConfigError.expected(key, expected, v);
    }
    return v;
  };
  return leaf<number>({
    expected,
    defaultValue,
    fromValue: check,
    fromText: (t, key) => check(/^-?\d+$/.test(t.trim()) ? Number(t.trim()) : t, key),
  });
}

/** A fraction in [0, 1]; the strict ordering of watermarks is a cross-key check in validate.ts. */
export function fraction(defaultValue: number): LeafNode<number> {
  const expected = 'a number from 0 to 1';
  const check = (v: unknown, key: string): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) throw ConfigError.expected(key, expected, v);
    return v;
  };
  return leaf<number>({
    expected,
    defaultValue,
    fromValue: check,
    fromText: (t, key) => check(/^\d+(?:\.\d+)?$/.test(t.trim()) ? Number(t.trim()) : t, key),
  });
}

export function boolean(defaultValue: boolean | undefined, derive?: (ctx: DeriveContext) => boolean): LeafNode<boolean> {
  const expected = 'true or false';
  return leaf<boolean>({
    expected,
    ...(defaultValue === undefined ? {} : { defaultValue }),
    ...(derive === undefined ? {} : { derive }),
    // YAML 1.2 already turns `true`/`false` into booleans; `yes` stays a string there on purpose.
    fromValue: (v, key) => {
      if (typeof v !== 'boolean') throw ConfigError.expected(key, expected, v);
      return v;
    },
    // Environment text is looser because compose files and Helm charts are: 1/0, yes/no, on/off.
    fromText: (t, key) => {
      const s = t.trim().toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(s)) return true;
      if (['false', '0', 'no', 'off'].includes(s)) return false;
      throw ConfigError.expected(key, expected, t);
    },
  });
}

/** An integer or null (null: derived at start-up, or "not used"; see the key's documentation). */
export function nullableInteger(min: number, max = Number.MAX_SAFE_INTEGER): LeafNode<number | null> {
  const expected = `${max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`} or null`;
  const check = (v: unknown, key: string): number | null => {
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw ConfigError.expected(key, expected, v);
    return v;
  };
  return leaf<number | null>({
    expected,
    defaultValue: null,
    fromValue: check,
    fromText: (t, key) => (t.trim() === '' ? null : check(/^-?\d+$/.test(t.trim()) ? Number(t.trim()) : t, key)),
  });
}

export function duration(defaultText: string): LeafNode<number> {
  return leaf<number>({
    expected: DURATION_EXPECTED,
    defaultValue: parseDuration(defaultText, 'schema'),
    fromValue: (v, key) => {
      if (typeof v !== 'string' && typeof v !== 'number') throw ConfigError.expected(key, DURATION_EXPECTED, v);
      return parseDuration(v, key);
    },
    fromText: (t, key) => parseDuration(t, key),
    toYaml: formatDuration,
  });
}

export function nullableSize(): LeafNode<number | null> {
  const expected = `${SIZE_EXPECTED} or null`;
  return leaf<number | null>({
    expected,
    defaultValue: null,
    fromValue: (v, key) => {
      if (v === null) return null;
      if (typeof v !== 'string' && typeof v !== 'number') throw ConfigError.expected(key, expected, v);
      return parseSize(v, key);
    },
    fromText: (t, key) => (t.trim() === '' ? null : parseSize(t, key)),
    toYaml: (v) => (v === null ? null : formatSize(v)),
  });
}

export function size(defaultText: string): LeafNode<number> {
  return leaf<number>({
    expected: SIZE_EXPECTED,
    defaultValue: parseSize(defaultText, 'schema'),
    fromValue: (v, key) => {
      if (typeof v !== 'string' && typeof v !== 'number') throw ConfigError.expected(key, SIZE_EXPECTED, v);
      return parseSize(v, key);
    },
    fromText: (t, key) => parseSize(t, key),
    toYaml: formatSize,
  });
}

/**
 * Token realms an upstream's credentials may be sent to, besides its own origin: `host`,
 * `host:port` (the upstream's scheme) or an `https://host[:port]` origin. Checked here so
 * `config check` refuses what the upstream client could not use.
 */
export function realmHostList(derive: (ctx: DeriveContext) => string[]): LeafNode<string[]> {
  const base = textList(undefined);
  const check = (list: string[], key: string): string[] => {
    list.forEach((entry, i) => {
      const url = URL.canParse(entry) && /^[a-z]+:\/\//i.test(entry) ? new URL(entry) : URL.canParse(`https://${entry}`) ? new URL(`https://${entry}`) : null;
      const bare = url !== null && (url.pathname === '/' || url.pathname === '') && url.search === '' && url.username === '';
      if (url === null || !bare || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.hostname === '') {
        throw ConfigError.expected(`${key}[${i}]`, 'a host, host:port or an http(s) origin such as "auth.docker.io"', entry);
      }
    });
    return list;
  };
  return leaf<string[]>({
    expected: base.expected,
    derive,
    fromValue: (v, key) => check(base.fromValue(v, key), key),
    fromText: (t, key) => check(base.fromText(t, key), key),
  });
}

/** Docker Hub's registry hosts, whose token realm (auth.docker.io) is another host. */
export const DOCKER_HUB_HOSTS = ['registry-1.docker.io', 'index.docker.io', 'docker.io', 'registry.docker.io'];

export function dockerHubRealms({ siblings }: DeriveContext): string[] {
  const url = siblings['url'];
  const host = typeof url === 'string' && URL.canParse(url) ? new URL(url).hostname : '';
  return DOCKER_HUB_HOSTS.includes(host) ? ['auth.docker.io'] : [];
}

export function oneOf<const V extends readonly string[]>(values: V, defaultValue: V[number]): LeafNode<V[number]> {
  const expected = `one of ${values.join(', ')}`;
  const check = (v: unknown, key: string): V[number] => {
    const hit = values.find((allowed) => allowed === v);
    if (hit === undefined) throw ConfigError.expected(key, expected, v);
    return hit;
  };
  // Environment text is matched case-insensitively (`BERTH_LOG_LEVEL=DEBUG`); every value is lower case.
  return leaf<V[number]>({ expected, defaultValue, fromValue: check, fromText: (t, key) => check(t.trim().toLowerCase(), key) });
}

/**
 * A list of strings. In the environment: comma-separated (`10.0.0.0/8,192.168.0.0/16`), or a
 * YAML flow list (`[a, b]`) when an item itself contains a comma.
 */
export function textList(defaultValue: string[] | undefined): LeafNode<string[]> {
  const expected = 'a list of strings';
  const fromValue = (v: unknown, key: string): string[] => {
    if (!Array.isArray(v)) throw ConfigError.expected(key, expected, v);
    return v.map((item: unknown, i) => {
      if (typeof item !== 'string' || item === '') throw ConfigError.expected(`${key}[${i}]`, 'a non-empty string', item);
      return item;
    });
  };
  return leaf<string[]>({
    expected,
    ...(defaultValue === undefined ? {} : { defaultValue }),
    fromValue,
    fromText: (t, key) => (t.trim().startsWith('[') ? fromValue(yamlText(t, key), key) : splitList(t)),
  });
}

/**
 * A response-header value. Distribution writes headers as lists (`X-Content-Type-Options:
 * [nosniff]`), and a header with several values is one comma-joined line on the wire.
 */
export function headerValue(): LeafNode<string> {
  const expected = 'a string or a list of strings';
  const scalar = (v: unknown, key: string): string => {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return String(v);
    throw ConfigError.expected(key, expected, v);
  };
  const fromValue = (v: unknown, key: string): string =>
    Array.isArray(v) ? v.map((item: unknown, i) => scalar(item, `${key}[${i}]`)).join(', ') : scalar(v, key);
  return leaf<string>({
    expected,
    fromValue,
    // Only a leading `[` is read as YAML: a plain value such as `max-age=0; includeSubDomains`
    // or `#fff` must arrive verbatim, not be reinterpreted as YAML syntax.
    fromText: (t, key) => (t.trim().startsWith('[') ? fromValue(yamlText(t, key), key) : t),
  });
}

export function splitList(t: string): string[] {
  return t
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Parse an environment variable's text as a YAML flow value (`[a, b]`, `{k: v}`). */
export function yamlText(t: string, key: string): unknown {
  try {
    return parseYaml(t) as unknown;
  } catch (err) {
    const reason = err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err);
    throw new ConfigError(key, `cannot read ${describeValue(t)} as YAML: ${reason}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Container builders.

export function object<const F extends Fields>(fields: F, opts: { shorthand?: string; identity?: string } = {}): ObjectNode<F> {
  return { kind: 'object', expected: 'a mapping', fields, shorthand: opts.shorthand, identity: opts.identity };
}

export function list<I extends ObjectNode>(item: I, defaultItems: readonly unknown[] = []): ListNode<I> {
  return { kind: 'list', expected: 'a list', item, defaultItems };
}

export function headerMap(): MapNode {
  return { kind: 'map', expected: 'a mapping of header names to values', value: headerValue() };
}
