/**
 * The mirror's tag lists and catalog. Tags: the upstream's list (following its `Link` pages),
 * sorted and de-duplicated; when the upstream fails, the tags the cache knows. Catalog: the
 * repositories the cache holds, named as a client reaches them through this mirror.
 *
 * Imports: upstream/, registry records. Never Fastify.
 */
import { header } from '../upstream/client.js';
import { UpstreamError, toRegistryError } from '../upstream/errors.js';
import type { MirrorContext } from './mirror-context.js';
import type { Routed } from './routing.js';

/** Most upstream tag-list pages followed for one request. */
const MAX_TAG_PAGES = 100;

export class MirrorTags {
  constructor(private readonly ctx: MirrorContext) {}

  /** Tags of a repository: upstream's list, sorted; the tags the cache knows when upstream fails. */
  async listTags(r: Routed): Promise<string[]> {
    let tags: string[];
    try {
      tags = await this.fetchTags(r);
    } catch (err) {
      if (!(err instanceof UpstreamError)) throw err;
      const local = await this.ctx.meta.listTags(r.upstream.name, r.name);
      if (local.length === 0 || err.kind === 'not-found') throw toRegistryError(err, 'NAME_UNKNOWN');
      tags = local;
    }
    return [...new Set(tags)].sort();
  }

  private async fetchTags(r: Routed): Promise<string[]> {
    const client = this.ctx.upstreams.client(r.upstream);
    const out: string[] = [];
    let path: string | null = `/v2/${r.name}/tags/list`;
    for (let page = 0; path && page < MAX_TAG_PAGES; page++) {
      const res = await client.request({ method: 'GET', path, kind: 'tags', repository: r.name });
      const text = await res.body.text();
      let doc: { tags?: unknown };
      try {
        doc = JSON.parse(text) as { tags?: unknown };
      } catch {
        throw new UpstreamError(r.upstream.name, 'bad-response', `tags list of ${r.name} is not JSON`);
      }
      if (Array.isArray(doc.tags)) for (const t of doc.tags) if (typeof t === 'string') out.push(t);
      const link = header(res.headers, 'link');
      const next = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link)?.[1] : undefined;
      path = next ? new URL(next, 'http://x').pathname + new URL(next, 'http://x').search : null;
    }
    return out;
  }

  /** Cached repositories, named as a client reaches them through this mirror. */
  async catalog(publicName: (upstream: string, name: string) => string): Promise<string[]> {
    const repos = await this.ctx.meta.repositories();
    return repos.map(([u, n]) => publicName(u, n)).sort();
  }
}
