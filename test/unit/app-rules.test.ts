// The rules the composition root and the CLI stand on: the folder import rules and the no-cycle
// check fail when broken (a forbidden import is linted, a cycle is planted in a temp tree), the
// argument parser refuses what a command does not take, and start-up failures name the setting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ESLint } from 'eslint';
import { UsageError, parseArgs, type CommandSpec } from '../../src/app/args.js';
import { StartupError } from '../../src/app/errors.js';
import { makeTempDir, removeTempDir } from '../helpers/index.js';

const eslint = new ESLint();

async function restricted(filePath: string, code: string): Promise<string[]> {
  const [r] = await eslint.lintText(code, { filePath });
  return (r?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

test('folder import rules: each forbidden direction fails lint, the allowed ones pass', async () => {
  const cases: Array<[string, string, boolean]> = [
    ['src/oci/x.ts', "import type { Metrics } from '../metrics/metrics.js';\nexport type X = Metrics;\n", false],
    ['src/storage/x.ts', "import type { MirrorService } from '../registry/mirror.js';\nexport type X = MirrorService;\n", false],
    ['src/storage/x.ts', "import type { UpstreamClient } from '../upstream/client.js';\nexport type X = UpstreamClient;\n", false],
    ['src/storage/x.ts', "import type { Metrics } from '../metrics/metrics.js';\nexport type X = Metrics;\n", true],
    ['src/upstream/x.ts', "import type { StorageDriver } from '../storage/driver.js';\nexport type X = StorageDriver;\n", false],
    ['src/upstream/x.ts', "export { Router } from '../registry/routing.js';\n", false],
    ['src/registry/x.ts', "import type { FastifyInstance } from 'fastify';\nimport type { AppServices } from '../http/app.js';\nexport type X = [FastifyInstance, AppServices];\n", false],
    ['src/registry/x.ts', "import type { StorageDriver } from '../storage/driver.js';\nexport type X = StorageDriver;\n", true],
    ['workers/x.ts', "import { serve } from '../src/http/server.js';\nexport const x = serve;\n", false],
    ['workers/x.ts', "import { buildCore } from '../src/app/core.js';\nexport const x = buildCore;\n", true],
    ['src/http/x.ts', "import { buildCore } from '../app/core.js';\nexport const x = buildCore;\n", false],
    ['src/queue/x.ts', "import type { Services } from '../app/serve.js';\nexport type X = Services;\n", false],
    ['src/cli.ts', "import { buildCore } from './app/core.js';\nexport const x = buildCore;\n", true],
  ];
  for (const [file, code, allowed] of cases) {
    const messages = await restricted(file, code);
    assert.equal(messages.length === 0, allowed, `${file}: ${code.split('\n')[0]} → ${messages.join('; ') || 'no error'}`);
  }
});

test('the cycle check passes on the tree and fails, naming the loop, on a planted cycle', async () => {
  const clean = spawnSync(process.execPath, ['scripts/check-imports.mjs'], { encoding: 'utf8' });
  assert.equal(clean.status, 0, clean.stderr);
  assert.match(clean.stdout, /no import cycles/);
  const dir = await makeTempDir('cycles');
  try {
    await mkdir(join(dir, 'a'), { recursive: true });
    await writeFile(join(dir, 'a', 'one.ts'), "import { two } from './two.js';\nexport const one = () => two;\n");
    await writeFile(join(dir, 'a', 'two.ts'), "import type { Three } from '../three.js';\nexport const two = (t: Three) => t;\n");
    await writeFile(join(dir, 'three.ts'), "import { one } from './a/one.js';\nexport type Three = typeof one;\n");
    const r = spawnSync(process.execPath, ['scripts/check-imports.mjs', dir], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /import cycle: .*one\.ts → .*two\.ts → .*three\.ts → .*one\.ts/);
  } finally {
    await removeTempDir(dir);
  }
});

const spec: CommandSpec = {
  name: 'demo', synopsis: '', summary: 'a demo', details: '',
  flags: { '--config': 'value', '--dry-run': 'boolean' }, positionals: { min: 0, max: 1 },
};

test('parseArgs: flags in both spellings, help anywhere, and precise usage errors', () => {
  const p = parseArgs(spec, ['--config=a.yaml', '--dry-run', 'x']);
  assert.ok(p);
  assert.equal(p.flags.get('--config'), 'a.yaml');
  assert.equal(p.flags.get('--dry-run'), true);
  assert.deepEqual(p.positionals, ['x']);
  assert.equal(parseArgs(spec, ['x', '--help']), null, '--help after arguments still asks for help');
  assert.equal(parseArgs(spec, ['-h']), null);
  const refused = (args: string[], re: RegExp) => assert.throws(() => parseArgs(spec, args), (e: unknown) => e instanceof UsageError && re.test(e.message));
  refused(['--bogus'], /unknown option "--bogus" \(this command takes --config, --dry-run\)/);
  refused(['--config'], /--config needs a value/);
  refused(['--config', '--dry-run'], /--config needs a value/);
  refused(['--dry-run=yes'], /takes no value/);
  refused(['a', 'b'], /too many arguments: "b"/);
  refused(['--dry-run', '--dry-run'], /given twice/);
});

test('start-up failures name the setting in a sentence', () => {
  const enoent = Object.assign(new Error('ENOENT: no such file or directory, mkdir \'/srv/x/blobs\''), { code: 'ENOENT', path: '/srv/x/blobs' });
  const s = StartupError.fromStorage('/srv/x', enoent);
  assert.equal(s.setting, 'storage.root');
  assert.match(s.message, /^storage\.root \/srv\/x cannot be used: \/srv\/x\/blobs does not exist and cannot be created \(ENOENT\); set storage\.root/);
  const inUse = StartupError.fromListen('0.0.0.0', 5000, Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' }));
  assert.equal(inUse?.setting, 'http.port');
  assert.match(inUse?.message ?? '', /http\.port 5000 on 0\.0\.0\.0 is already in use/);
  assert.equal(StartupError.fromListen('0.0.0.0', 5000, new Error('other')), null);
});
