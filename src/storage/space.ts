/**
 * Disk space: recognising a write that failed because the disk is full. Used by the lifecycle
 * layer (degraded "full" mode) and by the cache policy, which must tell a full disk from any other
 * write failure. Measuring free space is the driver's job (`StorageDriver.space()`).
 */
import type { SpaceInfo } from './driver.js';

export type { SpaceInfo };

/** Measures free space where the store lives; null when the store cannot say (object storage). */
export type SpaceProbe = () => Promise<SpaceInfo | null>;

/** Did this write fail because the disk (or the writer's quota) is full? */
export function isNoSpace(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
