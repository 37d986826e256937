// What the cache index costs in memory and what a GC dry run costs in time, in one process, with
// nothing else running in it (issue 16, targets 2 and 3): the lifecycle is built on a store
// (written by scale-store.ts), exactly as `berth serve` builds it, and we print
//   - RSS, V8 heap used, and memory outside the heap (typed arrays) before and after the build,
//     each after two full collections, and where V8's committed memory sits (young generation,
//     old space, large objects);
//   - each dry-run GC's wall time and the process's CPU time (user + system, all threads): on a
//     machine shared with other work the CPU time is the figure to compare.
//
//   node dist/test/bench/scale-store.js <root> 100000
//   node --expose-gc dist/test/bench/index-memory.js <root> [gc passes, default 3]
import { performance } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import { MetadataStore } from '../../src/storage/records.js';
import { CacheLifecycle } from '../../src/storage/lifecycle.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { createLogger } from '../../src/log.js';

const MiB = 1024 * 1024;

interface Sample {
  rss: number;
  heap: number;
  external: number;
}

function sample(): Sample {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  gc();
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss / MiB, heap: m.heapUsed / MiB, external: m.external / MiB };
}

function line(label: string, s: Sample, base: Sample): string {
  const d = (a: number, b: number) => `${a.toFixed(1)} (${a - b >= 0 ? '+' : ''}${(a - b).toFixed(1)})`;
  return `${label.padEnd(14)} RSS ${d(s.rss, base.rss)}  heap used ${d(s.heap, base.heap)}  outside the heap ${d(s.external, base.external)} MiB`;
}

function spaces(): string {
  const keep = ['new_space', 'old_space', 'large_object_space'];
  return getHeapSpaceStatistics()
    .filter((x) => keep.includes(x.space_name))
    .map((x) => `${x.space_name} ${(x.physical_space_size / MiB).toFixed(1)} resident / ${(x.space_used_size / MiB).toFixed(1)} used`)
    .join(', ');
}

const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;

async function main(): Promise<void> {
  const [root, passes] = process.argv.slice(2);
  if (!root) {
    process.stderr.write('usage: node --expose-gc dist/test/bench/index-memory.js <store root> [gc passes=3]\n');
    process.exit(2);
  }
  const driver = new FilesystemDriver(root);
  await driver.init();
  const lc = new CacheLifecycle({
    driver, meta: new MetadataStore(driver), metrics: new Metrics({ defaults: false }), log: createLogger('silent'),
    maxSize: null, highWatermark: 0.9, lowWatermark: 0.5, persistAccess: false,
  });
  const before = sample();
  process.stdout.write(`${line('before build', before, before)}\n  V8: ${spaces()}\n`);
  let t = performance.now();
  let c = process.cpuUsage();
  await lc.start({ timers: false, repair: false });
  const stats = await lc.stats();
  process.stdout.write(`build: ${stats.blobs} blobs, ${stats.manifests} manifests, ${(performance.now() - t).toFixed(0)} ms wall, ${cpuMs(process.cpuUsage(c)).toFixed(0)} ms CPU\n`);
  process.stdout.write(`${line('after build', sample(), before)}\n  V8: ${spaces()}\n`);
  for (let i = 0; i < Number(passes ?? 3); i++) {
    t = performance.now();
    c = process.cpuUsage();
    const r = await lc.gc({ dryRun: true });
    process.stdout.write(`gc dry run: ${(performance.now() - t).toFixed(0)} ms wall, ${cpuMs(process.cpuUsage(c)).toFixed(0)} ms CPU (would remove ${r.blobs} blobs, ${r.manifests} manifests)\n`);
  }
  process.stdout.write(`${line('after the GCs', sample(), before)}\n  V8: ${spaces()}\n`);
  process.stdout.write(`load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' / ')}\n`);
  await lc.stop();
}

await main();
