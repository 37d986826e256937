/**
 * The access-controller seam. The HTTP layer says what a request needs (Distribution's rules:
 * GET/HEAD → repository:<name>:pull, DELETE → delete, _catalog → registry:catalog:*, /v2/ →
 * nothing) and the controller answers with the subject or throws a catalogued UNAUTHORIZED /
 * DENIED error carrying the exact challenge header.
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
  close?(): Promise<void>;
}

/** `auth.mode: none`: everyone may pull; nothing else is gated here. */
export class OpenAccess implements AccessController {
  readonly mode = 'none';
  async authorize(): Promise<Grant> {
    return { subject: null };
  }
}
