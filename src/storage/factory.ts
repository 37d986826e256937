/**
 * The one place a storage driver is built from configuration (`storage.driver`). Every command
 * (serve, worker, prewarm, gc) gets its driver here; nothing else names a driver class. The
 * in-memory driver (src/storage/memory.ts) is for tests and embedding and is built directly.
 *
 * Imports: the drivers only (the config shape is stated structurally, so storage/ stays below config/).
 */
import type { StorageDriver } from './driver.js';
import { FilesystemDriver } from './filesystem.js';

/** The part of the `storage` config section that chooses and places the driver. */
export interface DriverConfig {
  driver: 'filesystem';
  /** Filesystem: the store's folder. (Other drivers will stage here.) */
  root: string;
}

/** A driver for the configured store; call `init()` on it before use. */
export function createDriver(config: DriverConfig): StorageDriver {
  switch (config.driver) {
    case 'filesystem':
      return new FilesystemDriver(config.root);
  }
}
