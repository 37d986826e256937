/**
 * `berth cluster rebuild [--dry-run] [--json]`: puts back into Redis what the replicas keep there
 * and the store can tell, after Redis was flushed, restarted empty or replaced
 * (docs/scale-out.md#rebuilding-redis-from-the-store). Read from the configured store directly,
 * like `berth gc`, so it runs beside the replicas or with them stopped.
 *
 * What the replicas keep under `<redis.prefix>:cluster:` and what the store can tell of it:
 *  - `tag:<upstream>/<name>:<tag>` (the cluster's last upstream check of a tag): the tag record in
 *    the store has the digest and the time of the last check (the checking replica writes it), so
 *    every record checked within its upstream's tagTtl is seeded again with the time it has left.
 *    A replica whose own copy of the record is older then adopts the check instead of sending its
 *    own HEAD. An entry Redis already has with a check as new or newer is left as it is (a replica
 *    wrote it since).
 *  - `lease:<digest>`, `tag-lock:…`: downloads and checks in flight, seconds long; nothing to seed.
 *  - `epoch`: the lease counter; leases compare their whole value, so it restarting is harmless.
 *  - `ratelimit:<upstream>`: what the upstream last reported; not in the store, learnt again from
 *    the next upstream answer.
 * The command reports each of these as it finds them.
 *
 * Imports: app/ (args, core's openDriver), config, registry/cluster-tags (key layout), storage
 * records. ioredis is imported dynamically.
 */
import type { Redis as RedisClient } from 'ioredis';
import type { BerthConfig } from '../config/types.js';
import { maskUrlPassword } from '../config/print.js';
import { describeRedisError } from '../queue/redis-errors.js';
import { tagCheckId } from '../registry/cluster-tags.js';
import { MetadataStore } from '../storage/records.js';
import { CONFIG_OPTION, loadCommandConfig, type Command } from './args.js';
import { openDriver } from './core.js';

/** How long the command waits for Redis to answer before it gives up. */
const REDIS_CONNECT_MS = 5_000;
/** Tag records read (and checks seeded) at a time. */
const CONCURRENCY = 32;

/**
 * Set the check unless Redis holds one as new or newer. KEYS[1] the check key; ARGV: the JSON
 * value, its checkedAt, the time left (ms). Returns 1 when set, 0 when a newer one stands.
 */
const SEED_SCRIPT = [
  "local cur = redis.call('get', KEYS[1])",
  'if cur then',
  '  local ok, v = pcall(cjson.decode, cur)',
  "  if ok and type(v) == 'table' and tonumber(v['checkedAt']) and tonumber(v['checkedAt']) >= tonumber(ARGV[2]) then return 0 end",
  'end',
  "redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[3])",
  'return 1',
].join('\n');

export interface RebuildReport {
  dryRun: boolean;
  /** Tag records read from the store. */
  tagRecords: number;
  /** Tag checks written to Redis (with --dry-run: that would be written). */
  tagChecksSeeded: number;
  /** Already in Redis with a check as new or newer (a replica wrote it). */
  tagChecksNewerInRedis: number;
  /** Last checked longer than tagTtl ago: the next pull revalidates; nothing to seed. */
  tagRecordsExpired: number;
  /** Records of an upstream the config does not name (its tagTtl is unknown): skipped. */
  tagRecordsUnknownUpstream: number;
  /** Unreadable tag records (removed while listing, or damaged). */
  tagRecordsUnreadable: number;
  /** What Redis holds that the store cannot tell, as found (nothing of it is written). */
  notDerivable: { leases: number; tagLocks: number; epoch: number | null; rateLimits: string[] };
  ms: number;
}

/** Every key under `match`, by SCAN (never KEYS: a large Redis stays responsive). */
async function scanKeys(client: RedisClient, match: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    out.push(...keys);
    cursor = next;
  } while (cursor !== '0');
  return out;
}

/** Pattern-escape a key prefix for SCAN MATCH. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

export async function rebuildClusterState(config: BerthConfig, client: RedisClient, dryRun: boolean, now = Date.now): Promise<RebuildReport> {
  const started = Date.now();
  const prefix = `${config.redis.prefix}:cluster:`;
  const report: RebuildReport = {
    dryRun, tagRecords: 0, tagChecksSeeded: 0, tagChecksNewerInRedis: 0, tagRecordsExpired: 0,
    tagRecordsUnknownUpstream: 0, tagRecordsUnreadable: 0,
    notDerivable: { leases: 0, tagLocks: 0, epoch: null, rateLimits: [] },
    ms: 0,
  };
  const p = globEscape(prefix);
  report.notDerivable.leases = (await scanKeys(client, `${p}lease:*`)).length;
  report.notDerivable.tagLocks = (await scanKeys(client, `${p}tag-lock:*`)).length;
  const epoch = await client.get(`${prefix}epoch`);
  report.notDerivable.epoch = epoch === null ? null : Number(epoch);
  report.notDerivable.rateLimits = (await scanKeys(client, `${p}ratelimit:*`))
    .map((k) => decodeURIComponent(k.slice(`${prefix}ratelimit:`.length))).sort();

  const driver = await openDriver(config, 'shared');
  const meta = new MetadataStore(driver);
  const ttls = new Map(config.upstreams.map((u) => [u.name, u.tagTtl] as const));
  const seed = async (upstream: string, name: string, tag: string): Promise<void> => {
    const tagTtl = ttls.get(upstream);
    if (tagTtl === undefined) {
      report.tagRecordsUnknownUpstream++;
      return;
    }
    const rec = await meta.getTag(upstream, name, tag).catch(() => null);
    if (!rec || typeof rec.digest !== 'string' || typeof rec.checkedAt !== 'number') {
      report.tagRecordsUnreadable++;
      return;
    }
    const left = rec.checkedAt + tagTtl - now();
    if (left <= 0) {
      report.tagRecordsExpired++;
      return;
    }
    const key = `${prefix}tag:${tagCheckId(upstream, name, tag)}`;
    if (dryRun) {
      const cur = await client.get(key);
      const curAt = cur ? (JSON.parse(cur) as { checkedAt?: unknown }).checkedAt : null;
      if (typeof curAt === 'number' && curAt >= rec.checkedAt) report.tagChecksNewerInRedis++;
      else report.tagChecksSeeded++;
      return;
    }
    const value = JSON.stringify({ digest: rec.digest, checkedAt: rec.checkedAt });
    const set = await client.eval(SEED_SCRIPT, 1, key, value, String(rec.checkedAt), String(Math.ceil(left)));
    if (set === 1) report.tagChecksSeeded++;
    else report.tagChecksNewerInRedis++;
  };
  const running = new Set<Promise<void>>();
  for await (const e of meta.repoEntries()) {
    if (e.kind !== 'tag') continue;
    report.tagRecords++;
    const job: Promise<void> = seed(e.upstream, e.name, e.tag).finally(() => running.delete(job));
    running.add(job);
    if (running.size >= CONCURRENCY) await Promise.race(running);
  }
  await Promise.all(running);
  report.ms = Date.now() - started;
  return report;
}

export function describeRebuild(r: RebuildReport): string {
  const verb = r.dryRun ? 'would seed' : 'seeded';
  const n = r.notDerivable;
  return [
    `berth cluster rebuild${r.dryRun ? ' --dry-run' : ''}: ${r.tagRecords} tag record(s) read from the store in ${r.ms} ms`,
    `  tag checks ${verb}: ${r.tagChecksSeeded} (checked upstream within their tagTtl)`,
    `  tag checks Redis already holds as new or newer: ${r.tagChecksNewerInRedis}`,
    `  tag records checked longer than tagTtl ago (the next pull revalidates; nothing to seed): ${r.tagRecordsExpired}`,
    ...(r.tagRecordsUnknownUpstream > 0 ? [`  tag records of an upstream this config does not name (skipped): ${r.tagRecordsUnknownUpstream}`] : []),
    ...(r.tagRecordsUnreadable > 0 ? [`  tag records that could not be read (skipped): ${r.tagRecordsUnreadable}`] : []),
    'not in the store, so not rebuilt (the replicas recreate them as they work):',
    `  blob fill leases: ${n.leases} live; revalidation locks: ${n.tagLocks} (in flight, seconds long)`,
    `  lease epoch counter: ${n.epoch === null ? 'absent (starts again at 1; leases compare their whole value)' : n.epoch}`,
    `  upstream rate-limit reports: ${n.rateLimits.length === 0 ? 'none (learnt again from the next upstream answer)' : n.rateLimits.join(', ')}`,
    ...(r.dryRun ? ['  (dry run: nothing was written)'] : []),
    '',
  ].join('\n');
}

const rebuildCommand: Command = {
  name: 'cluster rebuild',
  synopsis: '[--dry-run] [--json] [--config FILE]',
  summary: 'after Redis was flushed or replaced: seed the replicas\' shared state again from the store',
  details: [
    'Reads every tag record in the store and puts its last upstream check back into Redis (for',
    'the time its tagTtl has left), so the replicas do not all revalidate their tags at once;',
    'reports what Redis holds that the store cannot tell (leases, rate-limit reports).',
    'Safe beside running replicas: a check a replica made since is never overwritten.',
    '',
    'options:',
    '  --dry-run       write nothing; count what would be seeded',
    '  --json          print the report as JSON',
    CONFIG_OPTION,
    '',
    'exit status: 0 done, 1 Redis or the store did not answer, 2 usage, 78 bad config or no redis.url',
  ].join('\n'),
  flags: { '--dry-run': 'boolean', '--json': 'boolean', '--config': 'value' },
  positionals: { min: 0, max: 0 },
  async run(args, io) {
    const config = await loadCommandConfig(args, io);
    const url = config.redis.url;
    if (url === null) {
      io.err.write('berth cluster rebuild: redis.url is not set: there is no shared state to rebuild\n');
      return 78;
    }
    const { Redis } = await import('ioredis');
    const client = new Redis(url, { lazyConnect: true, connectTimeout: REDIS_CONNECT_MS, maxRetriesPerRequest: 1, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (err) {
      io.err.write(`berth cluster rebuild: ${describeRedisError(err, maskUrlPassword(url))}\n`);
      client.disconnect();
      return 1;
    }
    try {
      const report = await rebuildClusterState(config, client, args.flags.has('--dry-run'));
      io.out.write(args.flags.has('--json') ? `${JSON.stringify(report)}\n` : describeRebuild(report));
      return 0;
    } finally {
      await client.quit().catch(() => client.disconnect());
    }
  },
};

export const clusterCommands: Command[] = [rebuildCommand];
