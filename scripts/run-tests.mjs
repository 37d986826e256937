// Runs the compiled tests under dist/test with node's own runner.
// `npm test` runs all of them; `npm test -- unit` (or integration, e2e, or a file-name fragment)
// narrows the set. Suites start their own servers, so files run one at a time.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = 'dist/test';
const wanted = process.argv.slice(2);
const files = [];
for (const dir of ['unit', 'integration', 'e2e']) {
  const walk = (d) => {
    let entries = [];
    try { entries = readdirSync(d); } catch { return; }
    for (const name of entries.sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.test.js')) files.push(p);
    }
  };
  walk(join(root, dir));
}
const selected = wanted.length ? files.filter((f) => wanted.some((w) => f.includes(w))) : files;
if (selected.length === 0) {
  console.error(`no test files match ${wanted.join(' ')}`);
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...selected], {
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
