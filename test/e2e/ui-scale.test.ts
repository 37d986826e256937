// The UI's server-side paging over a store of many repositories (issue 15): 300 cached
// repositories × 3 tags written as the filesystem store lays them out (the same seeding as the
// benchmark, test/bench/ui-scale.ts, which times these pages at 10,000 × 10). Checks pages of 25
// rows, the total, that walking the `last` cursor visits every repository exactly once in order,
// search, and a repository page. No timings are asserted.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startBerth, type BerthHandle } from '../helpers/berth.js';
import { makeTempDir, removeTempDir, type BuiltImage } from '../helpers/index.js';
import { seedUiStore, uiRepoName, UI_UPSTREAM } from '../bench/ui-scale.js';

const REPOS = 300;
const TAGS = 3;

let root: string;
let berth: BerthHandle;
let images: BuiltImage[] = [];

before(async () => {
  root = await makeTempDir('ui-scale');
  images = await seedUiStore(root, REPOS, TAGS);
  berth = await startBerth({ upstreams: [{ name: UI_UPSTREAM, url: 'http://127.0.0.1:9' }], storage: { root } });
});

after(async () => {
  await berth?.stop();
  if (root) await removeTempDir(root);
});

interface Row { repository: string; upstream: string; name: string; tags: number; tagNames: string[] }
interface Page { repositories: Row[]; next: string | null; total: number }

async function api<T>(path: string): Promise<T> {
  const r = await fetch(`${berth.url}/ui/api${path}`);
  const text = await r.text();
  assert.equal(r.status, 200, `${path}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

const expectedNames = (): string[] => Array.from({ length: REPOS }, (_, r) => uiRepoName(r)).sort();

test('the catalog pages by 25 with the right total, and the `last` cursor walks every repository once, in order', async () => {
  const want = expectedNames();
  const seen: string[] = [];
  let last: string | null = null;
  let pages = 0;
  for (;;) {
    const page: Page = await api<Page>(`/repositories?n=25${last !== null ? `&last=${encodeURIComponent(last)}` : ''}`);
    pages += 1;
    assert.equal(page.total, REPOS, `total on page ${pages}`);
    const expectedRows = Math.min(25, REPOS - seen.length);
    assert.equal(page.repositories.length, expectedRows, `rows on page ${pages}`);
    for (const row of page.repositories) {
      assert.equal(row.upstream, UI_UPSTREAM);
      assert.equal(row.name, row.repository, 'a docker.io repository is shown by its name');
      assert.equal(row.tags, TAGS, row.repository);
      assert.deepEqual([...row.tagNames].sort(), ['v0', 'v1', 'v2'], row.repository);
    }
    seen.push(...page.repositories.map((r) => r.repository));
    if (page.next === null) break;
    assert.equal(page.next, page.repositories[page.repositories.length - 1]?.repository, 'next is the last row shown');
    last = page.next;
    assert.ok(pages <= REPOS / 25 + 1, 'the cursor stops');
  }
  assert.equal(pages, Math.ceil(REPOS / 25));
  assert.equal(new Set(seen).size, seen.length, 'no repository shown twice');
  assert.deepEqual(seen, want, 'every repository, in name order, no gaps');
});

test('a cursor in the middle starts right after it; past the end there is nothing', async () => {
  const want = expectedNames();
  const cursor = want[137] as string;
  const page = await api<Page>(`/repositories?n=25&last=${encodeURIComponent(cursor)}`);
  assert.deepEqual(page.repositories.map((r) => r.repository), want.slice(138, 163));
  assert.equal(page.next, want[162]);
  const end = await api<Page>(`/repositories?n=25&last=${encodeURIComponent(want[REPOS - 1] as string)}`);
  assert.deepEqual(end.repositories, []);
  assert.equal(end.next, null);
});

test('search by a word and by a glob: the matching repositories and their total', async () => {
  // `app0012` matches app00120…app00129 (10 repositories).
  const word = await api<Page>('/repositories?n=25&q=app0012');
  const wantWord = expectedNames().filter((n) => n.includes('app0012'));
  assert.equal(wantWord.length, 10);
  assert.equal(word.total, 10);
  assert.deepEqual(word.repositories.map((r) => r.repository), wantWord);
  assert.equal(word.next, null);
  // team7/* holds r % 100 === 7: 7, 107, 207 — three repositories.
  const glob = await api<Page>(`/repositories?n=25&q=${encodeURIComponent('team7/*')}`);
  assert.deepEqual(glob.repositories.map((r) => r.repository), [7, 107, 207].map(uiRepoName));
  assert.equal(glob.total, 3);
  // A search larger than a page pages too: `team1` matches team1, team1x (11 teams × 3 = 33).
  const many = await api<Page>('/repositories?n=25&q=team1');
  const wantMany = expectedNames().filter((n) => n.includes('team1'));
  assert.equal(many.total, wantMany.length);
  assert.deepEqual(many.repositories.map((r) => r.repository), wantMany.slice(0, 25));
  const rest = await api<Page>(`/repositories?n=25&q=team1&last=${encodeURIComponent(many.next ?? '')}`);
  assert.deepEqual(rest.repositories.map((r) => r.repository), wantMany.slice(25));
});

test('a repository page lists its tags with the digests seeded and classifies them as images', async () => {
  const r = 142;
  const page = await api<{ tags: { tag: string; digest: string; kind: string }[] }>(
    `/repository?name=${encodeURIComponent(uiRepoName(r))}&upstream=${UI_UPSTREAM}`);
  const got = [...page.tags].sort((a, b) => a.tag.localeCompare(b.tag));
  assert.deepEqual(got.map((t) => t.tag), ['v0', 'v1', 'v2']);
  for (let t = 0; t < TAGS; t++) {
    const img = images[(r * TAGS + t) % images.length] as BuiltImage;
    assert.equal(got[t]?.digest, img.manifestDigest, `v${t}`);
    assert.equal(got[t]?.kind, 'image', `v${t}`);
  }
});
