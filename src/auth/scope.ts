/**
 * What a request needs: one resource (a repository, or the registry for the catalog) and the
 * actions on it. The type every part of src/auth/ speaks, in a file of its own so access.ts,
 * policy.ts and challenge.ts need not import one another in a circle; and the name a token's
 * scope must give that repository (scopeName).
 */

export interface AccessItem {
  type: 'repository' | 'registry';
  /** Repository name as the client asked for it (the scope names it that way). */
  name: string;
  /** Upstream the repository routes to, for policy rules (`docker.io/library/*`). */
  upstream?: string;
  /** Name as cached (with `library/`), for policy rules. */
  cacheName?: string;
  /**
   * A hosted repository (push; no upstream): its scope and policy resource are the name as the
   * client sends it (`ci/app`).
   */
  hosted?: boolean;
  actions: string[];
}

/**
 * The docker reference grammar's test for a first path component that names a registry host
 * (the router's rule, src/registry/routing.ts isRegistryHost, repeated: auth imports no registry/).
 */
function isRegistryHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

/**
 * True when the client named the upstream in the path (`/v2/ghcr.io/org/app/...`): the router
 * stripped a leading registry host, so the cached name is what follows it (with `library/` on an
 * upstream that adds it). Exact for the router's output: a name it did not strip equals cacheName
 * (or `library/` + a one-component name), which never equals the part after a host component.
 */
export function upstreamInPath(item: AccessItem): boolean {
  const slash = item.name.indexOf('/');
  if (item.cacheName === undefined || slash <= 0 || !isRegistryHost(item.name.slice(0, slash))) return false;
  const rest = item.name.slice(slash + 1);
  return item.cacheName === rest || (!rest.includes('/') && item.cacheName === `library/${rest}`);
}

/** What scopeName needs to know of the configuration. */
export interface ScopeNaming {
  /** The default upstream's name. */
  defaultUpstream: string;
  /** Every configured upstream name and alias, lower-cased. */
  upstreamHosts: ReadonlySet<string>;
}

/**
 * The repository name a token's `access` claim (and the 401 challenge's scope) must carry for
 * this item: the name as the client named it, upstream included, so a token for one upstream's
 * `library/small` never pulls another upstream's `library/small`.
 *
 * - Named in the path (`ghcr.io/org/app`, or an alias): exactly as the client wrote it — what
 *   docker computes for `mirror/ghcr.io/org/app`.
 * - The default upstream (docker.io for dockerd's registry-mirrors, containerd's `?ns=docker.io`):
 *   the name as asked, as before (`library/alpine`) — unless its first component names a
 *   configured upstream, when it would read as that upstream's repository (`?ns=docker.io` for
 *   `ghcr.io/org/app`): then `<upstream>/<name>`.
 * - Any other upstream chosen by `?ns=` (containerd, BuildKit): `<upstream>/<name>`, the name the
 *   client's image reference has (`ghcr.io/org/app`).
 *
 * Catalog items and items without an upstream keep their name. Keycloak splits a scope on `:`,
 * so an upstream named `host:port` cannot appear in a token it issues: such an upstream's
 * repositories then get no token (refused, never opened).
 */
export function scopeName(item: AccessItem, naming: ScopeNaming): string {
  if (item.type !== 'repository' || item.upstream === undefined) return item.name;
  if (upstreamInPath(item)) return item.name;
  const slash = item.name.indexOf('/');
  const namesUpstream = slash > 0 && naming.upstreamHosts.has(item.name.slice(0, slash).toLowerCase());
  if (item.upstream.toLowerCase() === naming.defaultUpstream.toLowerCase() && !namesUpstream) return item.name;
  return `${item.upstream}/${item.name}`;
}
