/**
 * Where optional features plug into the command line and the server: access controllers for
 * auth modes, readiness checks, background services, extra `berth` commands. Keeping this list in
 * one file lets cli.ts stay the same as features land.
 */
import type { Logger } from 'pino';
import type { BerthConfig } from './config/types.js';
import type { ServiceOptions } from './http/server.js';
import { tokenAuthOptions } from './auth/token.js';
import { cacheLifecycleService } from './http/routes/cache.js';
import { GC_HELP, GC_USAGE, runGc } from './storage/gc-command.js';
import { PrewarmBackground } from './queue/background.js';
import { prewarmCommands } from '../workers/commands.js';

export interface Command {
  name: string;
  usage: string;
  help: string;
  run(args: string[]): Promise<number>;
}

export const extraCommands: Command[] = [
  { name: 'gc', usage: GC_USAGE, help: GC_HELP, run: (args) => runGc(args) },
  // berth worker, berth prewarm (workers/commands.ts)
  ...prewarmCommands,
];

export async function serviceOptions(config: BerthConfig, log: Logger): Promise<ServiceOptions> {
  return {
    ...tokenAuthOptions(config),
    // Size cap, eviction, GC, purge, disk-full mode (src/storage/lifecycle.ts).
    // Pre-warm: in-process scheduler and worker, or BullMQ schedulers with redis.url (src/queue/).
    background: [cacheLifecycleService(), new PrewarmBackground(config, log)],
  };
}
