// The UI at scale (issue 15): N cached repositories with T tags each on the filesystem store
// (10,000 × 10 = 100,000 tags; `--quick`: 1,000 × 10), written straight to disk in the store's
// layout, then one Berth process over it (the upstream is a closed port: everything comes from the
// store). Times the UI's JSON behind the pages — the first catalog page, a page further on (the
// `last` cursor), a search and a repository page — as medians and p90 over several samples each,
// against the 300 ms target. See docs/benchmarks.md ("UI at scale") and docs/ui.md.
//
//   node dist/test/bench/run.js --ui [--quick] [--repos N] [--tags N] [--samples N] [--out FILE]
//
// `seedUiStore` is also used by test/e2e/ui-scale.test.ts (a small store, paging checked).
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { loadavg } from 'node:os';
import { request } from 'undici';
import { buildImage, makeTempDir, removeTempDir, type BuiltImage } from '../helpers/index.js';
import { startBerthProcess } from '../helpers/berth.js';
import { createDriver } from '../../src/storage/factory.js';
import { MetadataStore } from '../../src/storage/records.js';
import type { Digest } from '../../src/oci/reference.js';
import { fmt } from './stats.js';

/** The upstream every seeded repository belongs to. */
export const UI_UPSTREAM = 'docker.io';

/** The name of seeded repository `r` (without the upstream): `team<r % 100>/app<r, 5 digits>`. */
export const uiRepoName = (r: number): string => `team${r % 100}/app${String(r).padStart(5, '0')}`;

/**
 * Writes `repos` repositories of `tags` tags (`v0`…) each under `root`, as the filesystem store lays
 * them out (src/storage/records.ts): 100 distinct one-layer images stored through the driver, then
 * each repository's tag and manifest-link records written directly, without an fsync per file.
 * Returns the images (tag `v<t>` of repository `r` points at image `(r * tags + t) % 100`).
 */
export async function seedUiStore(root: string, repos: number, tags: number): Promise<BuiltImage[]> {
  const driver = await createDriver({ driver: 'filesystem', root });
  await driver.init();
  const meta = new MetadataStore(driver);
  const images: BuiltImage[] = [];
  for (let i = 0; i < 100; i++) {
    const img = buildImage({ seed: `ui-scale-${i}`, layers: 1 });
    await driver.putBlobBuffer(img.manifestDigest as Digest, img.manifest);
    await driver.putBlobBuffer(img.configDigest as Digest, img.config);
    for (const l of img.layers) await driver.putBlobBuffer(l.digest as Digest, l.data);
    await meta.putManifest(img.manifestDigest, { mediaType: img.mediaType, size: img.manifest.length });
    images.push(img);
  }
  const metaRoot = join(root, 'meta');
  const now = Date.now();
  let batch: [string, string][] = [];
  const flush = async (): Promise<void> => {
    await Promise.all(batch.map(async ([p, body]) => {
      await mkdir(dirname(p), { recursive: true });
      await writeFile(p, body);
    }));
    batch = [];
  };
  for (let r = 0; r < repos; r++) {
    const dir = join(metaRoot, 'repos', UI_UPSTREAM, uiRepoName(r));
    for (let t = 0; t < tags; t++) {
      const img = images[(r * tags + t) % images.length] as BuiltImage;
      const rec = { digest: img.manifestDigest, mediaType: img.mediaType, size: img.manifest.length, fetchedAt: now, checkedAt: now };
      batch.push([join(dir, `_tags/v${t}.json`), JSON.stringify(rec)]);
      batch.push([join(dir, `_manifests/sha256/${img.manifestDigest.slice(7)}.json`), JSON.stringify({ linkedAt: now })]);
    }
    if (batch.length >= 2000) await flush();
  }
  await flush();
  return images;
}

export interface UiScaleOptions { repos: number; tags: number; samples: number }

export interface UiScaleResult {
  options: UiScaleOptions;
  seedMs: number;
  /** Process start → `/healthz` answering. */
  startMs: number;
  /** The first catalog request after start (it may wait for the repository index). */
  firstRequestMs: number;
  /** Per page: every sample's time, ms. */
  pages: { label: string; path: string; ms: number[] }[];
  loadAvg: number[];
}

export const TARGET_MS = 300;

export function uiScaleDefaults(quick: boolean): UiScaleOptions {
  return quick ? { repos: 1_000, tags: 10, samples: 9 } : { repos: 10_000, tags: 10, samples: 15 };
}

const log = (m: string): void => { process.stderr.write(`[ui-scale ${new Date().toISOString().slice(11, 19)}] ${m}\n`); };

async function getJson(url: string): Promise<{ ms: number; body: unknown }> {
  const t = performance.now();
  const res = await request(url, { headersTimeout: 120_000, bodyTimeout: 120_000 });
  const text = await res.body.text();
  const ms = performance.now() - t;
  if (res.statusCode !== 200) throw new Error(`GET ${url}: HTTP ${res.statusCode} ${text.slice(0, 300)}`);
  return { ms, body: JSON.parse(text) as unknown };
}

/** Seed a store, start Berth on it, and time each page `samples` times (after one untimed request). */
export async function measureUiScale(o: UiScaleOptions): Promise<UiScaleResult> {
  const root = await makeTempDir('bench-ui-scale');
  let berth: Awaited<ReturnType<typeof startBerthProcess>> | null = null;
  try {
    let t = performance.now();
    await seedUiStore(root, o.repos, o.tags);
    const seedMs = performance.now() - t;
    log(`seeded ${o.repos} repositories × ${o.tags} tags in ${fmt(seedMs / 1000, 1)} s`);
    t = performance.now();
    berth = await startBerthProcess({
      upstreams: [{ name: UI_UPSTREAM, url: 'http://127.0.0.1:9' }], storage: { root }, log: { level: 'warn' },
    });
    const startMs = performance.now() - t;
    const api = `${berth.url}/ui/api`;
    const first = await getJson(`${api}/repositories?n=25`);
    const page = first.body as { total: number; next: string | null; repositories: { tags: number }[] };
    if (page.total !== o.repos || page.repositories.length !== 25 || page.repositories[0]?.tags !== o.tags) {
      throw new Error(`first catalog page: total ${page.total}, ${page.repositories.length} rows, ${page.repositories[0]?.tags} tags; expected ${o.repos}, 25, ${o.tags}`);
    }
    log(`Berth up in ${fmt(startMs, 0)} ms; first catalog request ${fmt(first.ms, 0)} ms`);
    const mid = uiRepoName(Math.floor(o.repos / 2));
    const pages = [
      { label: 'first catalog page (25 rows)', path: '/repositories?n=25' },
      { label: 'a page further on (`last` cursor at the middle)', path: `/repositories?n=25&last=${encodeURIComponent(mid)}` },
      { label: 'search (`q=app004`: 100 matches, matched anywhere in the name)', path: '/repositories?n=25&q=app004' },
      { label: `repository page (${o.tags} tags)`, path: `/repository?name=${encodeURIComponent(uiRepoName(4242 % o.repos))}&upstream=${UI_UPSTREAM}` },
    ].map((p) => ({ ...p, ms: [] as number[] }));
    for (const p of pages) await getJson(`${api}${p.path}`); // each path once untimed
    // Samples interleaved page by page, so load on the machine falls on every page alike.
    for (let i = 0; i < o.samples; i++) {
      for (const p of pages) p.ms.push((await getJson(`${api}${p.path}`)).ms);
    }
    for (const p of pages) log(`${p.label}: median ${fmt(quantile(p.ms, 0.5), 1)} ms, p90 ${fmt(quantile(p.ms, 0.9), 1)} ms`);
    return { options: o, seedMs, startMs, firstRequestMs: first.ms, pages, loadAvg: loadavg() };
  } finally {
    await berth?.stop().catch(() => undefined);
    await removeTempDir(root).catch(() => undefined);
  }
}

/** Nearest-rank quantile (q in 0…1); NaN for no samples. */
function quantile(values: readonly number[], q: number): number {
  const v = [...values].sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))] as number;
}

/** The report: one row per page, medians and p90, the 300 ms target as ratios (median and p90 ÷ 300 ms). */
export function renderUiScale(r: UiScaleResult): string {
  const o = r.options;
  const rows = r.pages.map((p) => {
    const med = quantile(p.ms, 0.5);
    const p90 = quantile(p.ms, 0.9);
    const verdict = p90 < TARGET_MS ? 'met' : med < TARGET_MS ? 'median met, p90 not' : 'not met';
    return `| ${p.label} | ${fmt(med, 1)} | ${fmt(p90, 1)} | ${fmt(Math.min(...p.ms), 1)}–${fmt(Math.max(...p.ms), 1)} | ${fmt(med / TARGET_MS)}× / ${fmt(p90 / TARGET_MS)}× | ${verdict} |`;
  });
  return [
    `## UI at scale (${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}; ${o.repos.toLocaleString('en-US')} repositories × ${o.tags} tags = ${(o.repos * o.tags).toLocaleString('en-US')} tags, ${o.samples} samples per page)`,
    '',
    `Seeding ${fmt(r.seedMs / 1000, 1)} s; Berth start → \`/healthz\` ${fmt(r.startMs, 0)} ms; first catalog request after start ${fmt(r.firstRequestMs, 0)} ms.`,
    `Load average at the end ${r.loadAvg.map((x) => fmt(x)).join(' / ')}.`,
    '',
    `| page (\`/ui/api\`) | median ms | p90 ms | min–max ms | median / p90 ÷ ${TARGET_MS} ms target | < ${TARGET_MS} ms (issue 15) |`,
    '|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

export const UI_SCALE_MARKERS = { name: 'ui', begin: '<!-- ui:begin (generated by test/bench/ui-scale.ts; edit outside these markers) -->', end: '<!-- ui:end -->' };

const USAGE = `usage: npm run bench -- --ui [--quick] [--repos N] [--tags N] [--samples N] [--out FILE]
  seeds N repositories × T tags (default 10,000 × 10; --quick 1,000 × 10), starts Berth on them and
  times the UI's catalog, cursor, search and repository pages (default --out dist/bench/ui-scale.md)
`;

/** `--ui`: the UI section alone. */
export async function runUiScale(argv: string[]): Promise<number> {
  const o = uiScaleDefaults(argv.includes('--quick'));
  let out = 'dist/bench/ui-scale.md';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE);
      return 0;
    }
    if (a === '--ui' || a === '--quick') continue;
    const n = Number(v);
    if (a === '--out' && v !== undefined) out = v;
    else if ((a === '--repos' || a === '--tags' || a === '--samples') && Number.isInteger(n) && n >= 1) o[a.slice(2) as keyof UiScaleOptions] = n;
    else throw new Error(`unknown or invalid ui option ${a ?? ''} ${v ?? ''}\n${USAGE}`);
    i += 1;
  }
  if (o.repos < 26) throw new Error(`--repos must be at least 26 (more than one page)\n${USAGE}`);
  const report = renderUiScale(await measureUiScale(o));
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, report);
  process.stdout.write(`\n${report}`);
  return 0;
}
