/**
 * The fill coordinator for replicas sharing one store and one Redis: one upstream download per
 * blob across every replica. It wraps the in-process coordinator (fills.ts), which still
 * single-flights within this replica; what it adds is who leads across replicas.
 *
 * The first replica to miss a blob takes a lease in Redis (`SET <lease> <epoch|replica|url> NX
 * PX`), its epoch from INCR (a fencing number: renewals and the release compare the whole value,
 * so an owner whose lease lapsed and was taken over can neither renew nor release the new one). It
 * renews the lease while its download runs and releases it when the download ends. A replica that
 * misses while another holds the lease joins by streaming the owner's staged bytes from the
 * owner's internal endpoint (src/http/routes/cluster.ts, at the advertised URL, authenticated with
 * cluster.secret) into a fill of its own: the bytes are hashed as they arrive and committed only
 * if they verify (and not at all when the owner has committed them already), so nothing
 * unverified ever lands. Its own clients join that fill as they join any other.
 *
 * When the owner cannot be reached (it died, or the network between is cut), the joiner polls
 * the store for the committed blob and tries the lease again; an owner that died stops renewing,
 * its lease lapses, and the next try takes it over. Redis down: leases cannot be taken, and each
 * replica leads its own fills (per-replica single-flight), as a single process does.
 *
 * Imports: registry/ (fills, blob-fill), storage/ driver types, metrics, oci/. Never Fastify.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import type { Metrics } from '../metrics/metrics.js';
import type { Digest } from '../oci/reference.js';
import type { StagedBlob, StorageDriver } from '../storage/driver.js';
import { BlobFill } from './blob-fill.js';
import type { ClusterRedis } from './cluster-redis.js';
import {
  InProcessFills, type FillCoordinator, type FillInProgress, type Flight, type ManifestFillKey, type SharedFill,
  type TagFillKey, type TagOutcome,
} from './fills.js';
import type { ManifestResult } from './repository.js';

/**
 * A lease lives this long unrenewed: how long a dead owner holds up its blob before another
 * replica takes over. Renewed every third of it, so two missed renewals still keep it.
 */
export const LEASE_MS = 5_000;
const RENEW_MS = Math.floor(LEASE_MS / 3);
/** Between two tries while the owner cannot be reached and the blob is not committed yet. */
const POLL_MS = 200;
/**
 * A joiner gives up coordinating after this long (owner unreachable, lease never lapsing: a
 * Redis that lost its clock?) and leads a download of its own; clients are never left waiting
 * without end.
 */
const WAIT_MAX_MS = 60_000;
/** The owner answers its endpoint's headers at once; a silent one counts as unreachable. */
const JOIN_HEADERS_MS = 5_000;
/**
 * Between two chunks from the owner: longer than the owner's own wait on a stalled upstream
 * (upstreams[].bodyTimeout, 60 s by default), so the owner's verdict arrives first.
 */
const JOIN_BODY_MS = 90_000;

/** The internal endpoint's path for one blob's fill (served by src/http/routes/cluster.ts). */
export function fillPath(digest: string): string {
  return `/_berth/cluster/fills/${digest}`;
}

/** Response headers of the internal endpoint. */
export const FILL_EPOCH_HEADER = 'berth-fill-epoch';
export const FILL_UPSTREAM_HEADER = 'berth-fill-upstream';

interface Owner {
  epoch: string;
  replica: string;
  url: string;
}

type LeaseAttempt =
  | { kind: 'owned'; value: string; epoch: string }
  | { kind: 'held'; owner: Owner }
  | { kind: 'free' }
  | { kind: 'no-redis' };

export interface ClusterFillsDeps {
  redis: ClusterRedis;
  driver: Pick<StorageDriver, 'stage' | 'statBlob'>;
  metrics: Metrics;
  log: Logger;
  replicaId: string;
  /** This replica's base URL as the others reach it. */
  advertiseUrl: string;
  secret: string;
  now?: () => number;
  /**
   * A blob copied from another replica is in the store (committed by this copy or by the owner):
   * the lifecycle's index learns it here, as it learns this replica's own downloads.
   */
  stored?: (digest: Digest, size: number) => void;
}

const RENEW_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

export class ClusterFills implements FillCoordinator {
  private readonly local: InProcessFills;
  private readonly agent = new Agent({ connections: 32, headersTimeout: JOIN_HEADERS_MS, bodyTimeout: JOIN_BODY_MS, connect: { timeout: JOIN_HEADERS_MS } });
  /** Epochs of the fills this replica leads (what the endpoint announces), by digest. */
  private readonly epochs = new Map<string, string>();
  private readonly committer: Pick<StorageDriver, 'stage'>;

  constructor(private readonly deps: ClusterFillsDeps) {
    this.local = new InProcessFills(deps.now);
    const driver = deps.driver;
    // A joiner's copy is committed only when the owner's is not there yet: on a shared store the
    // owner has normally committed before its stream ends, so the joiner's bytes were only a spool.
    this.committer = { stage: async () => commitOnce(await driver.stage(), driver) };
  }

  manifest(key: ManifestFillKey, lead: () => Promise<ManifestResult>): Flight<ManifestResult> {
    return this.local.manifest(key, lead);
  }

  tag(key: TagFillKey, lead: () => Promise<TagOutcome>): Flight<TagOutcome> {
    return this.local.tag(key, lead);
  }

  runningBlob(digest: Digest): Promise<SharedFill> | undefined {
    return this.local.runningBlob(digest);
  }

  blob(digest: Digest, start: () => Promise<SharedFill>): Flight<SharedFill> {
    const flight = this.local.blob(digest, () => this.lead(digest, start));
    if (flight.shared) this.deps.metrics.clusterFillJoins.inc({ where: 'local' });
    return flight;
  }

  abandonBlob(digest: Digest, fill: Promise<SharedFill>): void {
    this.local.abandonBlob(digest, fill);
  }

  filling(digest: string): boolean {
    return this.local.filling(digest);
  }

  inProgress(): FillInProgress[] {
    return this.local.inProgress();
  }

  async drain(): Promise<void> {
    await this.local.drain();
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /**
   * The fill this replica runs for `digest` (its own download, or its copy of another's), for
   * the internal endpoint; with the epoch of the lease when this replica leads it.
   */
  served(digest: Digest): { fill: Promise<SharedFill>; epoch: string | null } | undefined {
    const fill = this.local.runningBlob(digest);
    return fill ? { fill, epoch: this.epochs.get(digest) ?? null } : undefined;
  }

  /** Lead across replicas: take the lease and download, or join the owner's fill. */
  private async lead(digest: Digest, start: () => Promise<SharedFill>): Promise<SharedFill> {
    const giveUpAt = Date.now() + WAIT_MAX_MS;
    let waited = false;
    for (;;) {
      const lease = await this.tryLease(digest);
      if (lease.kind === 'no-redis') return start();
      if (lease.kind === 'owned') return this.own(digest, lease.value, lease.epoch, start);
      if (lease.kind === 'held' && lease.owner.replica !== this.deps.replicaId) {
        const joined = await this.join(digest, lease.owner);
        if (joined) return joined;
      }
      // The owner has no such fill any more, or cannot be reached: the blob may be committed.
      const stat = await this.deps.driver.statBlob(digest);
      if (stat) return committed(digest, stat.size);
      if (Date.now() > giveUpAt) {
        this.deps.log.warn({ digest, owner: lease.kind === 'held' ? lease.owner.replica : null }, 'blob fill owner unreachable and its lease never lapsed; downloading on this replica');
        return start();
      }
      if (!waited) {
        waited = true;
        this.deps.log.info({ digest, owner: lease.kind === 'held' ? lease.owner.replica : null }, 'blob fill owner cannot be joined; waiting for its commit or for its lease to lapse');
      }
      await sleep(POLL_MS);
    }
  }

  private async tryLease(digest: Digest): Promise<LeaseAttempt> {
    const { redis, replicaId, advertiseUrl } = this.deps;
    const key = redis.key('lease', digest);
    const got = await redis.try('blob lease', async (c): Promise<LeaseAttempt> => {
      const epoch = String(await c.incr(redis.key('epoch')));
      const value = `${epoch}|${replicaId}|${advertiseUrl}`;
      if ((await c.set(key, value, 'PX', LEASE_MS, 'NX')) === 'OK') return { kind: 'owned', value, epoch };
      const current = await c.get(key);
      const owner = current === null ? null : parseOwner(current);
      return owner ? { kind: 'held', owner } : { kind: 'free' };
    });
    return got ?? { kind: 'no-redis' };
  }

  /** This replica leads: download, renew the lease while it runs, release it at the end. */
  private async own(digest: Digest, value: string, epoch: string, start: () => Promise<SharedFill>): Promise<SharedFill> {
    const { redis, log } = this.deps;
    const key = redis.key('lease', digest);
    const release = (): void => {
      void redis.try('blob lease release', (c) => c.eval(RELEASE_SCRIPT, 1, key, value));
    };
    // Known to the endpoint from now on: a joiner may ask while the upstream has not answered yet.
    this.epochs.set(digest, epoch);
    const forgetEpoch = (): void => {
      if (this.epochs.get(digest) === epoch) this.epochs.delete(digest);
    };
    let fill: SharedFill;
    try {
      // The previous owner may have committed and released just before this lease was taken.
      const stat = await this.deps.driver.statBlob(digest);
      if (stat) {
        forgetEpoch();
        release();
        return committed(digest, stat.size);
      }
      fill = await start();
    } catch (err) {
      forgetEpoch();
      release();
      throw err;
    }
    let lost = false;
    const renew = setInterval(() => {
      void redis.try('blob lease renewal', (c) => c.eval(RENEW_SCRIPT, 1, key, value, String(LEASE_MS))).then((kept) => {
        if (kept === 0 && !lost) {
          lost = true;
          log.warn({ digest, epoch }, 'blob fill lease lapsed while downloading (Redis slow or down); another replica may download too');
        }
      });
    }, RENEW_MS);
    renew.unref();
    const end = (): void => {
      clearInterval(renew);
      forgetEpoch();
      release();
    };
    fill.finished.then(end, end);
    return fill;
  }

  /**
   * Stream the owner's fill into one of ours; null when the owner has no such fill (404) or
   * cannot be reached. The copy verifies the digest before anything is committed.
   */
  private async join(digest: Digest, owner: Owner): Promise<SharedFill | null> {
    const { log, metrics } = this.deps;
    let res;
    try {
      res = await request(owner.url + fillPath(digest), {
        dispatcher: this.agent,
        headers: { authorization: `Bearer ${this.deps.secret}`, [FILL_EPOCH_HEADER]: owner.epoch },
      });
    } catch (err) {
      log.debug({ digest, owner: owner.replica, url: owner.url, err: (err as Error).message }, 'blob fill owner unreachable');
      return null;
    }
    const epoch = res.headers[FILL_EPOCH_HEADER];
    if (res.statusCode !== 200 || (typeof epoch === 'string' && epoch !== owner.epoch)) {
      await res.body.dump().catch(() => undefined);
      if (res.statusCode === 401) log.error({ owner: owner.replica, url: owner.url }, 'another replica refused this one\'s cluster.secret; every replica needs the same secret');
      return null;
    }
    const lengthHeader = res.headers['content-length'];
    const size = typeof lengthHeader === 'string' && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null;
    const upstreamHeader = res.headers[FILL_UPSTREAM_HEADER];
    const upstream = typeof upstreamHeader === 'string' && upstreamHeader !== '' ? upstreamHeader : 'cluster';
    let fill: BlobFill;
    try {
      fill = await BlobFill.create(digest, upstream, size, this.committer);
    } catch (err) {
      res.body.destroy();
      throw err;
    }
    metrics.clusterFillJoins.inc({ where: 'remote' });
    log.debug({ digest, owner: owner.replica, epoch: owner.epoch }, 'joined the blob fill of another replica');
    void fill.run(res.body as AsyncIterable<Buffer>, () => undefined).then(() => {
      if (fill.state === 'done') this.deps.stored?.(digest, fill.written);
      if (fill.state === 'failed') log.warn({ digest, owner: owner.replica, err: fill.error?.message }, 'blob copied from another replica failed; nothing was cached by this copy');
    });
    return fill;
  }
}

function parseOwner(value: string): Owner | null {
  const first = value.indexOf('|');
  const second = value.indexOf('|', first + 1);
  if (first <= 0 || second <= first) return null;
  return { epoch: value.slice(0, first), replica: value.slice(first + 1, second), url: value.slice(second + 1) };
}

/** A fill that has already ended in the store: joiners open the committed blob. */
function committed(digest: Digest, size: number): SharedFill {
  return {
    digest, upstream: 'cluster', size, state: 'done', error: null, written: size, finished: Promise.resolve(),
    reader: () => {
      throw new Error('a committed fill is read from the store');
    },
  };
}

/** A staged blob whose commit is skipped (and the bytes dropped) when the blob is already stored. */
function commitOnce(staged: StagedBlob, driver: Pick<StorageDriver, 'statBlob'>): StagedBlob {
  return {
    get written() {
      return staged.written;
    },
    write: (chunk) => staged.write(chunk),
    readAt: (buf, position) => staged.readAt(buf, position),
    async commit(digest) {
      if (await driver.statBlob(digest)) {
        await staged.discard();
        return;
      }
      await staged.commit(digest);
    },
    discard: () => staged.discard(),
    close: () => staged.close(),
  };
}
