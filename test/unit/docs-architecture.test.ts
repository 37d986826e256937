// docs/architecture.md must match the tree: every folder of src/ has a row in its layer table,
// every row names a folder that exists, and every file a row names (`name.ts`) exists in that
// folder. The import rules it describes are enforced by lint (test/unit/app-rules.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...(await filesUnder(join(dir, e.name))).map((f) => join(e.name, f)));
    else out.push(e.name);
  }
  return out;
}

test('docs/architecture.md: the layer table covers every folder of src/, and the files it names exist', async () => {
  const doc = await readFile('docs/architecture.md', 'utf8');
  const rows = doc.split('\n').filter((l) => l.startsWith('| `src/') || l.startsWith('| `src/cli.ts`'));
  const folders = new Map<string, string>();
  for (const row of rows) {
    const first = /^\| `(src\/[a-z]+)\/`/.exec(row);
    if (first?.[1]) folders.set(first[1], row);
  }
  const actual = (await readdir('src', { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => `src/${e.name}`);
  assert.deepEqual([...folders.keys()].sort(), actual.sort(), 'one row per folder of src/');
  for (const [folder, row] of folders) {
    const present = new Set((await filesUnder(folder)).map((f) => f.split('/').pop()));
    const owns = row.split('|')[2] ?? '';
    for (const m of owns.matchAll(/`([a-z-]+\.ts)`/g)) {
      assert.ok(present.has(m[1]), `${folder}: docs/architecture.md names ${m[1]}, which is not there`);
    }
  }
});
