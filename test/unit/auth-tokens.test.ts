// Token validation as Distribution does it, done right: one table of tokens (Keycloak's own form,
// x5c chains, EC and EdDSA keys, every kid flavour, and the classic forgeries) each with the one
// outcome it must get; the exact challenge strings; and malformed Authorization headers, which
// must always be a 401 challenge and never a 500.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { isRegistryError } from '../../src/errors.js';
import { TokenAccess, bearerToken } from '../../src/auth/token.js';
import { challengeValue } from '../../src/auth/challenge.js';
import { jwkThumbprint as srcThumbprint, libtrustKeyId as srcLibtrust } from '../../src/auth/keys.js';
import type { AccessItem } from '../../src/auth/access.js';
import {
  startKeycloakEmulator, makeCertificate, signJwt, libtrustKeyId, jwkThumbprint, x5cEntry, keycloakHeaderJson,
  type KeycloakEmulator,
} from '../helpers/keycloak.js';
import { makeTempDir, removeTempDir } from '../helpers/index.js';
import { startBerth, type BerthHandle } from '../helpers/berth.js';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const nowS = NOW / 1000;
const silent = pino({ level: 'silent' });

let kc: KeycloakEmulator;
let dir: string;
let access: TokenAccess;
let bundlePath: string;
let jwksPath: string;

// Keys beside the realm's: an EC P-256 certificate in the bundle, a CA (in the bundle) for x5c
// chains, a CA that is not trusted, and an Ed25519 + an RSA key that only the JWKS file lists.
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ca = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const rogueCa = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const leaf = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ed = generateKeyPairSync('ed25519');
const jwksRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });

let caPem: string;
let leafPem: string;
let rogueLeafPem: string;
let rogueCaPem: string;
let expiredLeafPem: string;
let nonCaPem: string;
let underNonCaPem: string;
const middle = generateKeyPairSync('ec', { namedCurve: 'P-256' });

before(async () => {
  kc = await startKeycloakEmulator({ now: () => NOW });
  dir = await makeTempDir('auth-tokens');
  const validity = { notBefore: new Date(NOW - 86400_000), notAfter: new Date(NOW + 365 * 86400_000) };
  caPem = makeCertificate({ subjectKey: ca.publicKey, signerKey: ca.privateKey, subject: 'Berth Test CA', ca: true, ...validity });
  leafPem = makeCertificate({ subjectKey: leaf.publicKey, signerKey: ca.privateKey, subject: 'token signer', issuer: 'Berth Test CA', v3: true, ...validity });
  expiredLeafPem = makeCertificate({
    subjectKey: leaf.publicKey, signerKey: ca.privateKey, subject: 'token signer', issuer: 'Berth Test CA', v3: true,
    notBefore: new Date(NOW - 10 * 86400_000), notAfter: new Date(NOW - 86400_000),
  });
  // An intermediate signed by the trusted CA but without the CA flag must not vouch for a leaf.
  nonCaPem = makeCertificate({ subjectKey: middle.publicKey, signerKey: ca.privateKey, subject: 'not a ca', issuer: 'Berth Test CA', v3: true, ...validity });
  underNonCaPem = makeCertificate({ subjectKey: leaf.publicKey, signerKey: middle.privateKey, subject: 'token signer', issuer: 'not a ca', v3: true, ...validity });
  rogueCaPem = makeCertificate({ subjectKey: rogueCa.publicKey, signerKey: rogueCa.privateKey, subject: 'Berth Test CA', ca: true, ...validity });
  rogueLeafPem = makeCertificate({ subjectKey: leaf.publicKey, signerKey: rogueCa.privateKey, subject: 'token signer', issuer: 'Berth Test CA', v3: true, ...validity });
  const ecPem = makeCertificate({ subjectKey: ec.publicKey, signerKey: ec.privateKey, subject: 'ec signer', ...validity });
  bundlePath = join(dir, 'bundle.pem');
  await writeFile(bundlePath, [kc.activeKey.certificatePem, ecPem, caPem].join(''));
  jwksPath = join(dir, 'jwks.json');
  await writeFile(
    jwksPath,
    JSON.stringify({
      keys: [
        { ...ed.publicKey.export({ format: 'jwk' }), kid: 'ed-key-1', use: 'sig', alg: 'EdDSA' },
        { ...jwksRsa.publicKey.export({ format: 'jwk' }), kid: 'rsa-jwks-1', use: 'sig' },
        // Keycloak lists its encryption key too; it must never verify a token.
        { ...stranger.publicKey.export({ format: 'jwk' }), kid: 'enc-key', use: 'enc', alg: 'RSA-OAEP' },
      ],
    }),
  );
  const config = parseConfig({
    overrides: {
      auth: {
        mode: 'token',
        token: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: bundlePath, jwks: jwksPath },
      },
    },
  });
  access = await TokenAccess.create(config, silent, { now: () => NOW });
});

after(async () => {
  await access?.close();
  await kc?.stop();
  await removeTempDir(dir);
});

const repo = (name: string, actions = ['pull']): AccessItem => ({
  type: 'repository', name, upstream: 'docker.io', cacheName: name.includes('/') ? name : `library/${name}`, actions,
});
const CATALOG: AccessItem = { type: 'registry', name: 'catalog', actions: ['*'] };
const ALPINE = repo('library/alpine');

type Outcome = 'ok' | 'invalid_token' | 'insufficient_scope' | 'challenge' | 'denied';

async function outcome(authorization: string | undefined, items: AccessItem[]): Promise<{ outcome: Outcome; header?: string }> {
  try {
    await access.authorize({ authorization, ip: '192.0.2.10' }, items);
    return { outcome: 'ok' };
  } catch (err) {
    assert.ok(isRegistryError(err), `a catalogued error, got ${String(err)}`);
    if (err.statusCode === 403) return { outcome: 'denied' };
    assert.equal(err.statusCode, 401);
    const header = err.headers?.['www-authenticate'] ?? '';
    const m = /,error="([a-z_]+)"$/.exec(header);
    return { outcome: m ? (m[1] as Outcome) : 'challenge', header };
  }
}

function claims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    jti: 'j1', exp: nowS + 300, nbf: nowS, iat: nowS, iss: kc.issuer, aud: kc.service, sub: 'alice', typ: 'Bearer', azp: kc.service,
    access: [{ type: 'repository', name: 'library/alpine', actions: ['pull'] }],
    ...extra,
  };
}

const pull = (name: string) => [{ type: 'repository', name, actions: ['pull'] }];

interface Case {
  name: string;
  token: () => string;
  items?: AccessItem[];
  expect: Outcome;
}

const cases: Case[] = [
  { name: 'valid RS256 with the libtrust kid, exactly as Keycloak issues it', token: () => kc.mintToken({ scope: 'repository:library/alpine:pull' }), expect: 'ok' },
  {
    name: 'valid RS256 with an x5c chain leading to a CA in the bundle',
    token: () => signJwt({ alg: 'RS256', typ: 'JWT', x5c: [x5cEntry(leafPem), x5cEntry(caPem)] }, claims(), leaf.privateKey),
    expect: 'ok',
  },
  {
    name: 'valid x5c with only the leaf (its issuer is in the bundle)',
    token: () => signJwt({ alg: 'RS256', x5c: [x5cEntry(leafPem)] }, claims(), leaf.privateKey),
    expect: 'ok',
  },
  {
    name: 'x5c chain to an untrusted CA of the same name',
    token: () => signJwt({ alg: 'RS256', x5c: [x5cEntry(rogueLeafPem), x5cEntry(rogueCaPem)] }, claims(), leaf.privateKey),
    expect: 'invalid_token',
  },
  {
    name: 'x5c through an intermediate that is not a CA',
    token: () => signJwt({ alg: 'RS256', x5c: [x5cEntry(underNonCaPem), x5cEntry(nonCaPem)] }, claims(), leaf.privateKey),
    expect: 'invalid_token',
  },
  {
    name: 'x5c with an expired leaf',
    token: () => signJwt({ alg: 'RS256', x5c: [x5cEntry(expiredLeafPem), x5cEntry(caPem)] }, claims(), leaf.privateKey),
    expect: 'invalid_token',
  },
  {
    name: 'valid ES256 from an EC certificate in the bundle (libtrust kid)',
    token: () => signJwt({ alg: 'ES256', typ: 'JWT', kid: libtrustKeyId(ec.publicKey) }, claims(), ec.privateKey),
    expect: 'ok',
  },
  {
    name: 'valid EdDSA from the JWKS by its explicit kid',
    token: () => signJwt({ alg: 'EdDSA', kid: 'ed-key-1' }, claims(), ed.privateKey),
    expect: 'ok',
  },
  {
    name: 'valid RS256 from the JWKS by its libtrust id (the JWKS kid differs)',
    token: () => signJwt({ alg: 'RS256', kid: libtrustKeyId(jwksRsa.publicKey) }, claims(), jwksRsa.privateKey),
    expect: 'ok',
  },
  {
    name: 'valid with the RFC 7638 thumbprint of a bundle certificate as kid (registry:3 form)',
    token: () => signJwt({ alg: 'RS256', kid: jwkThumbprint(kc.activeKey.publicKey) }, claims(), kc.activeKey.privateKey),
    expect: 'ok',
  },
  {
    name: 'valid PS256 with the realm RSA key',
    token: () => signJwt({ alg: 'PS256', kid: kc.kid }, claims(), kc.activeKey.privateKey),
    expect: 'ok',
  },
  { name: 'expired beyond the 60 s leeway', token: () => kc.mintToken({ issuedAt: nowS - 400, lifetimeSeconds: 300 }), items: [], expect: 'invalid_token' },
  { name: 'expired 30 s ago, within the leeway', token: () => kc.mintToken({ issuedAt: nowS - 330, lifetimeSeconds: 300 }), items: [], expect: 'ok' },
  { name: 'no exp at all counts as expired', token: () => kc.mintToken({ claims: { exp: undefined } }), items: [], expect: 'invalid_token' },
  { name: 'nbf 120 s in the future, beyond the leeway', token: () => kc.mintToken({ claims: { nbf: nowS + 120 } }), items: [], expect: 'invalid_token' },
  { name: 'nbf 30 s in the future, within the leeway', token: () => kc.mintToken({ claims: { nbf: nowS + 30 } }), items: [], expect: 'ok' },
  { name: 'wrong iss (Keycloak reached under another host name)', token: () => kc.mintToken({ claims: { iss: kc.issuer.replace('127.0.0.1', 'localhost') } }), items: [], expect: 'invalid_token' },
  { name: 'wrong aud', token: () => kc.mintToken({ claims: { aud: 'another-registry' } }), items: [], expect: 'invalid_token' },
  { name: 'aud as an array containing the service', token: () => kc.mintToken({ claims: { aud: ['account', kc.service] } }), items: [], expect: 'ok' },
  {
    name: 'bad signature (payload changed after signing)',
    token: () => {
      const [h, , s] = kc.mintToken({ scope: 'repository:library/alpine:pull' }).split('.');
      const forged = Buffer.from(JSON.stringify(claims({ sub: 'admin', access: pull('library/alpine') }))).toString('base64url');
      return `${h}.${forged}.${s}`;
    },
    expect: 'invalid_token',
  },
  { name: 'alg none', token: () => signJwt({ alg: 'none', kid: kc.kid }, claims(), null), expect: 'invalid_token' },
  {
    name: 'HS256 signed with the trusted public key as the HMAC secret',
    token: () => signJwt({ alg: 'HS256', kid: kc.kid }, claims(), { hmacSecret: kc.activeKey.publicKey.export({ type: 'spki', format: 'pem' }) }),
    expect: 'invalid_token',
  },
  {
    name: 'RS256 claimed for an EC key (algorithm not pinned to the key type)',
    token: () => signJwt({ alg: 'RS256', kid: libtrustKeyId(ec.publicKey) }, claims(), stranger.privateKey),
    expect: 'invalid_token',
  },
  {
    name: 'ES384 claimed for a P-256 key',
    token: () => signJwt({ alg: 'ES384', kid: libtrustKeyId(ec.publicKey) }, claims(), ec.privateKey),
    expect: 'invalid_token',
  },
  {
    name: 'a JWKS entry pinned to EdDSA cannot verify RS256 (and the enc key is not trusted)',
    token: () => signJwt({ alg: 'RS256', kid: 'enc-key' }, claims(), stranger.privateKey),
    expect: 'invalid_token',
  },
  { name: 'unknown kid', token: () => signJwt({ alg: 'RS256', kid: libtrustKeyId(stranger.publicKey) }, claims(), stranger.privateKey), expect: 'invalid_token' },
  {
    name: 'a trusted kid on a token signed by another key',
    token: () => signJwt({ alg: 'RS256' }, claims(), stranger.privateKey, keycloakHeaderJson(kc.kid)),
    expect: 'invalid_token',
  },
  {
    name: 'a jwk header carrying its own (untrusted) key',
    token: () => signJwt({ alg: 'RS256', jwk: stranger.publicKey.export({ format: 'jwk' }) }, claims(), stranger.privateKey),
    expect: 'invalid_token',
  },
  {
    name: 'a jwk header naming a trusted key',
    token: () => signJwt({ alg: 'RS256', jwk: kc.activeKey.publicKey.export({ format: 'jwk' }) }, claims(), kc.activeKey.privateKey),
    expect: 'ok',
  },
  { name: 'scope for another repository', token: () => kc.mintToken({ scope: 'repository:library/busybox:pull' }), expect: 'insufficient_scope' },
  { name: 'push granted, pull asked', token: () => kc.mintToken({ scope: 'repository:library/alpine:push' }), expect: 'insufficient_scope' },
  { name: 'the * action covers pull', token: () => kc.mintToken({ scope: 'repository:library/alpine:*' }), expect: 'ok' },
  { name: 'the * action covers delete in the token, and the policy still decides (no rule: 403)', token: () => kc.mintToken({ scope: 'repository:library/alpine:*' }), items: [repo('library/alpine', ['delete'])], expect: 'denied' },
  { name: 'repository(plugin) is treated as repository', token: () => kc.mintToken({ scope: 'repository(plugin):library/alpine:pull' }), expect: 'ok' },
  { name: 'the scope names the repository as asked: alpine is not library/alpine', token: () => kc.mintToken({ scope: 'repository:library/alpine:pull' }), items: [repo('alpine')], expect: 'insufficient_scope' },
  { name: 'catalog without the catalog scope', token: () => kc.mintToken({ scope: 'repository:library/alpine:*' }), items: [CATALOG], expect: 'insufficient_scope' },
  { name: 'catalog with registry:catalog:*', token: () => kc.mintToken({ scope: 'registry:catalog:*' }), items: [CATALOG], expect: 'ok' },
  { name: 'docker login token (access []) is enough for /v2/', token: () => kc.mintToken(), items: [], expect: 'ok' },
];

test(`token table: ${cases.length} tokens, each with its one outcome`, async () => {
  assert.ok(cases.length >= 15);
  const failures: string[] = [];
  for (const c of cases) {
    const got = await outcome(`Bearer ${c.token()}`, c.items ?? [ALPINE]);
    if (got.outcome !== c.expect) failures.push(`${c.name}: expected ${c.expect}, got ${got.outcome} ${got.header ?? ''}`);
  }
  assert.deepEqual(failures, []);
});

test('a token issued by the emulator endpoint is accepted, and the Bearer scheme is case-insensitive', async () => {
  const kcNow = await startKeycloakEmulator();
  try {
    const path = join(dir, 'live.pem');
    await writeFile(path, kcNow.activeKey.certificatePem);
    const config = parseConfig({
      overrides: { auth: { mode: 'token', token: { realm: kcNow.tokenUrl, service: kcNow.service, issuer: kcNow.issuer, rootCertBundle: path } } },
    });
    const live = await TokenAccess.create(config, silent);
    try {
      const r = await kcNow.fetchToken('bob', 'repository:library/alpine:pull');
      assert.equal(r.status, 200);
      const grant = await live.authorize({ authorization: `bearer ${r.token ?? ''}`, ip: '192.0.2.1' }, [ALPINE]);
      assert.deepEqual(grant, { subject: 'bob' });
    } finally {
      await live.close();
    }
  } finally {
    await kcNow.stop();
  }
});

test('key ids: RFC 7638 thumbprint matches the RFC example; libtrust ids have 12 groups of 4 base32 characters', () => {
  // RFC 7638 §3.1
  const n = '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw';
  const key = createPublicKey({ key: { kty: 'RSA', n, e: 'AQAB' }, format: 'jwk' });
  assert.equal(srcThumbprint(key), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  for (const k of [kc.activeKey.publicKey, ec.publicKey, ed.publicKey]) {
    const id = srcLibtrust(k);
    assert.match(id, /^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/);
    assert.equal(id, libtrustKeyId(k), 'the emulator and Berth agree (Distribution 2.8 agrees too: integration test)');
  }
});

test('challenge strings: realm, service, scope, error in that order with no spaces', () => {
  const realm = 'https://kc.example.com/realms/r/protocol/docker-v2/auth';
  assert.equal(challengeValue(realm, 'mirror', []), `Bearer realm="${realm}",service="mirror"`);
  assert.equal(challengeValue(realm, 'mirror', [ALPINE]), `Bearer realm="${realm}",service="mirror",scope="repository:library/alpine:pull"`);
  assert.equal(
    challengeValue(realm, 'mirror', [ALPINE], 'invalid_token'),
    `Bearer realm="${realm}",service="mirror",scope="repository:library/alpine:pull",error="invalid_token"`,
  );
  assert.equal(
    challengeValue(realm, 'mirror', [ALPINE], 'insufficient_scope'),
    `Bearer realm="${realm}",service="mirror",scope="repository:library/alpine:pull",error="insufficient_scope"`,
  );
  assert.equal(challengeValue(realm, 'mirror', [], 'invalid_token'), `Bearer realm="${realm}",service="mirror",error="invalid_token"`);
  assert.equal(challengeValue(realm, 'mirror', [CATALOG]), `Bearer realm="${realm}",service="mirror",scope="registry:catalog:*"`);
  assert.equal(
    challengeValue(realm, 'mirror', [repo('a'), repo('b', ['pull', 'delete'])]),
    `Bearer realm="${realm}",service="mirror",scope="repository:a:pull repository:b:pull,delete"`,
  );
  assert.equal(challengeValue('https://x/"q"', 'm', []), 'Bearer realm="https://x/\\"q\\"",service="m"');
});

test('bearerToken: only a Bearer credential is a token; other schemes are no token at all', () => {
  assert.equal(bearerToken(undefined), null);
  assert.equal(bearerToken('Basic YWxpY2U6cHc='), null);
  assert.equal(bearerToken('garbage'), null);
  assert.equal(bearerToken('Bearer'), '');
  assert.equal(bearerToken('Bearer   '), '');
  assert.equal(bearerToken('BEARER abc'), 'abc');
  assert.equal(bearerToken('Bearerabc'), null);
});

// ---------------------------------------------------------------------------------------------
// Through the HTTP layer: the exact 401 responses and malformed headers.

let berth: BerthHandle;
async function berthFor(): Promise<BerthHandle> {
  berth ??= await startBerth({
    upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:9', aliases: ['index.docker.io'] }],
    auth: { mode: 'token', token: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: bundlePath } },
  });
  return berth;
}
after(async () => {
  await berth?.stop();
});

test('GET /v2/ without a token: 401, the challenge without scope, detail null', async () => {
  const b = await berthFor();
  const res = await b.services.app.inject({ method: 'GET', url: '/v2/' });
  assert.equal(res.statusCode, 401);
  assert.equal(res.headers['www-authenticate'], `Bearer realm="${kc.tokenUrl}",service="${kc.service}"`);
  assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
  assert.equal(res.body, '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}');
});

test('a manifest without a token: the challenge names the repository as the client asked for it', async () => {
  const b = await berthFor();
  const res = await b.services.app.inject({ method: 'GET', url: '/v2/alpine/manifests/latest' });
  assert.equal(res.statusCode, 401);
  assert.equal(res.headers['www-authenticate'], `Bearer realm="${kc.tokenUrl}",service="${kc.service}",scope="repository:alpine:pull"`);
  assert.equal(
    res.body,
    '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Class":"","Name":"alpine","Action":"pull"}]}]}',
  );
  const head = await b.services.app.inject({ method: 'HEAD', url: '/v2/ghcr.io/org/app/manifests/1?ns=docker.io' });
  assert.equal(head.statusCode, 401);
  assert.equal(head.headers['www-authenticate'], `Bearer realm="${kc.tokenUrl}",service="${kc.service}",scope="repository:ghcr.io/org/app:pull"`);
  const cat = await b.services.app.inject({ method: 'GET', url: '/v2/_catalog' });
  assert.equal(cat.headers['www-authenticate'], `Bearer realm="${kc.tokenUrl}",service="${kc.service}",scope="registry:catalog:*"`);
});

test('malformed Authorization headers are answered 401 with a challenge, never 500', async () => {
  const b = await berthFor();
  const headerJson = Buffer.from('{"alg":"RS256","kid":"x"}').toString('base64url');
  const bad = [
    'Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=',
    'Basic',
    'garbage',
    'Bearer',
    'Bearer ',
    'Bearer    ',
    'Bearer a.b.c',
    'Bearer a.b',
    'Bearer a.b.c.d',
    'Bearer !!!.###.$$$',
    'Bearer ....',
    `Bearer ${headerJson}.not-json.sig`,
    `Bearer ${Buffer.from('[]').toString('base64url')}.${Buffer.from('[]').toString('base64url')}.`,
    `Bearer ${Buffer.from('null').toString('base64url')}.${Buffer.from('1').toString('base64url')}.AA`,
    `Bearer ${headerJson}.${Buffer.from('{"exp":"soon"}').toString('base64url')}.AA`,
    `Bearer ${Buffer.from('{"alg":"RS256","crit":["b64"]}').toString('base64url')}.e30.AA`,
    `Bearer ${kc.mintToken().split('.').slice(0, 2).join('.')}.`,
    `Bearer ${kc.mintToken({ claims: { exp: 1e308 * 10 } })}`,
    `Bearer ${kc.mintToken({ header: { kid: 42 } })}`,
    `Bearer ${kc.mintToken({ header: { x5c: 'not-a-list' } })}`,
    `Bearer ${kc.mintToken({ header: { x5c: ['bm90IGEgY2VydA=='] } })}`,
    `Bearer ${kc.mintToken({ header: { jwk: { kty: 'RSA', n: '!!', e: 'AQAB' } } })}`,
    `Bearer ${kc.mintToken({ header: { alg: 'ES256' } })}`,
    `Bearer ${'A'.repeat(15_000)}.${'B'.repeat(15_000)}.C`,
    `Bearer ${'x'.repeat(100_000)}`,
  ];
  const statuses: string[] = [];
  for (const authorization of bad) {
    for (const url of ['/v2/', '/v2/library/alpine/manifests/latest']) {
      const res = await b.services.app.inject({ method: 'GET', url, headers: { authorization } });
      const challenge = String(res.headers['www-authenticate'] ?? '');
      if (res.statusCode !== 401 || !challenge.startsWith(`Bearer realm="${kc.tokenUrl}",service="${kc.service}"`)) {
        statuses.push(`${authorization.slice(0, 60)} on ${url}: ${res.statusCode} ${challenge}`);
      }
    }
  }
  assert.deepEqual(statuses, []);
  assert.ok(!b.logs().some((l) => l.includes('"level":50')), 'no request logged as failed');
});

test('a refused token is logged with its reason and never with the token itself', async () => {
  const b = await berthFor();
  const token = kc.mintToken({ claims: { aud: 'elsewhere' } });
  const res = await b.services.app.inject({ method: 'GET', url: '/v2/', headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.statusCode, 401);
  assert.equal(res.headers['www-authenticate'], `Bearer realm="${kc.tokenUrl}",service="${kc.service}",error="invalid_token"`);
  const line = b.logs().find((l) => l.includes('token refused') && l.includes('elsewhere'));
  assert.ok(line, 'the refusal names the reason');
  assert.ok(!b.logs().some((l) => l.includes(token.split('.')[2] ?? '')), 'the token never reaches the log');
});

test('a bundle without any certificate stops the start with the config key named', async () => {
  const path = join(dir, 'empty.pem');
  await writeFile(path, '# nothing here\n');
  const config = parseConfig({
    overrides: { auth: { mode: 'token', token: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: path } } },
  });
  await assert.rejects(TokenAccess.create(config, silent), /auth\.token\.rootCertBundle.*no PEM certificate/);
});
