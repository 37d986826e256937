/**
 * The one place a storage driver is built from configuration (`storage.driver`). Every command
 * (serve, worker, prewarm, gc) gets its driver here; nothing else names a driver class. The
 * in-memory driver (src/storage/memory.ts) is for tests and embedding and is built directly.
 * The S3 driver is imported only when configured: the AWS SDK costs memory and start-up time a
 * filesystem store does not need.
 *
 * Imports: the drivers only (the config shape is stated structurally, so storage/ stays below config/).
 */
import type { StorageDriver } from './driver.js';
import { FilesystemDriver } from './filesystem.js';
import type { S3DriverConfig } from './s3.js';

/** The part of the `storage` config section that chooses and places the driver. */
export interface DriverConfig {
  driver: 'filesystem' | 's3';
  /** Filesystem: the store's folder. S3: the local staging (spool) folder of fills. */
  root: string;
  /** S3: endpoint and bucket are required (config validation says so before this runs). */
  s3?: Omit<S3DriverConfig, 'endpoint' | 'bucket'> & { endpoint: string | null; bucket: string | null };
}

/** A driver for the configured store; call `init()` on it before use. */
export async function createDriver(config: DriverConfig): Promise<StorageDriver> {
  switch (config.driver) {
    case 'filesystem':
      return new FilesystemDriver(config.root);
    case 's3': {
      const s3 = config.s3;
      if (!s3 || s3.endpoint === null || s3.bucket === null) throw new Error('storage.driver s3 needs storage.s3.endpoint and storage.s3.bucket');
      // The SDK warns at every start that its 2027 releases will need Node 22; Berth pins its
      // SDK version, so the warning says nothing an operator can act on.
      process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
      const { S3Driver } = await import('./s3.js');
      return new S3Driver({ ...s3, endpoint: s3.endpoint, bucket: s3.bucket }, config.root);
    }
  }
}
