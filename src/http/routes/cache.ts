/**
 * The cache's operator surface over the lifecycle (src/storage/lifecycle.ts).
 *
 * Routes (registered by apiRoutes inside the /api/v1 scope, so the admin policy applies):
 *  - GET    /api/v1/cache                 bytes, blobs, cap and watermarks, pinned content,
 *                                         evictions, the last GC, the disk-full state
 *  - POST   /api/v1/cache/gc[?dryRun=true] collect garbage now
 *  - DELETE /api/v1/cache/<upstream>/<name>[:<tag>|@<digest>]
 *                                         purge a repository, a tag or a manifest
 *  - GET    /api/v1/cache/repositories[/<name>], POST /api/v1/cache/purge
 *                                         what is cached, and purge by pattern (cache-list.ts)
 * and, when storage.deleteEnabled, DELETE /v2/<name>/manifests/<ref> (v2.ts calls
 * `app.manifestDelete`, made here by `manifestDeleter`, after its own access check).
 *
 * The lifecycle itself is built and started by the composition root (src/app/), which hands it to
 * buildApp; these routes only use it.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { registryError } from '../../errors.js';
import { checkDigest, isValidTag, looksLikeDigest } from '../../oci/reference.js';
import type { Routed } from '../../registry/routing.js';
import type { CacheLifecycle } from '../../storage/lifecycle.js';
import { withFreeBytes } from '../../metrics/metrics.js';
import { cacheListRoutes } from './cache-list.js';
import { auditRequest } from '../request-log.js';

/** The handler v2.ts calls for DELETE /v2/<name>/manifests/<ref> when storage.deleteEnabled. */
export function manifestDeleter(lc: CacheLifecycle): (routed: Routed, reference: string, reply: FastifyReply) => Promise<unknown> {
  return (routed, reference, reply) => deleteManifest(lc, routed, reference, reply);
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

  app.get('/cache', async () => withFreeBytes(await lifecycle().stats(), () => app.driver.space()));

  app.post('/cache/gc', async (request) => {
    const raw = (request.query as Record<string, string | undefined> | undefined)?.['dryRun'];
    const report = await lifecycle().gc({ dryRun: raw === 'true' || raw === '1' });
    auditRequest(request, 'cache.gc', 'storage', { dryRun: report.dryRun, blobs: report.blobs, bytes: report.bytes });
    return report;
  });

  await app.register(cacheListRoutes);

  app.delete('/cache/*', async (request) => {
    const target = (request.params as Record<string, string | undefined>)['*'] ?? '';
    const { upstream, name, reference } = parseTarget(app, target);
    const report = await lifecycle().purge(upstream, name, reference);
    if (!report) throw registryError('NAME_UNKNOWN', `nothing cached for ${target}`);
    auditRequest(request, 'cache.purge', target, { ...report });
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
