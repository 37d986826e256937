/**
 * Keeps V8's young generation at its initial size while the process starts. Loading the modules
 * and building the app allocates in bursts that make V8 double the semi-spaces up to their 16 MiB
 * maximum (32 MiB of young generation, ~10 MiB of RSS kept while idle); nothing allocated then
 * lives long enough to need it. Imported first by the CLI (src/cli.ts), so it runs before any other
 * module is loaded; `restoreHeapGrowth` gives V8 back its default once start-up is over, so a
 * loaded server grows its young generation as before.
 */
import { setFlagsFromString } from 'node:v8';

/** V8's default growth factor of the semi-spaces. */
const DEFAULT_SEMI_SPACE_GROWTH = 2;

setFlagsFromString('--semi-space-growth-factor=1');

let restored = false;

/** Let the young generation grow again (idempotent). */
export function restoreHeapGrowth(): void {
  if (restored) return;
  restored = true;
  setFlagsFromString(`--semi-space-growth-factor=${DEFAULT_SEMI_SPACE_GROWTH}`);
}
