/**
 * Compact JWS parsing and signature checks with node:crypto, the algorithm pinned to the type of
 * the trusted key: RSA → RS256/384/512 and PS256/384/512, EC → the one ES* that matches its curve,
 * Ed25519/Ed448 → EdDSA. `none` and every HMAC algorithm are refused outright, so a public key can
 * never be used as an HMAC secret. Nothing here decides which key is trusted (keys.ts) or what the
 * claims must say (token.ts).
 */
import { constants, verify as cryptoVerify, type KeyObject } from 'node:crypto';

/** Why a token was refused; logged, never sent to the client (the challenge says invalid_token). */
export class TokenError extends Error {
  override readonly name = 'TokenError';
}

export interface ParsedJws {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
  /** `<header>.<payload>` exactly as received: the bytes the signature covers. */
  signingInput: string;
  signature: Buffer;
}

/** Tokens longer than this are refused before any decoding (a Keycloak token is ~1 KiB). */
export const MAX_TOKEN_LENGTH = 16 * 1024;

const B64URL = /^[A-Za-z0-9_-]*$/;

function decodeJsonObject(part: string, what: string): Record<string, unknown> {
  if (part === '' || !B64URL.test(part)) throw new TokenError(`${what} is not base64url`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    throw new TokenError(`${what} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TokenError(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

export function parseJws(token: string): ParsedJws {
  if (token.length > MAX_TOKEN_LENGTH) throw new TokenError(`token longer than ${MAX_TOKEN_LENGTH} characters`);
  const parts = token.split('.');
  if (parts.length !== 3) throw new TokenError('token is not a compact JWS (three dot-separated parts)');
  const [h = '', p = '', s = ''] = parts;
  const header = decodeJsonObject(h, 'token header');
  const claims = decodeJsonObject(p, 'token payload');
  if (!B64URL.test(s)) throw new TokenError('token signature is not base64url');
  // JWS `crit` names extensions the verifier must understand; Berth understands none.
  if (header['crit'] !== undefined) throw new TokenError('token header has unsupported "crit" parameters');
  return { header, claims, signingInput: `${h}.${p}`, signature: Buffer.from(s, 'base64url') };
}

const EC_ALG: Readonly<Record<string, { alg: string; size: number }>> = {
  prime256v1: { alg: 'ES256', size: 64 },
  secp384r1: { alg: 'ES384', size: 96 },
  secp521r1: { alg: 'ES512', size: 132 },
};

/** The JWS algorithms a key may verify; empty when the key type is not usable for tokens. */
export function algorithmsFor(key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      const match = curve === undefined ? undefined : EC_ALG[curve];
      return match === undefined ? [] : [match.alg];
    }
    case 'ed25519':
    case 'ed448':
      return ['EdDSA'];
    default:
      return [];
  }
}

/**
 * Verify the JWS signature with `key`. `allowed` narrows the key's algorithms further (a JWKS
 * entry that names its `alg`). Throws TokenError for a refused algorithm or a bad signature.
 */
export function verifySignature(jws: ParsedJws, key: KeyObject, allowed?: readonly string[]): void {
  const alg = jws.header['alg'];
  if (typeof alg !== 'string') throw new TokenError('token header has no "alg"');
  if (alg === 'none' || alg.startsWith('HS')) throw new TokenError(`token algorithm "${alg}" is never accepted`);
  const permitted = algorithmsFor(key).filter((a) => allowed === undefined || allowed.includes(a));
  if (!permitted.includes(alg)) {
    throw new TokenError(`token algorithm "${alg}" does not fit the ${String(key.asymmetricKeyType)} signing key (allowed: ${permitted.join(', ') || 'none'})`);
  }
  let ok: boolean;
  try {
    ok = verifyWith(alg, jws, key);
  } catch (err) {
    if (err instanceof TokenError) throw err;
    // OpenSSL refuses some malformed signatures (wrong size for the key) instead of returning false.
    ok = false;
  }
  if (!ok) throw new TokenError('token signature does not verify');
}

function verifyWith(alg: string, jws: ParsedJws, key: KeyObject): boolean {
  const data = Buffer.from(jws.signingInput, 'ascii');
  let ok: boolean;
  if (alg.startsWith('RS')) {
    ok = cryptoVerify(`sha${alg.slice(2)}`, data, key, jws.signature);
  } else if (alg.startsWith('PS')) {
    ok = cryptoVerify(
      `sha${alg.slice(2)}`,
      data,
      { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST },
      jws.signature,
    );
  } else if (alg.startsWith('ES')) {
    const curve = key.asymmetricKeyDetails?.namedCurve ?? '';
    // A JWS ECDSA signature is raw r||s of a fixed size; anything else is malformed.
    if (jws.signature.length !== EC_ALG[curve]?.size) throw new TokenError('token signature has the wrong length for its curve');
    ok = cryptoVerify(`sha${alg.slice(2)}`, data, { key, dsaEncoding: 'ieee-p1363' }, jws.signature);
  } else {
    ok = cryptoVerify(null, data, key, jws.signature);
  }
  return ok;
}
