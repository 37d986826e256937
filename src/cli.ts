#!/usr/bin/env node
/**
 * The `berth` command: the table of commands, their help, and the exit codes. Every command
 * declares its flags (src/app/args.ts), so `--help` works on each, and an unknown flag or a stray
 * argument prints the usage and exits 2 instead of doing something else. The commands build what
 * they need through the composition root (src/app/): `serve` (src/app/serve.ts), `worker` and
 * `prewarm` (workers/commands.ts), `gc` (src/app/gc.ts), `cache ls|purge` (src/app/cache-command.ts);
 * `cluster rebuild` (src/app/cluster-command.ts); `config check` and `healthcheck` are here.
 *
 * Exit codes: 0 ok, 1 failed (a sentence on stderr, no stack), 2 usage, 75 pre-warm deferred,
 * 78 bad config (EX_CONFIG).
 */
// First: keeps the young generation small while the rest loads (src/startup-heap.ts).
import { restoreHeapGrowth } from './startup-heap.js';
import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { ConfigError } from './config/errors.js';
import { maskSecrets, toYamlShape } from './config/load.js';
import { createLogger } from './log.js';
import { CONFIG_OPTION, UsageError, helpText, loadCommandConfig, parseArgs, type Command, type Io } from './app/args.js';
import { StartupError } from './app/errors.js';
import { cacheCommands } from './app/cache-command.js';
import { clusterCommands } from './app/cluster-command.js';
import { gcCommand } from './app/gc.js';
import { runServe } from './app/serve.js';
import { localProbeDispatcher } from './http/tls.js';
import { prewarmCommands } from '../workers/commands.js';

/** How long `berth healthcheck` waits for an answer. */
const HEALTHCHECK_TIMEOUT_MS = 4_000;

const serveCommand: Command = {
  name: 'serve',
  synopsis: '[--config FILE]',
  summary: 'run the mirror until SIGTERM/SIGINT (then finish in-flight requests and fills)',
  details: `options:\n${CONFIG_OPTION}\n\nRun it directly (the berth bin, or node dist/src/cli.js serve) under a supervisor, so SIGTERM reaches it.`,
  flags: { '--config': 'value' },
  positionals: { min: 0, max: 0 },
  async run(args, io) {
    const config = await loadCommandConfig(args, io);
    await runServe(config, createLogger(config.log));
    restoreHeapGrowth(); // listening: start-up is over
    return -1; // keep running
  },
};

const configCheckCommand: Command = {
  name: 'config check',
  synopsis: '[FILE | --config FILE]',
  summary: 'validate a config and print the effective config (secrets masked)',
  details: 'FILE defaults to $BERTH_CONFIG, else the embedded defaults; BERTH_* and REGISTRY_* variables apply.\nexit status: 0 valid, 2 usage, 78 invalid',
  flags: { '--config': 'value' },
  positionals: { min: 0, max: 1 },
  async run(args, io) {
    const file = args.positionals[0] ?? null;
    if (file !== null && args.flags.has('--config')) throw new UsageError(configCheckCommand, 'give FILE or --config FILE, not both');
    const config = await loadCommandConfig(args, io, file);
    const shown = file ?? (args.flags.get('--config') as string | undefined) ?? (io.env['BERTH_CONFIG'] || null);
    io.out.write(`# ${shown ?? 'embedded defaults'}: OK\n${stringify(maskSecrets(toYamlShape(config)))}`);
    return 0;
  },
};

const healthcheckCommand: Command = {
  name: 'healthcheck',
  synopsis: '[--config FILE] [/healthz | /readyz]',
  summary: 'probe the local server on the port the config resolves to (the image\'s HEALTHCHECK)',
  details: [
    'Loads the config as serve does (YAML, BERTH_HTTP_PORT, REGISTRY_HTTP_ADDR) and asks',
    'http(s)://<http.host, or 127.0.0.1 for a wildcard>:<http.port>/healthz (or /readyz);',
    'https when http.tls is set, without verifying the certificate (it names the public host).',
    `options:\n${CONFIG_OPTION}`,
    'exit status: 0 answered 200, 1 anything else, 2 usage, 78 bad config',
  ].join('\n'),
  flags: { '--config': 'value' },
  positionals: { min: 0, max: 1 },
  async run(args, io) {
    const path = args.positionals[0] ?? '/healthz';
    if (path !== '/healthz' && path !== '/readyz') throw new UsageError(healthcheckCommand, `probe /healthz or /readyz, not "${path}"`);
    const config = await loadCommandConfig(args, io);
    const host = ['0.0.0.0', '::', ''].includes(config.http.host) ? '127.0.0.1' : config.http.host;
    const tls = config.http.tls.certificate !== null;
    const url = `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${config.http.port}${path}`;
    try {
      const init = { signal: AbortSignal.timeout(HEALTHCHECK_TIMEOUT_MS), ...(tls ? { dispatcher: localProbeDispatcher() } : {}) };
      const res = await fetch(url, init as RequestInit);
      await res.body?.cancel();
      if (res.ok) return 0;
      io.err.write(`berth healthcheck: ${url} answered ${res.status}\n`);
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err instanceof Error ? err.message : String(err));
      io.err.write(`berth healthcheck: ${url} did not answer (${cause})\n`);
    }
    return 1;
  },
};

const commands: Command[] = [serveCommand, ...prewarmCommands, gcCommand, ...cacheCommands, ...clusterCommands, configCheckCommand, healthcheckCommand];

/** package.json's version: dist/src/cli.js and src/cli.ts are both two levels below it. */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

const USAGE = `usage: berth <command> [options]      (berth <command> --help for its options)

commands:
${commands.map((c) => `  ${`${c.name} ${c.synopsis}`.padEnd(56)} ${c.summary}`).join('\n')}
  ${'help [COMMAND]'.padEnd(56)} this text, or a command's
  ${'--version'.padEnd(56)} print the version
`;

/** The subcommands of a group (`config`), for `berth config` alone. */
function groupUsage(group: string): string {
  const subs = commands.filter((c) => c.name.startsWith(`${group} `));
  return `usage: berth ${group} <subcommand>\n\nsubcommands:\n${subs.map((c) => `  ${`${c.name} ${c.synopsis}`.padEnd(40)} ${c.summary}`).join('\n')}\n`;
}

/** The command argv names, and the arguments after its name; null when nothing matches. */
function find(argv: string[]): { command: Command; rest: string[] } | null {
  const two = commands.find((c) => c.name === `${argv[0]} ${argv[1]}`);
  if (two) return { command: two, rest: argv.slice(2) };
  const one = commands.find((c) => c.name === argv[0]);
  return one ? { command: one, rest: argv.slice(1) } : null;
}

async function main(argv: string[], io: Io): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined) {
    io.out.write(USAGE);
    return 2;
  }
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
    if (rest.length > 0) throw new UsageError(null, `${cmd} takes no arguments`);
    io.out.write(`berth ${version()}\n`);
    return 0;
  }
  if (cmd === 'help' || cmd === '--help' || cmd === '-h') {
    if (rest.length === 0) {
      io.out.write(USAGE);
      return 0;
    }
    const target = find(rest);
    if (target && target.rest.length === 0) {
      io.out.write(helpText(target.command));
      return 0;
    }
    if (commands.some((c) => c.name.startsWith(`${rest.join(' ')} `))) {
      io.out.write(groupUsage(rest.join(' ')));
      return 0;
    }
    throw new UsageError(null, `no command "${rest.join(' ')}"`);
  }
  const found = find(argv);
  if (!found) {
    if (commands.some((c) => c.name.startsWith(`${cmd} `))) {
      const sub = rest[0];
      const asked = sub === undefined || sub === '--help' || sub === '-h';
      (asked ? io.out : io.err).write(`${asked ? '' : `berth ${cmd}: unknown subcommand "${sub}"\n`}${groupUsage(cmd)}`);
      return sub === '--help' || sub === '-h' ? 0 : 2;
    }
    throw new UsageError(null, `unknown command "${cmd}"`);
  }
  if (found.command !== serveCommand) restoreHeapGrowth();
  const parsed = parseArgs(found.command, found.rest);
  if (parsed === null) {
    io.out.write(helpText(found.command));
    return 0;
  }
  return found.command.run(parsed, io);
}

const io: Io = { out: process.stdout, err: process.stderr, env: process.env };
main(process.argv.slice(2), io).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      const name = err.command ? `berth ${err.command.name}` : 'berth';
      process.stderr.write(`${name}: ${err.message}\n${err.command ? helpText(err.command) : USAGE}`);
      process.exit(2);
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    if (err instanceof StartupError) {
      process.stderr.write(`berth: ${err.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`berth: ${(err as Error).message ?? String(err)}\n`);
    process.exit(1);
  },
);
