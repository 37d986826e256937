// Logs people can read and search (issue 17.9), over real pulls from a real Distribution through
// the rig's proxy: every request writes one JSON access line that says the cache result (miss,
// hit, coalesced, revalidated, stale), the upstream, the body bytes, the duration, the
// user-agent and the subject (a token's `sub` in auth.mode token); every state change (purge,
// delete, GC, pre-warm trigger) writes an audit line naming who made it; at debug, the upstream
// exchanges and the cache's reasons appear, with no credential anywhere. Each request is found
// by a user-agent of its own.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import {
  buildImage, pushImage, fetchManifest, fetchBlob, digestOf, latency, status, duplicateKeys,
  type BuiltImage, type Distribution,
} from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';
import { startKeycloakEmulator, type KeycloakEmulator } from '../helpers/keycloak.js';

type Line = Record<string, unknown>;

let rig: Rig;
let upstream: Distribution;
let berth: BerthHandle;
let kc: KeycloakEmulator;
let image: BuiltImage;
let skew = 0;
const now = (): number => Date.now() + skew;
let agent = 0;

before(async () => {
  kc = await startKeycloakEmulator();
  image = buildImage({ seed: 'logs-requests', layers: [3000, 40_000] });
  rig = await startRig({
    seed: async (u) => {
      await pushImage(u.url, 'library/logged', 'v1', image);
    },
    upstreams: { 'docker.io': { tagTtl: '60s' } },
    berthConfig: { log: { level: 'debug' }, storage: { deleteEnabled: true } },
    berthOptions: { now },
  });
  ({ upstream, berth } = rig);
});

after(async () => {
  await rig?.stop();
  await kc?.stop();
});

beforeEach(() => {
  rig.resetProxy();
});

/** A user-agent no other request in this file sends: the key to find a request's line. */
function ua(): string {
  agent += 1;
  return `logs-test/${agent} (+probe)`;
}

function lines(b: BerthHandle = berth): Line[] {
  return b.logs().map((l) => JSON.parse(l) as Line);
}

/** The one access line of the request that sent `agentName`. */
function accessLine(agentName: string, b: BerthHandle = berth): Line {
  const found = lines(b).filter((l) => l['msg'] === 'request' && l['userAgent'] === agentName);
  assert.equal(found.length, 1, `one access line for ${agentName}, got ${JSON.stringify(found)}`);
  return found[0] as Line;
}

async function manifest(repo: string, ref: string, agentName: string, extra: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET') {
  return fetchManifest(berth.url, repo, ref, { headers: { 'user-agent': agentName, ...extra }, method });
}

async function blob(repo: string, digest: string, agentName: string, extra: Record<string, string> = {}) {
  return fetchBlob(berth.url, repo, digest, { headers: { 'user-agent': agentName, ...extra } });
}

test('pulls: each request line says method, url, route, status, cache result, upstream, bytes, ms, user-agent and subject', async () => {
  const first = ua();
  const m = await manifest('library/logged', 'v1', first);
  assert.equal(m.status, 200);
  const line = accessLine(first);
  assert.equal(line['level'], 30, 'at info');
  assert.match(String(line['time']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'time is ISO 8601');
  assert.equal(line['method'], 'GET');
  assert.equal(line['url'], '/v2/library/logged/manifests/v1');
  assert.equal(line['route'], 'manifest');
  assert.equal(line['status'], 200);
  assert.equal(line['cache'], 'miss');
  assert.equal(line['upstream'], 'docker.io');
  assert.equal(line['bytes'], m.body.length);
  assert.equal(typeof line['ms'], 'number');
  assert.ok((line['ms'] as number) >= 0);
  assert.equal(line['ip'], '127.0.0.1');
  assert.equal(line['subject'], 'anonymous');
  assert.equal(typeof line['reqId'], 'string');

  const again = ua();
  assert.equal((await manifest('library/logged', 'v1', again)).status, 200);
  assert.equal(accessLine(again)['cache'], 'hit');

  const head = ua();
  assert.equal((await manifest('library/logged', 'v1', head, {}, 'HEAD')).status, 200);
  assert.equal(accessLine(head)['bytes'], 0, 'a HEAD sends no body');

  // Blobs: the miss streams through the fill, the hit from the file; a Range request counts its part.
  const layer = image.layers[1];
  assert.ok(layer);
  const cold = ua();
  const b1 = await blob('library/logged', layer.digest, cold);
  assert.equal(digestOf(b1.body), layer.digest);
  const coldLine = accessLine(cold);
  assert.deepEqual([coldLine['route'], coldLine['cache'], coldLine['status'], coldLine['bytes']], ['blob', 'miss', 200, layer.size]);
  const warm = ua();
  await blob('library/logged', layer.digest, warm);
  const warmLine = accessLine(warm);
  assert.deepEqual([warmLine['cache'], warmLine['bytes'], warmLine['upstream']], ['hit', layer.size, 'docker.io']);
  const ranged = ua();
  const part = await blob('library/logged', layer.digest, ranged, { range: 'bytes=100-1099' });
  assert.equal(part.status, 206);
  assert.deepEqual([accessLine(ranged)['status'], accessLine(ranged)['bytes']], [206, 1000]);

  // A 404 is a line too, without a cache result the mirror never reached.
  const missing = ua();
  assert.equal((await manifest('library/nothing', 'v1', missing)).status, 404);
  assert.equal(accessLine(missing)['status'], 404);
});

test('two clients of one cold blob: one line says miss, the other coalesced', async () => {
  const img = buildImage({ seed: 'logs-coalesced', layers: [200_000] });
  await pushImage(upstream.url, 'library/joined', 'v1', img);
  const layer = img.layers[0];
  assert.ok(layer);
  rig.proxy.setRules([latency(400, { match: { kind: 'blob' } })]);
  const [a, b] = [ua(), ua()];
  const first = blob('library/joined', layer.digest, a);
  await new Promise((r) => setTimeout(r, 100));
  const [ra, rb] = await Promise.all([first, blob('library/joined', layer.digest, b)]);
  assert.equal(digestOf(ra.body), layer.digest);
  assert.equal(digestOf(rb.body), layer.digest);
  assert.equal(rig.proxy.count({ kind: 'blob' }), 1, 'one upstream download');
  assert.deepEqual([accessLine(a)['cache'], accessLine(b)['cache']], ['miss', 'coalesced']);
  assert.deepEqual([accessLine(a)['bytes'], accessLine(b)['bytes']], [layer.size, layer.size]);
});

test('after tagTtl the line says revalidated; with upstream failing it says stale, and debug says why', async () => {
  const img = buildImage({ seed: 'logs-fresh', layers: 1 });
  await pushImage(upstream.url, 'library/fresh', 'v1', img);
  assert.equal((await manifest('library/fresh', 'v1', ua())).status, 200);
  skew += 120_000;
  const heads = rig.proxy.count({ method: 'HEAD' });
  const checked = ua();
  assert.equal((await manifest('library/fresh', 'v1', checked)).status, 200);
  assert.equal(accessLine(checked)['cache'], 'revalidated');
  assert.equal(rig.proxy.count({ method: 'HEAD' }), heads + 1, 'one HEAD revalidated it');

  skew += 120_000;
  rig.proxy.setRules([status(503, {}, { match: { kind: 'manifest' } })]);
  const stale = ua();
  const m = await manifest('library/fresh', 'v1', stale);
  assert.equal(m.status, 200);
  assert.match(String(m.headers['warning']), /110/);
  assert.equal(accessLine(stale)['cache'], 'stale');

  // The reasons, at debug, tied to the request by reqId.
  const reqId = accessLine(stale)['reqId'];
  const decisions = lines().filter((l) => l['reqId'] === reqId && String(l['msg']).startsWith('cache decision:'));
  assert.ok(decisions.some((l) => /not checked within tagTtl; revalidating with upstream HEAD/.test(String(l['msg'])) && l['tag'] === 'v1'),
    `the revalidation is explained: ${JSON.stringify(decisions)}`);
  assert.ok(decisions.some((l) => /serving the cached manifest stale/.test(String(l['msg'])) && l['status'] === 503), 'the stale answer is explained');
  const fresh = lines().find((l) => String(l['msg']).includes('tag checked within tagTtl'));
  assert.ok(fresh, 'a fresh hit is explained');
  assert.equal(fresh['level'], 20, 'cache decisions are debug lines');
});

test('debug: each upstream exchange is a line (method, url, status, ms) with no credentials', async () => {
  const img = buildImage({ seed: 'logs-upstream', layers: 1 });
  await pushImage(upstream.url, 'library/traced', 'v1', img);
  const who = ua();
  assert.equal((await manifest('library/traced', 'v1', who, { authorization: 'Bearer client-secret-77aa' })).status, 200);
  const reqId = accessLine(who)['reqId'];
  const exchanges = lines().filter((l) => l['msg'] === 'upstream request' && l['reqId'] === reqId);
  const head = exchanges.find((l) => l['method'] === 'HEAD');
  assert.ok(head, `the HEAD is logged: ${JSON.stringify(exchanges)}`);
  assert.equal(head['level'], 20);
  assert.equal(head['upstream'], 'docker.io');
  assert.equal(head['url'], `${rig.proxy.url}/v2/library/traced/manifests/v1`);
  assert.equal(head['status'], 200);
  assert.equal(typeof head['ms'], 'number');
  assert.ok(exchanges.some((l) => l['method'] === 'GET' && l['url'] === `${rig.proxy.url}/v2/library/traced/manifests/${img.manifestDigest}`));
  const text = berth.logs().join('\n');
  assert.ok(!text.includes('client-secret-77aa'), 'the client credential is never written');
  assert.doesNotMatch(text, /"authorization"/i);
  for (const l of berth.logs()) assert.deepEqual(duplicateKeys(l), [], `no repeated key in ${l}`);
});

async function api(b: BerthHandle, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await request(`${b.url}${path}`, {
    method: method as 'GET',
    // The admin fence wants JSON on every state-changing call, bodiless or not.
    headers: { 'user-agent': 'logs-admin', 'content-type': 'application/json', ...headers },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  return { status: res.statusCode, body: await res.body.text() };
}

function audits(b: BerthHandle = berth): Line[] {
  return lines(b).filter((l) => l['audit'] === true);
}

test('audit lines: purge, GC, pre-warm trigger and manifest delete each say action, subject and target', async () => {
  const img = buildImage({ seed: 'logs-audit', layers: 1 });
  await pushImage(upstream.url, 'library/audited', 'v1', img);
  await pushImage(upstream.url, 'library/deleted', 'v1', img);
  assert.equal((await manifest('library/audited', 'v1', ua())).status, 200);
  assert.equal((await manifest('library/deleted', 'v1', ua())).status, 200);
  const before = audits().length;

  assert.equal((await api(berth, 'DELETE', '/api/v1/cache/docker.io/library/audited:v1')).status, 200);
  assert.equal((await api(berth, 'POST', '/api/v1/cache/gc', {})).status, 200);
  const pw = await api(berth, 'POST', '/api/v1/prewarm', { ref: 'docker.io/library/audited:v1' });
  assert.equal(pw.status, 202, pw.body);
  const del = await request(`${berth.url}/v2/library/deleted/manifests/${img.manifestDigest}`, { method: 'DELETE' });
  await del.body.dump();
  assert.equal(del.statusCode, 202);
  // Refused or failed attempts change nothing and write no audit line.
  assert.equal((await api(berth, 'DELETE', '/api/v1/cache/docker.io/library/never:v1')).status, 404);

  const got = audits().slice(before);
  const pick = (action: string): Line => {
    const l = got.find((a) => a['action'] === action);
    assert.ok(l, `an audit line for ${action} in ${JSON.stringify(got)}`);
    assert.equal(l['level'], 30);
    assert.equal(l['subject'], 'anonymous');
    assert.equal(l['ip'], '127.0.0.1');
    assert.match(String(l['msg']), new RegExp(`^audit: ${action.replace('.', '\\.')} `));
    return l;
  };
  assert.equal(pick('cache.purge')['target'], 'docker.io/library/audited:v1');
  assert.equal(pick('cache.gc')['dryRun'], false);
  assert.equal(pick('prewarm.trigger')['target'], 'docker.io/library/audited:v1');
  assert.equal(pick('manifest.delete')['target'], `docker.io/library/deleted@${img.manifestDigest}`);
  assert.equal(got.length, 4, 'exactly one line per change');
});

test('auth.mode token: the access line and the audit line name the token subject', async () => {
  const tb = await rig.addBerth({
    auth: {
      mode: 'token',
      token: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: kc.trustBundlePath },
      policy: [
        { subjects: ['alice'], actions: ['pull', 'admin'] },
      ],
    },
    log: { level: 'debug' },
  });
  const t = await kc.fetchToken('alice', 'repository:library/logged:pull');
  assert.equal(t.status, 200);
  const bearer = { authorization: `Bearer ${t.token ?? ''}` };
  const who = ua();
  const m = await fetchManifest(tb.url, 'library/logged', 'v1', { headers: { ...bearer, 'user-agent': who } });
  assert.equal(m.status, 200);
  assert.equal(accessLine(who, tb)['subject'], 'alice');
  const nobody = ua();
  assert.equal((await fetchManifest(tb.url, 'library/logged', 'v1', { headers: { 'user-agent': nobody } })).status, 401);
  assert.equal(accessLine(nobody, tb)['subject'], 'anonymous');

  const admin = await kc.fetchToken('alice');
  const gc = await api(tb, 'POST', '/api/v1/cache/gc?dryRun=true', {}, { authorization: `Bearer ${admin.token ?? ''}` });
  assert.equal(gc.status, 200, gc.body);
  const line = audits(tb).find((l) => l['action'] === 'cache.gc');
  assert.ok(line);
  assert.equal(line['subject'], 'alice');
  assert.equal(line['dryRun'], true);
  const text = tb.logs().join('\n');
  assert.ok(!text.includes(t.token ?? '<none>') && !text.includes(admin.token ?? '<none>'), 'tokens never reach the log');
});
