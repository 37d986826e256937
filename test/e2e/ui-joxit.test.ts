// Joxit's docker-registry-ui keeps working against Berth (issue 15; reference/protocols.md §6):
// its request set — catalog with ?n=1000, tag list, manifest with its Accept list and
// Cache-Control, reading Docker-Content-Digest, the config blob parsed as JSON, and delete by
// digest after a GET — sent as Joxit sends them (XMLHttpRequest) from a page on another origin
// in a real browser, so Chromium itself enforces CORS: preflights, the exposed header,
// credentials. An origin that is not configured is refused by the browser, and the UI's own API
// is never readable cross-origin, even from the configured one.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Page } from 'playwright-core';
import { startRig, type Rig } from '../helpers/rig.js';
import { buildImage, buildIndex, fetchManifest, pushImage, pushIndex, type BuiltImage, type BuiltIndex } from '../helpers/index.js';
import { chromiumMissing, launchBrowser, type TestBrowser } from '../helpers/browser.js';

const image: BuiltImage = buildImage({ seed: 'joxit-image', layers: 1 });
const index: BuiltIndex = buildIndex({ seed: 'joxit-index', layers: 1 });

let rig: Rig;
let tb: TestBrowser;
let joxit: Server;
let stranger: Server;
let joxitOrigin: string;
let strangerOrigin: string;

async function blankSite(): Promise<{ server: Server; origin: string }> {
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>registry ui</title>'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

before(async () => {
  const missing = await chromiumMissing();
  if (missing) throw new Error(missing);
  const a = await blankSite();
  const b = await blankSite();
  joxit = a.server;
  joxitOrigin = a.origin;
  stranger = b.server;
  strangerOrigin = b.origin;
  rig = await startRig({
    seed: async (up) => {
      await pushImage(up.url, 'library/app', '1.0', image);
      await pushImage(up.url, 'library/app', '1.1', image);
      await pushIndex(up.url, 'library/multi', 'latest', index);
    },
    berthConfig: { storage: { deleteEnabled: true }, http: { cors: { origins: [joxitOrigin] } } },
  });
  rig.defer(() => new Promise<void>((r) => joxit.close(() => r())));
  rig.defer(() => new Promise<void>((r) => stranger.close(() => r())));
  tb = await launchBrowser();
  rig.defer(() => tb.close());
  // What Joxit browses has been pulled through the mirror.
  for (const [name, ref] of [['library/app', '1.0'], ['library/app', '1.1'], ['library/multi', 'latest']]) {
    assert.equal((await fetchManifest(rig.url, name ?? '', ref ?? '')).status, 200);
  }
});

after(async () => {
  await rig?.stop();
});

interface XhrResult {
  status: number;
  text: string;
  headers: string;
  digest: string | null;
  error: boolean;
}

/** One XMLHttpRequest from the page, the way Joxit's http.js makes them. */
function xhr(page: Page, method: string, url: string, headers: Record<string, string> = {}, withCredentials = false): Promise<XhrResult> {
  return page.evaluate(([m, u, h, c]) => new Promise<XhrResult>((resolve) => {
    const r = new XMLHttpRequest();
    r.open(m, u);
    r.withCredentials = c;
    for (const [k, v] of Object.entries(h)) r.setRequestHeader(k, v);
    r.onload = () => resolve({ status: r.status, text: r.responseText, headers: r.getAllResponseHeaders(), digest: r.getResponseHeader('Docker-Content-Digest'), error: false });
    r.onerror = () => resolve({ status: r.status, text: '', headers: '', digest: null, error: true });
    r.send();
  }), [method, url, headers, withCredentials] as const);
}

const JOXIT_ACCEPT = 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json';

test('Joxit\'s request set works cross-origin: catalog, tags, manifest and its digest, config blob, delete', async () => {
  const page = await (await tb.context({ intercept: false })).newPage();
  await page.goto(joxitOrigin);
  rig.resetProxy();

  const catalog = await xhr(page, 'GET', `${rig.url}/v2/_catalog?n=1000`);
  assert.equal(catalog.status, 200, catalog.text);
  assert.deepEqual((JSON.parse(catalog.text) as { repositories: string[] }).repositories.sort(), ['library/app', 'library/multi']);

  const tags = await xhr(page, 'GET', `${rig.url}/v2/library/app/tags/list`);
  assert.equal(tags.status, 200, tags.text);
  assert.deepEqual((JSON.parse(tags.text) as { tags: string[] }).tags.sort(), ['1.0', '1.1']);

  // USE_CONTROL_CACHE_HEADER adds Cache-Control, which makes the browser send a preflight first.
  const manifest = await xhr(page, 'GET', `${rig.url}/v2/library/app/manifests/1.0`, { Accept: JOXIT_ACCEPT, 'Cache-Control': 'no-store, no-cache' }, true);
  assert.equal(manifest.status, 200, manifest.text);
  assert.equal(manifest.digest, image.manifestDigest, 'Docker-Content-Digest is exposed to the page');
  const config = (JSON.parse(manifest.text) as { config: { digest: string } }).config.digest;
  assert.equal(config, image.configDigest);

  const multi = await xhr(page, 'GET', `${rig.url}/v2/library/multi/manifests/latest`, { Accept: JOXIT_ACCEPT });
  assert.equal(multi.status, 200);
  assert.equal(multi.digest, index.manifestDigest, 'an OCI index is served as is, not trimmed to one platform');

  const blob = await xhr(page, 'GET', `${rig.url}/v2/library/app/blobs/${config}`);
  assert.equal(blob.status, 200);
  assert.equal((JSON.parse(blob.text) as { architecture: string }).architecture, 'amd64');

  // DELETE_IMAGES: GET the manifest for its digest, then DELETE by digest (a preflight again).
  const del = await xhr(page, 'DELETE', `${rig.url}/v2/library/app/manifests/${manifest.digest ?? ''}`, {}, true);
  assert.equal(del.status, 202, del.text);
  const afterDelete = await xhr(page, 'GET', `${rig.url}/v2/library/app/tags/list`);
  // The mirror forgot its copy; the tag list still comes from upstream, where nothing was deleted.
  assert.equal(afterDelete.status, 200);
  const metrics = await (await fetch(`${rig.url}/metrics`)).text();
  const preflights = [...metrics.matchAll(/^berth_http_requests_total\{[^}]*method="OPTIONS"[^}]*status="204"[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
  assert.ok(preflights >= 2, `the browser sent preflights (${preflights}) and they passed`);
});

test('an origin that is not configured is refused by the browser; the UI API is never readable cross-origin', async () => {
  const page = await (await tb.context({ intercept: false })).newPage();
  await page.goto(strangerOrigin);
  const catalog = await xhr(page, 'GET', `${rig.url}/v2/_catalog?n=1000`);
  assert.equal(catalog.error, true, 'no Access-Control-Allow-Origin for an unknown origin');

  const joxitPage = await (await tb.context({ intercept: false })).newPage();
  await joxitPage.goto(joxitOrigin);
  const me = await xhr(joxitPage, 'GET', `${rig.url}/ui/api/me`, {}, true);
  assert.equal(me.error, true, 'the UI answers carry no CORS headers, so the CSRF token cannot be read');
  const direct = await fetch(`${rig.url}/ui/api/me`, { headers: { origin: joxitOrigin } });
  assert.equal(direct.status, 200);
  assert.equal(direct.headers.get('access-control-allow-origin'), null);
  const v2 = await fetch(`${rig.url}/v2/_catalog`, { headers: { origin: joxitOrigin } });
  assert.equal(v2.headers.get('access-control-allow-origin'), joxitOrigin, 'while /v2 keeps its CORS');
});
