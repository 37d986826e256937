// The repository patterns of GET /api/v1/cache/repositories?q=, POST /api/v1/cache/purge and
// `berth cache ls|purge` (src/registry/inventory.ts): * within a component, ** across, ? one
// character, case-insensitive; refused when no name could match; and matched without
// backtracking, so a hostile pattern costs no more than a plain one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePattern } from '../../src/registry/inventory.js';

test('* stays within a component, ** crosses components, ? is one character other than /', () => {
  const cases: [string, string, boolean][] = [
    ['library/*', 'library/alpine', true],
    ['library/*', 'library/team/alpine', false],
    ['library/**', 'library/team/alpine', true],
    ['**', 'ghcr.io/org/app', true],
    ['*', 'library/alpine', false],
    ['*/alpine', 'library/alpine', true],
    ['library/alp?ne', 'library/alpine', true],
    ['library/alp?ne', 'library/alpne', false],
    ['team?app', 'team/app', false],
    ['docker.io/library/*', 'docker.io/library/alpine', true],
    ['docker.io/library/*', 'dockerxio/library/alpine', false],
    ['Library/Alpine', 'library/alpine', true],
    ['**/app', 'ghcr.io/org/app', true],
    ['**/app', 'app', false],
    ['ghcr.io/**', 'ghcr.io/org/app', true],
    ['localhost:5000/*', 'localhost:5000/app', true],
    ['a*b*c', 'axxbyyc', true],
    ['a*b*c', 'axxbyy', false],
  ];
  for (const [pattern, name, want] of cases) assert.equal(compilePattern(pattern).test(name), want, `${pattern} ~ ${name}`);
});

test('a pattern no repository name could match is NAME_INVALID with a sentence', () => {
  for (const bad of ['', 'a b', 'library/[ab]*', 'x'.repeat(513), 'a\nb']) {
    assert.throws(() => compilePattern(bad), (err: Error & { code?: string }) => err.code === 'NAME_INVALID' && /not a repository pattern/.test(err.message), JSON.stringify(bad.slice(0, 20)));
  }
});

test('a pattern made to backtrack matches long names quickly', () => {
  const hostile = compilePattern(`${'**a'.repeat(100)}**b`);
  const name = 'a'.repeat(255);
  const began = process.hrtime.bigint();
  for (let i = 0; i < 100; i++) assert.equal(hostile.test(name), false);
  const ms = Number(process.hrtime.bigint() - began) / 1e6;
  assert.ok(ms < 2000, `100 matches took ${ms.toFixed(0)} ms`);
});
