// The web UI in a real browser (issue 15): Debian's chromium, headless, driven by playwright-core,
// against Berth in front of a real Distribution upstream (through the counting, fault-injecting
// proxy), with an in-process OpenID provider set up like a Keycloak realm (test/helpers/oidc.ts).
//
// It logs in with authorization code + PKCE (and a forged state is refused), checks that a user
// without the admin role sees no purge button and that a forged purge POST and a POST without the
// CSRF token answer 403, browses to an index pulled through the mirror and sees its platforms and
// layers, deletes three tags at once (three deletes, the tags gone, a shared layer and a manifest
// another tag holds kept), and compares the overview with /metrics, with the upstream's last
// rate-limit header, and with a download in progress (a dripping upstream). It saves a screenshot
// of every page at 1280×800 and 390×844 under tmp/test-output/ui/ (gitignored); with
// BERTH_UI_DOCS_SCREENSHOT=1 the overview's also goes to docs/img/ui-overview.png.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { startRig, type Rig } from '../helpers/rig.js';
import {
  buildIndex, buildLargeBlobImage, digestOf, drip, fetchBlob, fetchManifest, pushImage, pushIndex, responseHeaders,
  type BuiltIndex, type BuiltLayer,
} from '../helpers/index.js';
import { startOidcProvider, type OidcProvider } from '../helpers/oidc.js';
import { chromiumMissing, launchBrowser, screenshotEachViewport, SCREENSHOTS, VIEWPORTS, type TestBrowser } from '../helpers/browser.js';
import { CookieSealer } from '../../src/ui/session.js';
import type { UiSession } from '../../src/ui/context.js';
import { imageFromLayers, pullImage, pushPullable, settle, imageDigests, type PullableImage } from '../integration/lifecycle-support.js';

const SESSION_SECRET = 'ui-browser-test-session-secret-0123456789';

function rawLayer(seed: string, size: number): BuiltLayer {
  const l = buildLargeBlobImage({ seed, size, raw: true }).layers[0];
  assert.ok(l);
  return l;
}

// library/multi:1 — an OCI index over two platforms.
const multi: BuiltIndex = buildIndex({ seed: 'ui-multi', layers: 2 });
// library/shared — a, b and c/d (one image, two tags) over one shared base layer.
const base = rawLayer('ui-shared-base', 48 * 1024);
const imgA = imageFromLayers('ui-shared-a', [base, rawLayer('ui-shared-a', 8 * 1024)]);
const imgB = imageFromLayers('ui-shared-b', [base, rawLayer('ui-shared-b', 9 * 1024)]);
const imgC = imageFromLayers('ui-shared-c', [base, rawLayer('ui-shared-c', 10 * 1024)]);
// library/slow:1 — one 3 MiB layer the upstream drips out while the overview watches.
const slow = buildLargeBlobImage({ seed: 'ui-slow', size: 3 * 1024 * 1024, raw: true });
const slowLayer = slow.layers[0] as BuiltLayer;

let rig: Rig;
let op: OidcProvider;
let tb: TestBrowser;

before(async () => {
  const missing = await chromiumMissing();
  if (missing) throw new Error(missing);
  op = await startOidcProvider({
    users: [
      { username: 'alice', name: 'Alice Admin', roles: ['berth-admin', 'offline_access'] },
      { username: 'bob', name: 'Bob Reader', roles: ['offline_access'] },
    ],
  });
  rig = await startRig({
    seed: async (up) => {
      await pushIndex(up.url, 'library/multi', '1', multi);
      await pushPullable(up.url, 'library/shared', 'a', imgA);
      await pushPullable(up.url, 'library/shared', 'b', imgB);
      await pushPullable(up.url, 'library/shared', 'c', imgC);
      await pushPullable(up.url, 'library/shared', 'd', imgC);
      await pushImage(up.url, 'library/slow', '1', slow);
    },
    faults: [responseHeaders({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '73;w=21600' }, { match: { kind: 'manifest' } })],
    upstreams: { 'docker.io': { tagTtl: '1h' }, 'ghcr.io': { tagTtl: '1h' } },
    berthConfig: {
      storage: { deleteEnabled: true },
      ui: { oidc: { issuer: op.issuer, clientId: op.clientId, clientSecret: op.clientSecret }, sessionSecret: SESSION_SECRET },
      auth: { policy: [{ subjects: ['role:berth-admin'], actions: ['admin', 'delete'], repositories: ['*'] }] },
      prewarm: { schedule: '0 3 1 1 *', images: ['docker.io/library/multi:1'] },
    },
  });
  rig.defer(() => op.stop());
  await op.register([`${rig.url}/ui/callback`], [`${rig.url}/ui/`]);
  tb = await launchBrowser();
  rig.defer(() => tb.close());
  await mkdir(SCREENSHOTS, { recursive: true });

  // Pull through the mirror, as a client would: the index, each platform, every blob.
  const ix = await fetchManifest(rig.url, 'library/multi', '1');
  assert.equal(ix.status, 200);
  for (const img of multi.images) await pullImage(rig.url, 'library/multi', img.manifestDigest, img);
  for (const [tag, img] of [['a', imgA], ['b', imgB], ['c', imgC], ['d', imgC]] as [string, PullableImage][]) {
    await pullImage(rig.url, 'library/shared', tag, img);
  }
  await settle(rig.berth, [...imageDigests(imgA), ...imageDigests(imgB), ...imageDigests(imgC), multi.manifestDigest]);
});

after(async () => {
  await rig?.stop();
});

async function login(ctx: BrowserContext, username: string, hash = '#/'): Promise<Page> {
  const page = await ctx.newPage();
  await page.goto(`${rig.url}/ui/${hash}`);
  // Not logged in: the page sends the browser to the provider's login form.
  await page.waitForURL((u) => u.href.startsWith(op.issuer));
  await page.fill('input[name=login]', username);
  await page.fill('input[name=password]', 'any password');
  await page.click('button[type=submit]');
  await page.waitForURL((u) => u.href.startsWith(`${rig.url}/ui/`));
  await page.waitForSelector('body[data-ready]');
  return page;
}

/** fetch() from inside the page, as a script on it (or an attacker's forged call) would. */
async function pageFetch(page: Page, path: string, init: { method: string; body?: string; headers?: Record<string, string> }): Promise<{ status: number; text: string }> {
  return page.evaluate(async ([p, i]) => {
    const r = await fetch(p, { method: i.method, headers: i.headers, body: i.body, credentials: 'same-origin' });
    return { status: r.status, text: await r.text() };
  }, [path, init] as const);
}

async function csrfOf(page: Page): Promise<string> {
  const me = await pageFetch(page, '/ui/api/me', { method: 'GET' });
  return (JSON.parse(me.text) as { csrf: string }).csrf;
}


test('login: a forged state is refused, a callback nobody started is refused, and a real login lands on the page', async () => {
  const ctx = await tb.context();
  const page = await ctx.newPage();
  const start = await page.goto(`${rig.url}/ui/login`);
  assert.ok(start);
  assert.ok(page.url().startsWith(`${op.issuer}/interaction/`), page.url());
  const authorize = op.requests.filter((p) => p === '/auth').length;
  assert.ok(authorize >= 1, 'the browser went to the authorization endpoint');
  // The login cookie is set; a callback with another state (otherwise well formed: the provider
  // sends `iss`) must not log anybody in.
  const forgedQuery = `code=forged-code&state=not-the-state&iss=${encodeURIComponent(op.issuer)}`;
  const forged = await page.goto(`${rig.url}/ui/callback?${forgedQuery}`);
  assert.equal(forged?.status(), 400);
  assert.match(await page.textContent('#login-error') ?? '', /refused: .*state/i);
  assert.equal((await ctx.cookies()).some((c) => c.name === 'berth_ui'), false, 'no session cookie after a forged state');
  // The login cookie was spent: the same callback again is a login nobody started.
  const again = await page.goto(`${rig.url}/ui/callback?${forgedQuery}`);
  assert.equal(again?.status(), 400);
  assert.match(await page.textContent('#login-error') ?? '', /not started here/);
  const tokenCalls = op.requests.filter((p) => p === '/token').length;
  assert.equal(tokenCalls, 0, 'no code was exchanged for a forged state');

  const alice = await login(ctx, 'alice');
  assert.equal(await alice.textContent('[data-test=user]'), 'Alice Admin');
  const session = (await ctx.cookies()).find((c) => c.name === 'berth_ui');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Lax');
  assert.equal(session.path, '/ui/');
  assert.doesNotMatch(Buffer.from(session.value.slice(3), 'base64url').toString('latin1'), /alice|berth-admin/, 'the cookie is encrypted');
  // The page is served with a CSP that forbids inline script and other origins.
  const res = await alice.goto(`${rig.url}/ui/`);
  assert.match(res?.headers()['content-security-policy'] ?? '', /default-src 'self'; script-src 'self'/);
  await ctx.close();
});

test('a user without the admin role sees no purge button, and a forged purge POST answers 403', async () => {
  const ctx = await tb.context();
  const bob = await login(ctx, 'bob', '#/actions');
  await bob.waitForSelector('[data-test=no-admin]');
  assert.equal(await bob.locator('[data-test=purge]').count(), 0);
  assert.equal(await bob.locator('[data-test=gc-preview]').count(), 0);
  const token = await csrfOf(bob);
  const forged = await pageFetch(bob, '/ui/api/purge', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': token }, body: JSON.stringify({ pattern: '**' }) });
  assert.equal(forged.status, 403, forged.text);
  assert.match(forged.text, /DENIED/);
  // Bob may not delete either: no checkboxes on a repository page, and the API says 403.
  await bob.goto(`${rig.url}/ui/#/repository/library%2Fshared?upstream=docker.io`);
  await bob.waitForSelector('[data-test=tags]');
  assert.equal(await bob.locator('[data-test=delete-selected]').count(), 0);
  const del = await pageFetch(bob, '/ui/api/delete', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': token }, body: JSON.stringify({ name: 'library/shared', references: ['a'] }) });
  assert.equal(del.status, 403, del.text);
  const stillThere = await fetchManifest(rig.url, 'library/shared', 'a');
  assert.equal(stillThere.status, 200);
  await ctx.close();
});

test('a POST without the CSRF token answers 403, with it the same call passes', async () => {
  const ctx = await tb.context();
  const alice = await login(ctx, 'alice');
  const bare = await pageFetch(alice, '/ui/api/gc', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ dryRun: true }) });
  assert.equal(bare.status, 403, bare.text);
  assert.match(bare.text, /x-csrf-token/);
  const wrong = await pageFetch(alice, '/ui/api/gc', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': 'x'.repeat(43) }, body: JSON.stringify({ dryRun: true }) });
  assert.equal(wrong.status, 403, wrong.text);
  const logoutBare = await pageFetch(alice, '/ui/logout', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(logoutBare.status, 403, 'logout is a state change too');
  const ok = await pageFetch(alice, '/ui/api/gc', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': await csrfOf(alice) }, body: JSON.stringify({ dryRun: true }) });
  assert.equal(ok.status, 200, ok.text);
  assert.equal((JSON.parse(ok.text) as { dryRun: boolean }).dryRun, true);
  await ctx.close();
});

test('browse to an index pulled through the mirror: its platforms, then a platform\'s layers', async () => {
  const ctx = await tb.context();
  const page = await login(ctx, 'alice', '#/repositories');
  await page.waitForSelector('[data-test=repositories]');
  // Search by keyboard: the labelled search box, Enter submits.
  await page.getByLabel('Search').fill('multi');
  await page.getByLabel('Upstream').selectOption('docker.io');
  await page.getByLabel('Search').press('Enter');
  await page.waitForFunction(() => document.querySelectorAll('[data-test=repositories] tbody tr').length === 1);
  await screenshotEachViewport(page, 'repositories');
  await page.getByRole('link', { name: 'library/multi' }).click();
  await page.waitForSelector('[data-test=tags] tr[data-tag="1"]');
  const row = page.locator('[data-test=tags] tr[data-tag="1"]');
  assert.match(await row.textContent() ?? '', /index/);
  assert.match(await row.textContent() ?? '', /linux\/amd64/);
  await screenshotEachViewport(page, 'repository');
  await row.getByRole('link', { name: '1' }).click();
  await page.waitForSelector('[data-test=platforms]');
  const platforms = await page.locator('[data-test=platforms] tbody tr').allTextContents();
  assert.equal(platforms.length, multi.images.length);
  assert.match(platforms.join(' '), /linux\/amd64/);
  assert.match(platforms.join(' '), /linux\/arm64\/v8/);
  const pull = await page.textContent('[data-test=pull]') ?? '';
  assert.ok(pull.includes(`docker pull ${new URL(rig.url).host}/library/multi:1`), pull);
  await screenshotEachViewport(page, 'manifest-index');
  // Into the first platform: its config and its layers, as stored.
  await page.locator('[data-test=platforms] tbody tr').first().getByRole('link').click();
  await page.waitForSelector('[data-test=layers]');
  const img = multi.images[0];
  assert.ok(img);
  const layers = await page.locator('[data-test=layers] tbody tr').allTextContents();
  assert.equal(layers.length, img.layers.length);
  for (const [i, l] of img.layers.entries()) assert.ok(layers[i]?.includes(l.digest.slice(7, 19)), `layer ${i}`);
  assert.match(await page.textContent('[data-test=config]') ?? '', /PATH=\/usr\/local\/sbin/);
  assert.match(await page.textContent('[data-test=history]') ?? '', /layer0\/random\.bin/);
  await screenshotEachViewport(page, 'manifest-image');
  await ctx.close();
});

test('multi-delete of three tags: three deletes, the tags gone, the shared layer and a manifest another tag holds kept', async () => {
  const ctx = await tb.context();
  const page = await login(ctx, 'alice', '#/repository/library%2Fshared?upstream=docker.io');
  await page.waitForSelector('[data-test=tags]');
  for (const tag of ['a', 'b', 'c']) await page.getByLabel(`select ${tag}`).check();
  await page.click('[data-test=delete-selected]');
  await page.waitForSelector('[data-test=confirm]');
  const kept = await page.textContent('[data-test=kept]') ?? '';
  assert.match(kept, /c — its manifest stays: tag d still points at it/);
  await screenshotEachViewport(page, 'delete-confirm');
  const auditsBefore = rig.berth.logs().filter((l) => l.includes('"action":"ui.delete"')).length;
  await page.click('[data-test=confirm-delete]');
  await page.waitForFunction(() => document.querySelectorAll('[data-test=tags] tbody tr').length === 1);
  const left = await page.locator('[data-test=tags] tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-tag')));
  assert.deepEqual(left, ['d']);
  const audits = rig.berth.logs().filter((l) => l.includes('"action":"ui.delete"')).length - auditsBefore;
  assert.equal(audits, 3, 'one delete per tag');

  const driver = rig.berth.services.driver;
  const has = async (d: string): Promise<boolean> => (await driver.statBlob(d as Parameters<typeof driver.statBlob>[0])) !== null;
  assert.equal(await has(base.digest), true, 'the shared base layer stays');
  assert.equal(await has(imgC.manifestDigest), true, 'c\'s manifest stays: d holds it');
  assert.equal(await has(imgA.layers[1]?.digest ?? ''), false, 'a\'s own layer went');
  assert.equal(await has(imgB.manifestDigest), false, 'b\'s manifest went');
  // d still pulls from the cache alone.
  rig.resetProxy();
  await pullImage(rig.url, 'library/shared', 'd', imgC);
  assert.equal(rig.proxy.requests.length, 0, 'd pulled without asking upstream');
  rig.proxy.setRules([responseHeaders({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '73;w=21600' }, { match: { kind: 'manifest' } })]);
  await ctx.close();
});

/** (hit + revalidated + stale) / all from /metrics, as docs/metrics.md defines the hit ratio. */
async function hitRatioFromMetrics(): Promise<number> {
  const text = await (await fetch(`${rig.url}/metrics`)).text();
  let cached = 0;
  let total = 0;
  for (const m of text.matchAll(/^berth_cache_requests_total\{([^}]*)\} (\S+)$/gm)) {
    const v = Number(m[2]);
    total += v;
    if (/result="(hit|revalidated|stale)"/.test(m[1] ?? '')) cached += v;
  }
  assert.ok(total > 0, 'the pulls above were counted');
  return cached / total;
}

test('the overview: hit ratio as /metrics says, the upstream\'s last rate-limit header, a download in progress', async () => {
  const ctx = await tb.context();
  // The upstream now reports 72 left: the mirror's next manifest fetch sees it.
  rig.proxy.setRules([responseHeaders({ 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '72;w=21600' }, { match: { kind: 'manifest' } })]);
  const fresh = await fetchManifest(rig.url, 'library/slow', '1');
  assert.equal(fresh.status, 200);
  const page = await login(ctx, 'alice');
  await page.waitForSelector('[data-test=hit-ratio-start]');
  const shown = Number(await page.getAttribute('[data-test=hit-ratio-start]', 'data-value'));
  const expected = await hitRatioFromMetrics();
  assert.ok(Math.abs(shown - expected) < 1e-9, `overview ${shown}, /metrics ${expected}`);
  assert.ok(expected > 0 && expected < 1, `a ratio with hits and misses (${expected})`);
  const remaining = await page.getAttribute('[data-test=upstreams] tr[data-upstream="docker.io"] [data-test=ratelimit-remaining]', 'data-value');
  assert.equal(remaining, '72');
  assert.match(await page.textContent('[data-test=upstreams]') ?? '', /72 \/ 100/);

  // A slow download: the upstream drips the 3 MiB layer; the overview shows it while it runs.
  rig.proxy.setRules([drip(32 * 1024, 80, { match: { kind: 'blob', pathIncludes: slowLayer.digest } })]);
  const download = fetchBlob(rig.url, 'library/slow', slowLayer.digest);
  await page.reload();
  await page.waitForSelector('[data-test=fills] tr[data-kind=blob]', { timeout: 10_000 });
  const progress = await page.textContent('[data-test=fills] tr[data-kind=blob] [data-test=fill-progress]') ?? '';
  assert.match(progress, /of 3\.0 MiB/);
  // The page refreshes itself: the bar moves while the upstream drips.
  await page.waitForFunction(() => Number(document.querySelector('[data-test=fills] tr[data-kind=blob] [role=meter]')?.getAttribute('aria-valuenow') ?? 0) >= 20, undefined, { timeout: 10_000 });
  await screenshotEachViewport(page, 'overview-fill');
  const got = await download;
  assert.equal(got.status, 200);
  assert.equal(digestOf(got.body), slowLayer.digest);
  // Once done, the page (refreshing itself) says nothing is downloading.
  await page.waitForSelector('[data-test=fills-empty]', { timeout: 10_000 });
  await screenshotEachViewport(page, 'overview');
  if (process.env['BERTH_UI_DOCS_SCREENSHOT'] === '1') {
    await copyFile(join(SCREENSHOTS, `overview-fill-${VIEWPORTS.laptop.width}x${VIEWPORTS.laptop.height}.png`), join('docs', 'img', 'ui-overview.png'));
  }
  // Dark mode renders too.
  const dark = await tb.context({ colorScheme: 'dark' });
  const darkPage = await login(dark, 'alice');
  await darkPage.waitForSelector('[data-test=hit-ratio-start]');
  await darkPage.screenshot({ path: join(SCREENSHOTS, 'overview-dark-1280x800.png') });
  await dark.close();
  await ctx.close();
});

/** Re-seal the context's session cookie with `change` applied (the test knows ui.sessionSecret, as a replica would). */
async function rewriteSession(ctx: BrowserContext, change: (s: UiSession) => UiSession): Promise<void> {
  const sealer = new CookieSealer(SESSION_SECRET);
  const cookie = (await ctx.cookies()).find((c) => c.name === 'berth_ui');
  assert.ok(cookie, 'a session cookie');
  const session = sealer.open<UiSession>('session', 'berth_ui', cookie.value);
  assert.ok(session, 'the cookie opens with the configured secret');
  const { exp: _exp, ...rest } = session;
  await ctx.addCookies([{ ...cookie, value: sealer.seal('session', 'berth_ui', change(rest), 60_000) }]);
}

test('refresh: an expired access token is refreshed with the provider, roles follow it, and a refused refresh ends the session', async () => {
  const ctx = await tb.context();
  const page = await login(ctx, 'bob');
  const me = async (): Promise<{ status: number; admin?: boolean }> => {
    const r = await pageFetch(page, '/ui/api/me', { method: 'GET' });
    return { status: r.status, ...(r.status === 200 ? { admin: (JSON.parse(r.text) as { admin: boolean }).admin } : {}) };
  };
  assert.deepEqual(await me(), { status: 200, admin: false });
  // Keycloak now grants bob the admin role; the session learns it at its next refresh.
  op.setRoles('bob', ['berth-admin']);
  const tokensBefore = op.requests.filter((p) => p === '/token').length;
  assert.deepEqual(await me(), { status: 200, admin: false }, 'no refresh before the access token expires');
  await rewriteSession(ctx, (s) => ({ ...s, refreshAt: 0 }));
  const before = (await ctx.cookies()).find((c) => c.name === 'berth_ui')?.value;
  assert.deepEqual(await me(), { status: 200, admin: true }, 'refreshed: the new ID token carries the new role');
  assert.equal(op.requests.filter((p) => p === '/token').length, tokensBefore + 1, 'one refresh_token grant');
  assert.notEqual((await ctx.cookies()).find((c) => c.name === 'berth_ui')?.value, before, 'the renewed session was written back');
  assert.deepEqual(await me(), { status: 200, admin: true }, 'and is not refreshed again at once');
  // A refresh the provider refuses (a revoked or unknown refresh token) ends the session.
  await rewriteSession(ctx, (s) => ({ ...s, refreshAt: 0, refreshToken: 'revoked' }));
  assert.equal((await me()).status, 401);
  assert.equal((await ctx.cookies()).some((c) => c.name === 'berth_ui'), false, 'the session cookie was cleared');
  op.setRoles('bob', []);
  await ctx.close();
});

test('actions page for an admin, and logout through the provider\'s end_session', async () => {
  const ctx = await tb.context();
  const page = await login(ctx, 'alice', '#/actions');
  await page.waitForSelector('[data-test=purge]');
  await page.waitForSelector('[data-test=prewarm]');
  assert.match(await page.textContent('[data-test=prewarm]') ?? '', /library\/multi:1/);
  // Purge preview (dry run) says what would go and changes nothing.
  await page.fill('#purge-pattern', 'library/multi');
  await page.click('[data-test=purge]');
  await page.waitForSelector('[data-test=action-result] h2');
  assert.match(await page.textContent('[data-test=action-result]') ?? '', /Purge would remove 1 repositories/);
  assert.equal((await fetchManifest(rig.url, 'library/multi', '1')).status, 200);
  await screenshotEachViewport(page, 'actions');

  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL((u) => u.href.startsWith(`${op.issuer}/session/end`));
  assert.equal((await ctx.cookies()).some((c) => c.name === 'berth_ui'), false, 'the session cookie is gone');
  await page.getByRole('button', { name: 'Yes, sign me out' }).click();
  // Back at the UI with no session: on to the provider's login form again.
  await page.waitForURL((u) => u.href.startsWith(`${op.issuer}/interaction/`));
  await ctx.close();
});

test('no page fetched anything from outside this host, and no script errors', () => {
  const ours = tb.external.filter((u) => !u.includes('fonts.googleapis.com')); // the provider's own login page links a web font
  assert.deepEqual(ours, []);
  const errors = tb.errors.filter((e) => e.startsWith(rig.url) && !/the server responded with a status of 40[013]/.test(e));
  assert.deepEqual(errors, []);
});
