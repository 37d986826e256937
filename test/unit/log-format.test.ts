// log.format (issue 17.9): JSON lines with an ISO 8601 `time`, or pino-pretty's rendering (pino's
// own transport, not a formatter of ours); `auto` is pretty on a terminal only. The config key
// and BERTH_LOG_FORMAT are checked like every key. And the audit line: written at info even when
// a command keeps its chatter to warnings, dropped only by `silent`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { audit, createLogger, prettyWanted, type LogOptions } from '../../src/log.js';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/errors.js';

function capture(options: string | LogOptions) {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { log: createLogger(options, sink), text: () => chunks.join('') };
}

test('json: one object a line, time in ISO 8601, no pid or hostname noise', () => {
  const { log, text } = capture({ level: 'info', format: 'json' });
  log.info({ upstream: 'docker.io' }, 'hello');
  const line = JSON.parse(text().trim()) as Record<string, unknown>;
  assert.match(String(line['time']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(Math.abs(Date.parse(String(line['time'])) - Date.now()) < 60_000);
  assert.deepEqual([line['level'], line['msg'], line['upstream'], line['service']], [30, 'hello', 'docker.io', 'berth']);
});

test('a bare level (the old signature) still means JSON into a destination', () => {
  const { log, text } = capture('debug');
  log.debug('x');
  assert.equal((JSON.parse(text()) as { msg: string }).msg, 'x');
});

test('pretty: pino-pretty renders a readable line (level, ISO time, message, fields), still redacted', () => {
  const { log, text } = capture({ level: 'info', format: 'pretty' });
  log.info({ upstream: 'docker.io', headers: { authorization: 'Bearer pretty-secret-1' } }, 'pulled');
  const out = text();
  assert.doesNotMatch(out, /^\{/, 'not JSON');
  assert.match(out, /^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] INFO: pulled/);
  assert.match(out, /"upstream":"docker\.io"/);
  assert.ok(!out.includes('pretty-secret-1'), out);
  assert.equal(out.trim().split('\n').length, 1, 'one line per record');
});

test('auto is pretty on a terminal and JSON otherwise (and always JSON into a given destination)', () => {
  assert.equal(prettyWanted('auto', true, false), true);
  assert.equal(prettyWanted('auto', false, false), false);
  assert.equal(prettyWanted('auto', true, true), false);
  assert.equal(prettyWanted('pretty', false, false), true);
  assert.equal(prettyWanted('json', true, false), false);
});

test('log.format: default auto; YAML and BERTH_LOG_FORMAT set it; anything else is refused by key', async () => {
  assert.equal((await loadConfig({ file: null, env: {} })).log.format, 'auto');
  assert.equal((await loadConfig({ file: null, env: { BERTH_LOG_FORMAT: 'JSON' } })).log.format, 'json');
  assert.equal((await loadConfig({ file: null, env: {}, overrides: { log: { format: 'pretty' } } })).log.format, 'pretty');
  await assert.rejects(loadConfig({ file: null, env: { BERTH_LOG_FORMAT: 'xml' } }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /log\.format: expected one of auto, json, pretty, got "xml"/);
    return true;
  });
});

test('audit lines are written at info even at level warn, and only silent drops them', () => {
  const warn = capture({ level: 'warn', format: 'json' });
  warn.log.info('chatter');
  audit(warn.log, { action: 'cache.gc', subject: 'cli:ops', target: '/data', dryRun: false });
  const lines = warn.text().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines.length, 1, 'the info chatter is still dropped');
  assert.deepEqual(
    [lines[0]?.['audit'], lines[0]?.['action'], lines[0]?.['subject'], lines[0]?.['target'], lines[0]?.['level'], lines[0]?.['msg']],
    [true, 'cache.gc', 'cli:ops', '/data', 30, 'audit: cache.gc /data'],
  );
  const silent = capture({ level: 'silent', format: 'json' });
  audit(silent.log, { action: 'cache.gc', subject: 'x', target: 'y' });
  assert.equal(silent.text(), '');
});
