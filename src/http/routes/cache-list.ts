/**
 * What is cached, and purge by pattern, in the admin API (registered by cacheRoutes inside the
 * /api/v1 scope, so the admin policy and the JSON-only rule for writes apply):
 *
 *  - GET  /api/v1/cache/repositories[?q=GLOB&upstream=U&n=N&last=NAME]
 *         one page of cached repositories (client name, upstream, tags, bytes, last pulled,
 *         pinned), sorted by client name; `Link: <…?last=…&n=…>; rel="next"` while more follow,
 *         as the OCI catalog pages.
 *  - GET  /api/v1/cache/repositories/<name>[?upstream=U]
 *         one repository, named as a client pulls it (`alpine`, `ghcr.io/org/app`, or `?upstream=`
 *         as `?ns=` on /v2): its tags (digest, media type, size, last pulled, last checked
 *         upstream, stale) and the manifests linked to it. 404 NAME_UNKNOWN when nothing is cached.
 *  - POST /api/v1/cache/purge {"pattern": "library/*", "upstream": "ghcr.io", "dryRun": true}
 *         purge every repository that matches (pattern and/or upstream); a dry run changes nothing
 *         and reports the same figures: repositories and their tags, manifests, blobs, bytes.
 *
 * The naming, matching and views live in src/registry/inventory.ts (shared with `berth cache`).
 */
import { auditRequest } from '../request-log.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { registryError } from '../../errors.js';
import { CacheInventory, INVENTORY_PAGE, type Selection } from '../../registry/inventory.js';

function query(request: FastifyRequest, key: string): string | null {
  const v = (request.query as Record<string, unknown> | undefined)?.[key];
  if (Array.isArray(v)) throw registryError('NAME_INVALID', `give ?${key}= once`);
  return typeof v === 'string' && v !== '' ? v : null;
}

function pageSize(raw: string | null): number {
  if (raw === null) return INVENTORY_PAGE.default;
  if (!/^\d+$/.test(raw)) throw registryError('PAGINATION_NUMBER_INVALID', `n must be a non-negative integer, got "${raw.slice(0, 40)}"`);
  const n = Number(raw);
  if (n > INVENTORY_PAGE.max) throw registryError('PAGINATION_NUMBER_INVALID', `n may be at most ${INVENTORY_PAGE.max}`, { detail: { n, max: INVENTORY_PAGE.max } });
  return n;
}

const PURGE_KEYS = new Set(['pattern', 'upstream', 'dryRun']);

/** `{"pattern"?: string, "upstream"?: string, "dryRun"?: boolean}`, checked key by key. */
function purgeBody(body: unknown): { sel: Selection; dryRun: boolean } {
  const example = 'send a JSON body like {"pattern": "library/*", "dryRun": true} or {"upstream": "ghcr.io"}';
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw registryError('NAME_INVALID', example);
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !PURGE_KEYS.has(k));
  if (unknown.length > 0) throw registryError('NAME_INVALID', `unknown key "${unknown[0] ?? ''}" (purge takes pattern, upstream, dryRun)`);
  const text = (k: string): string | null => {
    const v = b[k];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string' || v.trim() === '') throw registryError('NAME_INVALID', `"${k}" must be a non-empty string`);
    return v.trim();
  };
  const dryRun = b['dryRun'] ?? false;
  if (typeof dryRun !== 'boolean') throw registryError('NAME_INVALID', '"dryRun" must be true or false');
  const sel = { pattern: text('pattern'), upstream: text('upstream') };
  if (sel.pattern === null && sel.upstream === null) throw registryError('NAME_INVALID', example);
  return { sel, dryRun };
}

export async function cacheListRoutes(app: FastifyInstance): Promise<void> {
  const inventory = (): CacheInventory => {
    if (!app.lifecycle) throw registryError('UNSUPPORTED', 'the cache lifecycle is not running on this server');
    return new CacheInventory(app.router, app.mirror.meta, app.lifecycle);
  };

  app.get('/cache/repositories', async (request, reply) => {
    const sel = { pattern: query(request, 'q'), upstream: query(request, 'upstream') };
    const n = pageSize(query(request, 'n'));
    const { repositories, next } = await inventory().list(sel, { n, last: query(request, 'last') });
    if (next !== null) {
      const params = new URLSearchParams({ last: next, n: String(n) });
      if (sel.pattern !== null) params.set('q', sel.pattern);
      if (sel.upstream !== null) params.set('upstream', sel.upstream);
      reply.header('link', `</api/v1/cache/repositories?${params.toString()}>; rel="next"`);
    }
    return { repositories };
  });

  app.get('/cache/repositories/*', async (request) => {
    const name = (request.params as Record<string, string | undefined>)['*'] ?? '';
    return inventory().detail(name, query(request, 'upstream') ?? undefined);
  });

  app.post('/cache/purge', async (request) => {
    const { sel, dryRun } = purgeBody(request.body);
    const result = await inventory().purge(sel, dryRun);
    if (!dryRun) {
      auditRequest(request, 'cache.purge', sel.pattern ?? `upstream ${sel.upstream ?? ''}`, {
        pattern: sel.pattern, upstream: sel.upstream, repositories: result.repositories.length,
      });
    }
    return result;
  });
}
