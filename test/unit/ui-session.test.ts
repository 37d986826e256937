// The UI's sealed cookies and CSRF check (src/ui/session.ts, src/ui/csrf.ts): what a browser
// holds cannot be read, altered, replayed under another name or purpose, or used after it expires,
// and a state-changing request without the session's token (or from another site) is refused.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FastifyRequest } from 'fastify';
import { CookieSealer, MAX_SEALED_LENGTH, randomToken, sameToken } from '../../src/ui/session.js';
import { csrfProblem } from '../../src/ui/csrf.js';

const SECRET = 'a-session-secret-of-more-than-32-characters';

function clock(start = 1_000_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

/** Flip one bit of the sealed bytes (after the `v1.` prefix) and re-encode. */
function tamper(sealed: string, index: number): string {
  const raw = Buffer.from(sealed.slice(3), 'base64url');
  raw[index % raw.length] = (raw[index % raw.length] ?? 0) ^ 0x01;
  return `v1.${raw.toString('base64url')}`;
}

describe('sealed cookies', () => {
  it('opens what it sealed, and the plaintext is not visible in the cookie', () => {
    const c = clock();
    const s = new CookieSealer(SECRET, c.now);
    const sealed = s.seal('session', 'berth_ui', { subject: 'alice', roles: ['berth-admin'] }, 60_000);
    assert.doesNotMatch(Buffer.from(sealed.slice(3), 'base64url').toString('latin1'), /alice|berth-admin/);
    const opened = s.open<{ subject: string; roles: string[] }>('session', 'berth_ui', sealed);
    assert.equal(opened?.subject, 'alice');
    assert.deepEqual(opened?.roles, ['berth-admin']);
    assert.equal(opened?.exp, 1_060_000);
  });

  it('refuses a cookie with any byte changed (iv, ciphertext or tag)', () => {
    const s = new CookieSealer(SECRET);
    const sealed = s.seal('session', 'berth_ui', { subject: 'alice' }, 60_000);
    const length = Buffer.from(sealed.slice(3), 'base64url').length;
    for (const i of [0, 5, 11, 12, 20, length - 17, length - 16, length - 1]) {
      assert.equal(s.open('session', 'berth_ui', tamper(sealed, i)), null, `byte ${i} altered`);
    }
    assert.equal(s.open('session', 'berth_ui', sealed.slice(0, -2)), null, 'truncated');
    assert.equal(s.open('session', 'berth_ui', 'v1.'), null);
    assert.equal(s.open('session', 'berth_ui', 'v2.' + sealed.slice(3)), null, 'unknown version');
    assert.equal(s.open('session', 'berth_ui', undefined), null);
    assert.equal(s.open('session', 'berth_ui', `v1.${'A'.repeat(MAX_SEALED_LENGTH)}`), null, 'oversized');
  });

  it('refuses a cookie after it expires', () => {
    const c = clock();
    const s = new CookieSealer(SECRET, c.now);
    const sealed = s.seal('login', 'berth_ui_login', { state: 'x' }, 10_000);
    c.advance(9_999);
    assert.notEqual(s.open('login', 'berth_ui_login', sealed), null);
    c.advance(1);
    assert.equal(s.open('login', 'berth_ui_login', sealed), null);
  });

  it('refuses a cookie sealed for another purpose, under another name, or with another secret', () => {
    const s = new CookieSealer(SECRET);
    const login = s.seal('login', 'berth_ui_login', { subject: 'mallory' }, 60_000);
    assert.equal(s.open('session', 'berth_ui_login', login), null, 'a login cookie is no session');
    assert.equal(s.open('login', 'berth_ui', login), null, 'the name is bound');
    assert.equal(new CookieSealer(`${SECRET}-other`).open('login', 'berth_ui_login', login), null);
    // Two replicas with the same secret read each other's cookies.
    assert.equal(new CookieSealer(SECRET).open<{ subject: string }>('login', 'berth_ui_login', login)?.subject, 'mallory');
  });

  it('makes random tokens and compares them without shortcuts', () => {
    const a = randomToken();
    assert.match(a, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(a, randomToken());
    assert.equal(sameToken(a, a), true);
    assert.equal(sameToken(a, `${a.slice(0, -1)}x`), false);
    assert.equal(sameToken(a, a.slice(1)), false);
    assert.equal(sameToken('', ''), false);
  });
});

function request(method: string, headers: Record<string, string>): FastifyRequest {
  return { method, headers: { host: 'mirror.example.com', ...headers } } as unknown as FastifyRequest;
}

describe('CSRF', () => {
  const token = randomToken();

  it('passes a same-origin request carrying the session token', () => {
    assert.equal(csrfProblem(request('POST', { 'x-csrf-token': token, origin: 'https://mirror.example.com', 'sec-fetch-site': 'same-origin' }), token), null);
    assert.equal(csrfProblem(request('POST', { 'x-csrf-token': token }), token), null, 'a client that sends no Origin');
  });

  it('refuses a request without the token, with another token, or when none was issued', () => {
    assert.match(csrfProblem(request('POST', {}), token) ?? '', /missing/);
    assert.match(csrfProblem(request('POST', { 'x-csrf-token': randomToken() }), token) ?? '', /does not match/);
    assert.match(csrfProblem(request('POST', { 'x-csrf-token': token }), null) ?? '', /does not match/);
  });

  it('refuses a request from another origin or site even with the right token', () => {
    assert.match(csrfProblem(request('POST', { 'x-csrf-token': token, origin: 'https://evil.example.net' }), token) ?? '', /evil/);
    assert.match(csrfProblem(request('POST', { 'x-csrf-token': token, 'sec-fetch-site': 'same-site' }), token) ?? '', /same-site/);
    assert.match(csrfProblem(request('POST', { 'x-csrf-token': token, 'sec-fetch-site': 'cross-site' }), token) ?? '', /cross-site/);
    assert.match(csrfProblem(request('POST', { 'x-csrf-token': token, origin: 'not a url' }), token) ?? '', /may not/);
  });
});
