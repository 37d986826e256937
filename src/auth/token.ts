/**
 * `auth.mode: token`: Docker registry v2 bearer tokens, as Keycloak's docker-v2 protocol issues
 * them and as Distribution validates them, then the access policy on the token's subject.
 *
 * A request is checked in this order:
 * 1. No `Bearer` credential: anonymous pull from `auth.anonymous.networks` when allowed, else the
 *    401 challenge naming the scope to ask for.
 * 2. The token: claims first (`iss` exact, `aud` contains the service, `exp`/`nbf` with 60 s
 *    leeway, a missing `exp` is expired), then the signing key (x5c chain, `jwk`, or `kid`) and
 *    the signature with the algorithm pinned to the key. Any failure → 401 `invalid_token`.
 * 3. The `access` claim must cover every requested action (`*` covers all) → else 401
 *    `insufficient_scope`. A repository is named as scope.ts scopeName says: upstream included
 *    for every upstream but the default one, so a token is good for one upstream's repository
 *    only; the challenge names the same scope.
 * 4. The policy (policy.ts) on `sub` → else 403 DENIED.
 */
import { BlockList, isIP } from 'node:net';
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import type { Logger } from 'pino';
import type { BerthConfig } from '../config/types.js';
import type { AccessController, AccessItem, AuthInput, Grant } from './access.js';
import { unauthorized, type ChallengeError } from './challenge.js';
import { TokenError, parseJws, verifySignature } from './jwt.js';
import { TrustStore, jwkThumbprint, libtrustKeyId, type TrustedKey } from './keys.js';
import { AccessPolicy, policyResource } from './policy.js';
import { scopeName, type ScopeNaming } from './scope.js';

/** Clock skew tolerated on exp and nbf, as Distribution allows. */
export const LEEWAY_SECONDS = 60;

export interface VerifiedToken {
  subject: string;
  /** `<type>:<name>` → granted actions (class suffixes such as `(plugin)` dropped). */
  access: Map<string, Set<string>>;
}

export interface TokenAccessOptions {
  realm: string;
  service: string;
  issuer: string;
  /** The default upstream and every upstream host: how repositories are named in scopes. */
  naming: ScopeNaming;
  anonymousPull: boolean;
  anonymousNetworks: string[];
  policy: AccessPolicy;
  trust: TrustStore;
  log: Logger;
  now?: () => number;
}

/**
 * The token in an Authorization header: null when there is no Bearer credential at all (absent,
 * Basic, another scheme), else the text after `Bearer` (possibly empty, which then fails).
 */
export function bearerToken(header: string | undefined): string | null {
  if (header === undefined) return null;
  const m = /^\s*bearer(?:\s+(.*?))?\s*$/is.exec(header);
  if (m === null) return null;
  return m[1] ?? '';
}

function accessSet(claim: unknown): Map<string, Set<string>> {
  const set = new Map<string, Set<string>>();
  if (!Array.isArray(claim)) return set;
  for (const entry of claim) {
    if (typeof entry !== 'object' || entry === null) continue;
    const { type, name, actions } = entry as Record<string, unknown>;
    if (typeof type !== 'string' || typeof name !== 'string' || !Array.isArray(actions)) continue;
    // scope.md: the resource class (`repository(plugin)`) is deprecated and treated as its type.
    const key = `${type.replace(/\(.*\)$/, '')}:${name}`;
    const granted = set.get(key) ?? new Set<string>();
    for (const a of actions) if (typeof a === 'string') granted.add(a);
    set.set(key, granted);
  }
  return set;
}

/** The first requested item the token's access does not cover, or null. */
export function uncovered(access: Map<string, Set<string>>, items: readonly AccessItem[]): AccessItem | null {
  for (const item of items) {
    const granted = access.get(`${item.type}:${item.name}`);
    if (granted === undefined) return item;
    if (granted.has('*')) continue;
    if (!item.actions.every((a) => granted.has(a))) return item;
  }
  return null;
}

/** How scopes name repositories: the default upstream (by its configured name, though the config may give an alias) and every upstream host. */
function scopeNaming(config: BerthConfig): ScopeNaming {
  const want = config.defaultUpstream.toLowerCase();
  const d = config.upstreams.find((u) => u.name.toLowerCase() === want || u.aliases.some((a) => a.toLowerCase() === want));
  const upstreamHosts = new Set(config.upstreams.flatMap((u) => [u.name, ...u.aliases]).map((h) => h.toLowerCase()));
  return { defaultUpstream: d?.name ?? config.defaultUpstream, upstreamHosts };
}

function clip(s: string, max = 200): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

export class TokenAccess implements AccessController {
  readonly mode = 'token';
  private readonly networks = new BlockList();
  private readonly now: () => number;

  constructor(private readonly o: TokenAccessOptions) {
    this.now = o.now ?? Date.now;
    for (const cidr of o.anonymousNetworks) {
      const [addr = '', bits] = cidr.split('/');
      const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.networks.addAddress(addr, family);
      else this.networks.addSubnet(addr, Number(bits), family);
    }
  }

  /** Build from the configuration and load the trusted keys (ConfigError if a file is unusable). */
  static async create(config: BerthConfig, log: Logger, opts: { now?: () => number } = {}): Promise<TokenAccess> {
    const t = config.auth.token;
    if (t.realm === null || t.service === null || t.issuer === null) {
      throw new Error('auth.mode token needs auth.token.realm, service and issuer (the config loader should have said so)');
    }
    const trust = new TrustStore({
      rootCertBundle: t.rootCertBundle,
      jwks: t.jwks,
      refreshMs: t.jwksRefresh,
      log: log.child({ component: 'auth' }),
      ...(opts.now ? { now: opts.now } : {}),
    });
    await trust.start();
    if (trust.size === 0) log.error('auth.mode token: no trusted signing key is loaded yet; every token is refused until one is');
    return new TokenAccess({
      realm: t.realm,
      service: t.service,
      issuer: t.issuer,
      naming: scopeNaming(config),
      anonymousPull: config.auth.anonymous.pull,
      anonymousNetworks: config.auth.anonymous.networks,
      policy: new AccessPolicy(config.auth.policy),
      trust,
      log: log.child({ component: 'auth' }),
      ...(opts.now ? { now: opts.now } : {}),
    });
  }

  async authorize(input: AuthInput, requested: AccessItem[]): Promise<Grant> {
    // The token must cover, and the challenge names, each repository by its scope name (upstream
    // included); the policy and the anonymous rule go by upstream and cached name as before.
    const items = requested.map((i) => ({ ...i, name: scopeName(i, this.o.naming) }));
    const raw = bearerToken(input.authorization);
    if (raw === null) {
      if (this.anonymousMayPull(input.ip, requested)) return { subject: null };
      throw this.challenge(items);
    }
    const token = await this.verifyOrChallenge(raw, input, items);
    const missing = uncovered(token.access, items);
    if (missing !== null) {
      this.o.log.debug({ subject: token.subject, ip: input.ip, needs: `${missing.type}:${missing.name}:${missing.actions.join(',')}` }, 'token does not cover the request');
      throw this.challenge(items, 'insufficient_scope');
    }
    this.o.policy.enforce(token.subject, requested, false);
    return { subject: token.subject };
  }

  async authorizeAdmin(input: AuthInput): Promise<Grant> {
    const raw = bearerToken(input.authorization);
    if (raw === null) throw this.challenge([]);
    const token = await this.verifyOrChallenge(raw, input, []);
    this.o.policy.enforceAdmin(token.subject);
    return { subject: token.subject };
  }

  /** Validate a raw token (claims, key, signature). Throws TokenError with the reason. */
  async verify(raw: string): Promise<VerifiedToken> {
    const jws = parseJws(raw);
    const c = jws.claims;
    // Claims before the key, as registry:2 does: a stale or foreign token costs no key lookup
    // (and cannot make the JWKS be fetched again).
    if (c['iss'] !== this.o.issuer) throw new TokenError(`issuer ${clip(JSON.stringify(c['iss']) ?? 'missing')} is not auth.token.issuer`);
    const aud = c['aud'];
    const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
    if (!audiences.includes(this.o.service)) throw new TokenError(`audience ${clip(JSON.stringify(aud) ?? 'missing')} does not include "${this.o.service}"`);
    const now = this.now() / 1000;
    const exp = c['exp'];
    if (typeof exp !== 'number' || !Number.isFinite(exp)) throw new TokenError('token has no numeric exp');
    if (now > exp + LEEWAY_SECONDS) throw new TokenError(`token expired at ${new Date(exp * 1000).toISOString()}`);
    const nbf = c['nbf'];
    if (nbf !== undefined) {
      if (typeof nbf !== 'number' || !Number.isFinite(nbf)) throw new TokenError('token nbf is not a number');
      if (now < nbf - LEEWAY_SECONDS) throw new TokenError(`token not valid before ${new Date(nbf * 1000).toISOString()}`);
    }
    const key = await this.signingKey(jws.header);
    verifySignature(jws, key.key, key.algorithms);
    return { subject: typeof c['sub'] === 'string' ? c['sub'] : '', access: accessSet(c['access']) };
  }

  /** Ready once at least one signing key is loaded. */
  readiness(): { ok: boolean; detail?: string } {
    const n = this.o.trust.size;
    return n > 0 ? { ok: true } : { ok: false, detail: 'no trusted token signing key loaded (auth.token.rootCertBundle / jwks)' };
  }

  async close(): Promise<void> {
    this.o.trust.close();
  }

  // -------------------------------------------------------------------------------------------

  private challenge(items: readonly AccessItem[], error?: ChallengeError) {
    return unauthorized(this.o.realm, this.o.service, items, error);
  }

  private async verifyOrChallenge(raw: string, input: AuthInput, items: readonly AccessItem[]): Promise<VerifiedToken> {
    try {
      return await this.verify(raw);
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      this.o.log.info({ ip: input.ip, reason: err.message }, 'token refused');
      throw this.challenge(items, 'invalid_token');
    }
  }

  private anonymousMayPull(ip: string, items: readonly AccessItem[]): boolean {
    if (!this.o.anonymousPull || !this.inNetworks(ip)) return false;
    return items.every(
      (i) =>
        i.type === 'repository' &&
        i.actions.every((a) => a === 'pull') &&
        (!this.o.policy.restrictsPull || this.o.policy.allows(null, 'pull', policyResource(i))),
    );
  }

  private inNetworks(ip: string): boolean {
    const v = isIP(ip);
    return v !== 0 && this.networks.check(ip, v === 6 ? 'ipv6' : 'ipv4');
  }

  /** x5c → chain to the bundle; jwk → the trusted key it names; kid → the index (refetching once). */
  private async signingKey(header: Record<string, unknown>): Promise<TrustedKey> {
    const { trust } = this.o;
    if (header['x5c'] !== undefined) return trust.keyFromChain(header['x5c']);
    const jwk = header['jwk'];
    if (jwk !== undefined) {
      // Only trusted key material is used: the header's key merely says which one.
      if (typeof jwk !== 'object' || jwk === null) throw new TokenError('jwk header is not an object');
      const ids: string[] = [];
      const kid = (jwk as { kid?: unknown }).kid;
      if (typeof kid === 'string') ids.push(kid);
      try {
        const k = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
        ids.push(libtrustKeyId(k));
        const thumb = jwkThumbprint(k);
        if (thumb !== null) ids.push(thumb);
      } catch {
        // not a usable key: only its kid can name a trusted one
      }
      for (const id of ids) {
        const hit = trust.lookup(id);
        if (hit !== undefined) return hit;
      }
      throw new TokenError('token jwk header names no trusted key');
    }
    const kid = header['kid'];
    if (typeof kid !== 'string' || kid === '') throw new TokenError('token header has neither x5c nor kid');
    let key = trust.lookup(kid);
    if (key === undefined && trust.canRefetch()) {
      await trust.refetchForUnknownKid();
      key = trust.lookup(kid);
    }
    if (key === undefined) throw new TokenError(`token signed by untrusted key with ID "${clip(kid, 100)}"`);
    return key;
  }
}

/**
 * What `auth.mode: token` adds to the server (src/wiring.ts): the controller factory, and a
 * readiness check that fails while no signing key is loaded (say, the JWKS URL never answered).
 * Typed structurally so this folder needs nothing from http/.
 */
export function tokenAuthOptions(config: BerthConfig): {
  accessFactory?: (config: BerthConfig, log: Logger) => Promise<AccessController>;
  readiness?: Array<{ name: string; check(): Promise<{ ok: boolean; detail?: string }> }>;
} {
  if (config.auth.mode !== 'token') return {};
  let controller: TokenAccess | undefined;
  return {
    accessFactory: async (cfg, log) => (controller = await TokenAccess.create(cfg, log)),
    readiness: [{ name: 'auth', check: async () => controller?.readiness() ?? { ok: false, detail: 'token auth is not started' } }],
  };
}
