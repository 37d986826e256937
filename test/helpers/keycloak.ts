// A Keycloak "docker-v2" token endpoint for tests, faithful to reference/protocols.md §1, plus the
// small X.509 / JWS toolkit the auth tests need (certificates without openssl, JWTs with any alg).
//
// What it reproduces, and why each detail matters to a client or to Berth:
// - `GET /realms/<realm>/protocol/docker-v2/auth` only; any other method → 405 (containerd and
//   BuildKit try POST first and fall back to GET on 405 when they hold a username).
// - `service` must equal the client id: missing → 400 invalid_request, unknown → 400 invalid_client.
// - Basic auth against the user table. Wrong password or unknown user → 401 with a Docker-style
//   JSON body and NO WWW-Authenticate header. No Authorization at all → 400 (what Keycloak was seen
//   answering; it never issues anonymous tokens).
// - Only the FIRST `scope` parameter is used; it is URL-decoded once more and must have exactly
//   three `:`-separated parts (else a bare 500). The stock "Allow All" mapper grants exactly what
//   was asked; no scope → `access: []` (docker login).
// - Success: `{"token","expires_in","issued_at"}` and nothing else; `issued_at` formatted
//   `yyyy-MM-ddTHH:mm:ssZ`. The JWT header is Keycloak's hand-built, spaced JSON
//   `{"alg":"RS256","typ" : "JWT","kid" : "<libtrust id>"}` with no x5c and no jwk; claims are
//   jti, exp, nbf (= iat), iat, iss, aud (client id, a plain string), sub (the USERNAME), typ,
//   azp, access. `iss` is built from the request's Host header, as Keycloak does, so reaching it
//   under another name yields another issuer.
// - A user with pending required actions gets the redirect to login-actions, which without the
//   session cookies ends in Keycloak's HTML 400 "cookie_not_found" page.
// - `GET /realms/<realm>/protocol/openid-connect/certs`: the JWKS, with Keycloak's own `kid`
//   (base64url SHA-256 of the SubjectPublicKeyInfo: neither libtrust nor RFC 7638), `x5c`, `x5t`,
//   `x5t#S256`, and an `enc` key beside the signing keys, as a stock realm lists.
// - `trustBundlePath`: `localhost_trust_chain.pem`, the realm's self-signed V1 key certificate
//   (CN = realm), as in the "Docker Compose YAML" adapter download. Like that download it is a
//   snapshot: rotateKey() does not rewrite it (call writeTrustBundle() to "download again").
//
// API (kept stable; other suites import it):
//   const kc = await startKeycloakEmulator({ realm?, clientId?, users?, lifespanSeconds?, now? });
//   kc.realmUrl        http://127.0.0.1:P/realms/<realm>
//   kc.tokenUrl        …/protocol/docker-v2/auth        (auth.token.realm)
//   kc.issuer          http://127.0.0.1:P/realms/<realm> (auth.token.issuer)
//   kc.service         the client id                     (auth.token.service)
//   kc.trustBundlePath localhost_trust_chain.pem          (auth.token.rootCertBundle)
//   kc.jwksUrl         …/protocol/openid-connect/certs   (auth.token.jwks)
//   kc.users           { username: password }
//   kc.kid             libtrust id of the active key; kc.jwksKid: its JWKS kid
//   kc.mintToken({ subject?, access?, scope?, claims?, header?, lifetimeSeconds?, issuedAt? })
//   kc.fetchToken(user, scope?)  → { status, body, token? } through the real endpoint
//   kc.rotateKey({ dropOld? })   new active RSA key; old ones stay in the JWKS unless dropOld
//   kc.writeTrustBundle()        rewrite the trust bundle with the active key's certificate
//   kc.setFailure(503 | 'reset' | null, 'token' | 'jwks' | 'all' = 'token')
//   kc.requests() / kc.count({ endpoint?, status? }) / kc.reset()   what reached the emulator
//   kc.stop()
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import {
  createHash, createHmac, createPublicKey, generateKeyPairSync, randomBytes, randomUUID, sign as cryptoSign,
  X509Certificate, type KeyObject,
} from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { makeTempDir, removeTempDir } from './tmp.js';

// ---------------------------------------------------------------------------------------------
// Encodings and key identifiers

export function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32(data: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of data) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

function spkiDer(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return pub.export({ type: 'spki', format: 'der' });
}

/** libtrust key id (what Keycloak puts in `kid`): SHA-256 of the SPKI DER, 30 bytes, base32, 12×4. */
export function libtrustKeyId(key: KeyObject): string {
  const b32 = base32(createHash('sha256').update(spkiDer(key)).digest().subarray(0, 30));
  return (b32.match(/.{4}/g) ?? []).join(':');
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url), what Distribution 3 derives from a certificate. */
export function jwkThumbprint(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const jwk = pub.export({ format: 'jwk' });
  const members: Record<string, string[]> = { RSA: ['e', 'kty', 'n'], EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'] };
  const names = members[String(jwk.kty)];
  if (names === undefined) throw new Error(`no thumbprint members for kty ${String(jwk.kty)}`);
  const canonical = `{${names.map((n) => `"${n}":"${String((jwk as Record<string, unknown>)[n])}"`).join(',')}}`;
  return base64url(createHash('sha256').update(canonical).digest());
}

/** Keycloak's own JWKS `kid` for a generated key: base64url(SHA-256(SPKI DER)). */
export function keycloakJwksKid(key: KeyObject): string {
  return base64url(createHash('sha256').update(spkiDer(key)).digest());
}

// ---------------------------------------------------------------------------------------------
// A minimal DER writer, enough for X.509 certificates (V1 like Keycloak's, V3 with CA flag).

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

const derSeq = (...items: Buffer[]): Buffer => tlv(0x30, ...items);
const derSet = (...items: Buffer[]): Buffer => tlv(0x31, ...items);
const derNull = (): Buffer => Buffer.from([0x05, 0x00]);
const derBool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0x00]));
const derOctets = (b: Buffer): Buffer => tlv(0x04, b);
const derBits = (b: Buffer): Buffer => tlv(0x03, Buffer.from([0]), b);
const derExplicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 + n, inner);

function derInt(value: Buffer | number): Buffer {
  let b = value;
  if (typeof b === 'number') {
    const hex = b.toString(16);
    b = Buffer.from(hex.length % 2 === 1 ? `0${hex}` : hex, 'hex');
  }
  while (b.length > 1 && b[0] === 0 && ((b[1] ?? 0) & 0x80) === 0) b = b.subarray(1);
  if (((b[0] ?? 0) & 0x80) !== 0) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}

function derOid(oid: string): Buffer {
  const parts = oid.split('.').map(Number);
  const out: number[] = [40 * (parts[0] ?? 0) + (parts[1] ?? 0)];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

function derTime(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').replace(/\.\d{3}Z$/, 'Z'); // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2))) : tlv(0x18, Buffer.from(iso));
}

const derName = (cn: string): Buffer => derSeq(derSet(derSeq(derOid('2.5.4.3'), tlv(0x0c, Buffer.from(cn, 'utf8')))));

function signatureAlgorithm(key: KeyObject): { id: Buffer; hash: string | null } {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return { id: derSeq(derOid('1.2.840.113549.1.1.11'), derNull()), hash: 'sha256' };
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'secp384r1') return { id: derSeq(derOid('1.2.840.10045.4.3.3')), hash: 'sha384' };
      if (curve === 'secp521r1') return { id: derSeq(derOid('1.2.840.10045.4.3.4')), hash: 'sha512' };
      return { id: derSeq(derOid('1.2.840.10045.4.3.2')), hash: 'sha256' };
    }
    case 'ed25519':
      return { id: derSeq(derOid('1.3.101.112')), hash: null };
    default:
      throw new Error(`cannot sign certificates with a ${String(key.asymmetricKeyType)} key`);
  }
}

export interface CertificateOptions {
  /** Public key the certificate is for. */
  subjectKey: KeyObject;
  /** Private key that signs it (the subject's own for a self-signed certificate). */
  signerKey: KeyObject;
  subject: string;
  /** Issuer CN; defaults to the subject (self-signed). */
  issuer?: string;
  /** true → V3 with a critical basicConstraints CA:TRUE; false/undefined → V1 like Keycloak's. */
  ca?: boolean;
  /** Force a V3 certificate without the CA flag (a leaf). */
  v3?: boolean;
  notBefore?: Date;
  notAfter?: Date;
  serial?: Buffer;
}

/** An X.509 certificate as PEM, built and signed with node:crypto alone. */
export function makeCertificate(o: CertificateOptions): string {
  const alg = signatureAlgorithm(o.signerKey);
  const notBefore = o.notBefore ?? new Date(Date.now() - 24 * 3600_000);
  const notAfter = o.notAfter ?? new Date(Date.now() + 10 * 365 * 24 * 3600_000);
  const v3 = o.ca === true || o.v3 === true;
  const tbsParts: Buffer[] = [];
  if (v3) tbsParts.push(derExplicit(0, derInt(2)));
  tbsParts.push(
    derInt(o.serial ?? Buffer.concat([Buffer.from([0x01]), randomBytes(8)])),
    alg.id,
    derName(o.issuer ?? o.subject),
    derSeq(derTime(notBefore), derTime(notAfter)),
    derName(o.subject),
    spkiDer(o.subjectKey),
  );
  if (v3) {
    const basicConstraints = derSeq(derOid('2.5.29.19'), derBool(true), derOctets(o.ca === true ? derSeq(derBool(true)) : derSeq()));
    tbsParts.push(derExplicit(3, derSeq(basicConstraints)));
  }
  const tbs = derSeq(...tbsParts);
  const signature = cryptoSign(alg.hash, tbs, o.signerKey);
  const der = derSeq(tbs, alg.id, derBits(signature));
  const b64 = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${b64.join('\n')}\n-----END CERTIFICATE-----\n`;
}

/** The base64 (not base64url) DER of a PEM certificate, as an `x5c` entry carries it. */
export function x5cEntry(pem: string): string {
  return new X509Certificate(pem).raw.toString('base64');
}

// ---------------------------------------------------------------------------------------------
// JWS

export type JwtSigner = KeyObject | { hmacSecret: Buffer | string } | null;

/**
 * Sign a compact JWS. The algorithm is taken from `header.alg`: RS*, PS*, ES* (raw r||s), EdDSA,
 * HS* (with `hmacSecret`) or `none` (signer null, empty signature). `headerJson` replaces the
 * serialized header verbatim (Keycloak's spaced form).
 */
export function signJwt(header: Record<string, unknown>, claims: Record<string, unknown>, signer: JwtSigner, headerJson?: string): string {
  const input = `${base64url(headerJson ?? JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const alg = String(header['alg']);
  const bits = alg.slice(2);
  let sig: Buffer;
  if (alg === 'none' || signer === null) sig = Buffer.alloc(0);
  else if ('hmacSecret' in signer) sig = createHmac(`sha${bits}`, signer.hmacSecret).update(input).digest();
  else if (alg.startsWith('RS')) sig = cryptoSign(`sha${bits}`, Buffer.from(input), signer);
  else if (alg.startsWith('PS')) {
    sig = cryptoSign(`sha${bits}`, Buffer.from(input), { key: signer, padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: -1 /* digest */ });
  } else if (alg.startsWith('ES')) sig = cryptoSign(`sha${bits}`, Buffer.from(input), { key: signer, dsaEncoding: 'ieee-p1363' });
  else if (alg === 'EdDSA') sig = cryptoSign(null, Buffer.from(input), signer);
  else throw new Error(`signJwt: unsupported alg ${alg}`);
  return `${input}.${base64url(sig)}`;
}

/** Header and claims of a compact JWS, unverified (for assertions). */
export function decodeJwt(token: string): { header: Record<string, unknown>; claims: Record<string, unknown>; headerJson: string } {
  const [h = '', c = ''] = token.split('.');
  const headerJson = Buffer.from(h, 'base64url').toString('utf8');
  return {
    header: JSON.parse(headerJson) as Record<string, unknown>,
    claims: JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as Record<string, unknown>,
    headerJson,
  };
}

/** Keycloak's hand-built JWS header (JWSBuilder.encodeHeader), spaces included. */
export function keycloakHeaderJson(kid: string): string {
  return `{"alg":"RS256","typ" : "JWT","kid" : "${kid}"}`;
}

// ---------------------------------------------------------------------------------------------
// The emulator

export interface KeycloakAccess {
  type: string;
  name: string;
  actions: string[];
}

export interface KeycloakUser {
  password: string;
  /** Pending required actions (UPDATE_PASSWORD, VERIFY_PROFILE…): the docker flow cannot show them. */
  requiredActions?: string[];
  enabled?: boolean;
}

export interface KeycloakEmulatorOptions {
  realm?: string;
  /** The docker-v2 client id, which is the registry `service`. Default `berth`. */
  clientId?: string;
  /** Username → password (or details). Default alice, bob, carol with `<name>-password`. */
  users?: Record<string, string | KeycloakUser>;
  /** Realm "Access Token Lifespan" (expires_in). Default 300. */
  lifespanSeconds?: number;
  /** Clock in ms, for tokens issued in the past or future. */
  now?: () => number;
}

export interface MintOptions {
  /** `sub`; default the first user. */
  subject?: string;
  /** `access` claim; default `[]`. */
  access?: KeycloakAccess[];
  /** A scope string parsed as Keycloak does (`repository:library/alpine:pull,push`); overrides access. */
  scope?: string;
  /** Claims merged over the defaults; a key whose value is undefined is removed. */
  claims?: Record<string, unknown>;
  /** Header fields merged over Keycloak's; with any override the header is plain JSON. */
  header?: Record<string, unknown>;
  lifetimeSeconds?: number;
  /** `iat` (unix seconds); default now. */
  issuedAt?: number;
}

export type Failure = number | 'reset' | null;
export type Endpoint = 'token' | 'jwks' | 'other';

export interface EmulatorRequest {
  endpoint: Endpoint;
  method: string;
  url: string;
  status: number;
  user: string | null;
  scope: string | null;
}

interface RealmKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  certificatePem: string;
  kid: string;
  jwksKid: string;
}

export interface KeycloakEmulator {
  url: string;
  realm: string;
  realmUrl: string;
  tokenUrl: string;
  issuer: string;
  service: string;
  trustBundlePath: string;
  jwksUrl: string;
  users: Record<string, string>;
  /** libtrust id of the active signing key (the token `kid`). */
  readonly kid: string;
  /** Keycloak's JWKS kid of the active key. */
  readonly jwksKid: string;
  readonly activeKey: { privateKey: KeyObject; publicKey: KeyObject; certificatePem: string };
  mintToken(opts?: MintOptions): string;
  fetchToken(user: string | null, scope?: string, password?: string): Promise<{ status: number; body: string; token: string | undefined }>;
  rotateKey(opts?: { dropOld?: boolean }): Promise<{ kid: string; jwksKid: string; certificatePem: string }>;
  writeTrustBundle(): Promise<string>;
  setFailure(failure: Failure, where?: 'token' | 'jwks' | 'all'): void;
  requests(): EmulatorRequest[];
  count(filter?: { endpoint?: Endpoint; status?: number; method?: string }): number;
  reset(): void;
  stop(): Promise<void>;
}

function newRealmKey(realm: string): RealmKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    privateKey,
    publicKey,
    certificatePem: makeCertificate({ subjectKey: publicKey, signerKey: privateKey, subject: realm }),
    kid: libtrustKeyId(publicKey),
    jwksKid: keycloakJwksKid(publicKey),
  };
}

function jwkOf(key: RealmKey, use: 'sig' | 'enc'): Record<string, unknown> {
  const jwk = key.publicKey.export({ format: 'jwk' });
  const der = new X509Certificate(key.certificatePem).raw;
  return {
    kid: key.jwksKid,
    kty: 'RSA',
    alg: use === 'sig' ? 'RS256' : 'RSA-OAEP',
    use,
    n: jwk.n,
    e: jwk.e,
    x5c: [der.toString('base64')],
    x5t: base64url(createHash('sha1').update(der).digest()),
    'x5t#S256': base64url(createHash('sha256').update(der).digest()),
  };
}

/** Keycloak's DockerAccess(String): split on ':', exactly three parts, actions split on ','. */
function parseScope(scope: string): KeycloakAccess {
  const parts = decodeURIComponent(scope).split(':');
  if (parts.length !== 3) throw new Error(`scope "${scope}" does not have 3 parts`);
  const [type = '', name = '', actions = ''] = parts;
  return { type, name, actions: actions.split(',') };
}

function issuedAtText(iat: number): string {
  return new Date(iat * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function basicCredentials(header: string | undefined): { user: string; password: string } | null {
  if (header === undefined) return null;
  const m = /^Basic\s+(\S+)\s*$/i.exec(header);
  if (m === null) return null;
  const text = Buffer.from(m[1] ?? '', 'base64').toString('utf8');
  const i = text.indexOf(':');
  if (i < 0) return null;
  return { user: text.slice(0, i), password: text.slice(i + 1) };
}

export async function startKeycloakEmulator(opts: KeycloakEmulatorOptions = {}): Promise<KeycloakEmulator> {
  const realm = opts.realm ?? 'berth';
  const clientId = opts.clientId ?? 'berth';
  const lifespan = opts.lifespanSeconds ?? 300;
  const now = opts.now ?? Date.now;
  const userTable = new Map<string, KeycloakUser>();
  const rawUsers = opts.users ?? { alice: 'alice-password', bob: 'bob-password', carol: 'carol-password' };
  for (const [name, u] of Object.entries(rawUsers)) userTable.set(name.toLowerCase(), typeof u === 'string' ? { password: u } : u);

  let keys: RealmKey[] = [newRealmKey(realm)];
  const encKey = newRealmKey(realm);
  const active = (): RealmKey => keys[0] as RealmKey;
  const failures: Record<'token' | 'jwks', Failure> = { token: null, jwks: null };
  const log: EmulatorRequest[] = [];

  const dir = await makeTempDir('keycloak');
  const trustBundlePath = join(dir, 'localhost_trust_chain.pem');
  await writeFile(trustBundlePath, active().certificatePem);

  const realmPath = `/realms/${realm}`;
  const tokenPath = `${realmPath}/protocol/docker-v2/auth`;
  const jwksPath = `${realmPath}/protocol/openid-connect/certs`;
  const requiredActionPath = `${realmPath}/login-actions/required-action`;

  const buildToken = (claims: Record<string, unknown>, headerOverride?: Record<string, unknown>): string => {
    const key = active();
    if (headerOverride === undefined) return signJwt({ alg: 'RS256' }, claims, key.privateKey, keycloakHeaderJson(key.kid));
    const header: Record<string, unknown> = { alg: 'RS256', typ: 'JWT', kid: key.kid };
    for (const [k, v] of Object.entries(headerOverride)) {
      if (v === undefined) delete header[k];
      else header[k] = v;
    }
    return signJwt(header, claims, String(header['alg']) === 'none' ? null : key.privateKey);
  };

  const defaultClaims = (issuer: string, subject: string, access: KeycloakAccess[], iat: number, lifetime: number): Record<string, unknown> => ({
    jti: randomUUID(),
    exp: iat + lifetime,
    nbf: iat,
    iat,
    iss: issuer,
    aud: clientId,
    sub: subject,
    typ: 'Bearer',
    azp: clientId,
    access,
  });

  const json = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const handleToken = (req: IncomingMessage, res: ServerResponse, url: URL, entry: EmulatorRequest): void => {
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') {
      entry.status = 405;
      res.writeHead(405, { allow: 'GET, HEAD, OPTIONS', 'content-length': 0 });
      res.end();
      return;
    }
    const service = url.searchParams.get('service');
    const scope = url.searchParams.get('scope'); // the first one only, as Keycloak reads it
    entry.scope = scope;
    const status = (s: number) => {
      entry.status = s;
      return s;
    };
    if (service === null || service === '') {
      json(res, status(400), { error: 'invalid_request', error_description: 'service parameter must be provided' });
      return;
    }
    if (service !== clientId) {
      json(res, status(400), { error: 'invalid_client', error_description: "Client specified by 'service' parameter does not exist" });
      return;
    }
    const creds = basicCredentials(req.headers.authorization);
    if (creds === null) {
      json(res, status(400), { error: 'invalid_request', error_description: 'no credentials supplied' });
      return;
    }
    entry.user = creds.user;
    let access: KeycloakAccess[] = [];
    try {
      if (scope !== null) access = [parseScope(scope)];
    } catch {
      res.writeHead(status(500), { 'content-length': 0 });
      res.end();
      return;
    }
    const user = userTable.get(creds.user.toLowerCase());
    if (user === undefined || user.enabled === false || user.password !== creds.password) {
      json(res, status(401), {
        errors: [{ code: 'UNAUTHORIZED', message: 'Invalid username or password.', detail: access.length > 0 ? access : [{}] }],
      });
      return;
    }
    if ((user.requiredActions ?? []).length > 0) {
      const action = user.requiredActions?.[0] ?? 'UPDATE_PASSWORD';
      const location = `http://${req.headers.host ?? '127.0.0.1'}${requiredActionPath}?execution=${action}&client_id=${clientId}&tab_id=${randomBytes(6).toString('base64url')}`;
      res.writeHead(status(302), { location, 'content-length': 0 });
      res.end();
      return;
    }
    const iat = Math.floor(now() / 1000);
    const issuer = `http://${req.headers.host ?? '127.0.0.1'}${realmPath}`;
    const token = buildToken(defaultClaims(issuer, creds.user.toLowerCase(), access, iat, lifespan));
    // Field order as Keycloak's DockerResponse serializes it.
    json(res, status(200), { token, expires_in: lifespan, issued_at: issuedAtText(iat) });
  };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const endpoint: Endpoint = url.pathname === tokenPath ? 'token' : url.pathname === jwksPath ? 'jwks' : 'other';
    const entry: EmulatorRequest = { endpoint, method: req.method ?? '', url: req.url ?? '', status: 0, user: null, scope: null };
    log.push(entry);
    req.resume();
    const failure = endpoint === 'token' ? failures.token : endpoint === 'jwks' ? failures.jwks : null;
    if (failure === 'reset') {
      entry.status = -1;
      req.socket.destroy();
      return;
    }
    if (typeof failure === 'number') {
      entry.status = failure;
      res.writeHead(failure, { 'content-length': 0 });
      res.end();
      return;
    }
    if (endpoint === 'token') return handleToken(req, res, url, entry);
    if (endpoint === 'jwks' && req.method === 'GET') {
      entry.status = 200;
      json(res, 200, { keys: [...keys.map((k) => jwkOf(k, 'sig')), jwkOf(encKey, 'enc')] });
      return;
    }
    if (url.pathname === requiredActionPath) {
      // The client followed the redirect without Keycloak's AUTH_SESSION_ID / KC_RESTART cookies.
      entry.status = 400;
      const page = '<!DOCTYPE html><html><body><p id="kc-error-message">Cookie not found. Please make sure cookies are enabled in your browser.</p></body></html>';
      res.writeHead(400, { 'content-type': 'text/html;charset=utf-8', 'content-length': Buffer.byteLength(page) });
      res.end(page);
      return;
    }
    entry.status = 404;
    json(res, 404, { error: 'Unable to find matching target resource method' });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  const issuer = `${url}${realmPath}`;
  const users: Record<string, string> = {};
  for (const [name, u] of userTable) users[name] = u.password;
  let stopped = false;

  const emulator: KeycloakEmulator = {
    url,
    realm,
    realmUrl: issuer,
    tokenUrl: `${url}${tokenPath}`,
    issuer,
    service: clientId,
    trustBundlePath,
    jwksUrl: `${url}${jwksPath}`,
    users,
    get kid() {
      return active().kid;
    },
    get jwksKid() {
      return active().jwksKid;
    },
    get activeKey() {
      const k = active();
      return { privateKey: k.privateKey, publicKey: k.publicKey, certificatePem: k.certificatePem };
    },
    mintToken(o: MintOptions = {}) {
      const iat = o.issuedAt ?? Math.floor(now() / 1000);
      const access = o.scope !== undefined ? [parseScope(o.scope)] : (o.access ?? []);
      const subject = o.subject ?? [...userTable.keys()][0] ?? 'alice';
      const claims = defaultClaims(issuer, subject, access, iat, o.lifetimeSeconds ?? lifespan);
      for (const [k, v] of Object.entries(o.claims ?? {})) {
        if (v === undefined) delete claims[k];
        else claims[k] = v;
      }
      return buildToken(claims, o.header);
    },
    async fetchToken(user, scope, password) {
      const target = new URL(emulator.tokenUrl);
      target.searchParams.set('service', clientId);
      if (user !== null) target.searchParams.set('account', user);
      if (scope !== undefined) target.searchParams.set('scope', scope);
      const headers: Record<string, string> = {};
      if (user !== null) {
        headers['authorization'] = `Basic ${Buffer.from(`${user}:${password ?? users[user] ?? ''}`).toString('base64')}`;
      }
      const res = await fetch(target, { headers, redirect: 'manual' });
      const body = await res.text();
      let token: string | undefined;
      if (res.status === 200) token = (JSON.parse(body) as { token?: string }).token;
      return { status: res.status, body, token };
    },
    async rotateKey(o = {}) {
      const fresh = newRealmKey(realm);
      keys = o.dropOld === true ? [fresh] : [fresh, ...keys];
      return { kid: fresh.kid, jwksKid: fresh.jwksKid, certificatePem: fresh.certificatePem };
    },
    async writeTrustBundle() {
      await writeFile(trustBundlePath, active().certificatePem);
      return trustBundlePath;
    },
    setFailure(failure, where = 'token') {
      if (where === 'token' || where === 'all') failures.token = failure;
      if (where === 'jwks' || where === 'all') failures.jwks = failure;
    },
    requests: () => log.map((e) => ({ ...e })),
    count(filter = {}) {
      return log.filter(
        (e) =>
          (filter.endpoint === undefined || e.endpoint === filter.endpoint) &&
          (filter.status === undefined || e.status === filter.status) &&
          (filter.method === undefined || e.method === filter.method),
      ).length;
    },
    reset() {
      log.length = 0;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await removeTempDir(dir);
    },
  };
  return emulator;
}
