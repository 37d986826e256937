/**
 * The access-controller seam. The HTTP layer says what a request needs (Distribution's rules:
 * GET/HEAD → repository:<name>:pull, DELETE → delete, _catalog → registry:catalog:*, /v2/ →
 * nothing) and the controller answers with the subject or throws a catalogued UNAUTHORIZED /
 * DENIED error carrying the exact challenge header.
 *
 * The folder: access.ts (this seam, and OpenAccess for `auth.mode: none`), policy.ts (auth.policy
 * rules), token.ts (the Keycloak docker-v2 token controller), keys.ts (trusted signing keys from
 * the certificate bundle and JWKS), jwt.ts (JWS parsing and pinned-algorithm verification),
 * challenge.ts (the exact 401 challenge), scope.ts (AccessItem, the type they share). It imports
 * config/ and errors.ts, nothing from http/.
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
 * `auth.mode: none`: everyone pulls, as the anonymous subject. Delete needs an `auth.policy` rule
 * for `anonymous`; so does the admin API, except when no rule is configured at all, which keeps
 * the admin API of a fresh, unconfigured install usable.
 */
export class OpenAccess implements AccessController {
  readonly mode = 'none';
  private readonly policy: AccessPolicy;

  constructor(rules: readonly PolicyRule[] = []) {
    this.policy = new AccessPolicy(rules);
  }

  async authorize(_input?: AuthInput, access: AccessItem[] = []): Promise<Grant> {
    this.policy.enforce(null, access, true);
    return { subject: null };
  }

  async authorizeAdmin(): Promise<Grant> {
    if (!this.policy.isEmpty) this.policy.enforceAdmin(null);
    return { subject: null };
  }
}
