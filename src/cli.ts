#!/usr/bin/env node
/**
 * The `berth` command. `serve` runs the mirror (embedded defaults, or the YAML named by
 * BERTH_CONFIG / --config); `config check [FILE]` validates a config and prints the effective
 * result with secrets masked. Other commands (worker, prewarm, gc) register themselves in
 * `commands` as their features land.
 */
import { stringify } from 'yaml';
import { loadConfig } from './config/load.js';
import { ConfigError } from './config/errors.js';
import { maskSecrets, toYamlShape } from './config/load.js';
import type { BerthConfig } from './config/types.js';
import { createLogger } from './log.js';
import { createServices, serve } from './http/server.js';
import { extraCommands, serviceOptions } from './wiring.js';

const USAGE = `usage: berth <command> [options]

commands:
  serve [--config FILE]          run the mirror (default: embedded config, or $BERTH_CONFIG)
  config check [FILE]            validate a config file and print the effective config (secrets masked)
${extraCommands.map((c) => `  ${c.usage.padEnd(31)}${c.help}`).join('\n')}
  help                           this text
`;

function takeConfigFlag(args: string[]): string | null {
  const i = args.indexOf('--config');
  if (i >= 0) {
    const v = args[i + 1];
    args.splice(i, 2);
    return v ?? null;
  }
  return process.env.BERTH_CONFIG || null;
}

export async function load(args: string[]): Promise<BerthConfig> {
  const file = takeConfigFlag(args);
  return loadConfig({ file, env: process.env });
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  switch (cmd) {
    case 'serve': {
      const config = await load(args);
      const log = createLogger(config.log.level);
      const services = await createServices(config, log, await serviceOptions(config, log));
      await serve(services);
      return -1; // keep running
    }
    case 'config': {
      if (args[0] !== 'check') break;
      const file = args[1] ?? (process.env.BERTH_CONFIG || null);
      const config = await loadConfig({ file, env: process.env });
      process.stdout.write(`# ${file ?? 'embedded defaults'}: OK\n${stringify(maskSecrets(toYamlShape(config)))}`);
      return 0;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default: {
      const extra = extraCommands.find((c) => c.name === cmd);
      if (extra) return extra.run(args);
    }
  }
  process.stderr.write(`berth: unknown command "${argv.join(' ')}"\n${USAGE}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    process.stderr.write(`berth: ${(err as Error).message ?? String(err)}\n`);
    process.exit(1);
  },
);
