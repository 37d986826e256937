/**
 * Who is using the UI and what they may do, decided by the same `auth.policy` as the registry:
 *
 *  - `login` (ui.oidc set): the user from the session; `role:NAME` rules match the roles from the
 *    login's roles claim. See (pull) follows the registry: open with auth.mode none, otherwise
 *    every logged-in user until a rule names `pull`. Delete needs a delete rule (and
 *    storage.deleteEnabled); purge, GC and pre-warm need an admin rule.
 *  - `open` (no ui.oidc, auth.mode none): read-only for everyone; delete and admin actions only for
 *    clients in http.adminNetworks (the admin API's network rule), and only as the policy lets the
 *    anonymous subject once a rule names the action (as OpenAccess does).
 *  - `closed` (no ui.oidc, auth.mode token): nobody could prove who they are, so the UI's API
 *    answers 403 and says to configure ui.oidc.
 */
import type { BerthConfig } from '../config/types.js';
import { AccessPolicy } from '../auth/policy.js';
import { compileNetworks } from '../http/networks.js';

export type UiMode = 'login' | 'open' | 'closed';

export interface Principal {
  /** The username (login mode), or null (anonymous). */
  subject: string | null;
  roles: string[];
  /** Client address, for the admin network rule. */
  ip: string;
}

export class UiPolicy {
  readonly mode: UiMode;
  private readonly policy: AccessPolicy;
  private readonly pullOpen: boolean;
  private readonly deleteEnabled: boolean;
  private readonly networks: ReturnType<typeof compileNetworks>;
  private readonly deleteRuled: boolean;
  private readonly adminRuled: boolean;

  constructor(config: BerthConfig) {
    this.mode = config.ui.oidc.issuer !== null ? 'login' : config.auth.mode === 'none' ? 'open' : 'closed';
    this.policy = new AccessPolicy(config.auth.policy);
    this.pullOpen = config.auth.mode === 'none';
    this.deleteEnabled = config.storage.deleteEnabled;
    this.networks = compileNetworks(config.http.adminNetworks, 'http.adminNetworks');
    const names = (action: string): boolean => config.auth.policy.some((r) => r.actions.includes(action) || r.actions.includes('*'));
    this.deleteRuled = names('delete');
    this.adminRuled = names('admin');
  }

  /** May `who` see `resource` (`<upstream>/<name>`)? */
  canSee(who: Principal, resource: string): boolean {
    if (this.mode === 'closed') return false;
    if (this.mode === 'open' || this.pullOpen || !this.policy.restrictsPull) return true;
    return this.policy.allows(who.subject, 'pull', resource, who.roles);
  }

  /** May `who` delete tags and manifests of `resource`? */
  canDelete(who: Principal, resource: string): boolean {
    if (!this.deleteEnabled || this.mode === 'closed') return false;
    if (this.mode === 'open') {
      return this.networks.has(who.ip) && (!this.deleteRuled || this.policy.allows(null, 'delete', resource));
    }
    return this.policy.allows(who.subject, 'delete', resource, who.roles);
  }

  /** May `who` purge, run GC and pre-warm? */
  canAdmin(who: Principal): boolean {
    if (this.mode === 'closed') return false;
    if (this.mode === 'open') return this.networks.has(who.ip) && (!this.adminRuled || this.policy.allows(null, 'admin', null));
    return this.policy.allows(who.subject, 'admin', null, who.roles);
  }

  /** May `who` see every repository (no per-repository filtering needed)? */
  seesAll(who: Principal): boolean {
    if (this.mode === 'closed') return false;
    void who;
    return this.mode === 'open' || this.pullOpen || !this.policy.restrictsPull;
  }
}

/** Read a dotted claim path (`realm_access.roles`) as a list of strings; anything else is no roles. */
export function rolesFromClaims(claims: Record<string, unknown> | undefined, path: string): string[] | null {
  let cur: unknown = claims;
  for (const part of path.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) return null;
    cur = (cur as Record<string, unknown>)[part];
  }
  if (!Array.isArray(cur)) return null;
  return cur.filter((r): r is string => typeof r === 'string');
}
