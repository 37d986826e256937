/**
 * Listens. `serve` takes an app built by src/app/serve.ts (which assembles every service and hands
 * them to buildApp in app.ts) and adds the listener and a graceful shutdown: stop accepting, let
 * in-flight responses and fills finish (bounded), then exit. Building is not done here, so this
 * file imports nothing above http/.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/types.js';
import { stopOnSignals } from '../shutdown.js';
import { logExposure } from './admin-guard.js';

/** What serve needs of the assembled services. */
export interface Listenable {
  app: FastifyInstance;
  config: BerthConfig;
  log: Logger;
  /** Close the app and everything behind it (called on SIGTERM/SIGINT). */
  close(): Promise<void>;
}

/** Listen, and shut down gracefully on SIGTERM/SIGINT. Resolves with the bound address. */
export async function serve(services: Listenable, shutdownGraceMs = 30_000): Promise<string> {
  const { app, config, log } = services;
  const address = await app.listen({ host: config.http.host, port: config.http.port });
  log.info({ address, storage: config.storage.root, upstreams: config.upstreams.map((u) => u.name), auth: config.auth.mode }, 'berth is serving');
  logExposure(log, config);
  stopOnSignals(log, () => services.close(), {
    finishing: 'in-flight requests and fills',
    abandoning: 'work still in flight',
    graceMs: shutdownGraceMs,
  });
  return address;
}
