// The access policy's semantics, one behaviour per test: pulls are open to every valid token until
// a rule names `pull`; delete and admin always need a rule; `anonymous` means "no token" only;
// `auth.mode: none` keeps pulls open and the admin API of an unconfigured install usable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AccessPolicy } from '../../src/auth/policy.js';
import { OpenAccess, type AccessItem } from '../../src/auth/access.js';
import { isRegistryError } from '../../src/errors.js';
import type { PolicyRule } from '../../src/config/types.js';
import { parseConfig } from '../../src/config/load.js';
import { readFile } from 'node:fs/promises';

const item = (cacheName: string, actions: string[], upstream = 'docker.io'): AccessItem => ({ type: 'repository', name: cacheName, upstream, cacheName, actions });
const rule = (subjects: string[], actions: string[], repositories: string[] = ['*']): PolicyRule => ({ subjects, actions, repositories });

function status(fn: () => unknown): number {
  try {
    fn();
    return 200;
  } catch (err) {
    assert.ok(isRegistryError(err));
    return err.statusCode;
  }
}

async function statusAsync(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (err) {
    assert.ok(isRegistryError(err));
    return err.statusCode;
  }
}

test('with no rules any valid token pulls everything, and nobody deletes or administers', () => {
  const p = new AccessPolicy([]);
  assert.equal(status(() => p.enforce('alice', [item('library/alpine', ['pull'])], false)), 200);
  assert.equal(status(() => p.enforce('alice', [item('library/alpine', ['delete'])], false)), 403);
  assert.equal(status(() => p.enforceAdmin('alice')), 403);
});

test('delete needs a rule matching subject, action and <upstream>/<repository>', () => {
  const p = new AccessPolicy([rule(['ops-*'], ['delete'], ['docker.io/library/*'])]);
  assert.equal(status(() => p.enforce('ops-ann', [item('library/alpine', ['delete'])], false)), 200);
  assert.equal(status(() => p.enforce('OPS-ANN', [item('library/alpine', ['delete'])], false)), 200, 'subjects ignore case');
  assert.equal(status(() => p.enforce('ops-ann', [item('org/app', ['delete'])], false)), 403, 'outside the repository glob');
  assert.equal(status(() => p.enforce('ops-ann', [item('library/alpine', ['delete'], 'ghcr.io')], false)), 403, 'another upstream');
  assert.equal(status(() => p.enforce('dev-bob', [item('library/alpine', ['delete'])], false)), 403);
  assert.equal(status(() => p.enforceAdmin('ops-ann')), 403, 'delete does not imply admin');
});

test('a rule naming pull restricts pulls to its subjects; * rules grant without restricting', () => {
  const open = new AccessPolicy([rule(['root'], ['*'])]);
  assert.equal(open.restrictsPull, false);
  assert.equal(status(() => open.enforce('anyone', [item('library/alpine', ['pull'])], false)), 200);
  assert.equal(status(() => open.enforceAdmin('root')), 200);
  const closed = new AccessPolicy([rule(['team-a-*'], ['pull'], ['ghcr.io/team-a/*']), rule(['*'], ['pull'], ['docker.io/*'])]);
  assert.equal(closed.restrictsPull, true);
  assert.equal(status(() => closed.enforce('team-a-joe', [item('team-a/app', ['pull'], 'ghcr.io')], false)), 200);
  assert.equal(status(() => closed.enforce('team-b-sue', [item('team-a/app', ['pull'], 'ghcr.io')], false)), 403);
  assert.equal(status(() => closed.enforce('team-b-sue', [item('library/alpine', ['pull'])], false)), 200, '* spans / in repository globs');
  assert.equal(status(() => closed.enforce('team-b-sue', [item('team-a/app', ['pull'], 'ghcr.io')], true)), 200, 'mode none: pulls stay open');
});

test('"anonymous" names only clients without a token; "*" names everyone', () => {
  const p = new AccessPolicy([rule(['anonymous'], ['delete'])]);
  assert.equal(status(() => p.enforce(null, [item('library/alpine', ['delete'])], true)), 200);
  assert.equal(status(() => p.enforce('anonymous', [item('library/alpine', ['delete'])], false)), 403, 'a user called anonymous is not anonymous');
  const all = new AccessPolicy([rule(['*'], ['delete'])]);
  assert.equal(status(() => all.enforce(null, [item('library/alpine', ['delete'])], true)), 200);
  assert.equal(status(() => all.enforce('zed', [item('library/alpine', ['delete'])], false)), 200);
});

test('admin is granted only by a rule over all repositories', () => {
  const p = new AccessPolicy([rule(['alice'], ['*'], ['ghcr.io/alice/*']), rule(['bob'], ['admin'])]);
  assert.equal(status(() => p.enforceAdmin('alice')), 403);
  assert.equal(status(() => p.enforceAdmin('bob')), 200);
});

test('the 403 names who may not do what, and on which repository', () => {
  const p = new AccessPolicy([]);
  try {
    p.enforce('alice', [item('library/alpine', ['delete'])], false);
    assert.fail('expected DENIED');
  } catch (err) {
    assert.ok(isRegistryError(err));
    assert.equal(err.code, 'DENIED');
    assert.match(err.message, /"alice" may not delete docker\.io\/library\/alpine/);
  }
});

test('auth.mode none: everyone pulls; delete is open until a rule names it; admin rules apply only once one names admin', async () => {
  const none = new OpenAccess();
  const input = { authorization: undefined, ip: '192.0.2.1' };
  assert.equal(await statusAsync(none.authorize(input, [item('library/alpine', ['pull'])])), 200);
  assert.equal(await statusAsync(none.authorize(input, [item('library/alpine', ['delete'])])), 200, 'storage.deleteEnabled alone lets clients delete');
  assert.equal(await statusAsync(none.authorizeAdmin()), 200, 'a fresh install keeps its admin API (fenced by network in http/)');

  const deleteRule = new OpenAccess([rule(['alice'], ['delete'])]);
  assert.equal(await statusAsync(deleteRule.authorize(input, [item('library/alpine', ['delete'])])), 403, 'a delete rule that does not name anonymous closes delete');
  assert.equal(await statusAsync(deleteRule.authorizeAdmin()), 200, 'a delete rule does not lock the admin API');

  const someRule = new OpenAccess([rule(['alice'], ['admin'])]);
  assert.equal(await statusAsync(someRule.authorizeAdmin()), 403, 'an admin rule makes admin explicit');
  const anonAdmin = new OpenAccess([rule(['anonymous'], ['admin', 'delete'])]);
  assert.equal(await statusAsync(anonAdmin.authorizeAdmin()), 200);
  assert.equal(await statusAsync(anonAdmin.authorize(input, [item('library/alpine', ['delete'])])), 200);
});

test('config/keycloak.example.yaml loads, and its policy does what its comments say', async () => {
  const text = await readFile('config/keycloak.example.yaml', 'utf8');
  const cfg = parseConfig({ text, fileName: 'config/keycloak.example.yaml' });
  assert.equal(cfg.auth.mode, 'token');
  assert.equal(cfg.auth.token.service, 'berth');
  assert.ok(cfg.auth.token.jwks?.endsWith('/protocol/openid-connect/certs'));
  const p = new AccessPolicy(cfg.auth.policy);
  assert.equal(status(() => p.enforce('ops-ann', [item('library/alpine', ['delete'])], false)), 200);
  assert.equal(status(() => p.enforce('bob', [item('library/alpine', ['delete'])], false)), 403);
  assert.equal(status(() => p.enforce('bob', [item('library/alpine', ['pull'])], false)), 200);
  assert.equal(status(() => p.enforceAdmin('alice')), 200);
  assert.equal(status(() => p.enforceAdmin('ops-ann')), 403);
});
