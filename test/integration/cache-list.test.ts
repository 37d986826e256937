// See what is cached and purge by pattern (issue 17 item 11), against a real Distribution upstream
// behind the rig's proxy, served as two upstreams (docker.io, the default, and ghcr.io):
// GET /api/v1/cache/repositories (fields, pagination with Link, ?q= and ?upstream=), one
// repository's tags with their stale flags on an injected clock, pins from pre-warm, `berth cache
// ls` read from the store beside the running server, and purge by pattern whose dry run reports
// exactly what the real purge then removes (through the API and through `berth cache purge`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { startRig, type Rig } from '../helpers/rig.js';
import { buildImage, fetchBlob, fetchManifest, makeTempDir, pushImage, removeTempDir, type BuiltImage } from '../helpers/index.js';
import { lifecycleOf, settle, storedBlobs } from './lifecycle-support.js';

const TAG_TTL_MS = 10 * 60_000;
const alpine319 = buildImage({ seed: 'cache-list-alpine-3.19' });
const alpine320 = buildImage({ seed: 'cache-list-alpine-3.20', layers: 2 });
const app1 = buildImage({ seed: 'cache-list-app-v1' });
const app2 = buildImage({ seed: 'cache-list-app-v2' });
const pinnedImg = buildImage({ seed: 'cache-list-pinned' });
const tool = buildImage({ seed: 'cache-list-tool', layers: 3 });
const PIN_REF = 'docker.io/team/pinned:v1';

// Starts an hour ahead of the wall clock, so access times it stamps are later than any file's
// commit time (the CLI's index takes the later of the two).
let clock = Date.now() + 3_600_000;
const now = (): number => clock;

let rig: Rig;
let dir: string;
let configFile: string;

function digestsOf(img: BuiltImage): string[] {
  return [img.manifestDigest, img.configDigest, ...img.layers.map((l) => l.digest)];
}

function bytesOf(...imgs: BuiltImage[]): number {
  const sizes = new Map<string, number>();
  for (const img of imgs) {
    sizes.set(img.manifestDigest, img.manifest.length);
    sizes.set(img.configDigest, img.config.length);
    for (const l of img.layers) sizes.set(l.digest, l.size);
  }
  return [...sizes.values()].reduce((a, b) => a + b, 0);
}

async function pull(repo: string, tag: string, img: BuiltImage): Promise<void> {
  const m = await fetchManifest(rig.url, repo, tag);
  assert.equal(m.status, 200, `${repo}:${tag}: ${m.body.toString().slice(0, 200)}`);
  assert.equal(m.digest, img.manifestDigest);
  for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) assert.equal((await fetchBlob(rig.url, repo, d)).status, 200);
  await settle(rig.berth, digestsOf(img));
}

async function api<T = Record<string, unknown>>(path: string, init: { method?: 'GET' | 'POST'; body?: unknown; type?: string } = {}) {
  const method = init.method ?? 'GET';
  const res = await request(`${rig.url}/api/v1${path}`, {
    method,
    ...(method === 'POST' ? { headers: { 'content-type': init.type ?? 'application/json' }, body: JSON.stringify(init.body ?? {}) } : {}),
  });
  const text = await res.body.text();
  return { status: res.statusCode, link: res.headers['link'] as string | undefined, json: JSON.parse(text) as T };
}

/** Run the built CLI without blocking this process (the in-process server keeps answering). */
function berth(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['dist/src/cli.js', ...args], { env: { ...process.env, BERTH_CONFIG: configFile }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) => child.once('close', (code) => {
    clearTimeout(timer);
    resolve({ code, stdout, stderr });
  }));
}

interface Summary {
  repository: string; upstream: string; name: string; tags: number; tagNames: string[]; manifests: number;
  bytes: number; blobs: number; lastPulled: string | null; pinned: boolean;
}
interface Detail {
  repository: string; upstream: string; name: string; bytes: number; pinned: boolean; pins: string[]; tagTtl: number;
  lastPulled: string | null;
  tags: { tag: string; digest: string; mediaType: string; size: number; lastPulled: string | null; lastChecked: string; stale: boolean; pinned: boolean }[];
  manifests: { digest: string; tags: string[]; mediaType: string | null; size: number | null }[];
}
interface Purged {
  dryRun: boolean; tags: number; links: number; manifests: number; blobs: number; bytes: number; kept: number;
  repositories: { repository: string; upstream: string; name: string; tags: string[] }[];
}
type Errors = { errors: { code: string; message: string }[] };

const pulledAt: Record<string, number> = {};

before(async () => {
  rig = await startRig({
    seed: async (u) => {
      await pushImage(u.url, 'library/alpine', '3.19', alpine319);
      await pushImage(u.url, 'library/alpine', '3.20', alpine320);
      await pushImage(u.url, 'library/alpine', 'latest', alpine320);
      await pushImage(u.url, 'team/app', 'v1', app1);
      await pushImage(u.url, 'team/app', 'v2', app2);
      await pushImage(u.url, 'team/pinned', 'v1', pinnedImg);
      await pushImage(u.url, 'org/tool', 'v1', tool);
    },
    upstreams: { 'docker.io': { tagTtl: '10m' }, 'ghcr.io': { tagTtl: '10m' } },
    berthConfig: { prewarm: { images: [PIN_REF] } },
    berthOptions: { now, lifecycle: { now } },
  });
  dir = await makeTempDir('cache-list');
  configFile = join(dir, 'berth.yaml');
  await writeFile(configFile, stringify({ storage: { root: rig.berth.root }, upstreams: rig.upstreamsConfig(), log: { level: 'warn' } }));

  await pull('alpine', '3.19', alpine319);
  pulledAt['alpine'] = clock;
  clock += 1000;
  await pull('library/alpine', '3.20', alpine320);
  await pull('alpine', 'latest', alpine320);
  clock += 1000;
  await pull('team/app', 'v1', app1);
  await pull('team/app', 'v2', app2);
  pulledAt['team/app'] = clock;
  clock += 1000;
  await pull('ghcr.io/org/tool', 'v1', tool);
  pulledAt['ghcr.io/org/tool'] = clock;
  // The pre-warm entry runs at boot and pins its image.
  const deadline = Date.now() + 15_000;
  for (;;) {
    const { json } = await api<{ entries: { ref: string; lastResult: string | null }[] }>('/prewarm');
    if (json.entries.find((e) => e.ref === PIN_REF)?.lastResult === 'success') break;
    if (Date.now() > deadline) throw new Error(`pre-warm of ${PIN_REF} did not succeed: ${JSON.stringify(json)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await settle(rig.berth, digestsOf(pinnedImg));
});

after(async () => {
  await rig?.stop();
  if (dir) await removeTempDir(dir);
});

test('GET /api/v1/cache/repositories lists each cached repository as clients name it, with tags, unique bytes, last pull and pins', async () => {
  const { status, link, json } = await api<{ repositories: Summary[] }>('/cache/repositories');
  assert.equal(status, 200);
  assert.equal(link, undefined, 'one page holds them all');
  assert.deepEqual(json.repositories.map((r) => r.repository), ['ghcr.io/org/tool', 'library/alpine', 'team/app', 'team/pinned']);
  const by = Object.fromEntries(json.repositories.map((r) => [r.repository, r]));

  const alpine = by['library/alpine'];
  assert.ok(alpine);
  assert.equal(alpine.upstream, 'docker.io');
  assert.equal(alpine.name, 'library/alpine');
  assert.equal(alpine.tags, 3);
  assert.deepEqual(alpine.tagNames, ['3.19', '3.20', 'latest']);
  assert.equal(alpine.manifests, 2, '3.20 and latest share one manifest');
  assert.equal(alpine.bytes, bytesOf(alpine319, alpine320), 'the manifest two tags share is counted once');
  assert.equal(alpine.blobs, digestsOf(alpine319).length + digestsOf(alpine320).length);
  assert.equal(alpine.lastPulled, new Date((pulledAt['alpine'] ?? 0) + 1000).toISOString(), 'the latest pull of any of its manifests');
  assert.equal(alpine.pinned, false);

  const ghcrTool = by['ghcr.io/org/tool'];
  assert.ok(ghcrTool);
  assert.deepEqual([ghcrTool.upstream, ghcrTool.name, ghcrTool.tags, ghcrTool.bytes], ['ghcr.io', 'org/tool', 1, bytesOf(tool)]);
  assert.equal(ghcrTool.lastPulled, new Date(pulledAt['ghcr.io/org/tool'] ?? 0).toISOString());

  assert.equal(by['team/app']?.bytes, bytesOf(app1, app2));
  assert.equal(by['team/pinned']?.pinned, true, 'the pre-warm entry pins it');
  assert.equal(by['team/pinned']?.bytes, bytesOf(pinnedImg));
});

test('the listing pages with ?n= and a Link header like the OCI catalog, filters by ?q= glob and ?upstream=, and refuses a bad n', async () => {
  const first = await api<{ repositories: Summary[] }>('/cache/repositories?n=2');
  assert.deepEqual(first.json.repositories.map((r) => r.repository), ['ghcr.io/org/tool', 'library/alpine']);
  assert.equal(first.link, '</api/v1/cache/repositories?last=library%2Falpine&n=2>; rel="next"');
  const next = /^<\/api\/v1(\/[^>]+)>/.exec(first.link ?? '')?.[1] ?? '';
  const second = await api<{ repositories: Summary[] }>(next);
  assert.deepEqual(second.json.repositories.map((r) => r.repository), ['team/app', 'team/pinned']);
  assert.equal(second.link, undefined, 'the last page has no next');

  const team = await api<{ repositories: Summary[] }>('/cache/repositories?q=team/*&n=1');
  assert.deepEqual(team.json.repositories.map((r) => r.repository), ['team/app']);
  assert.match(team.link ?? '', /q=team%2F\*/, 'the next link keeps the filter');
  for (const q of ['library/*', 'docker.io/library/*', 'library/alp?ne']) {
    const r = await api<{ repositories: Summary[] }>(`/cache/repositories?q=${encodeURIComponent(q)}`);
    assert.deepEqual(r.json.repositories.map((x) => x.repository), ['library/alpine'], q);
  }
  assert.deepEqual((await api<{ repositories: Summary[] }>('/cache/repositories?q=*')).json.repositories, [], '* stays within one component');
  assert.equal((await api<{ repositories: Summary[] }>('/cache/repositories?q=**')).json.repositories.length, 4);
  const ghcr = await api<{ repositories: Summary[] }>('/cache/repositories?upstream=ghcr.io');
  assert.deepEqual(ghcr.json.repositories.map((r) => r.repository), ['ghcr.io/org/tool']);

  for (const [n, code] of [['abc', 400], ['1001', 400]] as const) {
    const bad = await api<Errors>(`/cache/repositories?n=${n}`);
    assert.equal(bad.status, code, n);
    assert.equal(bad.json.errors[0]?.code, 'PAGINATION_NUMBER_INVALID');
  }
  const badQ = await api<Errors>(`/cache/repositories?q=${encodeURIComponent('a b')}`);
  assert.equal(badQ.status, 400);
  assert.equal(badQ.json.errors[0]?.code, 'NAME_INVALID');
  const zero = await api<{ repositories: Summary[] }>('/cache/repositories?n=0');
  assert.deepEqual([zero.status, zero.json.repositories, zero.link], [200, [], undefined]);
  const twice = await api<Errors>('/cache/repositories?q=a&q=b');
  assert.equal(twice.status, 400, 'a repeated parameter is refused, not guessed');
  for (const path of ['/cache/repositories/', '/cache/repositories/Bad..Name']) {
    const r = await api<Errors>(path);
    assert.equal(r.status, 400, path);
    assert.equal(r.json.errors[0]?.code, 'NAME_INVALID', path);
  }
  const badUpstream = await api<Errors>('/cache/repositories?upstream=quay.io');
  assert.equal(badUpstream.status, 404);
  assert.match(badUpstream.json.errors[0]?.message ?? '', /quay\.io/);
});

test('GET /api/v1/cache/repositories/<name> gives each tag with digest, size, last pull and check, and turns stale past tagTtl until a pull revalidates it', async () => {
  const fresh = await api<Detail>('/cache/repositories/alpine');
  assert.equal(fresh.status, 200);
  const d = fresh.json;
  assert.equal(d.repository, 'library/alpine');
  assert.equal(d.tagTtl, TAG_TTL_MS);
  assert.deepEqual(d.tags.map((t) => [t.tag, t.digest, t.mediaType, t.size, t.stale]), [
    ['3.19', alpine319.manifestDigest, alpine319.mediaType, alpine319.manifest.length, false],
    ['3.20', alpine320.manifestDigest, alpine320.mediaType, alpine320.manifest.length, false],
    ['latest', alpine320.manifestDigest, alpine320.mediaType, alpine320.manifest.length, false],
  ]);
  assert.equal(d.tags[0]?.lastChecked, new Date(pulledAt['alpine'] ?? 0).toISOString());
  assert.equal(d.tags[0]?.lastPulled, new Date(pulledAt['alpine'] ?? 0).toISOString());
  const m320 = d.manifests.find((m) => m.digest === alpine320.manifestDigest);
  assert.deepEqual(m320?.tags, ['3.20', 'latest']);
  assert.equal(m320?.size, alpine320.manifest.length);
  assert.equal(d.manifests.length, 2);

  clock += TAG_TTL_MS + 1;
  const later = await api<Detail>('/cache/repositories/library/alpine');
  assert.deepEqual(later.json.tags.map((t) => t.stale), [true, true, true], 'past tagTtl every tag is stale');
  rig.resetProxy();
  await pull('alpine', '3.19', alpine319);
  assert.equal(rig.proxy.count({ method: 'HEAD' }), 1, 'the stale tag was revalidated with one HEAD');
  const revalidated = await api<Detail>('/cache/repositories/alpine');
  assert.deepEqual(revalidated.json.tags.map((t) => [t.tag, t.stale]), [['3.19', false], ['3.20', true], ['latest', true]]);
  assert.equal(revalidated.json.tags[0]?.lastChecked, new Date(clock).toISOString());
  assert.equal(revalidated.json.lastPulled, new Date(clock).toISOString());

  // Another upstream: by the same naming /v2 uses, or with ?upstream= as ?ns=.
  const byPath = await api<Detail>('/cache/repositories/ghcr.io/org/tool');
  const byParam = await api<Detail>('/cache/repositories/org/tool?upstream=ghcr.io');
  assert.equal(byPath.status, 200);
  assert.deepEqual(byParam.json, byPath.json);
  assert.equal(byPath.json.upstream, 'ghcr.io');
  assert.equal(byPath.json.tags[0]?.digest, tool.manifestDigest);

  const pinned = await api<Detail>('/cache/repositories/team/pinned');
  assert.equal(pinned.json.pinned, true);
  assert.deepEqual(pinned.json.pins, [PIN_REF]);
  assert.equal(pinned.json.tags[0]?.pinned, true);

  const unknown = await api<Errors>('/cache/repositories/library/never-pulled');
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json.errors[0]?.code, 'NAME_UNKNOWN');
  assert.match(unknown.json.errors[0]?.message ?? '', /docker\.io\/library\/never-pulled/);
  const badHost = await api<Errors>('/cache/repositories/quay.io/org/app');
  assert.equal(badHost.status, 404, 'an unconfigured registry host is refused as /v2 refuses it');
});

test('berth cache ls reads the store beside the running server: a table, a PATTERN, --json matching the API, --help', async () => {
  await lifecycleOf(rig.berth).flush();
  const ls = await berth(['cache', 'ls']);
  assert.equal(ls.code, 0, ls.stderr);
  const lines = ls.stdout.trimEnd().split('\n');
  assert.match(lines[0] ?? '', /^REPOSITORY\s+UPSTREAM\s+TAGS\s+SIZE\s+LAST PULLED\s+PINNED$/);
  assert.equal(lines.length, 5);
  assert.match(lines[2] ?? '', /^library\/alpine\s+docker\.io\s+3\s+\S+ \S+\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+no$/);
  assert.match(lines[4] ?? '', /^team\/pinned\s+docker\.io\s+1\s+.*\s+yes$/);

  const json = await berth(['cache', 'ls', 'team/*', '--json']);
  assert.equal(json.code, 0, json.stderr);
  const fromCli = (JSON.parse(json.stdout) as { repositories: Summary[] }).repositories;
  const fromApi = (await api<{ repositories: Summary[] }>('/cache/repositories?q=team/*')).json.repositories;
  assert.deepEqual(fromCli, fromApi, 'the CLI and the API agree, last pulled included');

  const ghcr = await berth(['cache', 'ls', '--upstream', 'ghcr.io']);
  assert.match(ghcr.stdout, /ghcr\.io\/org\/tool/);
  assert.doesNotMatch(ghcr.stdout, /alpine/);
  const none = await berth(['cache', 'ls', 'nothing/*']);
  assert.equal(none.code, 0);
  assert.equal(none.stdout, 'no cached repository matches\n');

  const help = await berth(['cache', 'ls', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: berth cache ls \[PATTERN\]/);
  const group = await berth(['cache']);
  assert.match(group.stdout, /cache ls/);
  assert.match(group.stdout, /cache purge/);
  const bare = await berth(['cache', 'purge']);
  assert.equal(bare.code, 2, 'purge needs a pattern or an upstream');
  assert.match(bare.stderr, /say what to purge/);
  const bad = await berth(['cache', 'ls', 'a b']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /not a repository pattern/);
});

test('POST /api/v1/cache/purge: the dry run changes nothing and reports exactly what the purge then removes; pinned content stays', async () => {
  const dry = await api<Purged>('/cache/purge', { method: 'POST', body: { pattern: 'team/*', dryRun: true } });
  assert.equal(dry.status, 200);
  assert.equal(dry.json.dryRun, true);
  assert.deepEqual(dry.json.repositories.map((r) => [r.repository, r.tags]), [['team/app', ['v1', 'v2']], ['team/pinned', ['v1']]]);
  assert.equal(dry.json.tags, 3);
  assert.equal(dry.json.manifests, 2, "team/app's two manifests; the pinned one stays");
  assert.equal(dry.json.blobs, digestsOf(app1).length + digestsOf(app2).length);
  assert.equal(dry.json.bytes, bytesOf(app1, app2));
  assert.equal(dry.json.kept, 1);
  const onDisk = await storedBlobs(rig.berth.root);
  for (const d of digestsOf(app1)) assert.ok(onDisk.has(d), 'a dry run removes nothing');
  assert.equal((await api<Summary[]>('/cache/repositories/team/app')).status, 200);

  const real = await api<Purged>('/cache/purge', { method: 'POST', body: { pattern: 'team/*' } });
  assert.equal(real.status, 200);
  assert.equal(real.json.dryRun, false);
  for (const k of ['tags', 'manifests', 'blobs', 'bytes', 'kept'] as const) assert.equal(real.json[k], dry.json[k], k);
  assert.deepEqual(real.json.repositories, dry.json.repositories);
  const left = await storedBlobs(rig.berth.root);
  for (const d of [...digestsOf(app1), ...digestsOf(app2)]) assert.ok(!left.has(d), `${d} removed`);
  for (const d of digestsOf(pinnedImg)) assert.ok(left.has(d), 'pinned content stays');
  const list = await api<{ repositories: Summary[] }>('/cache/repositories');
  assert.deepEqual(list.json.repositories.map((r) => r.repository), ['ghcr.io/org/tool', 'library/alpine']);

  const again = await api<Purged>('/cache/purge', { method: 'POST', body: { pattern: 'team/*' } });
  assert.deepEqual([again.json.tags, again.json.bytes, again.json.repositories.length], [0, 0, 0], 'nothing left to purge');
});

test('POST /api/v1/cache/purge refuses what it cannot act on: no JSON type, no selection, unknown keys, bad patterns, unknown upstreams', async () => {
  const cases: [unknown, number, string][] = [
    [{}, 400, 'NAME_INVALID'],
    [{ pattern: 'a b' }, 400, 'NAME_INVALID'],
    [{ pattern: 'team/*', dry: true }, 400, 'NAME_INVALID'],
    [{ pattern: 'team/*', dryRun: 'yes' }, 400, 'NAME_INVALID'],
    [[], 400, 'NAME_INVALID'],
    [{ upstream: 'quay.io' }, 404, 'NAME_UNKNOWN'],
  ];
  for (const [body, status, code] of cases) {
    const r = await api<Errors>('/cache/purge', { method: 'POST', body });
    assert.equal(r.status, status, JSON.stringify(body));
    assert.equal(r.json.errors[0]?.code, code, JSON.stringify(body));
  }
  const form = await api<Errors>('/cache/purge', { method: 'POST', body: { pattern: '**' }, type: 'text/plain' });
  assert.equal(form.status, 415, 'a state-changing admin call must say JSON');
  assert.equal((await api<{ repositories: Summary[] }>('/cache/repositories')).json.repositories.length, 2, 'none of them purged anything');
});

test('berth cache purge --upstream: --dry-run lists what would go and keeps it; the purge removes the same bytes from the store', async () => {
  const dry = await berth(['cache', 'purge', '--upstream', 'ghcr.io', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /ghcr\.io\/org\/tool\s+\[ghcr\.io\]\s+tags: v1/);
  assert.match(dry.stdout, new RegExp(`would remove 1 tag\\(s\\), 1 link\\(s\\), 1 manifest\\(s\\), ${digestsOf(tool).length} blob\\(s\\)`));
  assert.match(dry.stdout, /dry run: nothing was changed/);
  for (const d of digestsOf(tool)) assert.ok((await storedBlobs(rig.berth.root)).has(d));

  const dryJson = JSON.parse((await berth(['cache', 'purge', '--upstream', 'ghcr.io', '--dry-run', '--json'])).stdout) as Purged;
  assert.equal(dryJson.bytes, bytesOf(tool));
  const real = await berth(['cache', 'purge', '**', '--upstream', 'ghcr.io', '--json']);
  assert.equal(real.code, 0, real.stderr);
  const report = JSON.parse(real.stdout) as Purged;
  assert.equal(report.dryRun, false);
  assert.equal(report.bytes, dryJson.bytes);
  assert.equal(report.blobs, dryJson.blobs);
  const left = await storedBlobs(rig.berth.root);
  for (const d of digestsOf(tool)) assert.ok(!left.has(d), `${d} removed from the store`);
  for (const d of digestsOf(alpine319)) assert.ok(left.has(d), 'other upstreams untouched');
  // The running server reads the records again: the repository is gone from its listing too.
  const list = await api<{ repositories: Summary[] }>('/cache/repositories');
  assert.deepEqual(list.json.repositories.map((r) => r.repository), ['library/alpine']);
});
