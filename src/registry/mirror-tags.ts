/**
 * The mirror's tag lists and catalog. Tags: the upstream's list (following its `Link` pages),
 * sorted and de-duplicated; when the upstream fails, the tags the cache knows. Catalog: the
 * repositories the cache holds, named as a client reaches them through this mirror.
 *
 * Imports: upstream/, registry records. Never Fastify.
 */
import { UpstreamError, toRegistryError } from '../upstream/errors.js';
import type { MirrorContext } from './mirror-context.js';
import type { Routed } from './routing.js';

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
    // Paginated, capped and under the request deadline: upstream/tags.ts.
    return this.ctx.upstreams.client(r.upstream).listTags(r.name);
  }

  /** Cached repositories, named as a client reaches them through this mirror. */
  async catalog(publicName: (upstream: string, name: string) => string): Promise<string[]> {
    const repos = await this.ctx.meta.repositories();
    return repos.map(([u, n]) => publicName(u, n)).sort();
  }
}
