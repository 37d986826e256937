/**
 * Disk space: recognising a write that failed because the disk is full, and measuring what is
 * free where the store lives. Used by the lifecycle layer (degraded "full" mode) and by the cache
 * policy, which must tell a full disk from any other write failure.
 */
import { statfs } from 'node:fs/promises';

export interface SpaceInfo {
  /** Bytes an unprivileged writer can still use. */
  free: number;
  /** Size of the filesystem in bytes. */
  total: number;
}

/** Measures free space where the store lives; null when the store cannot say (object storage). */
export type SpaceProbe = () => Promise<SpaceInfo | null>;

/** Did this write fail because the disk (or the writer's quota) is full? */
export function isNoSpace(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** A probe over the filesystem holding `path` (statfs). */
export function filesystemSpace(path: string): SpaceProbe {
  return async () => {
    const s = await statfs(path);
    return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
  };
}
