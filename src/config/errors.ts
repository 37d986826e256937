/**
 * The one error type the config module throws. Every message starts with `config: <key>: ` so an
 * operator reading a crash-looping pod's log knows which key (or environment variable) to fix
 * without reading code. Callers branch on `err.code === 'ERR_BERTH_CONFIG'`, never on text.
 */

export interface ConfigErrorOptions {
  /** Dotted path of the offending key (`upstreams[0].tagTtl`), an environment variable's name, or a file path. */
  key: string;
  /** What is wrong, without the `config: <key>: ` prefix. */
  detail: string;
  /** Where the value came from, as a phrase (`at berth.yaml:3:9`, `from BERTH_HTTP_PORT`), when known. */
  source?: string | undefined;
  /** For YAML syntax errors: 1-based position in the file. */
  line?: number | undefined;
  column?: number | undefined;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'ERR_BERTH_CONFIG';
  readonly key: string;
  readonly detail: string;
  readonly source: string | undefined;
  readonly line: number | undefined;
  readonly column: number | undefined;

  constructor(key: string, detail: string);
  constructor(options: ConfigErrorOptions);
  constructor(keyOrOptions: string | ConfigErrorOptions, detail?: string) {
    const o: ConfigErrorOptions =
      typeof keyOrOptions === 'string' ? { key: keyOrOptions, detail: detail ?? '' } : keyOrOptions;
    super(`config: ${o.key}: ${o.detail}${o.source === undefined ? '' : ` (${o.source})`}`);
    this.key = o.key;
    this.detail = o.detail;
    this.source = o.source;
    this.line = o.line;
    this.column = o.column;
  }

  /** The common "wrong type or unparsable value" error: `expected <what>, got <value>`. */
  static expected(key: string, what: string, got: unknown): ConfigError {
    return new ConfigError(key, `expected ${what}, got ${describeValue(got)}${quoteHint(what, got)}`);
  }

  /**
   * The same error, told where the value came from. Value parsers (parseDuration …) only know the
   * key; the loader knows the file position or variable, so it adds that on the way out.
   */
  from(source: string | undefined): ConfigError {
    if (source === undefined || this.source !== undefined) return this;
    return new ConfigError({ key: this.key, detail: this.detail, source, line: this.line, column: this.column });
  }
}

/**
 * YAML turns `password: 123456` and `tag: 3.20` into numbers; the fix is to quote them, and
 * saying so saves a round trip.
 */
function quoteHint(what: string, got: unknown): string {
  const wantsText = /\bstring\b/.test(what);
  return wantsText && (typeof got === 'number' || typeof got === 'boolean') ? ' (quote it in YAML to keep it text)' : '';
}

/** A short, unambiguous rendering of a value for error messages: strings quoted, containers named. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}
