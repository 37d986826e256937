/**
 * `berth cache ls [PATTERN]` and `berth cache purge [PATTERN] [--dry-run]`: what is cached, as a
 * table (or JSON), and purge by pattern, read from the configured store directly like `berth gc`,
 * so they work with the server stopped and beside a running one. The naming, matching and figures
 * are src/registry/inventory.ts's, the same the admin API answers with.
 *
 * `ls` changes nothing (it builds the index read-only and writes no access times). `purge` removes
 * records then bytes in the lifecycle's crash-safe order; a server running on the same store keeps
 * what it already holds in memory (a tag it answered recently, manifest bytes) until its next GC,
 * and fetches a removed blob again if a client still asks for it: while a server runs, prefer
 * `POST /api/v1/cache/purge`, which goes through the server's own index.
 */
import { access } from 'node:fs/promises';
import { createLogger } from '../log.js';
import { Metrics } from '../metrics/metrics.js';
import { CacheInventory, type PurgeResult, type RepositorySummary, type Selection } from '../registry/inventory.js';
import type { CacheLifecycle } from '../storage/lifecycle.js';
import { CONFIG_OPTION, UsageError, flagValue, loadCommandConfig, type Command, type Io, type ParsedArgs } from './args.js';
import { buildCore } from './core.js';
import { formatBytes } from './format.js';

const PATTERN_HELP = [
  'PATTERN is a glob over the repository as a client names it (library/alpine, ghcr.io/org/app)',
  'or as <upstream>/<name> (docker.io/library/alpine): * within a component, ** across, ? one character.',
].join('\n');

const lsCommand: Command = {
  name: 'cache ls',
  synopsis: '[PATTERN] [--upstream NAME] [--json] [--config FILE]',
  summary: 'list cached repositories: tags, size, last pulled, pinned',
  details: [
    PATTERN_HELP,
    '',
    'options:',
    '  --upstream NAME only repositories of this upstream (a name or an alias)',
    '  --json          print the repositories as JSON, one object with a "repositories" list',
    CONFIG_OPTION,
    '',
    'exit status: 0 listed (also when nothing matches), 1 storage.root missing, 2 usage, 78 bad config',
  ].join('\n'),
  flags: { '--upstream': 'value', '--json': 'boolean', '--config': 'value' },
  positionals: { min: 0, max: 1 },
  async run(args, io) {
    return withInventory(args, io, 'cache ls', async (inv) => {
      const rows = await inv.all(selection(args));
      io.out.write(args.flags.has('--json') ? `${JSON.stringify({ repositories: rows })}\n` : table(rows));
      return 0;
    });
  },
};

const purgeCommand: Command = {
  name: 'cache purge',
  synopsis: '[PATTERN] [--upstream NAME] [--dry-run] [--json] [--config FILE]',
  summary: 'remove every cached repository that matches (what another repository or a pin holds stays)',
  details: [
    PATTERN_HELP,
    'Give PATTERN, --upstream, or both (** with no --upstream purges everything).',
    '',
    'options:',
    '  --upstream NAME only repositories of this upstream (a name or an alias)',
    '  --dry-run       change nothing; list the repositories and tags that would go, and the bytes',
    '  --json          print the report as JSON',
    CONFIG_OPTION,
    '',
    'While a server runs on the same store, prefer POST /api/v1/cache/purge (it updates the server\'s index).',
    'exit status: 0 done (also when nothing matches), 1 storage.root missing, 2 usage, 78 bad config',
  ].join('\n'),
  flags: { '--upstream': 'value', '--dry-run': 'boolean', '--json': 'boolean', '--config': 'value' },
  positionals: { min: 0, max: 1 },
  async run(args, io) {
    const sel = selection(args);
    if (sel.pattern === null && sel.upstream === null) throw new UsageError(purgeCommand, 'say what to purge: a PATTERN (** for everything), --upstream NAME, or both');
    return withInventory(args, io, 'cache purge', async (inv) => {
      const report = await inv.purge(sel, args.flags.has('--dry-run'));
      io.out.write(args.flags.has('--json') ? `${JSON.stringify(report)}\n` : describePurge(report));
      return 0;
    });
  },
};

export const cacheCommands: Command[] = [lsCommand, purgeCommand];

function selection(args: ParsedArgs): Selection {
  return { pattern: args.positionals[0] ?? null, upstream: flagValue(args, '--upstream') };
}

/** Build the core over the shared store, start the lifecycle read-only, run `fn`, close. */
async function withInventory(args: ParsedArgs, io: Io, name: string, fn: (inv: CacheInventory) => Promise<number>): Promise<number> {
  const config = await loadCommandConfig(args, io);
  const root = config.storage.root;
  if (config.storage.driver === 'filesystem') {
    try {
      await access(root);
    } catch {
      io.err.write(`berth ${name}: storage.root ${root} does not exist: nothing is cached there\n`);
      return 1;
    }
  }
  // Warnings and errors only, on stderr: stdout carries the listing.
  const level = ['info', 'debug', 'trace'].includes(config.log.level) ? 'warn' : config.log.level;
  const log = createLogger(level, { write: (s: string) => void io.err.write(s) });
  const core = await buildCore(config, log, {
    store: 'shared',
    mirror: false,
    metrics: new Metrics({ defaults: false }),
    // Eviction and access times are the server's.
    lifecycle: { maxSize: null, persistAccess: false },
  });
  const lifecycle: CacheLifecycle | null = core.lifecycle;
  if (!lifecycle) throw new Error(`${name} needs the lifecycle`);
  try {
    await lifecycle.start({ timers: false, repair: false });
    try {
      return await fn(new CacheInventory(core.router, core.meta, lifecycle));
    } finally {
      await lifecycle.stop();
    }
  } catch (err) {
    // A bad pattern or an unknown upstream: the catalogue's sentence, not a stack.
    if (err instanceof Error && 'statusCode' in err && (err as { statusCode: number }).statusCode < 500) {
      io.err.write(`berth ${name}: ${err.message}\n`);
      return 2;
    }
    throw err;
  } finally {
    await core.close();
  }
}

const HEADERS = ['REPOSITORY', 'UPSTREAM', 'TAGS', 'SIZE', 'LAST PULLED', 'PINNED'] as const;

export function table(rows: RepositorySummary[]): string {
  if (rows.length === 0) return 'no cached repository matches\n';
  const cells = rows.map((r) => [r.repository, r.upstream, String(r.tags), formatBytes(r.bytes), when(r.lastPulled), r.pinned ? 'yes' : 'no']);
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: readonly string[]): string => c.map((v, i) => (i === c.length - 1 ? v : v.padEnd(widths[i] ?? 0))).join('  ');
  return `${[line(HEADERS), ...cells.map(line)].join('\n')}\n`;
}

export function describePurge(r: PurgeResult): string {
  const verb = r.dryRun ? 'would remove' : 'removed';
  const lines = [`berth cache purge${r.dryRun ? ' --dry-run' : ''}: ${r.repositories.length} repository(ies)`];
  for (const repo of r.repositories) {
    const tags = repo.tags.length > 0 ? repo.tags.join(', ') : '(no tags)';
    lines.push(`  ${repo.repository}  [${repo.upstream}]  tags: ${tags}`);
  }
  lines.push(
    `  ${verb} ${r.tags} tag(s), ${r.links} link(s), ${r.manifests} manifest(s), ${r.blobs} blob(s), ${formatBytes(r.bytes)}`,
    `  kept ${r.kept} manifest(s) that another repository, index or pin still holds`,
  );
  if (r.dryRun) lines.push('  (dry run: nothing was changed)');
  return `${lines.join('\n')}\n`;
}

/** `2026-12-02 12:34:56Z`, or `-` for never. */
function when(isoTime: string | null): string {
  return isoTime === null ? '-' : `${isoTime.slice(0, 10)} ${isoTime.slice(11, 19)}Z`;
}

