/**
 * A repository's tag list, read from the upstream page by page (`?n=` and the `Link: <…>;
 * rel="next"` header, as Distribution and Docker Hub paginate) so no single answer has to be
 * large, with every page under the client's body cap and deadline and the whole list under
 * `maxTags`. A next link must stay on the upstream's origin and on this repository's tag list,
 * and must move forward: a loop or a hop elsewhere ends the listing as a bad response.
 */
import { UpstreamError } from './errors.js';

/** Tags asked for per page: Distribution's default page size, and what Docker Hub accepts. */
export const TAGS_PAGE_SIZE = 1000;

/** What the listing needs of the client (client.ts implements it; no import back into it). */
interface PageSource {
  readonly name: string;
  fetchBuffered(req: { method: 'GET'; path: string; kind: 'tags'; repository: string }): Promise<{
    headers: Record<string, string | string[] | undefined>;
    bytes: Buffer;
  }>;
}

export async function listTags(client: PageSource, base: URL, repository: string, maxTags: number): Promise<string[]> {
  const listPath = `/v2/${repository}/tags/list`;
  const prefix = base.pathname.replace(/\/$/, '');
  const out: string[] = [];
  const seen = new Set<string>();
  let path: string | null = `${listPath}?n=${TAGS_PAGE_SIZE}`;
  while (path !== null) {
    seen.add(path);
    const res = await client.fetchBuffered({ method: 'GET', path, kind: 'tags', repository });
    let doc: { tags?: unknown };
    try {
      doc = JSON.parse(res.bytes.toString('utf8')) as { tags?: unknown };
    } catch {
      throw new UpstreamError(client.name, 'bad-response', `tags list of ${repository} is not JSON`);
    }
    const tags = typeof doc === 'object' && doc !== null && Array.isArray(doc.tags) ? (doc.tags as unknown[]) : [];
    for (const t of tags) if (typeof t === 'string') out.push(t);
    if (out.length > maxTags) {
      throw new UpstreamError(client.name, 'bad-response', `tags list of ${repository} has more than ${maxTags} tags (maxTags)`, {
        causeCode: 'TOO_MANY_TAGS',
      });
    }
    path = nextPage(client.name, res.headers['link'], base, prefix, listPath);
    if (path !== null && seen.has(path)) {
      throw new UpstreamError(client.name, 'bad-response', `tags list of ${repository}: the next link repeats a page (${path})`);
    }
    // An empty page with a next link would let an upstream keep this loop going for ever.
    if (path !== null && tags.length === 0) {
      throw new UpstreamError(client.name, 'bad-response', `tags list of ${repository}: an empty page links to another`);
    }
  }
  return out;
}

/** The path (below the upstream's base) of the next page, or null when there is none or it leads elsewhere. */
function nextPage(upstream: string, link: string | string[] | undefined, base: URL, prefix: string, listPath: string): string | null {
  const value = Array.isArray(link) ? link.join(', ') : link;
  const target = value ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(value)?.[1] : undefined;
  if (target === undefined) return null;
  const url = URL.canParse(target, base.href) ? new URL(target, base) : null;
  if (url === null || url.origin !== base.origin || url.pathname !== `${prefix}${listPath}`) {
    throw new UpstreamError(upstream, 'bad-response', `tags list: next link "${target}" leaves ${base.origin}${prefix}${listPath}`);
  }
  return url.pathname.slice(prefix.length) + url.search;
}
