// Audit lines from the commands (issue 17.9): `berth gc` and `berth prewarm` change state from a
// shell, so each writes an audit line (subject `cli:<user>`) to stderr even though the commands
// keep their log to warnings; stdout still carries only the report.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { stringify } from 'yaml';
import { freePort, makeTempDir, removeTempDir } from '../helpers/index.js';

function berth(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['dist/src/cli.js', ...args], { env: { ...process.env, BERTH_CONFIG: '', ...env }, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function auditLines(stderr: string): Array<Record<string, unknown>> {
  return stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['audit'] === true);
}

test('berth gc and berth prewarm write an audit line naming the shell user', async () => {
  const dir = await makeTempDir('logs-cli');
  try {
    const root = join(dir, 'data');
    const dead = await freePort();
    const file = join(dir, 'berth.yaml');
    await writeFile(file, stringify({
      storage: { root },
      upstreams: [{ name: 'docker.io', url: `http://127.0.0.1:${dead}`, aliases: ['index.docker.io'] }],
      log: { format: 'json' },
    }));
    const init = berth(['gc', '--config', file]);
    assert.equal(init.code, 1, 'storage.root missing: nothing collected');
    assert.deepEqual(auditLines(init.stderr), [], 'and nothing audited');

    await mkdir(root, { recursive: true });
    const gc = berth(['gc', '--json', '--config', file]);
    assert.equal(gc.code, 0, gc.stderr);
    assert.equal((JSON.parse(gc.stdout) as { dryRun: boolean }).dryRun, false, 'stdout is still the report alone');
    const [line] = auditLines(gc.stderr);
    assert.ok(line, `an audit line on stderr: ${gc.stderr}`);
    assert.deepEqual([line['action'], line['subject'], line['target'], line['via'], line['dryRun']], ['cache.gc', `cli:${userInfo().username}`, root, 'cli', false]);
    assert.match(String(line['time']), /Z$/);

    const pw = berth(['prewarm', '--json', '--config', file, 'docker.io/library/alpine:3.20']);
    assert.equal(pw.code, 1, 'the upstream is down, so the run fails');
    const audited = auditLines(pw.stderr);
    assert.equal(audited.length, 1, pw.stderr);
    assert.deepEqual([audited[0]?.['action'], audited[0]?.['target'], audited[0]?.['subject']], ['prewarm.trigger', 'docker.io/library/alpine:3.20', `cli:${userInfo().username}`]);
  } finally {
    await removeTempDir(dir);
  }
});
