// The cache index's compact structures (usage.ts, graph.ts over digest-table.ts) answer as the
// string-keyed ones did: sizes, accesses and counts follow stores, touches and removals; the
// reference graph's counts follow learn and unlearn through many manifests (its edge array is
// compacted on the way) and ids reused for other digests; a digest both sides hold keeps one id.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Digest } from '../../src/oci/reference.js';
import { MemoryDriver } from '../../src/storage/memory.js';
import { MetadataStore } from '../../src/storage/records.js';
import { ReferenceGraph } from '../../src/storage/lifecycle/graph.js';
import { UsageIndex } from '../../src/storage/lifecycle/usage.js';
import { createLogger } from '../../src/log.js';
import { digestOf } from '../helpers/index.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

async function manifest(driver: MemoryDriver, seed: string, layers: Digest[]): Promise<Digest> {
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, annotations: { seed }, layers: layers.map((digest) => ({ mediaType: 'x', digest, size: 1 })) }));
  const d = digestOf(bytes);
  await driver.putBlobBuffer(d, bytes);
  return d;
}

function setup(): { driver: MemoryDriver; usage: UsageIndex; graph: ReferenceGraph; clock: { t: number } } {
  const driver = new MemoryDriver();
  const clock = { t: 1_000_000 };
  const usage = new UsageIndex(new MetadataStore(driver), createLogger('silent'), () => clock.t, false, () => undefined);
  const graph = new ReferenceGraph(driver, createLogger('silent'), usage.table);
  return { driver, usage, graph, clock };
}

test('usage: sizes, the total, accesses and recency order follow stores, touches and removals', () => {
  const { usage, clock } = setup();
  const a = digestOf('a');
  const b = digestOf('b');
  usage.stored(a, 10);
  clock.t += 5;
  usage.stored(b, 20);
  assert.equal(usage.count, 2);
  assert.equal(usage.bytes, 30);
  assert.deepEqual(usage.get(a), { digest: a, size: 10, access: 1_000_000, seq: 1 });
  clock.t += 5;
  assert.equal(usage.touch(a), true);
  assert.equal(usage.touch(digestOf('never stored')), false);
  assert.equal(usage.touchAt(b, 0), true, 'known: true, though an older time changes nothing');
  assert.equal(usage.get(b)?.access, 1_000_005);
  const order = usage.entries().sort((x, y) => x[1].access - y[1].access || x[1].seq - y[1].seq).map(([d]) => d);
  assert.deepEqual(order, [b, a], 'a, touched last, is the most recently used');
  usage.stored(b, 25);
  assert.equal(usage.bytes, 35, 'a second commit of the same digest replaces its size');
  assert.deepEqual(usage.remove(a), { digest: a, size: 10, access: 1_000_010, seq: 3 });
  assert.equal(usage.has(a), false);
  assert.equal(usage.remove(a), undefined);
  assert.equal(usage.bytes, 25);
  assert.equal(usage.count, 1);
  assert.equal(usage.get('latest'), undefined, 'a string that is no digest is simply not found');
});

test('graph: counts follow learn and unlearn through 3,000 manifests; edges compacted and ids reused stay right', async () => {
  const { driver, usage, graph } = setup();
  const shared = digestOf('shared layer');
  usage.stored(shared, 100);
  const live = new Map<Digest, Digest[]>();
  for (let round = 0; round < 3; round++) {
    const made: Digest[] = [];
    for (let i = 0; i < 1000; i++) {
      const own = [digestOf(`layer ${round}/${i}/0`), digestOf(`layer ${round}/${i}/1`)];
      const m = await manifest(driver, `${round}/${i}`, [shared, ...own]);
      await graph.learn(m);
      live.set(m, own);
      made.push(m);
    }
    // Forget most of them: their edges become holes, their layers' ids go free for the next round.
    for (const m of made.slice(0, 900)) {
      graph.unlearn(m);
      live.delete(m);
    }
  }
  assert.equal(graph.size, live.size);
  assert.equal(graph.digests().length, live.size);
  for (const [m, own] of live) {
    assert.equal(graph.has(m), true);
    assert.deepEqual(graph.refs(m), { children: [], blobs: [shared, ...own] });
    for (const l of own) assert.equal(graph.isReferenced(l), true, `${l} is named by ${m}`);
  }
  assert.equal(graph.isReferenced(digestOf('layer 0/0/0')), false, 'a layer of an unlearned manifest is named by nothing');
  assert.equal(graph.refs(digestOf('layer 0/0/0')), undefined);
  assert.equal(graph.isReferenced(shared), true);
  assert.equal(usage.get(shared)?.size, 100, 'the usage index keeps its entry for a digest the graph also holds');
  for (const m of [...live.keys()]) graph.unlearn(m);
  assert.equal(graph.size, 0);
  assert.equal(graph.isReferenced(shared), false);
  assert.equal(usage.table.size, 1, 'only the digest the usage index holds is left in the table');
});

test('graph: an index counts its children as parents; an unparseable manifest names nothing', async () => {
  const { driver, graph } = setup();
  const child = await manifest(driver, 'child', [digestOf('l')]);
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: OCI_MANIFEST, digest: child, size: 1 }, { mediaType: OCI_MANIFEST, digest: 'sha256:nope', size: 1 }] }));
  const index = digestOf(bytes);
  await driver.putBlobBuffer(index, bytes);
  const junk = digestOf('not json');
  await driver.putBlobBuffer(junk, Buffer.from('not json'));
  await graph.learn(child);
  await graph.learn(index);
  await graph.learn(junk);
  assert.equal(graph.parentsOf(child), 1);
  assert.deepEqual(graph.refs(index), { children: [child], blobs: [] });
  assert.deepEqual(graph.refs(junk), { children: [], blobs: [] });
  graph.unlearn(index);
  assert.equal(graph.parentsOf(child), 0);
  assert.equal(graph.has(child), true);
});
