/**
 * `berth gc [--dry-run] [--config FILE]`: one garbage collection over the configured store, then
 * exit. A running server collects by itself every storage.gcInterval; this is for operators who
 * want it now, or a report of what would go (`--dry-run` changes nothing).
 *
 * Safe beside a running server: it removes only what no tag, link or pin holds and what has not
 * been used for the grace period, leaves spool files that are still being written, and does not
 * write access times (the server owns them).
 */
import { access } from 'node:fs/promises';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../log.js';
import { Metrics } from '../metrics/metrics.js';
import { createDriver } from './factory.js';
import { MetadataStore } from './records.js';
import { CacheLifecycle, type GcReport } from './lifecycle.js';

export const GC_USAGE = 'gc [--dry-run] [--config FILE]';
export const GC_HELP = 'remove unreferenced blobs and stale temp files, repair records';

export interface GcIo {
  out: { write(s: string): unknown };
  err: { write(s: string): unknown };
  env: NodeJS.ProcessEnv;
}

export async function runGc(args: string[], io: GcIo = { out: process.stdout, err: process.stderr, env: process.env }): Promise<number> {
  let dryRun = false;
  let file = io.env['BERTH_CONFIG'] ?? null;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--dry-run') dryRun = true;
    else if (a === '--config' && args[i + 1] !== undefined) file = args[++i] ?? null;
    else {
      io.err.write(`berth gc: unexpected argument "${a ?? ''}"\nusage: berth ${GC_USAGE}\n`);
      return 2;
    }
  }
  const config = await loadConfig({ file, env: io.env });
  const root = config.storage.root;
  try {
    await access(root);
  } catch {
    io.err.write(`berth gc: storage.root ${root} does not exist: nothing to collect\n`);
    return 1;
  }
  // Warnings and errors only, on stderr: stdout carries the report.
  const level = ['info', 'debug', 'trace'].includes(config.log.level) ? 'warn' : config.log.level;
  const log = createLogger(level, { write: (s: string) => void io.err.write(s) });
  const driver = createDriver(config.storage);
  const lifecycle = new CacheLifecycle({
    driver,
    meta: new MetadataStore(driver),
    metrics: new Metrics({ defaults: false }),
    log,
    maxSize: null, // evicting to the cap is the server's job
    highWatermark: config.storage.highWatermark,
    lowWatermark: config.storage.lowWatermark,
    persistAccess: false,
  });
  const { repaired } = await lifecycle.start({ timers: false, repair: !dryRun });
  const report = await lifecycle.gc({ dryRun });
  await lifecycle.stop();
  io.out.write(describe(root, report, repaired));
  return 0;
}

export function describe(root: string, r: GcReport, repairedAtStart: number): string {
  const verb = r.dryRun ? 'would remove' : 'removed';
  // A dry run's start-up check repaired nothing, so the collection counted those records again.
  const records = r.dryRun ? r.records : r.records + repairedAtStart;
  return [
    `berth gc${r.dryRun ? ' --dry-run' : ''}: ${root}`,
    `  ${verb} ${r.blobs} blob(s), ${bytes(r.bytes)}, that nothing references`,
    `  ${verb} ${r.manifests} manifest record(s) no tag, link or pin holds`,
    `  ${verb} ${r.spoolFiles} stale temp file(s), ${bytes(r.spoolBytes)}`,
    `  ${r.dryRun ? 'would drop' : 'dropped'} ${records} record(s) naming missing content`,
    r.dryRun ? '  (dry run: nothing was changed)' : `  done in ${r.ms} ms`,
    '',
  ].join('\n');
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}
