/**
 * Where optional features plug into the command line and the server: access controllers for
 * auth modes, readiness checks, background services, extra `berth` commands. Keeping this list in
 * one file lets cli.ts stay the same as features land.
 */
import type { Logger } from 'pino';
import type { BerthConfig } from './config/types.js';
import type { ServiceOptions } from './http/server.js';

export interface Command {
  name: string;
  usage: string;
  help: string;
  run(args: string[]): Promise<number>;
}

export const extraCommands: Command[] = [];

export async function serviceOptions(_config: BerthConfig, _log: Logger): Promise<ServiceOptions> {
  return {};
}
