/**
 * The command line's grammar, in one place: each `berth` command declares its flags and
 * positionals (a CommandSpec), and `parseArgs` holds every command to it — `--help`/`-h` anywhere
 * asks for the command's help, an unknown flag, a missing flag value or a stray argument is a
 * UsageError (cli.ts prints it with the usage and exits 2). `--config FILE` (or BERTH_CONFIG) is
 * read here and nowhere else.
 */
import type { BerthConfig } from '../config/types.js';
import { loadConfig } from '../config/load.js';

export interface Io {
  out: { write(s: string): unknown };
  err: { write(s: string): unknown };
  env: NodeJS.ProcessEnv;
}

export interface CommandSpec {
  /** `serve`, or `config check` for a subcommand. */
  name: string;
  /** Arguments after the name, as usage shows them: `[--config FILE] REF…`. */
  synopsis: string;
  /** One line for `berth --help`. */
  summary: string;
  /** What `berth NAME --help` adds below the usage line: options, exit codes. */
  details: string;
  /** Every flag the command takes, without `--help`: `value` flags take the next argument. */
  flags: Record<string, 'boolean' | 'value'>;
  /** How many positional arguments it takes. */
  positionals: { min: number; max: number };
}

export interface Command extends CommandSpec {
  /** Resolves with the exit code, or -1 to keep running (a server, a worker). */
  run(args: ParsedArgs, io: Io): Promise<number>;
}

export interface ParsedArgs {
  flags: Map<string, string | true>;
  positionals: string[];
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
  constructor(
    readonly command: CommandSpec | null,
    message: string,
  ) {
    super(message);
  }
}

/** `usage: berth NAME SYNOPSIS`, then the details. */
export function helpText(c: CommandSpec): string {
  return `usage: berth ${c.name}${c.synopsis ? ` ${c.synopsis}` : ''}\n\n${c.summary}\n${c.details ? `\n${c.details.replace(/\n*$/, '\n')}` : ''}`;
}

/** Parse `args` against the spec; null means help was asked for. Throws UsageError. */
export function parseArgs(spec: CommandSpec, args: readonly string[]): ParsedArgs | null {
  const flags = new Map<string, string | true>();
  const positionals: string[] = [];
  let onlyPositionals = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (onlyPositionals || !a.startsWith('-') || a === '-') {
      positionals.push(a);
      continue;
    }
    if (a === '--') {
      onlyPositionals = true;
      continue;
    }
    if (a === '--help' || a === '-h') return null;
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    const kind = spec.flags[name];
    if (kind === undefined) {
      const known = Object.keys(spec.flags);
      throw new UsageError(spec, `unknown option "${name}"${known.length > 0 ? ` (this command takes ${known.join(', ')})` : ' (this command takes no options)'}`);
    }
    if (flags.has(name)) throw new UsageError(spec, `${name} is given twice`);
    if (kind === 'boolean') {
      if (eq > 0) throw new UsageError(spec, `${name} takes no value`);
      flags.set(name, true);
      continue;
    }
    const value = eq > 0 ? a.slice(eq + 1) : args[++i];
    if (value === undefined || value === '' || (eq < 0 && value.startsWith('--'))) throw new UsageError(spec, `${name} needs a value`);
    flags.set(name, value);
  }
  const { min, max } = spec.positionals;
  if (positionals.length > max) {
    const extra = positionals.slice(max).map((p) => `"${p}"`).join(' ');
    throw new UsageError(spec, max === 0 ? `unexpected argument ${extra}` : `too many arguments: ${extra}`);
  }
  if (positionals.length < min) throw new UsageError(spec, 'missing arguments');
  return { flags, positionals };
}

/** The value of a `value` flag, or null. */
export function flagValue(args: ParsedArgs, name: string): string | null {
  const v = args.flags.get(name);
  return typeof v === 'string' ? v : null;
}

/** The config file a command names: --config FILE, else BERTH_CONFIG, else the embedded defaults. */
export function configFile(args: ParsedArgs, env: NodeJS.ProcessEnv, positional: string | null = null): string | null {
  return flagValue(args, '--config') ?? positional ?? (env['BERTH_CONFIG'] || null);
}

/** Load the config a command names (see configFile). Throws ConfigError. */
export function loadCommandConfig(args: ParsedArgs, io: Io, positional: string | null = null): Promise<BerthConfig> {
  return loadConfig({ file: configFile(args, io.env, positional), env: io.env });
}

/** The `--config FILE` line every config-reading command's help shows. */
export const CONFIG_OPTION = '  --config FILE   the YAML config (default: $BERTH_CONFIG, else the embedded defaults);\n                  BERTH_* and REGISTRY_* environment variables override single keys';
