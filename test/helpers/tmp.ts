// Temp dirs for tests: created under os.tmpdir(), removed by removeTempDir() or, failing that,
// at process exit.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { guardDir } from './cleanup.js';

const unregisters = new Map<string, () => void>();

/** Creates a fresh directory `<os.tmpdir()>/berth-<prefix>-XXXXXX`, removed at exit if not before. */
export async function makeTempDir(prefix = 'test'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `berth-${prefix}-`));
  unregisters.set(dir, guardDir(dir));
  return dir;
}

/** Removes a directory made by makeTempDir (idempotent). */
export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  unregisters.get(dir)?.();
  unregisters.delete(dir);
}
