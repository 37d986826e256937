/**
 * Pre-warm job types and their ids. Ids are deterministic (the same entry always gets the same
 * ids, so a second "run now" while one is queued joins it) and never contain `:` (BullMQ
 * reserves it for its own keys and refuses custom ids with one).
 */
import { createHash } from 'node:crypto';

/** The BullMQ queue name (below `redis.prefix`). */
export const QUEUE_NAME = 'prewarm';
/** The job name every pre-warm job carries. */
export const JOB_NAME = 'prewarm';

export type RunReason = 'schedule' | 'manual' | 'boot';

/** What a queued run carries: enough to run it even on a worker whose config is older or newer. */
export interface PrewarmJobData {
  entryId: string;
  ref: string;
  platforms: string[];
  tags: string | null;
  /** Configured entries pin what they fetch; a one-off only fills the cache. */
  pin: boolean;
  reason: RunReason;
}

const MAX_SLUG = 80;

/**
 * The entry id: a readable slug of the ref plus a short hash of everything that makes the entry
 * distinct (the ref and its tag pattern), e.g. `docker.io-library-alpine-3.20-5f1c0e2a9b`.
 */
export function entryIdFor(ref: string, tags: string | null): string {
  const slug = ref
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, MAX_SLUG);
  const hash = createHash('sha256').update(`${ref}\u0000${tags ?? ''}`).digest('hex').slice(0, 10);
  return `${slug || 'image'}-${hash}`;
}

/** The id of an on-demand run of an entry: one at a time, so repeated requests join it. */
export function runJobId(entryId: string): string {
  return checkedId(`run-${entryId}`);
}

/** The id of an entry's job scheduler (BullMQ) or timer (in-process). */
export function schedulerIdFor(entryId: string): string {
  return checkedId(`prewarm-${entryId}`);
}

/** The id of one scheduled run (in-process transport; BullMQ names its own). */
export function scheduledJobId(entryId: string, at: number): string {
  return checkedId(`sched-${entryId}-${at}`);
}

/** The entry id a scheduler id belongs to, or null when the scheduler is not one of ours. */
export function entryIdOfScheduler(schedulerId: string): string | null {
  return schedulerId.startsWith('prewarm-') ? schedulerId.slice('prewarm-'.length) : null;
}

function checkedId(id: string): string {
  if (id.includes(':')) throw new Error(`job id ${id} contains ':'`);
  return id;
}
