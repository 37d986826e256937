/**
 * Configuration loading: the entry point of src/config/.
 *
 * Layers, later wins: schema defaults (schema.ts) → YAML file (yaml-file.ts) → Distribution's
 * `REGISTRY_*` variables (env-registry.ts) → `BERTH_*` variables (env-berth.ts) → programmatic
 * overrides (CLI flags, tests), each laid over the last by layer.ts. Then derived defaults are
 * filled in and cross-key rules are checked (validate.ts). loadConfig adds what needs the whole
 * deployment: pre-warm references against the configured upstreams, and the files and
 * directories the config names (disk.ts). `berth serve`, `berth worker`, `berth gc` and
 * `berth config check` all call loadConfig, so `config check` refuses exactly what `serve` does.
 * Every failure is a ConfigError that names the key, and where the value came from when known.
 * Printing and masking live in print.ts.
 *
 * This folder imports only node built-ins, `yaml` and the oci/ leaf; every other layer imports it.
 */
import { readFile } from 'node:fs/promises';
import { checkConfigFiles, errorCode } from './disk.js';
import { applyBerthEnv } from './env-berth.js';
import { applyRegistryEnv } from './env-registry.js';
import { ConfigError } from './errors.js';
import { applyLayer, defaultsOf, fillDerived } from './layer.js';
import { berthSchema } from './schema.js';
import type { BerthConfig } from './types.js';
import { checkPrewarmUpstreams, validate } from './validate.js';
import { readYaml } from './yaml-file.js';

export { checkConfigFiles } from './disk.js';
export { formatKey, type ConfigPath } from './layer.js';
export { maskSecrets, toYamlShape } from './print.js';

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
 * Load, layer and validate the configuration, including the checks that need the whole
 * deployment (see the header). Async because it reads files; it is called once at boot by every
 * command, and it is the one function `serve` and `config check` share.
 */
export async function loadConfig(opts: LoadOptions = {}): Promise<BerthConfig> {
  const env = opts.env ?? process.env;
  const file = opts.file === undefined ? nonEmpty(env['BERTH_CONFIG']) : opts.file;
  let text: string | null = null;
  if (file !== null) {
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      // Name the setting that chose the file when it was the environment, not the caller.
      const source = opts.file === undefined ? 'from BERTH_CONFIG' : undefined;
      throw new ConfigError({ key: file, detail: `cannot read config file: ${errorCode(err)}`, source });
    }
  }
  const config = parseConfig({
    text,
    ...(file === null ? {} : { fileName: file }),
    env,
    ...(opts.overrides === undefined ? {} : { overrides: opts.overrides }),
  });
  checkPrewarmUpstreams(config);
  await checkConfigFiles(config);
  return config;
}

/**
 * Everything loadConfig does except touching the disk and matching pre-warm references to
 * upstreams: synchronous and pure, for tests and tools that need a complete, validated config
 * from a few overrides (`parseConfig({ overrides })`).
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

function nonEmpty(s: string | undefined): string | null {
  return s === undefined || s.trim() === '' ? null : s;
}
