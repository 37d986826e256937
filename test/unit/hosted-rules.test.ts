// The `repositories` rules and immutable-tag globs (src/registry/hosted-rules.ts), and the policy
// for push (src/auth/policy.ts): first match wins, `**` crosses `/` and `*` does not, no rule
// means mirrored; push needs a rule with a token, and a hosted item is judged on its own name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RepositoryRules, TagGlobs, nameGlob } from '../../src/registry/hosted-rules.js';
import { AccessPolicy, policyResource } from '../../src/auth/policy.js';
import { OpenAccess } from '../../src/auth/access.js';

test('name globs: ** crosses components, * stays within one, ? is one character', () => {
  assert.ok(nameGlob('ci/**').test('ci/app'));
  assert.ok(nameGlob('ci/**').test('ci/team/app'));
  assert.ok(!nameGlob('ci/**').test('ci'));
  assert.ok(!nameGlob('ci/**').test('cia/app'));
  assert.ok(nameGlob('team-*/*').test('team-a/app'));
  assert.ok(!nameGlob('team-*/*').test('team-a/b/app'));
  assert.ok(nameGlob('a?c').test('abc'));
  assert.ok(!nameGlob('a?c').test('a/c'));
  assert.ok(!nameGlob('a.c').test('abc'), 'a dot is literal');
});

test('rules: first match wins, and no match means mirrored', () => {
  const rules = new RepositoryRules([
    { match: 'ci/upstream/**', mode: 'mirror' },
    { match: 'ci/**', mode: 'hosted' },
  ]);
  assert.equal(rules.modeOf('ci/app'), 'hosted');
  assert.equal(rules.modeOf('ci/upstream/x'), 'mirror');
  assert.equal(rules.modeOf('library/alpine'), 'mirror');
  assert.ok(rules.anyHosted);
  assert.ok(!new RepositoryRules([]).anyHosted);
});

test('immutable tag globs', () => {
  const g = new TagGlobs(['v*', 'release-?']);
  assert.ok(g.matches('v1.2.3'));
  assert.ok(g.matches('release-1'));
  assert.ok(!g.matches('release-10'));
  assert.ok(!g.matches('latest'));
});

test('policy: push needs a rule naming it; a hosted item is judged on the name as sent', () => {
  const policy = new AccessPolicy([
    { subjects: ['alice'], actions: ['pull', 'push'], repositories: ['ci/*'] },
    { subjects: ['bob'], actions: ['pull'], repositories: ['ci/*'] },
  ]);
  const item = { type: 'repository' as const, name: 'ci/app', hosted: true, actions: ['pull', 'push'] };
  assert.equal(policyResource(item), 'ci/app');
  assert.doesNotThrow(() => policy.enforce('alice', [item], false));
  assert.throws(() => policy.enforce('bob', [item], false), (err: Error & { code?: string }) => err.code === 'DENIED');
  assert.throws(() => policy.enforce('carol', [item], false), (err: Error & { code?: string }) => err.code === 'DENIED');
});

test('auth.mode none: push is open until a rule names it', async () => {
  const item = { type: 'repository' as const, name: 'ci/app', hosted: true, actions: ['pull', 'push'] };
  await assert.doesNotReject(new OpenAccess([]).authorize(undefined, [item]));
  const ruled = new OpenAccess([{ subjects: ['anonymous'], actions: ['push'], repositories: ['ci/scratch/*'] }]);
  await assert.rejects(ruled.authorize(undefined, [item]), (err: Error & { code?: string }) => err.code === 'DENIED');
  await assert.doesNotReject(ruled.authorize(undefined, [{ ...item, name: 'ci/scratch/x' }]));
});
