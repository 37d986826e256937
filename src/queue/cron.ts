/**
 * Cron patterns read exactly as BullMQ's job schedulers read them (cron-parser, the process's
 * time zone, 5 or 6 fields), so both transports run an entry at the same moments.
 */
import { CronExpressionParser } from 'cron-parser';

/** The first time the pattern fires strictly after `from` (ms since epoch). Throws on a bad pattern. */
export function nextCronRun(pattern: string, from: number): number {
  return CronExpressionParser.parse(pattern, { currentDate: new Date(from) }).next().getTime();
}
