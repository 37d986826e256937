/**
 * The cache's operator surface, and the background service that runs its lifecycle.
 *
 * Routes (registered by apiRoutes inside the /api/v1 scope, so the admin policy applies):
 *  - GET    /api/v1/cache                 bytes, blobs, cap and watermarks, pinned content,
 *                                         evictions, the last GC, the disk-full state
 *  - POST   /api/v1/cache/gc[?dryRun=true] collect garbage now
 *  - DELETE /api/v1/cache/<upstream>/<name>[:<tag>|@<digest>]
 *                                         purge a repository, a tag or a manifest
 * and, when storage.deleteEnabled, DELETE /v2/<name>/manifests/<ref> (v2.ts calls
 * `app.manifestDelete` after its own access check).
 *
 * `cacheLifecycleService` (wired in src/wiring.ts) builds the CacheLifecycle at start, makes it the
 * mirror's cache hooks, registers the optional `disk-full` readiness check, runs GC every
 * storage.gcInterval, and writes access times on stop.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { registryError } from '../../errors.js';
import { checkDigest, isValidTag, looksLikeDigest } from '../../oci/reference.js';
import type { Routed } from '../../registry/routing.js';
import { CacheLifecycle, type LifecycleOptions } from '../../storage/lifecycle.js';
import { filesystemSpace } from '../../storage/space.js';
import type { BackgroundService } from '../server.js';
import { withFreeBytes } from '../../metrics/metrics.js';

/** Overrides for the lifecycle's internal tunables (tests; a fake free-space probe). */
export type LifecycleTunables = Partial<Pick<LifecycleOptions, 'space' | 'flushInterval' | 'orphanGrace' | 'spoolStaleAfter' | 'spaceRecheck' | 'now'>>;

export function cacheLifecycleService(tunables: LifecycleTunables = {}): BackgroundService {
  let lifecycle: CacheLifecycle | null = null;
  let timer: NodeJS.Timeout | null = null;
  return {
    name: 'cache-lifecycle',
    async start(s) {
      const storage = s.config.storage;
      const log = s.log.child({ component: 'lifecycle' });
      const lc = new CacheLifecycle({
        driver: s.driver,
        meta: s.mirror.meta,
        metrics: s.metrics,
        log,
        cache: s.mirror,
        maxSize: storage.maxSize,
        highWatermark: storage.highWatermark,
        lowWatermark: storage.lowWatermark,
        space: filesystemSpace(storage.root),
        ...tunables,
      });
      await lc.start();
      lifecycle = lc;
      s.mirror.hooks = lc;
      s.app.lifecycle = lc;
      s.app.readiness.push({ name: 'disk-full', required: false, check: async () => lc.diskCheck() });
      if (storage.deleteEnabled) s.app.manifestDelete = (routed, reference, reply) => deleteManifest(lc, routed, reference, reply);
      timer = setInterval(() => {
        lc.gc().catch((err: unknown) => log.error({ err }, 'garbage collection failed'));
      }, storage.gcInterval);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = null;
      // The hooks stay attached: fills that finish during shutdown are ignored by a stopped
      // lifecycle, and their blobs' commit times stand in for their last access at the next start.
      await lifecycle?.stop();
    },
  };
}

/** DELETE /v2/<name>/manifests/<tag|digest>: purge it from the cache (202, as Distribution answers). */
async function deleteManifest(lc: CacheLifecycle, routed: Routed, reference: string, reply: FastifyReply): Promise<unknown> {
  checkReference(reference);
  const report = await lc.purge(routed.upstream.name, routed.name, reference);
  if (!report) throw registryError('MANIFEST_UNKNOWN', `${routed.requested}:${reference} is not in this mirror's cache`);
  return reply.code(202).send();
}

function checkReference(reference: string): void {
  if (looksLikeDigest(reference)) {
    const c = checkDigest(reference);
    if (!c.ok) throw registryError('DIGEST_INVALID', c.reason);
  } else if (!isValidTag(reference)) {
    throw registryError('TAG_INVALID', `"${reference}" is not a valid tag`);
  }
}

export async function cacheRoutes(app: FastifyInstance): Promise<void> {
  const lifecycle = (): CacheLifecycle => {
    if (!app.lifecycle) throw registryError('UNSUPPORTED', 'the cache lifecycle is not running on this server');
    return app.lifecycle;
  };

  app.get('/cache', async () => withFreeBytes(await lifecycle().stats(), app.config.storage.root));

  app.post('/cache/gc', async (request) => {
    const raw = (request.query as Record<string, string | undefined> | undefined)?.['dryRun'];
    return lifecycle().gc({ dryRun: raw === 'true' || raw === '1' });
  });

  app.delete('/cache/*', async (request) => {
    const target = (request.params as Record<string, string | undefined>)['*'] ?? '';
    const { upstream, name, reference } = parseTarget(app, target);
    const report = await lifecycle().purge(upstream, name, reference);
    if (!report) throw registryError('NAME_UNKNOWN', `nothing cached for ${target}`);
    return { upstream, name, reference, ...report };
  });
}

/** `<upstream>/<name>[:<tag>|@<digest>]`; one-component Docker Hub names get `library/` as in pulls. */
function parseTarget(app: FastifyInstance, target: string): { upstream: string; name: string; reference: string | null } {
  const slash = target.indexOf('/');
  if (slash <= 0) throw registryError('NAME_INVALID', `expected <upstream>/<name>[:<tag>|@<digest>], got "${target}"`);
  const upstreamName = target.slice(0, slash);
  let rest = target.slice(slash + 1);
  let reference: string | null = null;
  const at = rest.indexOf('@');
  const colon = rest.lastIndexOf(':');
  if (at >= 0) {
    reference = rest.slice(at + 1);
    rest = rest.slice(0, at);
  } else if (colon > rest.lastIndexOf('/')) {
    reference = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  if (reference !== null) checkReference(reference);
  const upstream = app.router.upstream(upstreamName);
  if (!upstream) throw registryError('NAME_UNKNOWN', `"${upstreamName}" is not an upstream this mirror serves`);
  const routed = app.router.route(rest, upstream.name);
  return { upstream: routed.upstream.name, name: routed.name, reference };
}
