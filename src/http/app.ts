/**
 * Builds the Fastify application (no listening: src/http/server.ts does that, and tests use
 * `app.inject()`). Every service is handed in up front (src/app/serve.ts assembles them) and
 * decorated onto the instance before any route is registered; nothing is decorated later.
 * Routes are plugins.
 */
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { BlockList, isIP } from 'node:net';
import type { BerthConfig } from '../config/types.js';
import type { Metrics } from '../metrics/metrics.js';
import type { MirrorService } from '../registry/mirror.js';
import type { Router, Routed } from '../registry/routing.js';
import type { AccessController } from '../auth/access.js';
import type { StorageDriver } from '../storage/driver.js';
import type { CacheLifecycle } from '../storage/lifecycle.js';
import type { PrewarmService } from '../queue/service.js';
import type { HostedService } from '../registry/hosted-service.js';
import { installHooks } from './hooks.js';
import { notingSubjects } from './request-log.js';
import { v2Routes } from './routes/v2.js';
import { healthRoutes, type ReadinessCheck } from './routes/health.js';
import { apiRoutes } from './routes/api.js';
import { manifestDeleter } from './routes/cache.js';
import { installCors } from './cors.js';
import { applyServerLimits, serverTimeoutOptions } from './limits.js';
import { installAdminGuard } from './admin-guard.js';
import { installMetricsListener } from './metrics-listener.js';
import { httpsOptions, type TlsPair } from './tls.js';
import { clientErrorHandler, frameworkErrorHandler } from './client-errors.js';
import { clusterRoutes, type ClusterRouteOptions } from './routes/cluster.js';
// --- ui (issue 15)
import { uiRoutes } from '../ui/index.js';
import { clusterUploadRoutes } from './routes/cluster-uploads.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: BerthConfig;
    mirror: MirrorService;
    router: Router;
    access: AccessController;
    metrics: Metrics;
    driver: StorageDriver;
    readiness: ReadinessCheck[];
    /** Set when storage.deleteEnabled: purge a manifest (DELETE /v2/<name>/manifests/<ref>). */
    manifestDelete: ((routed: Routed, reference: string, reply: FastifyReply) => Promise<unknown>) | null;
    /** Size cap, eviction, GC and purge; null when the server runs without a lifecycle. */
    lifecycle: CacheLifecycle | null;
    /** Hosted repositories (push); null when no `repositories` rule makes a name hosted. */
    hosted: HostedService | null;
  }
  interface FastifyRequest {
    routeLabel: string | undefined;
    startedAt: bigint | undefined;
    /** Client address; X-Forwarded-For is believed only from http.trustedProxies. */
    clientIp: string;
  }
}

export interface AppServices {
  config: BerthConfig;
  mirror: MirrorService;
  router: Router;
  access: AccessController;
  metrics: Metrics;
  driver: StorageDriver;
  logger: Logger;
  readiness?: ReadinessCheck[];
  /** Size cap, eviction, GC and purge (/api/v1/cache; DELETE of manifests with storage.deleteEnabled). */
  lifecycle?: CacheLifecycle | null;
  /** Pre-warm entries and "run now" (/api/v1/prewarm). */
  prewarm?: PrewarmService | null;
  /** Hosted repositories (push), when configured. */
  hosted?: HostedService | null;
  /** The certificate pair when http.tls is set: the server speaks HTTPS (src/http/tls.ts). */
  tls?: TlsPair | null;
  /** Replicas: serve this replica's blob fills to the others (routes/cluster.ts); absent: no endpoint. */
  clusterFills?: ClusterRouteOptions;
}

export async function buildApp(s: AppServices): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: s.logger,
    // One access-log line per request, written by our onResponse hook (hooks.ts), not two by Fastify.
    logController: new LogController({ disableRequestLogging: true }),
    // Repository names are long; routing is ours (one wildcard), so keep Fastify's limits generous.
    routerOptions: { maxParamLength: 1024 },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Timeouts that cut clients stalling while they send (src/http/limits.ts).
    ...serverTimeoutOptions(s.config.http),
    // HTTPS when http.tls names a pair; src/app/serve.ts reloads it when the files change.
    ...(s.tls ? { https: httpsOptions(s.tls, s.config.http) } : {}),
    // Requests refused before our routes see them still get an OCI error body (client-errors.ts).
    frameworkErrors: frameworkErrorHandler(s.config.http.headers),
    clientErrorHandler: clientErrorHandler(s.logger, s.config.http.headers),
  }) as unknown as FastifyInstance;

  app.decorate('config', s.config);
  app.decorate('mirror', s.mirror);
  app.decorate('router', s.router);
  app.decorate('access', notingSubjects(s.access)); // grants name the subject on the access line
  app.decorate('metrics', s.metrics);
  app.decorate('driver', s.driver);
  app.decorate('readiness', s.readiness ?? []);
  const lifecycle = s.lifecycle ?? null;
  app.decorate('lifecycle', lifecycle);
  app.decorate('manifestDelete', lifecycle && s.config.storage.deleteEnabled ? manifestDeleter(lifecycle) : null);
  app.decorate('prewarm', s.prewarm ?? null);
  app.decorate('hosted', s.hosted ?? null);

  const trusted = new BlockList();
  for (const cidr of s.config.http.trustedProxies) addCidr(trusted, cidr);
  const hasTrusted = s.config.http.trustedProxies.length > 0;
  app.decorateRequest('clientIp', '');
  // A callback hook: an async one costs a promise per request for work that never waits.
  app.addHook('onRequest', (request, _reply, done) => {
    const peer = request.socket.remoteAddress ?? '';
    let ip = peer.startsWith('::ffff:') ? peer.slice(7) : peer;
    const xff = request.headers['x-forwarded-for'];
    if (hasTrusted && xff && contains(trusted, ip)) {
      // Walk right to left past our own proxies; the first untrusted hop is the client.
      const hops = (Array.isArray(xff) ? xff.join(',') : xff).split(',').map((x) => x.trim()).filter(Boolean);
      for (let i = hops.length - 1; i >= 0; i--) {
        const hop = hops[i] ?? '';
        ip = hop;
        if (!contains(trusted, hop)) break;
      }
    }
    request.clientIp = ip;
    done();
  });

  // The connection cap, the admin API's fence (network, JSON only), /metrics on its own port.
  applyServerLimits(app.server, s.config.http, { log: s.logger, metrics: s.metrics });
  installAdminGuard(app, s.config);
  installMetricsListener(app);

  installHooks(app, s.config.http.headers);
  installCors(app, s.config.http.cors.origins);
  await app.register(v2Routes);
  await app.register(healthRoutes);
  await app.register(apiRoutes, { prefix: '/api/v1' });
  if (s.clusterFills) await app.register(clusterRoutes(s.clusterFills));
  // --- ui (issue 15): the web UI and its login (src/ui/).
  if (s.config.ui.enabled) await app.register(uiRoutes, { prefix: '/ui' });
  // Replicas with hosted repositories: upload sessions held here, for the other replicas (cluster-uploads.ts).
  if (s.hosted?.forwarder && s.config.cluster.secret !== null) await app.register(clusterUploadRoutes({ hosted: s.hosted, secret: s.config.cluster.secret }));
  return app;
}

export function addCidr(list: BlockList, cidr: string): void {
  const [addr, bits] = cidr.split('/');
  const family = isIP(addr ?? '') === 6 ? 'ipv6' : 'ipv4';
  if (bits === undefined) list.addAddress(addr ?? '', family);
  else list.addSubnet(addr ?? '', Number(bits), family);
}

export function contains(list: BlockList, ip: string): boolean {
  const v = isIP(ip);
  if (v === 0) return false;
  return list.check(ip, v === 6 ? 'ipv6' : 'ipv4');
}
