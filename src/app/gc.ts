/**
 * `berth gc [--dry-run] [--json] [--config FILE]`: one garbage collection over the configured store,
 * then exit. A running server collects by itself every storage.gcInterval; this is for operators
 * who want it now, or a report of what would go (`--dry-run` changes nothing and lists each image
 * manifest and blob that would be removed, with its size).
 *
 * Safe beside a running server: it removes only what no tag, link or pin holds and what has not
 * been used for the grace period, leaves spool files that are still being written, and does not
 * write access times (the server owns them).
 */
import { access } from 'node:fs/promises';
import { audit, cliSubject, createLogger } from '../log.js';
import { Metrics } from '../metrics/metrics.js';
import type { GcReport } from '../storage/lifecycle.js';
import { CONFIG_OPTION, loadCommandConfig, type Command } from './args.js';
import { buildCore } from './core.js';
import { formatBytes } from './format.js';

export const gcCommand: Command = {
  name: 'gc',
  synopsis: '[--dry-run] [--json] [--config FILE]',
  summary: 'remove unreferenced blobs and stale temp files, repair records',
  details: [
    'options:',
    '  --dry-run       change nothing; list each image manifest and blob that would go, and the bytes',
    '  --json          print the report as JSON (with --dry-run, the list too)',
    CONFIG_OPTION,
    '',
    'exit status: 0 done, 1 storage.root missing, 2 usage, 78 bad config',
  ].join('\n'),
  flags: { '--dry-run': 'boolean', '--json': 'boolean', '--config': 'value' },
  positionals: { min: 0, max: 0 },
  async run(args, io) {
    const dryRun = args.flags.has('--dry-run');
    const config = await loadCommandConfig(args, io);
    const root = config.storage.root;
    try {
      await access(root);
    } catch {
      io.err.write(`berth gc: storage.root ${root} does not exist: nothing to collect\n`);
      return 1;
    }
    // Warnings and errors only, on stderr: stdout carries the report.
    const level = ['info', 'debug', 'trace'].includes(config.log.level) ? 'warn' : config.log.level;
    const log = createLogger({ ...config.log, level }, { write: (s: string) => void io.err.write(s) });
    const core = await buildCore(config, log, {
      store: 'shared',
      mirror: false,
      metrics: new Metrics({ defaults: false }),
      // Evicting to the cap is the server's job; access times are the server's to write.
      lifecycle: { maxSize: null, persistAccess: false },
    });
    const lifecycle = core.lifecycle;
    if (!lifecycle) throw new Error('gc needs the lifecycle');
    try {
      const { repaired } = await lifecycle.start({ timers: false, repair: !dryRun });
      const report = await lifecycle.gc({ dryRun, list: true });
      audit(log, { action: 'cache.gc', subject: cliSubject(), target: root, via: 'cli', dryRun, blobs: report.blobs, bytes: report.bytes });
      await lifecycle.stop();
      io.out.write(args.flags.has('--json') ? `${JSON.stringify({ root, ...report, records: records(report, repaired) })}\n` : describe(root, report, repaired));
    } finally {
      await core.close();
    }
    return 0;
  },
};

/** A dry run's start-up check repaired nothing, so the collection counted those records again. */
function records(r: GcReport, repairedAtStart: number): number {
  return r.dryRun ? r.records : r.records + repairedAtStart;
}

export function describe(root: string, r: GcReport, repairedAtStart: number): string {
  const verb = r.dryRun ? 'would remove' : 'removed';
  const lines = [
    `berth gc${r.dryRun ? ' --dry-run' : ''}: ${root}`,
    `  ${verb} ${r.blobs} blob(s), ${formatBytes(r.bytes)}, that nothing references`,
    `  ${verb} ${r.manifests} manifest record(s) no tag, link or pin holds`,
    `  ${verb} ${r.spoolFiles} stale temp file(s), ${formatBytes(r.spoolBytes)}`,
    `  ${r.dryRun ? 'would drop' : 'dropped'} ${records(r, repairedAtStart)} record(s) naming missing content`,
  ];
  const items = r.items ?? [];
  if (items.length > 0) {
    lines.push('  what would go:');
    const sorted = [...items].sort((a, b) => (a.kind === b.kind ? b.bytes - a.bytes : a.kind === 'manifest' ? -1 : 1));
    for (const i of sorted) lines.push(`    ${i.kind === 'manifest' ? 'image   ' : 'blob    '} ${i.digest}  ${formatBytes(i.bytes)}`);
  }
  lines.push(r.dryRun ? '  (dry run: nothing was changed)' : `  done in ${r.ms} ms`, '');
  return lines.join('\n');
}

