// The lifecycle's bookkeeping, with a fake clock and no HTTP, on each storage driver (a real
// filesystem store and the in-memory one): what an image is (an index with its children), what a
// shared blob is, what pins, tags and fills in flight protect, what survives a restart, and what
// GC repairs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Digest } from '../../src/oci/reference.js';
import type { StorageDriver } from '../../src/storage/driver.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import { MemoryDriver } from '../../src/storage/memory.js';
import { CacheLifecycle } from '../../src/storage/lifecycle.js';
import { MetadataStore } from '../../src/storage/records.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { createLogger } from '../../src/log.js';
import { digestOf, makeTempDir, removeTempDir, seededBytes } from '../helpers/index.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

type DriverKind = 'filesystem' | 'memory';

interface Env {
  kind: DriverKind;
  /** The filesystem store's folder; null for the in-memory driver. */
  root: string | null;
  driver: StorageDriver;
  meta: MetadataStore;
  lc: CacheLifecycle;
  clock: { t: number };
  filling: Set<string>;
  forgotten: string[];
  blob(seed: string, size: number): Promise<Digest>;
  image(seed: string, layers: string[]): Promise<Digest>;
  index(seed: string, children: string[]): Promise<Digest>;
  tag(name: string, tag: string, digest: string): Promise<void>;
  has(digest: Digest): Promise<boolean>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

interface EnvOptions {
  kind: DriverKind;
  maxSize: number | null;
  high?: number;
  low?: number;
  /** Reuse this env's store (a restart with other settings): a new driver on the same folder, or the same in-memory driver. */
  from?: Env;
  /** Start of the fake clock; it moves 1 s per stored item. Never behind the real clock, like Date.now(). */
  t0?: number;
}

async function makeEnv(o: EnvOptions): Promise<Env> {
  let dir: string | null = null;
  let driver: StorageDriver;
  if (o.kind === 'filesystem') {
    dir = o.from?.root ?? (await makeTempDir('lifecycle-index'));
    driver = new FilesystemDriver(dir);
  } else {
    driver = o.from?.driver ?? new MemoryDriver();
  }
  await driver.init();
  const clock = { t: o.t0 ?? Date.now() };
  const filling = new Set<string>();
  const forgotten: string[] = [];
  // One MetadataStore shared by the test and the lifecycle, as the mirror and the lifecycle share one.
  const build = (meta: MetadataStore) => new CacheLifecycle({
    driver, meta, metrics: new Metrics({ defaults: false }), log: createLogger('silent'),
    maxSize: o.maxSize, highWatermark: o.high ?? 0.9, lowWatermark: o.low ?? 0.5, now: () => clock.t,
    cache: { forget: (d) => void forgotten.push(d), filling: (d) => filling.has(d) },
  });
  const firstMeta = new MetadataStore(driver);
  const env: Env = {
    kind: o.kind, root: dir, driver, meta: firstMeta, lc: build(firstMeta), clock, filling, forgotten,
    async blob(seed, size) {
      const data = seededBytes(seed, size);
      const d = digestOf(data);
      await driver.putBlobBuffer(d, data);
      clock.t += 1000;
      env.lc.stored(d, size, 'blob');
      await env.lc.settled();
      return d;
    },
    async image(seed, layers) {
      const doc = { schemaVersion: 2, mediaType: OCI_MANIFEST, annotations: { seed }, layers: layers.map((digest) => ({ mediaType: 'x', digest, size: 1 })) };
      return store(Buffer.from(JSON.stringify(doc)), OCI_MANIFEST);
    },
    async index(seed, children) {
      const doc = { schemaVersion: 2, mediaType: OCI_INDEX, annotations: { seed }, manifests: children.map((digest) => ({ mediaType: OCI_MANIFEST, digest, size: 1 })) };
      return store(Buffer.from(JSON.stringify(doc)), OCI_INDEX);
    },
    async tag(name, tag, digest) {
      await env.meta.putTag('docker.io', name, tag, { digest, mediaType: OCI_MANIFEST, size: 1, fetchedAt: clock.t, checkedAt: clock.t });
      await env.meta.link('docker.io', name, digest, clock.t);
    },
    async has(digest) {
      return (await driver.statBlob(digest)) !== null;
    },
    async restart() {
      await env.lc.stop();
      env.meta = new MetadataStore(driver);
      env.lc = build(env.meta);
      await env.lc.start({ timers: false });
    },
    async close() {
      await env.lc.stop();
      if (!o.from && dir !== null) await removeTempDir(dir);
    },
  };
  async function store(bytes: Buffer, mediaType: string): Promise<Digest> {
    const d = digestOf(bytes);
    await driver.putBlobBuffer(d, bytes);
    await env.meta.putManifest(d, { mediaType, size: bytes.length });
    clock.t += 1000;
    env.lc.stored(d, bytes.length, 'manifest');
    await env.lc.settled();
    return d;
  }
  await env.lc.start({ timers: false });
  return env;
}

/** The digest a blob will have, to name it in a manifest stored before it (as pulls do). */
function digestFor(seed: string, size: number): Digest {
  return digestOf(seededBytes(seed, size));
}

for (const kind of ['filesystem', 'memory'] as const) {
  test(`an index is evicted with its untagged children; a child a tag names stays, then goes as an image of its own [${kind}]`, async () => {
    const e = await makeEnv({ kind, maxSize: 100_000, high: 0.9, low: 0.75 });
    try {
      const a1 = await e.blob('a1', 20_000);
      const b1 = await e.blob('b1', 20_000);
      const A = await e.image('A', [a1]);
      const B = await e.image('B', [b1]);
      const I = await e.index('I', [A, B]);
      await e.tag('multi', 'v1', I);
      await e.tag('multi', 'amd64', A);
      const o1 = await e.blob('o1', 20_000);
      const O = await e.image('O', [o1]);
      await e.tag('other', 'v1', O);
      // As in a pull: the manifest first, then its layer, whose commit passes the high mark (90 000).
      const N = await e.image('N', [digestFor('n1', 30_000)]);
      await e.tag('new', 'v1', N);
      const n1 = await e.blob('n1', 30_000);

      for (const d of [I, B, b1]) assert.equal(await e.has(d), false, `${d}: the index and its untagged child went`);
      for (const d of [A, a1]) assert.equal(await e.has(d), true, `${d}: multi:amd64 still names this child`);
      for (const d of [O, o1, N, n1]) assert.equal(await e.has(d), true, `${d} kept`);
      assert.deepEqual(await e.meta.listTags('docker.io', 'multi'), ['amd64'], 'only the index tag went');
      assert.ok(e.lc.bytes <= 75_000);
      assert.deepEqual(new Set(e.forgotten), new Set([I, B]), 'the mirror was told to forget each removed manifest');

      // Next time the cap is passed, the child is the least recently used image of its own.
      const M = await e.image('M', [digestFor('m1', 20_000)]);
      await e.tag('m', 'v1', M);
      await e.blob('m1', 20_000);
      for (const d of [A, a1]) assert.equal(await e.has(d), false, `${d} evicted as its own image`);
      for (const d of [O, o1, N, n1, M]) assert.equal(await e.has(d), true, `${d} kept`);
      assert.deepEqual(await e.meta.listTags('docker.io', 'multi'), []);
      assert.deepEqual(await e.meta.repositories(), [['docker.io', 'm'], ['docker.io', 'new'], ['docker.io', 'other']], 'the emptied repository left the catalog');
    } finally {
      await e.close();
    }
  });

  test(`a blob two images share is kept until the last of them goes [${kind}]`, async () => {
    const e = await makeEnv({ kind, maxSize: 100_000, high: 0.9, low: 0.86 });
    try {
      const s = await e.blob('shared', 30_000);
      const p1 = await e.blob('p1', 10_000);
      const q1 = await e.blob('q1', 10_000);
      const P = await e.image('P', [s, p1]);
      const Q = await e.image('Q', [s, q1]);
      await e.tag('p', 'v1', P);
      await e.tag('q', 'v1', Q);
      await e.blob('filler', 45_000); // 95 KB: P (least recently used) goes, down to 85 KB
      assert.equal(await e.has(P), false);
      assert.equal(await e.has(p1), false);
      assert.equal(await e.has(s), true, 'Q still uses the shared blob');
      assert.equal(e.lc.bytes, (await e.lc.stats()).bytes);
      await e.blob('more', 10_000); // past the mark again: now Q goes, and the shared blob with it
      assert.equal(await e.has(Q), false);
      assert.equal(await e.has(q1), false);
      assert.equal(await e.has(s), false);

      const s2 = await e.blob('shared2', 5_000);
      const R = await e.image('R', [s2]);
      const S = await e.image('S', [s2]);
      await e.tag('r', 'v1', R);
      await e.tag('s', 'v1', S);
      assert.ok(await e.lc.purge('docker.io', 'r', null));
      assert.equal(await e.has(s2), true, 'S still uses it');
      assert.ok(await e.lc.purge('docker.io', 's', 'v1'));
      assert.equal(await e.has(s2), false);
    } finally {
      await e.close();
    }
  });

  test(`pinned content and blobs with a fill in flight are never evicted [${kind}]`, async () => {
    const e = await makeEnv({ kind, maxSize: 100_000 });
    try {
      const old = await e.blob('pinned-layer', 40_000);
      const P = await e.image('pinned', [old]);
      await e.tag('pinned', 'v1', P);
      await e.meta.putPin('p', { ref: 'docker.io/pinned:v1', upstream: 'docker.io', name: 'pinned', digests: [P, old], pinnedAt: 0 });
      const busy = await e.blob('busy-orphan', 10_000);
      e.filling.add(busy);
      const x = await e.blob('x', 45_000);
      const X = await e.image('X', [x]);
      await e.tag('x', 'v1', X);
      await e.lc.settled();
      assert.equal(await e.has(old), true, 'pinned, though least recently used');
      assert.equal(await e.has(busy), true, 'a fill is in flight for it');
      assert.equal(await e.has(x), false, 'so the next least recently used went');
      assert.deepEqual(await e.meta.listTags('docker.io', 'pinned'), ['v1']);
    } finally {
      await e.close();
    }
  });

  test(`access times survive a restart and decide the eviction order after it [${kind}]`, async () => {
    const e = await makeEnv({ kind, maxSize: null });
    try {
      const l1 = await e.blob('l1', 20_000);
      const l2 = await e.blob('l2', 20_000);
      const first = await e.image('first', [l1]);
      const second = await e.image('second', [l2]);
      await e.tag('first', 'v1', first);
      await e.tag('second', 'v1', second);
      e.clock.t += 60_000;
      e.lc.accessed(first); // the older image is the more recently used one
      await e.restart();
      const stats = await e.lc.stats();
      assert.equal(stats.bytes, e.lc.bytes);
      assert.equal(stats.blobs, 4);
    } finally {
      await e.lc.stop();
    }
    // Same store, clock moving on, now with a cap that forces one image out (55 KB > 54 KB; 36 KB low).
    const e2 = await makeEnv({ kind, maxSize: 60_000, low: 0.6, from: e, t0: e.clock.t + 1000 });
    try {
      await e2.blob('l3', 15_000);
      await e2.lc.evict();
      const [firstTags, secondTags] = [await e2.meta.listTags('docker.io', 'first'), await e2.meta.listTags('docker.io', 'second')];
      assert.deepEqual(firstTags, ['v1'], 'first was used last before the restart: kept');
      assert.deepEqual(secondTags, [], 'second went');
    } finally {
      await e2.close();
      if (e.root !== null) await removeTempDir(e.root);
    }
  });

  test(`garbage collection: a dry run changes nothing; a run drops dangling records and what nothing holds [${kind}]`, async () => {
    const e = await makeEnv({ kind, maxSize: null });
    try {
      const kept = await e.blob('kept-layer', 1000);
      const K = await e.image('K', [kept]);
      await e.tag('k', 'v1', K);
      const orphan = await e.blob('orphan', 1000);
      const loose = await e.blob('loose-layer', 1000);
      const L = await e.image('L', [loose]); // a manifest no tag, link or pin holds
      const missing = digestOf('not here');
      await e.meta.putTag('docker.io', 'ghost', 'v1', { digest: missing, mediaType: OCI_MANIFEST, size: 1, fetchedAt: 0, checkedAt: 0 });
      const leftover = await e.driver.stage(); // a write that never finished
      await leftover.write(Buffer.from('x'));

      const young = await e.lc.gc({ dryRun: true });
      assert.equal(young.blobs, 0, 'all of it is younger than the grace period');
      assert.equal(young.records, 1);

      e.clock.t += 24 * 3600 * 1000;
      const dry = await e.lc.gc({ dryRun: true });
      assert.deepEqual({ blobs: dry.blobs, manifests: dry.manifests, records: dry.records }, { blobs: 3, manifests: 1, records: 1 });
      for (const d of [orphan, loose, L]) assert.equal(await e.has(d), true, 'dry run: still there');
      assert.deepEqual(await e.meta.listTags('docker.io', 'ghost'), ['v1']);

      const run = await e.lc.gc();
      assert.deepEqual({ blobs: run.blobs, manifests: run.manifests, records: run.records }, { blobs: 3, manifests: 1, records: 1 });
      for (const d of [orphan, loose, L]) assert.equal(await e.has(d), false, `${d} collected`);
      for (const d of [K, kept]) assert.equal(await e.has(d), true, `${d} held by k:v1`);
      assert.deepEqual(await e.meta.listTags('docker.io', 'ghost'), []);
      assert.equal(await e.meta.getManifest(L), null);
    } finally {
      await e.close();
    }
  });

  test(`content another process wrote is counted once it is served [${kind}]`, async () => {
    const e = await makeEnv({ kind, maxSize: null });
    try {
      const data = seededBytes('from-a-worker', 3000);
      const d = digestOf(data);
      await e.driver.putBlobBuffer(d, data); // no stored() call: the lifecycle did not see it
      const before = e.lc.bytes;
      assert.equal(e.lc.has(d), false);
      e.lc.accessed(d);
      await e.lc.settled();
      assert.equal(e.lc.has(d), true);
      assert.equal(e.lc.bytes, before + 3000);
      e.lc.accessed(digestOf('never stored'));
      await e.lc.settled();
      assert.equal(e.lc.bytes, before + 3000, 'a digest with no file is not counted');
    } finally {
      await e.close();
    }
  });
}
