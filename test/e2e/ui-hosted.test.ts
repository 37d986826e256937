// The web UI on hosted repositories and joined downloads (issue 15, second wave), in Debian's
// chromium through playwright-core, against Berth in front of a real Distribution upstream.
//
// Hosted: two images and a signature artifact whose subject is one of them are pushed over plain
// HTTP into a hosted repository; the browser finds it in the repository list with a "hosted"
// badge, opens it (its tags, pushed-at, no upstream check), opens a tag's manifest (pull commands
// without an upstream, the referrer with its artifactType, size and annotations) and follows the
// referrer link; then it deletes a tag from the page, and the registry no longer lists the tag
// while the manifest it named stays reachable by digest; a delete by digest through the page's API
// removes the signature and its referrer entry.
//
// Joined clients: two clients read one blob the upstream drips out; the admin API's fills and the
// overview both say 2 clients (a third that joins and hangs up counts 3, then 2 again), and both
// clients get the whole blob from one upstream GET.
//
// Screenshots of the hosted pages at 1280×800 and 390×844 go under tmp/test-output/ui/; with
// BERTH_UI_DOCS_SCREENSHOT=1 the hosted manifest's also goes to docs/img/ui-hosted-manifest.png.
// The UI has no login here (auth.mode none): it is read-only except for clients in
// http.adminNetworks, which loopback (the browser) is.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { request } from 'undici';
import { startRig, type Rig } from '../helpers/rig.js';
import {
  buildImage, buildLargeBlobImage, digestOf, drip, fetchBlob, fetchManifest, pushBlob, pushImage, pushManifest,
  type BuiltLayer,
} from '../helpers/index.js';
import { chromiumMissing, launchBrowser, screenshotEachViewport, SCREENSHOTS, type TestBrowser } from '../helpers/browser.js';

const REPO = 'ci/app';

const v1 = buildImage({ seed: 'ui-hosted-v1', layers: 2 });
const v2 = buildImage({ seed: 'ui-hosted-v2', layers: 1 });
// docker.io library/slow:1 — one 2 MiB layer the upstream drips out while two clients read it.
const slow = buildLargeBlobImage({ seed: 'ui-hosted-slow', size: 2 * 1024 * 1024, raw: true });
const slowLayer = slow.layers[0] as BuiltLayer;

let rig: Rig;
let tb: TestBrowser;
let v1Digest: string;
let v2Digest: string;
let sigDigest: string;

before(async () => {
  const missing = await chromiumMissing();
  if (missing) throw new Error(missing);
  rig = await startRig({
    seed: async (up) => {
      await pushImage(up.url, 'library/slow', '1', slow);
    },
    upstreams: { 'docker.io': { tagTtl: '1h' } },
    berthConfig: {
      storage: { deleteEnabled: true },
      repositories: [{ match: 'ci/**', mode: 'hosted' }],
    },
  });
  tb = await launchBrowser();
  rig.defer(() => tb.close());
  await mkdir(SCREENSHOTS, { recursive: true });

  // Plain HTTP pushes into the hosted repository: two tags, and a signature that refers to v1.
  v1Digest = await pushImage(rig.url, REPO, '1.0', v1);
  v2Digest = await pushImage(rig.url, REPO, '2.0', v2);
  await pushManifest(rig.url, REPO, 'latest', v2.manifest, v2.mediaType);
  const empty = Buffer.from('{}');
  await pushBlob(rig.url, REPO, digestOf(empty), empty);
  const sig = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: 'application/vnd.example.signature',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(empty), size: 2 },
    layers: [{ mediaType: 'application/vnd.oci.empty.v1+json', digest: digestOf(empty), size: 2 }],
    subject: { mediaType: v1.mediaType, digest: v1Digest, size: v1.manifest.length },
    annotations: { 'org.example.signed-by': 'release-bot' },
  }));
  sigDigest = await pushManifest(rig.url, REPO, digestOf(sig), sig, 'application/vnd.oci.image.manifest.v1+json');
});

after(async () => {
  await rig?.stop();
});

async function open(hash: string): Promise<Page> {
  const ctx = await tb.context();
  const page = await ctx.newPage();
  await page.goto(`${rig.url}/ui/${hash}`);
  await page.waitForSelector('body[data-ready]');
  return page;
}


async function tagsList(): Promise<string[]> {
  const r = await request(`${rig.url}/v2/${REPO}/tags/list`);
  assert.equal(r.statusCode, 200);
  return ((await r.body.json()) as { tags: string[] }).tags;
}

test('a hosted repository is listed with a hosted badge, its tags and size, and opens without an upstream', async () => {
  const page = await open('#/repositories');
  const row = page.locator(`[data-test=repositories] tr[data-repository="${REPO}"]`);
  await row.waitFor();
  const text = await row.textContent() ?? '';
  assert.match(text, /hosted/, text);
  assert.match(text, /none \(pushed here\)/, text);
  // Three tags (1.0, 2.0, latest); the size counts v1's and v2's blobs and the manifests once each.
  const cells = await row.locator('td.num').allTextContents();
  assert.equal(cells[0], '3');
  const blobs = [...v1.layers, ...v2.layers].reduce((a, l) => a + l.size, v1.config.length + v2.config.length + v1.manifest.length + v2.manifest.length);
  const api = await page.evaluate(async () => (await (await fetch('/ui/api/repositories?q=ci/')).json()) as { repositories: { repository: string; bytes: number; hosted?: boolean }[] });
  const listed = api.repositories.find((r) => r.repository === REPO);
  assert.equal(listed?.hosted, true);
  assert.equal(listed?.bytes, blobs);
  await screenshotEachViewport(page, 'hosted-repositories');

  await row.locator('a').first().click();
  await page.waitForSelector('[data-test=tags]');
  const heads = await page.locator('[data-test=tags] thead th').allTextContents();
  assert.ok(heads.includes('Pushed'), heads.join('|'));
  assert.ok(!heads.includes('Checked upstream'), 'a hosted repository is never checked upstream');
  const rows = page.locator('[data-test=tags] tbody tr');
  assert.deepEqual(await rows.evaluateAll((trs) => trs.map((t) => t.getAttribute('data-tag'))), ['1.0', '2.0', 'latest']);
  assert.match(await page.locator('tr[data-tag="1.0"]').textContent() ?? '', /image/);
  assert.match(await page.locator('tr[data-tag="1.0"]').textContent() ?? '', new RegExp(v1Digest.slice(7, 19)));
  await screenshotEachViewport(page, 'hosted-repository');
  await page.context().close();
});

test('a hosted manifest shows pull commands without an upstream and its referrer, which links to the artifact', async () => {
  const page = await open(`#/repository/${encodeURIComponent(REPO)}?upstream=${encodeURIComponent('(hosted)')}`);
  await page.click('tr[data-tag="1.0"] a');
  await page.waitForSelector('[data-test=layers]');
  const pull = await page.textContent('[data-test=pull]') ?? '';
  assert.ok(pull.includes(`docker pull ${new URL(rig.url).host}/${REPO}:1.0`), pull);
  const referrers = page.locator('[data-test=referrers] tbody tr');
  assert.equal(await referrers.count(), 1);
  const ref = await referrers.first().textContent() ?? '';
  assert.match(ref, /application\/vnd\.example\.signature/);
  assert.match(ref, /org\.example\.signed-by=release-bot/);
  assert.match(ref, new RegExp(sigDigest.slice(7, 19)));
  await screenshotEachViewport(page, 'hosted-manifest');
  if (process.env['BERTH_UI_DOCS_SCREENSHOT'] === '1') {
    // The whole page, down to the referrers.
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join('docs', 'img', 'ui-hosted-manifest.png'), fullPage: true });
  }
  await referrers.first().locator('a').click();
  await page.waitForFunction((d) => document.querySelector('h1')?.textContent?.includes(d) === true, sigDigest.slice(7, 19));
  const main = await page.textContent('#main') ?? '';
  assert.match(main, /application\/vnd\.example\.signature/);
  // The artifact links back to the image it signs.
  assert.equal(await page.textContent('[data-test=subject]'), v1Digest.slice(7, 19));
  await page.click('[data-test=subject]');
  await page.waitForSelector('[data-test=referrers]');
  await page.context().close();
});

test('deleting a hosted tag from the page removes the tag only (the manifest stays reachable by digest); a digest delete removes the manifest and its referrer entry; the page deletes a selected tag\'s manifest with its tag', async () => {
  assert.deepEqual(await tagsList(), ['1.0', '2.0', 'latest']);
  const page = await open(`#/repository/${encodeURIComponent(REPO)}?upstream=${encodeURIComponent('(hosted)')}`);
  await page.waitForSelector('[data-test=tags]');
  await page.check('#sel-2\\.0');
  await page.click('[data-test=delete-selected]');
  await page.waitForSelector('[data-test=confirm]');
  const note = await page.textContent('[data-test=delete-note]') ?? '';
  assert.match(note, /hosted here/);
  const kept = await page.textContent('[data-test=kept]') ?? '';
  assert.match(kept, /2\.0 — its manifest stays: tag latest still points at it/, kept);
  await screenshotEachViewport(page, 'hosted-delete-confirm');
  await page.click('[data-test=confirm-delete]');
  await page.waitForFunction(() => !document.querySelector('tr[data-tag="2.0"]') && document.querySelector('tr[data-tag="latest"]'));
  assert.deepEqual(await tagsList(), ['1.0', 'latest']);
  const byDigest = await fetchManifest(rig.url, REPO, v2Digest);
  assert.equal(byDigest.status, 200, 'the manifest another tag names stays');
  const audit = rig.berth.logs().filter((l) => l.includes('"ui.delete"') && l.includes(`${REPO}:2.0`));
  assert.equal(audit.length, 1);
  // A manifest by digest, as the page's API takes it: the signature goes, with its referrer entry.
  const deleted = await page.evaluate(async ([name, digest]) => {
    const me = (await (await fetch('/ui/api/me')).json()) as { csrf: string };
    const r = await fetch('/ui/api/delete', {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': me.csrf },
      body: JSON.stringify({ name, upstream: '(hosted)', references: [digest] }),
    });
    return { status: r.status, body: (await r.json()) as { results: { reference: string; deleted: boolean }[] } };
  }, [REPO, sigDigest] as const);
  assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
  assert.deepEqual(deleted.body.results, [{ reference: sigDigest, deleted: true }]);
  assert.equal((await fetchManifest(rig.url, REPO, sigDigest)).status, 404);
  const referrers = await request(`${rig.url}/v2/${REPO}/referrers/${v1Digest}`);
  assert.deepEqual(((await referrers.body.json()) as { manifests: unknown[] }).manifests, []);
  // The manifest a selected tag names, from the page: it goes with its tag; the other image stays.
  await page.reload();
  await page.waitForSelector('tr[data-tag="1.0"]');
  await page.check('#sel-1\\.0');
  await page.click('[data-test=delete-manifests]');
  await page.waitForSelector('[data-test=confirm]');
  assert.match(await page.textContent('#confirm-title') ?? '', /Delete 1 manifest \(with every tag that names it\)/);
  assert.match(await page.textContent('[data-test=confirm]') ?? '', new RegExp(v1Digest));
  await page.click('[data-test=confirm-delete]');
  await page.waitForFunction(() => !document.querySelector('tr[data-tag="1.0"]') && document.querySelector('tr[data-tag="latest"]'));
  assert.equal((await fetchManifest(rig.url, REPO, v1Digest)).status, 404, 'the manifest is gone by digest');
  assert.deepEqual(await tagsList(), ['latest']);
  assert.equal((await fetchManifest(rig.url, REPO, v2Digest)).status, 200, 'the other image stays');
  await page.context().close();
});

test('two clients reading one slow download: the admin API and the overview say 2 clients', async () => {
  rig.resetProxy();
  rig.proxy.setRules([drip(32 * 1024, 100, { match: { kind: 'blob', pathIncludes: slowLayer.digest } })]);
  const first = fetchBlob(rig.url, 'library/slow', slowLayer.digest);
  const second = fetchBlob(rig.url, 'library/slow', slowLayer.digest);
  type Fill = { kind: string; reference: string; clients?: number; bytes: number | null };
  const fills = async (): Promise<Fill[]> => {
    const r = await request(`${rig.url}/api/v1/fills`);
    assert.equal(r.statusCode, 200);
    return ((await r.body.json()) as { fills: Fill[] }).fills;
  };
  const clientsBecome = async (n: number): Promise<void> => {
    let seen: Fill | undefined;
    for (let i = 0; i < 200; i++) {
      seen = (await fills()).find((f) => f.kind === 'blob' && f.reference === slowLayer.digest);
      if (seen?.clients === n) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(seen?.clients, n, JSON.stringify(seen));
  };
  await clientsBecome(2);
  // A third client joins, then hangs up: counted when it joins and when it stops reading.
  const abort = new AbortController();
  const third = await request(`${rig.url}/v2/library/slow/blobs/${slowLayer.digest}`, { signal: abort.signal });
  assert.equal(third.statusCode, 200);
  await clientsBecome(3);
  abort.abort();
  await third.body.dump().catch(() => undefined);
  await clientsBecome(2);
  const page = await open('#/');
  const progress = page.locator('[data-test=fills] tr[data-kind=blob] [data-test=fill-progress]');
  await progress.waitFor();
  assert.match(await progress.textContent() ?? '', /· 2 clients/);
  await page.context().close();
  const [a, b] = await Promise.all([first, second]);
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  assert.equal(digestOf(a.body), slowLayer.digest);
  assert.equal(digestOf(b.body), slowLayer.digest);
  assert.equal(rig.proxy.count({ kind: 'blob', method: 'GET' }), 1, 'one upstream GET for both clients');
  // Both clients have stopped reading: the fill is gone from the list.
  for (let i = 0; i < 100 && (await fills()).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(await fills(), []);
});
