/**
 * The JSON the UI page reads and the actions it takes, under /ui/api (registered by index.ts,
 * whose hook has already found the user, refused a closed UI and checked CSRF on writes):
 *
 *  - GET  /me                      who, the CSRF token, what they may do
 *  - GET  /overview                hit ratio (since start, last hour), bytes from cache vs
 *                                  upstream, upstreams (breaker, rate limit), pull reserve,
 *                                  fills in progress, storage against the cap, last GC, evictions
 *  - GET  /repositories?q=&upstream=&n=&last=   one page of the catalog (server-side paging),
 *                                  mirrored and hosted repositories together
 *  - GET  /repository?name=&upstream=           one repository: tags with kind and platforms
 *  - GET  /manifest?name=&upstream=&digest=     one cached manifest: platforms or config,
 *                                  layers, history, raw JSON, pull commands, referrers (hosted)
 *  - POST /delete {name, upstream?, references[], dryRun?}   delete tags / manifests (policy: delete)
 *  - POST /purge {pattern?, upstream?, dryRun?}              purge repositories (policy: admin)
 *  - POST /gc {dryRun?}                                      garbage collection (policy: admin)
 *  - GET  /prewarm, POST /prewarm {ref}                      schedule and "run now" (admin to run)
 *
 * Reads are local: manifests and configs come from the store by digest, never from upstream.
 * A hosted repository (src/ui/hosted-view.ts) has `upstream` "(hosted)" in this JSON; its
 * policy resource is its name as pushed, as for the registry.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { registryError } from '../errors.js';
import { CacheInventory, INVENTORY_PAGE, compilePattern, type RepositorySummary } from '../registry/inventory.js';
import type { Routed } from '../registry/routing.js';
import type { CacheLifecycle } from '../storage/lifecycle.js';
import { checkDigest, isValidTag, looksLikeDigest, type Digest } from '../oci/reference.js';
import { withFreeBytes } from '../metrics/metrics.js';
import { auditRequest } from '../http/request-log.js';
import { requestNote } from '../log.js';
import type { HitHistory } from './hit-history.js';
import { configView, manifestShape, pullCommands, type ManifestKind } from './manifest-view.js';
import type { UiPolicy } from './principal.js';
import { uiContext } from './context.js';
import { HOSTED, HostedView } from './hosted-view.js';

/** Largest manifest or config blob the UI reads into memory to show it. */
const MAX_VIEW_BYTES = 4 * 1024 * 1024;
/** A repository page classifies at most this many tags (each reads its manifest from the store). */
const MAX_TAGS_SHOWN = 500;
/** An index's platform images read to size it. */
const MAX_CHILDREN = 64;
/** Tags or digests one delete request may name. */
const MAX_DELETE = 200;

export interface UiApiOptions {
  policy: UiPolicy;
  hits: HitHistory;
  now: () => number;
  /** Resolves once the store's repository index has been built (one scan, started at boot). */
  repositoriesReady: () => Promise<unknown>;
}

function q(request: FastifyRequest, key: string): string | null {
  const v = (request.query as Record<string, unknown> | undefined)?.[key];
  if (Array.isArray(v)) throw registryError('NAME_INVALID', `give ?${key}= once`);
  return typeof v === 'string' && v !== '' ? v : null;
}

function body(request: FastifyRequest): Record<string, unknown> {
  const b = request.body;
  if (b === undefined || b === null) return {};
  if (typeof b !== 'object' || Array.isArray(b)) throw registryError('NAME_INVALID', 'send a JSON object');
  return b as Record<string, unknown>;
}

export async function uiApiRoutes(app: FastifyInstance, opts: UiApiOptions): Promise<void> {
  const { policy, hits } = opts;
  const lifecycle = (): CacheLifecycle => {
    if (!app.lifecycle) throw registryError('UNSUPPORTED', 'the cache lifecycle is not running on this server');
    return app.lifecycle;
  };
  const inventory = (): CacheInventory => new CacheInventory(app.router, app.mirror.meta, lifecycle());
  const resource = (upstream: string, name: string): string => `${upstream}/${name}`;
  const hostedView = app.hosted ? new HostedView(app.hosted, app.driver) : null;
  /** The hosted repository a request names (`upstream` "(hosted)", or none and a hosted name), with the user allowed to see it; else null. */
  const hostedVisible = (request: FastifyRequest, name: string, upstream: string | null): string | null => {
    if (upstream !== HOSTED && (upstream !== null || !hostedView?.isHosted(name))) return null;
    if (!hostedView || !hostedView.isHosted(name) || !policy.canSee(who(request).principal, name)) {
      throw registryError('NAME_UNKNOWN', `nothing is hosted as ${name}`);
    }
    return name;
  };

  /** The principal from the hook; also names the subject on the access and audit lines. */
  const who = (request: FastifyRequest) => {
    const ctx = uiContext(request);
    const note = requestNote();
    if (note && ctx.principal.subject) note.subject = ctx.principal.subject;
    return ctx;
  };
  const needAdmin = (request: FastifyRequest): void => {
    if (!policy.canAdmin(who(request).principal)) {
      throw registryError('DENIED', policy.mode === 'open'
        ? 'admin actions are open only to clients in http.adminNetworks when the UI has no login'
        : 'this needs an admin rule in auth.policy for you or one of your roles');
    }
  };
  /** Route a repository named as a client pulls it, and check the user may see it. */
  const routeVisible = (request: FastifyRequest, name: string, upstream: string | null): Routed => {
    const routed = app.router.route(name, upstream ?? undefined);
    if (!policy.canSee(who(request).principal, resource(routed.upstream.name, routed.name))) {
      // Not "denied": a repository the user may not see is one they cannot tell exists.
      throw registryError('NAME_UNKNOWN', `nothing is cached for ${name}`);
    }
    return routed;
  };

  app.get('/me', async (request) => {
    const { principal, session, csrf } = who(request);
    return {
      mode: policy.mode,
      user: session ? { subject: session.subject, name: session.name, roles: session.roles } : null,
      csrf,
      admin: policy.canAdmin(principal),
      deleteEnabled: app.config.storage.deleteEnabled,
      seesAll: policy.seesAll(principal),
      upstreams: app.config.upstreams.map((u) => u.name),
      hosted: hostedView !== null,
    };
  });

  app.get('/overview', async (request) => {
    const { principal } = who(request);
    const status = app.mirror.status();
    // A fill names its repository (manifests, tags); blobs name none. Show only what the user may see.
    const fills = policy.seesAll(principal)
      ? status.fills
      : status.fills.filter((f) => f.name === null || f.upstream === null || policy.canSee(principal, resource(f.upstream, f.name)));
    const stats = app.lifecycle ? await withFreeBytes(await app.lifecycle.stats(), () => app.driver.space()) : null;
    const space = await app.driver.space().catch(() => null);
    return {
      at: new Date(opts.now()).toISOString(),
      hits: await hits.figures(),
      upstreams: status.upstreams.map((u) => ({
        name: u.name,
        url: u.url,
        default: u.name === app.router.default.name,
        state: u.breaker.state,
        failures: u.breaker.failures,
        retryInSeconds: u.breaker.retryInSeconds,
        rateLimit: {
          ...u.rateLimit,
          // When the window the upstream reported ends, counted from when it reported it.
          resetAt: u.rateLimit.observedAt !== null && u.rateLimit.windowSeconds !== null
            ? new Date(Date.parse(u.rateLimit.observedAt) + u.rateLimit.windowSeconds * 1000).toISOString()
            : null,
        },
      })),
      reservePulls: app.config.prewarm.reservePulls,
      fills,
      storage: stats === null ? null : {
        bytes: stats.bytes, blobs: stats.blobs, manifests: stats.manifests,
        maxSize: stats.maxSize, volumeBytes: space?.total ?? null, freeBytes: stats.freeBytes,
        highWatermark: stats.highWatermark, pinned: stats.pinned, storageFull: stats.storageFull,
      },
      gc: stats?.gc ?? null,
      evictions: stats?.evictions ?? null,
    };
  });

  app.get('/repositories', async (request) => {
    const { principal } = who(request);
    const raw = q(request, 'q');
    // A glob is matched as written; a plain word anywhere in the name (a substring test, much
    // cheaper than a glob over every name).
    const glob = raw !== null && /[*?]/.test(raw);
    const pattern = glob ? raw : null;
    if (raw !== null && !glob) compilePattern(raw); // the same refusal for characters no name has
    const nRaw = q(request, 'n');
    const n = nRaw === null ? 25 : Number(nRaw);
    if (!Number.isInteger(n) || n < 1 || n > INVENTORY_PAGE.max) throw registryError('PAGINATION_NUMBER_INVALID', `n must be 1 to ${INVENTORY_PAGE.max}`);
    const last = q(request, 'last');
    const inv = inventory();
    await opts.repositoriesReady();
    const upstreamSel = q(request, 'upstream');
    // Names only (cheap), filtered by what this user may see, then one page described. Hosted
    // repositories join the mirrored ones, sorted by the name a client uses.
    let names = upstreamSel === HOSTED ? [] : await inv.select({ pattern, upstream: upstreamSel });
    if (hostedView && (upstreamSel === null || upstreamSel === HOSTED)) {
      const re = pattern !== null ? compilePattern(pattern) : null;
      const own = (await hostedView.repositories()).filter((n) => !re || re.test(n)).map((n) => ({ repository: n, upstream: HOSTED, name: n }));
      names = [...names, ...own].sort((a, b) => (a.repository < b.repository ? -1 : a.repository > b.repository ? 1 : 0));
    }
    if (raw !== null && !glob) {
      const word = raw.toLowerCase();
      names = names.filter((r) => r.repository.toLowerCase().includes(word) || `${r.upstream}/${r.name}`.toLowerCase().includes(word));
    }
    const total = names.length;
    const visible = (r: { upstream: string; name: string }): boolean => policy.canSee(principal, r.upstream === HOSTED ? r.name : resource(r.upstream, r.name));
    if (!policy.seesAll(principal)) names = names.filter(visible);
    const after = last !== null ? names.filter((r) => r.repository > last) : names;
    const page = after.slice(0, n);
    // One inventory call per repository, side by side: each is a few small record reads, and on a
    // filesystem store running them one after another made a page of 50 take several times longer.
    const tagTtl = (u: string): number | null => app.router.upstream(u)?.tagTtl ?? null;
    const mirrored = page.filter((r) => r.upstream !== HOSTED);
    const [described, hostedSummaries] = await Promise.all([
      Promise.all(mirrored.map((r) => lifecycle().inventory([r], { tagTtl }))).then((d) => d.flat()),
      Promise.all(page.filter((r) => r.upstream === HOSTED).map((r) => hostedView?.summary(r.name) ?? null)),
    ]);
    const byKey = new Map(described.map((d) => [`${d.upstream}\u0000${d.name}`, d]));
    const byHosted = new Map(hostedSummaries.flatMap((h) => (h ? [[h.repository, h] as const] : [])));
    const repositories: (RepositorySummary & { hosted?: true; lastPushed?: string | null })[] = page.flatMap((r) => {
      if (r.upstream === HOSTED) {
        const h = byHosted.get(r.name);
        return h ? [{
          repository: r.name, upstream: HOSTED, name: r.name, hosted: true as const, tags: h.tags, tagNames: h.tagNames,
          manifests: h.manifests, bytes: h.bytes, blobs: h.blobs, lastPulled: null, lastPushed: h.lastPushed, pinned: false,
        }] : [];
      }
      const d = byKey.get(`${r.upstream}\u0000${r.name}`);
      if (!d) return [];
      return [{
        repository: r.repository, upstream: r.upstream, name: r.name, tags: d.tags.length, tagNames: d.tags.slice(0, 5).map((t) => t.tag),
        manifests: d.manifests.length, bytes: d.bytes, blobs: d.blobs,
        lastPulled: d.lastPulled === null ? null : new Date(d.lastPulled).toISOString(), pinned: d.pinned,
      }];
    });
    return { repositories, next: after.length > n ? (page[page.length - 1]?.repository ?? null) : null, total: policy.seesAll(principal) ? total : names.length };
  });

  /** A stored manifest's bytes (never from upstream); null when absent, malformed or too large to show. */
  const stored = async (digest: string): Promise<Buffer | null> => {
    const d = checkDigest(digest);
    if (!d.ok) return null;
    const bytes = await app.driver.readBlobBuffer(d.digest).catch(() => null);
    return bytes && bytes.length <= MAX_VIEW_BYTES ? bytes : null;
  };

  /**
   * Kind, platforms and size of one stored manifest. An index's size is the sum of its cached
   * platform images (config and layers), read from their manifests, up to MAX_CHILDREN of them.
   */
  const classify = async (digest: string, mediaType: string | null): Promise<{ kind: ManifestKind; platforms: string[]; size: number | null }> => {
    const bytes = await stored(digest);
    if (!bytes) return { kind: 'unknown', platforms: [], size: null };
    const shape = manifestShape(bytes, mediaType);
    const platforms = shape.platforms.map((p) => p.platform).filter((p): p is string => p !== null);
    if (shape.platforms.length === 0) return { kind: shape.kind, platforms, size: shape.size };
    let size = 0;
    for (const child of shape.platforms.slice(0, MAX_CHILDREN)) {
      const c = await stored(child.digest);
      size += c ? manifestShape(c, child.mediaType).size : 0;
    }
    return { kind: shape.kind, platforms, size };
  };

  app.get('/repository', async (request) => {
    const { principal } = who(request);
    const name = q(request, 'name');
    if (name === null) throw registryError('NAME_INVALID', 'give ?name=<repository>');
    const own = hostedVisible(request, name, q(request, 'upstream'));
    if (own !== null && hostedView) {
      const summary = await hostedView.summary(own);
      if (!summary) throw registryError('NAME_UNKNOWN', `hosted repository ${own} holds nothing yet`);
      const tags = (await hostedView.tags(own)).slice(0, MAX_TAGS_SHOWN);
      const kinds = new Map<string, Awaited<ReturnType<typeof classify>>>();
      for (const t of tags) if (!kinds.has(t.digest)) kinds.set(t.digest, await classify(t.digest, t.mediaType || null));
      return {
        repository: own, upstream: HOSTED, name: own, hosted: true, bytes: summary.bytes, blobs: summary.blobs,
        lastPulled: null, lastPushed: summary.lastPushed, pinned: false, pins: [], tagTtl: null,
        canDelete: policy.canDelete(principal, own),
        truncated: summary.tags > tags.length,
        tags: tags.map((t) => {
          const k = kinds.get(t.digest);
          return { ...t, lastPulled: null, lastChecked: null, stale: false, pinned: false, kind: k?.kind ?? 'unknown', platforms: k?.platforms ?? [], imageSize: k?.size ?? null };
        }),
      };
    }
    const routed = routeVisible(request, name, q(request, 'upstream'));
    const detail = await inventory().detail(routed.requested, routed.upstream.name);
    const shown = detail.tags.slice(0, MAX_TAGS_SHOWN);
    const kinds = new Map<string, Awaited<ReturnType<typeof classify>>>();
    for (const t of shown) if (!kinds.has(t.digest)) kinds.set(t.digest, await classify(t.digest, t.mediaType));
    return {
      ...detail,
      canDelete: policy.canDelete(principal, resource(routed.upstream.name, routed.name)),
      truncated: detail.tags.length > shown.length,
      tags: shown.map((t) => {
        const k = kinds.get(t.digest);
        return { ...t, kind: k?.kind ?? 'unknown', platforms: k?.platforms ?? [], imageSize: k?.size ?? null };
      }),
    };
  });

  app.get('/manifest', async (request) => {
    const name = q(request, 'name');
    const digestRaw = q(request, 'digest');
    if (name === null || digestRaw === null) throw registryError('NAME_INVALID', 'give ?name=<repository>&digest=<sha256:…>');
    const d = checkDigest(digestRaw);
    if (!d.ok) throw registryError('DIGEST_INVALID', d.reason);
    // What differs between a hosted and a mirrored repository: which tags name the manifest,
    // whether the repository holds it (and a child manifest, a layer), and its name for a pull.
    let src: {
      upstream: string; publicName: string; tags: string[]; mediaType: string | null;
      holdsManifest: (digest: Digest) => Promise<boolean>; holdsBlob: (digest: Digest) => Promise<boolean>;
    };
    const own = hostedVisible(request, name, q(request, 'upstream'));
    if (own !== null && hostedView) {
      const held = await hostedView.manifest(own, d.digest);
      if (!held) throw registryError('MANIFEST_UNKNOWN', `${d.digest} is not in hosted repository ${own}`);
      src = {
        upstream: HOSTED, publicName: own, mediaType: held.mediaType,
        tags: (await hostedView.tags(own)).filter((t) => t.digest === d.digest).map((t) => t.tag),
        holdsManifest: async (c) => (await hostedView.manifest(own, c)) !== null,
        holdsBlob: (c) => hostedView.holdsBlob(own, c),
      };
    } else {
      const routed = routeVisible(request, name, q(request, 'upstream'));
      const { upstream } = routed;
      // Shown only for a manifest this repository holds (linked to it, or a tag of it points at it),
      // as the registry serves a cached digest only to a repository it belongs to.
      const detail = await inventory().detail(routed.requested, upstream.name).catch(() => null);
      const tags = detail?.tags.filter((t) => t.digest === d.digest).map((t) => t.tag) ?? [];
      const linked = await app.mirror.meta.getLink(upstream.name, routed.name, d.digest);
      if (!linked && tags.length === 0) throw registryError('MANIFEST_UNKNOWN', `${d.digest} is not cached for ${name}`);
      const record = await app.mirror.meta.getManifest(d.digest);
      src = {
        upstream: upstream.name, publicName: app.router.publicName(upstream.name, routed.name), tags, mediaType: record?.mediaType ?? null,
        holdsManifest: async (c) => (await app.mirror.meta.getLink(upstream.name, routed.name, c).catch(() => null)) !== null,
        holdsBlob: async (c) => (await app.driver.statBlob(c).catch(() => null)) !== null,
      };
    }
    const { tags, publicName } = src;
    const bytes = await app.driver.readBlobBuffer(d.digest);
    if (!bytes) throw registryError('MANIFEST_UNKNOWN', `${d.digest} is not in the store`);
    if (bytes.length > MAX_VIEW_BYTES) throw registryError('MANIFEST_INVALID', 'manifest too large to show');
    const shape = manifestShape(bytes, src.mediaType);
    let config = null;
    if (shape.config && (shape.kind === 'image' || shape.kind === 'artifact') && shape.config.size <= MAX_VIEW_BYTES) {
      const c = checkDigest(shape.config.digest);
      const blob = c.ok ? await app.driver.readBlobBuffer(c.digest).catch(() => null) : null;
      config = blob ? configView(blob) : null;
    }
    const cachedLayers = await Promise.all(shape.layers.map(async (l) => {
      const c = checkDigest(l.digest);
      return c.ok ? src.holdsBlob(c.digest) : false;
    }));
    // A platform links to its own page when this repository holds it too.
    const children = await Promise.all(shape.platforms.map(async (p) => {
      const c = checkDigest(p.digest);
      return c.ok ? src.holdsManifest(c.digest) : false;
    }));
    // The referrers API is the hosted registry's; a mirror keeps no referrers of its own.
    const referrers = own !== null && hostedView ? await hostedView.referrers(own, d.digest) : null;
    const subjectDigest = shape.subject ? checkDigest(shape.subject.digest) : null;
    const subjectHeld = subjectDigest?.ok ? await src.holdsManifest(subjectDigest.digest) : false;
    const base = new URL(app.config.http.publicUrl ?? `${request.protocol}://${request.host}`);
    return {
      repository: publicName,
      upstream: src.upstream,
      hosted: own !== null,
      referrers,
      digest: d.digest,
      tags,
      ...shape,
      subject: shape.subject ? { ...shape.subject, cached: subjectHeld } : null,
      platforms: shape.platforms.map((p, i) => ({ ...p, cached: children[i] ?? false })),
      layers: shape.layers.map((l, i) => ({ ...l, cached: cachedLayers[i] ?? false })),
      imageConfig: config,
      raw: bytes.toString('utf8'),
      pull: pullCommands(base.host, base.protocol === 'http:', publicName, tags[0] ?? d.digest),
    };
  });

  app.post('/delete', async (request) => {
    const { principal } = who(request);
    const b = body(request);
    const name = typeof b['name'] === 'string' ? b['name'] : '';
    const upstreamName = typeof b['upstream'] === 'string' ? b['upstream'] : null;
    const refs = Array.isArray(b['references']) ? b['references'].filter((r): r is string => typeof r === 'string') : [];
    const dryRun = b['dryRun'] === true;
    if (name === '' || refs.length === 0) throw registryError('NAME_INVALID', 'send {"name": "<repository>", "references": ["<tag>" | "sha256:…"], "dryRun"?: true}');
    if (refs.length > MAX_DELETE) throw registryError('NAME_INVALID', `at most ${MAX_DELETE} tags or manifests at once`);
    for (const r of refs) {
      if (looksLikeDigest(r)) {
        const c = checkDigest(r);
        if (!c.ok) throw registryError('DIGEST_INVALID', c.reason);
      } else if (!isValidTag(r)) throw registryError('TAG_INVALID', `"${r}" is not a valid tag`);
    }
    const own = hostedVisible(request, name, upstreamName);
    if (own !== null && hostedView) {
      // The hosted registry's own delete rules: a tag delete drops the tag, a digest delete the
      // manifest with its tags; storage.deleteEnabled and a delete rule for the pushed name.
      if (!app.config.storage.deleteEnabled) throw registryError('UNSUPPORTED', 'deleting is off (storage.deleteEnabled is false)');
      if (!policy.canDelete(principal, own)) throw registryError('DENIED', `you may not delete in ${own} (auth.policy needs a delete rule for you or one of your roles)`);
      const plan = await hostedView.plan(own, refs);
      const note = 'hosted content is not fetched again: what is deleted is gone until it is pushed again; blobs stay while another manifest uses them, and garbage collection removes the rest after its grace period';
      if (dryRun) return { dryRun: true, hosted: true, ...plan, note };
      const results = [];
      for (const r of refs) {
        const deleted = await hostedView.delete(own, r);
        results.push({ reference: r, deleted });
        if (deleted) auditRequest(request, 'ui.delete', `${own}${looksLikeDigest(r) ? '@' : ':'}${r}`, { hosted: true });
      }
      return { dryRun: false, hosted: true, results, kept: plan.kept };
    }
    const routed = routeVisible(request, name, upstreamName);
    if (!app.config.storage.deleteEnabled) throw registryError('UNSUPPORTED', 'deleting is off (storage.deleteEnabled is false)');
    if (!policy.canDelete(principal, resource(routed.upstream.name, routed.name))) {
      throw registryError('DENIED', `you may not delete in ${resource(routed.upstream.name, routed.name)} (auth.policy needs a delete rule for you or one of your roles)`);
    }
    const detail = await inventory().detail(routed.requested, routed.upstream.name);
    const chosen = new Set(refs);
    // What stays although asked for: a manifest another (unselected) tag still points at, or a pinned one.
    const kept = detail.tags
      .filter((t) => chosen.has(t.tag))
      .flatMap((t) => {
        const others = detail.tags.filter((o) => o.digest === t.digest && !chosen.has(o.tag)).map((o) => o.tag);
        const reasons = [...(others.length > 0 ? [`its manifest stays: tag${others.length > 1 ? 's' : ''} ${others.join(', ')} still point${others.length > 1 ? '' : 's'} at it`] : []), ...(t.pinned ? ['its manifest stays: pre-warm pins it'] : [])];
        return reasons.length > 0 ? [{ reference: t.tag, digest: t.digest, reasons }] : [];
      });
    const unknown = refs.filter((r) => !looksLikeDigest(r) && !detail.tags.some((t) => t.tag === r));
    if (dryRun) return { dryRun: true, deletes: refs.length - unknown.length, unknown, kept, note: 'layers another cached image uses are always kept' };
    const results = [];
    for (const r of refs) {
      const report = await lifecycle().purge(routed.upstream.name, routed.name, r);
      results.push({ reference: r, deleted: report !== null, ...(report ?? {}) });
      if (report) auditRequest(request, 'ui.delete', `${resource(routed.upstream.name, routed.name)}${looksLikeDigest(r) ? '@' : ':'}${r}`, { ...report });
    }
    return { dryRun: false, results, kept };
  });

  app.post('/purge', async (request) => {
    needAdmin(request);
    const b = body(request);
    const text = (k: string): string | null => (typeof b[k] === 'string' && (b[k] as string).trim() !== '' ? (b[k] as string).trim() : null);
    const sel = { pattern: text('pattern'), upstream: text('upstream') };
    const dryRun = b['dryRun'] === true;
    const result = await inventory().purge(sel, dryRun);
    if (!dryRun) auditRequest(request, 'ui.purge', sel.pattern ?? `upstream ${sel.upstream ?? ''}`, { repositories: result.repositories.length, bytes: result.bytes });
    return result;
  });

  app.post('/gc', async (request) => {
    needAdmin(request);
    const dryRun = body(request)['dryRun'] === true;
    const report = await lifecycle().gc({ dryRun, list: dryRun });
    if (!dryRun) auditRequest(request, 'ui.gc', 'storage', { blobs: report.blobs, bytes: report.bytes });
    return { ...report, items: report.items?.slice(0, 200) ?? [], more: Math.max(0, (report.items?.length ?? 0) - 200) };
  });

  app.get('/prewarm', async (request) => {
    const { principal } = who(request);
    if (!app.prewarm) return { running: false, entries: [], reservePulls: app.config.prewarm.reservePulls, canRun: false };
    const listing = await app.prewarm.list();
    const visible = listing.entries.filter((e) => policy.canSee(principal, resource(e.upstream, e.name)));
    return { running: true, ...listing, entries: visible, canRun: policy.canAdmin(principal) };
  });

  app.post('/prewarm', async (request, reply) => {
    needAdmin(request);
    const ref = typeof body(request)['ref'] === 'string' ? (body(request)['ref'] as string).trim() : '';
    if (!app.prewarm) throw registryError('UNAVAILABLE', 'pre-warm is not running in this process');
    // The UI runs configured entries only; one-off refs go through the admin API and its rate.
    if (ref === '' || app.prewarm.find(ref) === null) throw registryError('NAME_INVALID', 'run now takes an image listed in prewarm.images');
    const run = await app.prewarm.enqueue(ref);
    auditRequest(request, 'ui.prewarm', run.entry.ref, { jobId: run.jobId, queued: run.queued });
    return reply.code(202).send({ jobId: run.jobId, queued: run.queued, ref: run.entry.ref });
  });

}
