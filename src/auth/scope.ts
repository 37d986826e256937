/**
 * What a request needs: one resource (a repository, or the registry for the catalog) and the
 * actions on it. The type every part of src/auth/ speaks, in a file of its own so access.ts,
 * policy.ts and challenge.ts need not import one another in a circle.
 */

export interface AccessItem {
  type: 'repository' | 'registry';
  /** Repository name as the client asked for it (the scope names it that way). */
  name: string;
  /** Upstream the repository routes to, for policy rules (`docker.io/library/*`). */
  upstream?: string;
  /** Name as cached (with `library/`), for policy rules. */
  cacheName?: string;
  actions: string[];
}
