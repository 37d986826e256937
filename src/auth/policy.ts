/**
 * The access policy (`auth.policy`): allow rules of subjects × actions × repositories. Keycloak's
 * stock docker-v2 mapper grants every action a client asks for, so what a token *may* do is
 * decided here, on its subject:
 *
 * - pull: any valid token pulls everything, until a rule names the `pull` action; from then on a
 *   pull needs a rule (`pull` or `*`) matching the subject and repository.
 * - push, delete, admin: always need a rule with a token. (Push happens only in hosted
 *   repositories; their resource in rules is the name as the client sends it, `ci/app`, with
 *   no upstream in front.) (`auth.mode: none` differs: delete is open
 *   until a rule names it, and the admin API is fenced by http.adminNetworks; see OpenAccess.)
 *
 * Subjects are username globs; the entry `anonymous` names only clients without a token (a
 * Keycloak user called "anonymous" does not match it), and `*` names everyone. Repositories are
 * globs over `<upstream>/<repository>` as cached (`docker.io/library/alpine`). In globs `*` matches
 * any run of characters, `/` included, and `?` one character; matching ignores case. `admin` is not
 * about one repository: a rule grants it only if its repositories include `*`.
 *
 * Roles (issue 15, the web UI's OpenID Connect login): a subject `role:NAME` (a glob too) names
 * anyone holding the role NAME, as the login's roles claim lists them. A username never matches a
 * `role:` entry, and a client of the registry API (a docker-v2 token) holds no roles.
 */
import type { PolicyRule } from '../config/types.js';
import { denied } from './challenge.js';
import type { AccessItem } from './scope.js';

export type PolicyAction = 'pull' | 'push' | 'delete' | 'admin';

/** The resource a repository item is judged on: `<upstream>/<name as cached>`, or a hosted repository's name. */
export function policyResource(item: AccessItem): string {
  return item.hosted ? item.name : `${item.upstream ?? ''}/${item.cacheName ?? item.name}`;
}

/** The subject name rules use for a client without a token. */
export const ANONYMOUS = 'anonymous';

/** The prefix of a rule subject that names a role rather than a user. */
export const ROLE_PREFIX = 'role:';

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'is');
}

interface CompiledRule {
  anonymous: boolean;
  everyone: boolean;
  subjects: RegExp[];
  /** `role:NAME` entries, as globs over role names. */
  roles: RegExp[];
  actions: Set<string>;
  repositories: RegExp[];
  allRepositories: boolean;
}

export class AccessPolicy {
  private readonly rules: CompiledRule[];
  /** True when no rule is configured at all. */
  readonly isEmpty: boolean;
  /** True when some rule names `pull`: pulls are then governed by rules rather than open to every token. */
  readonly restrictsPull: boolean;

  constructor(rules: readonly PolicyRule[]) {
    this.isEmpty = rules.length === 0;
    this.restrictsPull = rules.some((r) => r.actions.includes('pull'));
    this.rules = rules.map((r) => ({
      anonymous: r.subjects.includes(ANONYMOUS),
      everyone: r.subjects.includes('*'),
      subjects: r.subjects.filter((s) => s !== ANONYMOUS && s !== '*' && !s.startsWith(ROLE_PREFIX)).map(globToRegExp),
      roles: r.subjects.filter((s) => s.startsWith(ROLE_PREFIX)).map((s) => globToRegExp(s.slice(ROLE_PREFIX.length))),
      actions: new Set(r.actions),
      repositories: r.repositories.map(globToRegExp),
      allRepositories: r.repositories.includes('*'),
    }));
  }

  /**
   * May `subject` (null = anonymous) do `action` on `resource` (`<upstream>/<name>`; ignored for
   * admin)? `roles`: the roles the subject holds (UI logins), matched by `role:NAME` entries.
   */
  allows(subject: string | null, action: PolicyAction, resource: string | null, roles: readonly string[] = []): boolean {
    return this.rules.some((rule) => {
      if (!(rule.actions.has(action) || rule.actions.has('*'))) return false;
      const byRole = subject !== null && rule.roles.some((re) => roles.some((role) => re.test(role)));
      const who = rule.everyone || byRole || (subject === null ? rule.anonymous : rule.subjects.some((re) => re.test(subject)));
      if (!who) return false;
      if (action === 'admin') return rule.allRepositories;
      return resource !== null && rule.repositories.some((re) => re.test(resource));
    });
  }

  /**
   * Throw 403 DENIED unless `subject` may do every action of every repository item. Items without
   * an upstream (the catalog) are not the policy's business. `pullOpen`: pulls need no rule
   * (`auth.mode: none`, where everyone pulls).
   */
  enforce(subject: string | null, items: readonly AccessItem[], pullOpen: boolean): void {
    for (const item of items) {
      if (item.type !== 'repository' || (item.upstream === undefined && !item.hosted)) continue;
      const resource = policyResource(item);
      for (const action of item.actions) {
        if (action === 'pull' && (pullOpen || !this.restrictsPull)) continue;
        const known = action === 'pull' || action === 'delete' || action === 'push';
        if (!known || !this.allows(subject, action, resource)) {
          throw denied(`${subject === null ? ANONYMOUS : `"${subject}"`} may not ${action} ${resource} (auth.policy)`, [item]);
        }
      }
    }
  }

  /** Throw 403 DENIED unless `subject` has an admin rule. */
  enforceAdmin(subject: string | null): void {
    if (!this.allows(subject, 'admin', null)) {
      throw denied(`${subject === null ? ANONYMOUS : `"${subject}"`} may not use the admin API (auth.policy needs an admin rule)`);
    }
  }
}
