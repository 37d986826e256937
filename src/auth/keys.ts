/**
 * The keys Berth trusts to sign tokens, from `auth.token.rootCertBundle` (PEM certificates, such
 * as Keycloak's `localhost_trust_chain.pem`, or PEM public keys) and `auth.token.jwks` (a file, or
 * a URL such as Keycloak's `/realms/<r>/protocol/openid-connect/certs`).
 *
 * Every key is indexed under each id a token's `kid` may carry:
 * - its libtrust fingerprint (what Keycloak's docker-v2 tokens and registry:2 use),
 * - its RFC 7638 JWK thumbprint (what registry:3 derives from a certificate),
 * - the explicit `kid` of its JWKS entry.
 * A token may instead carry an `x5c` chain, which must lead to a certificate of the bundle.
 *
 * Both sources are read again every `auth.token.jwksRefresh`, and a JWKS URL also when a token
 * names a key id nobody knows (at most once per UNKNOWN_KID_COOLDOWN_MS), so a realm key rotation
 * needs no restart. A failing refresh keeps the keys loaded before and logs why. A JWKS URL is
 * read under a byte cap and one deadline for the whole exchange (JwksFetchLimits).
 */
import { createHash, createPublicKey, X509Certificate, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { request, type Dispatcher } from 'undici';
import { ConfigError } from '../config/errors.js';
import { discard, readCapped } from '../upstream/body.js';
import { TokenError, algorithmsFor } from './jwt.js';

/** The shortest gap between two JWKS fetches caused by unknown key ids (abuse guard). */
export const UNKNOWN_KID_COOLDOWN_MS = 10_000;
/** While no JWKS has ever loaded, retry this often (or every jwksRefresh, if shorter). */
const INITIAL_RETRY_MS = 10_000;
/** A realm's JWKS is a few KiB (Keycloak lists 2-4 keys with their certificates); 1 MiB is ample. */
export const JWKS_MAX_BYTES = 1024 * 1024;
/** The whole JWKS exchange; it may run on the request path (an unknown kid), so it stays short. */
export const JWKS_DEADLINE_MS = 10_000;
/** Longest x5c chain followed. */
const MAX_CHAIN = 10;

export interface TrustedKey {
  key: KeyObject;
  /** Where it came from, for logs: `rootCertBundle[0]`, `jwks kid=…`. */
  source: string;
  /** Algorithms this key may verify (its JWKS `alg`, else every one its type allows). */
  algorithms: string[];
  /** libtrust id, RFC 7638 thumbprint, and the explicit JWKS kid when there is one. */
  ids: string[];
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32NoPad(bytes: Uint8Array): string {
  let out = '';
  let acc = 0;
  let n = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    n += 8;
    while (n >= 5) {
      n -= 5;
      out += BASE32.charAt((acc >> n) & 0x1f);
    }
    acc &= 0xff;
  }
  if (n > 0) out += BASE32.charAt((acc << (5 - n)) & 0x1f);
  return out;
}

/**
 * The libtrust key id: SHA-256 of the SubjectPublicKeyInfo DER, first 240 bits, base32 without
 * padding (48 characters), in 12 groups of 4 joined by ':'. This is docker/libtrust's
 * keyIDFromCryptoKey and Keycloak's DockerKeyIdentifier.
 */
export function libtrustKeyId(key: KeyObject): string {
  const digest = createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest();
  const text = base32NoPad(digest.subarray(0, 30));
  const groups: string[] = [];
  for (let i = 0; i < text.length; i += 4) groups.push(text.slice(i, i + 4));
  return groups.join(':');
}

/** RFC 7638: SHA-256 over the required members in lexicographic order, base64url. */
export function jwkThumbprint(key: KeyObject): string | null {
  const jwk = key.export({ format: 'jwk' });
  let members: Array<[string, unknown]>;
  if (jwk.kty === 'RSA') members = [['e', jwk.e], ['kty', jwk.kty], ['n', jwk.n]];
  else if (jwk.kty === 'EC') members = [['crv', jwk.crv], ['kty', jwk.kty], ['x', jwk.x], ['y', jwk.y]];
  else if (jwk.kty === 'OKP') members = [['crv', jwk.crv], ['kty', jwk.kty], ['x', jwk.x]];
  else return null;
  const canonical = JSON.stringify(Object.fromEntries(members));
  return createHash('sha256').update(canonical).digest('base64url');
}

function trusted(key: KeyObject, source: string, extraId?: string, algorithms?: string[]): TrustedKey | null {
  const usable = algorithmsFor(key);
  if (usable.length === 0) return null;
  const ids = [libtrustKeyId(key)];
  const thumb = jwkThumbprint(key);
  if (thumb !== null) ids.push(thumb);
  if (extraId !== undefined && extraId !== '' && !ids.includes(extraId)) ids.push(extraId);
  return { key, source, algorithms: algorithms ?? usable, ids };
}

const PEM_BLOCK = /-----BEGIN ([A-Z ]+)-----[\s\S]*?-----END \1-----/g;

/** Certificates and public keys of a PEM bundle. Throws a message naming the block at fault. */
export function parsePemBundle(text: string, name: string): { keys: TrustedKey[]; roots: X509Certificate[] } {
  const keys: TrustedKey[] = [];
  const roots: X509Certificate[] = [];
  let index = 0;
  for (const m of text.matchAll(PEM_BLOCK)) {
    const label = m[1];
    const where = `${name}[${index}]`;
    index++;
    if (label === 'CERTIFICATE') {
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(m[0]);
      } catch (err) {
        throw new Error(`${where}: not a valid certificate (${(err as Error).message})`);
      }
      roots.push(cert);
      const t = trusted(cert.publicKey, `${where} ${cert.subject.replace(/\n/g, ', ')}`);
      if (t === null) throw new Error(`${where}: the certificate's ${String(cert.publicKey.asymmetricKeyType)} key cannot sign tokens`);
      keys.push(t);
    } else if (label === 'PUBLIC KEY') {
      let key: KeyObject;
      try {
        key = createPublicKey(m[0]);
      } catch (err) {
        throw new Error(`${where}: not a valid public key (${(err as Error).message})`);
      }
      const t = trusted(key, where);
      if (t === null) throw new Error(`${where}: a ${String(key.asymmetricKeyType)} key cannot sign tokens`);
      keys.push(t);
    }
    // Other blocks (a private key pasted by mistake) are ignored rather than echoed anywhere.
  }
  if (keys.length === 0) throw new Error(`${name}: no PEM certificate or public key found`);
  return { keys, roots };
}

const SIGNING_ALGS = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']);

/** The signing keys of a JWKS document; entries for encryption, symmetric keys and unknown types are skipped. */
export function parseJwks(doc: unknown, name: string): { keys: TrustedKey[]; skipped: string[] } {
  const list = typeof doc === 'object' && doc !== null ? (doc as { keys?: unknown }).keys : undefined;
  if (!Array.isArray(list)) throw new Error(`${name}: not a JWKS document (no "keys" array)`);
  const keys: TrustedKey[] = [];
  const skipped: string[] = [];
  list.forEach((entry: unknown, i) => {
    if (typeof entry !== 'object' || entry === null) return;
    const jwk = entry as Record<string, unknown>;
    const kid = typeof jwk['kid'] === 'string' ? jwk['kid'] : undefined;
    const label = `${name} keys[${i}]${kid === undefined ? '' : ` kid=${kid}`}`;
    const skip = (why: string): void => {
      skipped.push(`${label}: ${why}`);
    };
    if (jwk['kty'] === 'oct') return skip('symmetric keys are never trusted');
    if (jwk['use'] !== undefined && jwk['use'] !== 'sig') return skip(`use is "${String(jwk['use'])}"`);
    const ops = jwk['key_ops'];
    if (Array.isArray(ops) && !ops.includes('verify')) return skip('key_ops does not include verify');
    const alg = jwk['alg'];
    if (alg !== undefined && (typeof alg !== 'string' || !SIGNING_ALGS.has(alg))) return skip(`alg "${String(alg)}" is not a signing algorithm`);
    let key: KeyObject;
    try {
      // Only the public members are used, even if the document (wrongly) carries private ones.
      const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicPart } = jwk;
      key = createPublicKey({ key: publicPart as JsonWebKey, format: 'jwk' });
    } catch (err) {
      return skip(`not a usable key (${(err as Error).message})`);
    }
    const pinned = typeof alg === 'string' ? [alg] : undefined;
    if (pinned !== undefined && !algorithmsFor(key).includes(pinned[0] ?? '')) return skip(`alg ${String(alg)} does not fit a ${String(key.asymmetricKeyType)} key`);
    const t = trusted(key, label, kid, pinned);
    if (t === null) return skip(`a ${String(key.asymmetricKeyType)} key cannot sign tokens`);
    keys.push(t);
  });
  return { keys, skipped };
}

function isUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

/** Bounds on one JWKS fetch; the defaults are JWKS_MAX_BYTES and JWKS_DEADLINE_MS. */
export interface JwksFetchLimits {
  maxBytes: number;
  /** The whole exchange (connect, headers, every body byte) must finish within this long. */
  deadlineMs: number;
}

/**
 * GET the JWKS under a byte cap and an absolute deadline, as every buffered upstream body is read
 * (src/upstream/body.ts readCapped: a declared or actual size over the cap, an unasked-for content
 * coding, or a body still dripping at the deadline is cut and nothing of it kept). A realm that
 * streams forever or a byte every few seconds costs at most `deadlineMs` and `maxBytes`.
 */
async function fetchJson(url: string, limits: JwksFetchLimits): Promise<unknown> {
  const deadlineAt = Date.now() + limits.deadlineMs;
  // The deadline covers connect and headers here, then readCapped holds the body to the same end.
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), limits.deadlineMs);
  timer.unref();
  let res: Dispatcher.ResponseData;
  try {
    res = await request(url, {
      method: 'GET',
      headers: { accept: 'application/json' },
      headersTimeout: limits.deadlineMs,
      bodyTimeout: limits.deadlineMs,
      signal: controller.signal,
    });
  } catch (err) {
    if (controller.signal.aborted) throw new Error(`no answer within ${limits.deadlineMs} ms`);
    throw err;
  } finally {
    clearTimeout(timer);
  }
  if (res.statusCode !== 200) {
    await discard(res.body);
    throw new Error(`HTTP ${res.statusCode}`);
  }
  const body = await readCapped(res.body, res.headers, { upstream: 'jwks', what: 'JWKS', maxBytes: limits.maxBytes, deadlineAt });
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    throw new Error('not JSON');
  }
}

function validAt(cert: X509Certificate, now: number): boolean {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  return !(Number.isFinite(from) && now < from) && !(Number.isFinite(to) && now > to);
}

function issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
}

export interface TrustStoreOptions {
  rootCertBundle: string | null;
  jwks: string | null;
  /** Interval of the periodic re-read (ms). */
  refreshMs: number;
  log: Logger;
  now?: () => number;
  /** Caps on a JWKS URL fetch (default JWKS_MAX_BYTES, JWKS_DEADLINE_MS). */
  fetchLimits?: JwksFetchLimits;
}

export class TrustStore {
  private bundle: { keys: TrustedKey[]; roots: X509Certificate[] } = { keys: [], roots: [] };
  private jwks: TrustedKey[] = [];
  private jwksLoaded = false;
  private index = new Map<string, TrustedKey>();
  private timer: NodeJS.Timeout | undefined;
  private inflight: Promise<void> | null = null;
  private lastUnknownKidFetch = 0;
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly opts: TrustStoreOptions) {
    this.now = opts.now ?? Date.now;
  }

  /**
   * First load. A bundle or JWKS file that cannot be used is a configuration error (the process
   * should not start); a JWKS URL that cannot be fetched is logged and retried, since Keycloak
   * may simply be starting at the same time.
   */
  async start(): Promise<void> {
    const { rootCertBundle, jwks } = this.opts;
    if (rootCertBundle !== null) {
      try {
        this.bundle = parsePemBundle(await readFile(rootCertBundle, 'utf8'), rootCertBundle);
      } catch (err) {
        throw new ConfigError('auth.token.rootCertBundle', (err as Error).message);
      }
    }
    if (jwks !== null) {
      if (isUrl(jwks)) await this.loadJwks('start');
      else {
        try {
          this.applyJwks(parseJwks(JSON.parse(await readFile(jwks, 'utf8')) as unknown, jwks));
        } catch (err) {
          throw new ConfigError('auth.token.jwks', (err as Error).message);
        }
      }
    }
    this.rebuild();
    this.schedule();
  }

  /** Number of distinct trusted keys. */
  get size(): number {
    return new Set(this.index.values()).size;
  }

  lookup(kid: string): TrustedKey | undefined {
    return this.index.get(kid);
  }

  /** True when a refresh is worth trying for an unknown kid (a JWKS URL, not fetched lately). */
  canRefetch(): boolean {
    return this.opts.jwks !== null && isUrl(this.opts.jwks) && this.now() - this.lastUnknownKidFetch >= UNKNOWN_KID_COOLDOWN_MS;
  }

  /** Fetch the JWKS again because a token names an unknown key (rate-limited, single-flight). */
  async refetchForUnknownKid(): Promise<void> {
    if (this.inflight !== null) return this.inflight;
    if (!this.canRefetch()) return;
    this.lastUnknownKidFetch = this.now();
    return this.refresh('unknown kid');
  }

  /**
   * The verification key of an `x5c` chain: each certificate signed by the next, intermediates
   * flagged as CAs, all within their validity, and the last one a bundle certificate or signed
   * by one. Throws TokenError otherwise.
   */
  keyFromChain(x5c: unknown): TrustedKey {
    if (!Array.isArray(x5c) || x5c.length === 0) throw new TokenError('x5c is not a non-empty array');
    if (x5c.length > MAX_CHAIN) throw new TokenError(`x5c chain longer than ${MAX_CHAIN}`);
    if (this.bundle.roots.length === 0) throw new TokenError('token has an x5c chain, and no rootCertBundle is configured to verify it');
    const certs = x5c.map((entry: unknown, i) => {
      if (typeof entry !== 'string' || !/^[A-Za-z0-9+/]+=*$/.test(entry)) throw new TokenError(`x5c[${i}] is not base64`);
      try {
        return new X509Certificate(Buffer.from(entry, 'base64'));
      } catch {
        throw new TokenError(`x5c[${i}] is not a certificate`);
      }
    });
    const now = this.now();
    certs.forEach((c, i) => {
      if (!validAt(c, now)) throw new TokenError(`x5c[${i}] is outside its validity period`);
    });
    const roots = this.bundle.roots.filter((r) => validAt(r, now));
    const leaf = certs[0] as X509Certificate;
    let current = leaf;
    for (let i = 1; ; i++) {
      if (roots.some((r) => r.raw.equals(current.raw) || issuedBy(current, r))) break;
      const next = certs[i];
      if (next === undefined) throw new TokenError('x5c chain does not lead to a certificate in rootCertBundle');
      if (next.ca !== true) throw new TokenError(`x5c[${i}] is not a CA certificate`);
      if (!issuedBy(current, next)) throw new TokenError(`x5c[${i - 1}] is not signed by x5c[${i}]`);
      current = next;
    }
    const t = trusted(leaf.publicKey, 'x5c');
    if (t === null) throw new TokenError(`x5c leaf has a ${String(leaf.publicKey.asymmetricKeyType)} key, which cannot sign tokens`);
    return t;
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
  }

  // -------------------------------------------------------------------------------------------

  private schedule(): void {
    if (this.closed) return;
    const { rootCertBundle, jwks, refreshMs } = this.opts;
    if (rootCertBundle === null && jwks === null) return;
    const delay = jwks !== null && isUrl(jwks) && !this.jwksLoaded ? Math.min(refreshMs, INITIAL_RETRY_MS) : refreshMs;
    this.timer = setTimeout(() => {
      void this.refresh('schedule').finally(() => this.schedule());
    }, delay);
    this.timer.unref();
  }

  private refresh(reason: string): Promise<void> {
    if (this.inflight !== null) return this.inflight;
    this.inflight = this.reload(reason).finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  /** Re-read both sources; a source that fails keeps what it had. */
  private async reload(reason: string): Promise<void> {
    const { rootCertBundle, jwks, log } = this.opts;
    const before = this.ids();
    if (rootCertBundle !== null && reason === 'schedule') {
      try {
        this.bundle = parsePemBundle(await readFile(rootCertBundle, 'utf8'), rootCertBundle);
      } catch (err) {
        log.warn({ file: rootCertBundle, reason: (err as Error).message }, 'cannot re-read auth.token.rootCertBundle; keeping the keys loaded before');
      }
    }
    if (jwks !== null) {
      if (isUrl(jwks)) await this.loadJwks(reason);
      else if (reason === 'schedule') {
        try {
          this.applyJwks(parseJwks(JSON.parse(await readFile(jwks, 'utf8')) as unknown, jwks));
        } catch (err) {
          log.warn({ file: jwks, reason: (err as Error).message }, 'cannot re-read auth.token.jwks; keeping the keys loaded before');
        }
      }
    }
    this.rebuild();
    const after = this.ids();
    const added = after.filter((id) => !before.includes(id));
    const removed = before.filter((id) => !after.includes(id));
    if (added.length > 0 || removed.length > 0) log.info({ added, removed, keys: this.size, reason }, 'trusted token signing keys changed');
  }

  private async loadJwks(reason: string): Promise<void> {
    const url = this.opts.jwks as string;
    try {
      const limits = this.opts.fetchLimits ?? { maxBytes: JWKS_MAX_BYTES, deadlineMs: JWKS_DEADLINE_MS };
      this.applyJwks(parseJwks(await fetchJson(url, limits), 'jwks'));
      this.jwksLoaded = true;
    } catch (err) {
      const msg = (err as Error).message;
      const keeping = this.jwksLoaded ? 'keeping the keys loaded before' : 'no JWKS keys yet';
      this.opts.log[this.jwksLoaded ? 'warn' : 'error']({ url, reason, error: msg }, `cannot fetch auth.token.jwks; ${keeping}`);
    }
  }

  private applyJwks(parsed: { keys: TrustedKey[]; skipped: string[] }): void {
    this.jwks = parsed.keys;
    if (parsed.skipped.length > 0) this.opts.log.debug({ skipped: parsed.skipped }, 'JWKS entries not used for token signatures');
  }

  private rebuild(): void {
    const index = new Map<string, TrustedKey>();
    for (const k of [...this.bundle.keys, ...this.jwks]) {
      for (const id of k.ids) if (!index.has(id)) index.set(id, k);
    }
    this.index = index;
  }

  /** One id per key (its libtrust id), for change logs. */
  private ids(): string[] {
    return [...new Set([...this.index.values()].map((k) => k.ids[0] ?? ''))];
  }
}
