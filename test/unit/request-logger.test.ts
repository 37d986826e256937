// The per-request logger (src/http/request-log.ts) makes pino's child only when a line needs it.
// Whichever way a line goes, it must be the line the child would have written: same keys, same
// order, same redaction; and `child`, a level change and route options get the real child.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Logger } from 'pino';
import { createLogger } from '../../src/log.js';
import { RequestLogger } from '../../src/http/request-log.js';

function sink(level: string): { log: Logger; lines: () => string[] } {
  const out: string[] = [];
  const log = createLogger({ level, format: 'json' }, { write: (s: string) => out.push(s) });
  // The time differs between two lines written one after the other: compare without it.
  return { log, lines: () => out.map((l) => l.replace(/"time":"[^"]*",?/, '')) };
}

test('a line through the request logger is the line its pino child writes, redaction included', () => {
  const a = sink('debug');
  const b = sink('debug');
  const fields = { method: 'GET', url: '/v2/x/manifests/y?token=abc', headers: { authorization: 'Bearer secret' }, status: 200 };
  new RequestLogger(a.log, { reqId: 'req-7' }, {}).info({ ...fields }, 'request');
  a.log.child({ reqId: 'req-7' }).info({ ...fields }, 'request');
  new RequestLogger(b.log, { reqId: 'req-8' }, {}).warn(new Error('boom'), 'failed');
  b.log.child({ reqId: 'req-8' }).warn(new Error('boom'), 'failed');
  new RequestLogger(b.log, { reqId: 'req-9' }, {}).debug('plain text');
  b.log.child({ reqId: 'req-9' }).debug('plain text');
  const [lazy, child] = a.lines();
  assert.equal(lazy, child);
  assert.ok(lazy?.includes('"reqId":"req-7","method":"GET"'), lazy);
  assert.ok(!lazy?.includes('secret') && !lazy?.includes('token=abc'), lazy);
  const [err1, err2, text1, text2] = b.lines().map((l) => l.replace(/"stack":"[^"]*"/, ''));
  assert.equal(err1, err2);
  assert.equal(text1, text2);
  assert.equal(b.lines().length, 4);
});

test('below its level the request logger writes nothing; child, level and route options get the real child', () => {
  const s = sink('warn');
  const r = new RequestLogger(s.log, { reqId: 'req-1' }, {});
  r.info({ a: 1 }, 'dropped');
  r.debug('dropped');
  assert.equal(r.isLevelEnabled('info'), false);
  assert.equal(r.level, 'warn');
  assert.deepEqual(s.lines(), []);
  // An audit line needs a child at info although the logger is at warn (src/log.ts audit).
  r.child({}, { level: 'info' }).info({ audit: true }, 'audit: x');
  assert.match(s.lines()[0] ?? '', /"reqId":"req-1","audit":true/);
  r.level = 'debug';
  r.debug({ b: 2 }, 'now written');
  assert.match(s.lines()[1] ?? '', /"reqId":"req-1","b":2/);
  const routed = new RequestLogger(s.log, { reqId: 'req-2' }, { level: 'trace' });
  routed.trace({ c: 3 }, 'route level');
  assert.match(s.lines()[2] ?? '', /"reqId":"req-2","c":3/);
  assert.equal(s.log.level, 'warn', 'the parent keeps its level');
});
