// The UI without a login, over HTTP (no browser needed): read-only for everyone, admin and delete
// only from http.adminNetworks; closed when auth.mode is token and ui.oidc is unset; absent with
// ui.enabled false. Also what every UI response carries: the CSP and security headers, hashed
// assets cached for a year, and a page without inline script.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startBerth, type BerthHandle } from '../helpers/berth.js';
import type { AccessController } from '../../src/auth/access.js';

/** A stand-in token controller: these tests never reach /v2 with a token. */
const tokenAccess: AccessController = { mode: 'token', authorize: async () => ({ subject: null }) };

const DEAD_UPSTREAM = [{ name: 'docker.io', url: 'http://127.0.0.1:9' }];

/** The CSRF cookie and token a page gets from /ui/api/me. */
async function session(url: string): Promise<{ cookie: string; csrf: string; admin: boolean }> {
  const r = await fetch(`${url}/ui/api/me`);
  assert.equal(r.status, 200);
  const cookie = (r.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  assert.match(cookie, /^berth_ui_csrf=/);
  const me = (await r.json()) as { csrf: string; admin: boolean; mode: string };
  assert.equal(me.mode, 'open');
  return { cookie, csrf: me.csrf, admin: me.admin };
}

function post(url: string, path: string, s: { cookie: string; csrf: string }, body: unknown): Promise<Response> {
  return fetch(`${url}/ui/api${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie: s.cookie, 'x-csrf-token': s.csrf },
    body: JSON.stringify(body),
  });
}

describe('open UI (no login, auth none)', () => {
  let local: BerthHandle;
  let remote: BerthHandle;
  before(async () => {
    local = await startBerth({ upstreams: DEAD_UPSTREAM, storage: { deleteEnabled: true } });
    // Loopback is not an admin network here: this client is "anyone".
    remote = await startBerth({ upstreams: DEAD_UPSTREAM, storage: { deleteEnabled: true }, http: { adminNetworks: ['10.0.0.0/8'] } });
  });
  after(async () => {
    await local?.stop();
    await remote?.stop();
  });

  it('anyone reads; admin actions are refused outside http.adminNetworks', async () => {
    const s = await session(remote.url);
    assert.equal(s.admin, false);
    assert.equal((await fetch(`${remote.url}/ui/api/overview`)).status, 200);
    assert.equal((await fetch(`${remote.url}/ui/api/repositories`)).status, 200);
    const gc = await post(remote.url, '/gc', s, { dryRun: true });
    assert.equal(gc.status, 403);
    assert.match(await gc.text(), /http\.adminNetworks/);
    assert.equal((await post(remote.url, '/purge', s, { pattern: '**', dryRun: true })).status, 403);
  });

  it('from an admin network, with the double-submit token, admin actions run', async () => {
    const s = await session(local.url);
    assert.equal(s.admin, true);
    const gc = await post(local.url, '/gc', s, { dryRun: true });
    assert.equal(gc.status, 200, await gc.clone().text());
    // The cookie alone is not enough, nor a token without its cookie.
    assert.equal((await post(local.url, '/gc', { cookie: s.cookie, csrf: '' }, { dryRun: true })).status, 403);
    assert.equal((await post(local.url, '/gc', { cookie: '', csrf: s.csrf }, { dryRun: true })).status, 403);
  });

  it('bad input gets an OCI error, never a 500', async () => {
    const s = await session(local.url);
    const cases: [string, unknown, number][] = [
      ['/delete', { name: 'library/x', references: ['not a tag!'] }, 400],
      ['/delete', { name: 'library/x', references: ['sha256:zz'] }, 400],
      ['/delete', {}, 400],
      ['/purge', { pattern: '[' }, 400],
    ];
    for (const [path, body, status] of cases) {
      const r = await post(local.url, path, s, body);
      assert.equal(r.status, status, `${path} ${JSON.stringify(body)}`);
      assert.ok(Array.isArray(((await r.json()) as { errors?: unknown }).errors));
    }
    for (const q of ['/repository?name=library/nothing', '/manifest?name=library/x&digest=sha256:nope', '/repositories?n=0', '/repositories?q=%5B']) {
      const r = await fetch(`${local.url}/ui/api${q}`);
      assert.ok(r.status >= 400 && r.status < 500, `${q}: ${r.status}`);
    }
  });

  it('serves the page with a strict CSP, no inline script, and year-long cached hashed assets', async () => {
    const page = await fetch(`${local.url}/ui/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy') ?? '', /^default-src 'self'; script-src 'self'; style-src 'self';/);
    assert.equal(page.headers.get('x-frame-options'), 'DENY');
    assert.equal(page.headers.get('cache-control'), 'no-cache');
    const html = await page.text();
    const scripts = [...html.matchAll(/<script([^>]*)>([^<]*)<\/script>/g)];
    assert.equal(scripts.length, 1);
    assert.match(scripts[0]?.[1] ?? '', /type="module" src="\/ui\/assets\/app\.[0-9a-f]{16}\.js"/);
    assert.equal(scripts[0]?.[2], '', 'no inline script');
    assert.doesNotMatch(html, /style=/, 'no inline style');
    assert.doesNotMatch(html, /https?:\/\//, 'nothing from elsewhere');
    for (const m of html.matchAll(/\/ui\/assets\/[a-z]+\.[0-9a-f]{16}\.(js|css)/g)) {
      const a = await fetch(`${local.url}${m[0]}`);
      assert.equal(a.status, 200);
      assert.equal(a.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.match(a.headers.get('content-type') ?? '', m[1] === 'js' ? /javascript/ : /text\/css/);
      assert.doesNotMatch(await a.text(), /sourceMappingURL|https?:\/\/(?!www\.w3\.org)/);
    }
    assert.equal((await fetch(`${local.url}/ui/assets/app.0000000000000000.js`)).status, 404);
  });
});

describe('closed and disabled UI', () => {
  let closed: BerthHandle;
  let disabled: BerthHandle;
  before(async () => {
    closed = await startBerth(
      { upstreams: DEAD_UPSTREAM, auth: { mode: 'token', token: { realm: 'https://kc.example.com/t', service: 'berth', issuer: 'https://kc.example.com/realms/ci', jwks: 'https://kc.example.com/certs' } } },
      { accessFactory: async () => tokenAccess },
    );
    disabled = await startBerth({ upstreams: DEAD_UPSTREAM, ui: { enabled: false } });
  });
  after(async () => {
    await closed?.stop();
    await disabled?.stop();
  });

  it('token auth without ui.oidc: the UI API says to configure a login', async () => {
    const r = await fetch(`${closed.url}/ui/api/me`);
    assert.equal(r.status, 403);
    assert.match(await r.text(), /ui\.oidc/);
  });

  it('ui.enabled false: no /ui/ at all', async () => {
    const r = await fetch(`${disabled.url}/ui/`);
    assert.equal(r.status, 404);
    assert.equal((await fetch(`${disabled.url}/ui/api/me`)).status, 404);
  });
});
