// The Keycloak docker-v2 emulator (test/helpers/keycloak.ts) is only worth its name if it answers
// as reference/protocols.md §1 says Keycloak does; these tests pin each detail a client or Berth
// depends on. (Distribution 2.8 accepting its tokens is checked in test/integration/auth.test.ts.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { startKeycloakEmulator, decodeJwt, libtrustKeyId, type KeycloakEmulator } from '../helpers/keycloak.js';

let kc: KeycloakEmulator;

before(async () => {
  kc = await startKeycloakEmulator({
    realm: 'myrealm',
    clientId: 'mirror',
    users: { alice: 'pw-a', dave: { password: 'pw-d', requiredActions: ['VERIFY_PROFILE'] } },
  });
});
after(async () => {
  await kc?.stop();
});

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

test('only GET is served: a POST (containerd, BuildKit first try) gets 405', async () => {
  const res = await fetch(`${kc.tokenUrl}?service=mirror`, { method: 'POST', body: 'grant_type=password&username=alice&password=pw-a&service=mirror' });
  assert.equal(res.status, 405);
  assert.equal(kc.count({ endpoint: 'token', method: 'POST', status: 405 }) >= 1, true);
});

test('success answers exactly {token, expires_in, issued_at}; the JWT is Keycloak-shaped', async () => {
  const res = await fetch(`${kc.tokenUrl}?account=alice&service=mirror&scope=repository:library/alpine:pull`, {
    headers: { authorization: basic('alice', 'pw-a') },
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as Record<string, unknown>;
  assert.deepEqual(Object.keys(body), ['token', 'expires_in', 'issued_at']);
  assert.equal(body['expires_in'], 300);
  assert.match(String(body['issued_at']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const { header, claims, headerJson } = decodeJwt(String(body['token']));
  assert.equal(headerJson, `{"alg":"RS256","typ" : "JWT","kid" : "${kc.kid}"}`);
  assert.equal(header['x5c'], undefined);
  assert.match(String(header['kid']), /^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/);
  assert.equal(claims['sub'], 'alice');
  assert.equal(claims['iss'], kc.issuer);
  assert.equal(claims['aud'], 'mirror');
  assert.equal(claims['azp'], 'mirror');
  assert.equal(claims['nbf'], claims['iat']);
  assert.equal(claims['exp'], Number(claims['iat']) + 300);
  assert.deepEqual(claims['access'], [{ type: 'repository', name: 'library/alpine', actions: ['pull'] }]);
  assert.equal(new Date(String(body['issued_at'])).getTime() / 1000, claims['iat']);
});

test('only the first scope parameter is used, and it is granted whatever it asks (Allow All mapper)', async () => {
  const r = await fetch(`${kc.tokenUrl}?service=mirror&scope=repository:a:pull,push,delete&scope=repository:b:pull`, {
    headers: { authorization: basic('alice', 'pw-a') },
  });
  const { claims } = decodeJwt(((await r.json()) as { token: string }).token);
  assert.deepEqual(claims['access'], [{ type: 'repository', name: 'a', actions: ['pull', 'push', 'delete'] }]);
  const login = await kc.fetchToken('alice', undefined);
  assert.deepEqual(decodeJwt(login.token ?? '').claims['access'], [], 'docker login: no scope, access []');
});

test('wrong password: 401 JSON with no WWW-Authenticate; no credentials: no token', async () => {
  const res = await fetch(`${kc.tokenUrl}?service=mirror&scope=repository:library/alpine:pull`, { headers: { authorization: basic('alice', 'nope') } });
  assert.equal(res.status, 401);
  assert.equal(res.headers.get('www-authenticate'), null);
  assert.deepEqual(await res.json(), {
    errors: [{ code: 'UNAUTHORIZED', message: 'Invalid username or password.', detail: [{ type: 'repository', name: 'library/alpine', actions: ['pull'] }] }],
  });
  const anon = await kc.fetchToken(null, 'repository:library/alpine:pull');
  assert.equal(anon.status, 400);
  assert.equal(anon.token, undefined);
});

test('service must be the client id: missing → 400 invalid_request, other → 400 invalid_client', async () => {
  const missing = await fetch(`${kc.tokenUrl}?scope=repository:x:pull`, { headers: { authorization: basic('alice', 'pw-a') } });
  assert.equal(missing.status, 400);
  assert.equal(((await missing.json()) as { error: string }).error, 'invalid_request');
  const other = await fetch(`${kc.tokenUrl}?service=registry`, { headers: { authorization: basic('alice', 'pw-a') } });
  assert.equal(other.status, 400);
  assert.equal(((await other.json()) as { error: string }).error, 'invalid_client');
});

test('a user with a pending required action ends at the cookie_not_found page, not a token', async () => {
  const first = await fetch(`${kc.tokenUrl}?service=mirror&scope=repository:x:pull`, { headers: { authorization: basic('dave', 'pw-d') }, redirect: 'manual' });
  assert.equal(first.status, 302);
  const next = await fetch(String(first.headers.get('location')));
  assert.equal(next.status, 400);
  assert.match(String(next.headers.get('content-type')), /text\/html/);
  assert.match(await next.text(), /Cookie not found/);
});

test('the trust bundle is the realm key certificate (self-signed, V1, CN = realm) and goes stale on rotation', async () => {
  const pem = await readFile(kc.trustBundlePath, 'utf8');
  const cert = new X509Certificate(pem);
  assert.equal(cert.subject, 'CN=myrealm');
  assert.equal(cert.issuer, 'CN=myrealm');
  assert.ok(cert.verify(cert.publicKey));
  assert.equal(libtrustKeyId(cert.publicKey), kc.kid);
  const before = kc.kid;
  const rotated = await kc.rotateKey();
  assert.notEqual(rotated.kid, before);
  assert.equal(await readFile(kc.trustBundlePath, 'utf8'), pem, 'the download is a snapshot');
  await kc.writeTrustBundle();
  assert.equal(libtrustKeyId(new X509Certificate(await readFile(kc.trustBundlePath, 'utf8')).publicKey), rotated.kid);
});

test('the JWKS lists signing keys with Keycloak kids (not libtrust), x5c, and an enc key', async () => {
  const doc = (await (await fetch(kc.jwksUrl)).json()) as { keys: Array<Record<string, unknown>> };
  const sig = doc.keys.filter((k) => k['use'] === 'sig');
  assert.ok(sig.length >= 1);
  assert.equal(sig[0]?.['kid'], kc.jwksKid);
  assert.notEqual(kc.jwksKid, kc.kid);
  assert.ok(Array.isArray(sig[0]?.['x5c']));
  assert.ok(doc.keys.some((k) => k['use'] === 'enc' && k['alg'] === 'RSA-OAEP'));
});

test('setFailure makes the token endpoint (or the JWKS) fail until cleared', async () => {
  kc.setFailure(503);
  assert.equal((await kc.fetchToken('alice', 'repository:x:pull')).status, 503);
  kc.setFailure('reset');
  await assert.rejects(kc.fetchToken('alice', 'repository:x:pull'));
  kc.setFailure(null);
  assert.equal((await kc.fetchToken('alice', 'repository:x:pull')).status, 200);
  kc.setFailure(500, 'jwks');
  assert.equal((await fetch(kc.jwksUrl)).status, 500);
  kc.setFailure(null, 'all');
  assert.equal((await fetch(kc.jwksUrl)).status, 200);
});
