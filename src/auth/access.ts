/**
 * The access-controller seam. The HTTP layer says what a request needs (Distribution's rules:
 * GET/HEAD → repository:<name>:pull, DELETE → delete, _catalog → registry:catalog:*, /v2/ →
 * nothing) and the controller answers with the subject or throws a catalogued UNAUTHORIZED /
 * DENIED error carrying the exact challenge header.
 *
 * The folder: access.ts (this seam, and OpenAccess for `auth.mode: none`), policy.ts (auth.policy
 * rules), token.ts (the Keycloak docker-v2 token controller), keys.ts (trusted signing keys from
 * the certificate bundle and JWKS), jwt.ts (JWS parsing and pinned-algorithm verification),
 * challenge.ts (the exact 401 challenge), scope.ts (AccessItem, the type they share, and the
 * repository name a token's scope must carry: upstream included). It imports config/, errors.ts
 * and upstream/body.ts (the capped, deadlined body read the JWKS fetch shares), nothing from http/.
 */
import type { PolicyRule } from '../config/types.js';
import { AccessPolicy } from './policy.js';
import type { AccessItem } from './scope.js';

export type { AccessItem } from './scope.js';

export interface AuthInput {
  authorization: string | undefined;
  /** Client address after trusted-proxy handling. */
  ip: string;
}

export interface Grant {
  /** Username from the token, or null for anonymous access. */
  subject: string | null;
}

export interface AccessController {
  readonly mode: string;
  authorize(input: AuthInput, access: AccessItem[]): Promise<Grant>;
  /**
   * The admin API (/api/v1): policy action `admin`. Throws UNAUTHORIZED (with the challenge, no
   * scope) or DENIED. Optional so a test double may leave it out; both real controllers have it.
   */
  authorizeAdmin?(input: AuthInput): Promise<Grant>;
  close?(): Promise<void>;
}

/**
 * `auth.mode: none`: everyone pulls, as the anonymous subject. Delete (with storage.deleteEnabled)
 * is open too until a rule names `delete`; from then on it needs a rule for `anonymous`. Who may
 * use the admin API is decided by network (http.adminNetworks, src/http/admin-guard.ts); rules
 * govern it only once one names `admin`, so a delete rule alone does not lock the admin API.
 */
export class OpenAccess implements AccessController {
  readonly mode = 'none';
  private readonly policy: AccessPolicy;
  private readonly deleteRuled: boolean;
  private readonly pushRuled: boolean;
  private readonly adminRuled: boolean;
  /** Actions open to everyone here (no rule names them yet): made once, not per request. */
  private readonly open: ReadonlySet<string>;

  constructor(rules: readonly PolicyRule[] = []) {
    this.policy = new AccessPolicy(rules);
    const names = (action: string): boolean => rules.some((r) => r.actions.includes(action) || r.actions.includes('*'));
    this.deleteRuled = names('delete');
    // Push reaches only names a `repositories` rule made hosted (that rule is the opt-in); it is
    // open to everyone who reaches the port until a policy rule names `push`.
    this.pushRuled = names('push');
    this.adminRuled = names('admin');
    this.open = new Set([...(this.deleteRuled ? [] : ['delete']), ...(this.pushRuled ? [] : ['push'])]);
  }

  async authorize(_input?: AuthInput, access: AccessItem[] = []): Promise<Grant> {
    const open = this.open;
    // A pull names no open action: the items go to the policy as they are (no copies per request).
    const items = open.size === 0 || access.every((i) => !i.actions.some((a) => open.has(a)))
      ? access
      : access.map((i) => ({ ...i, actions: i.actions.filter((a) => !open.has(a)) }));
    this.policy.enforce(null, items, true);
    return { subject: null };
  }

  async authorizeAdmin(): Promise<Grant> {
    if (this.adminRuled) this.policy.enforceAdmin(null);
    return { subject: null };
  }
}
