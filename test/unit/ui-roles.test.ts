// Who may do what in the UI (src/ui/principal.ts over src/auth/policy.ts): `role:NAME` subjects
// match the roles from the login's roles claim, never a username; the UI's three modes (login,
// open, closed) decide see / delete / admin as docs/ui.md says.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AccessPolicy } from '../../src/auth/policy.js';
import { parseConfig } from '../../src/config/load.js';
import type { PolicyRule } from '../../src/config/types.js';
import { UiPolicy, rolesFromClaims, type Principal } from '../../src/ui/principal.js';

const rules: PolicyRule[] = [
  { subjects: ['role:berth-admin'], actions: ['admin', 'delete'], repositories: ['*'] },
  { subjects: ['role:team-*'], actions: ['delete'], repositories: ['docker.io/team/*'] },
  { subjects: ['carol'], actions: ['delete'], repositories: ['docker.io/library/*'] },
];

describe('role:NAME subjects', () => {
  const policy = new AccessPolicy(rules);

  it('grants by role, with globs over role names', () => {
    assert.equal(policy.allows('alice', 'admin', null, ['berth-admin']), true);
    assert.equal(policy.allows('alice', 'admin', null, ['berth-admins']), false);
    assert.equal(policy.allows('dave', 'delete', 'docker.io/team/app', ['team-blue']), true);
    assert.equal(policy.allows('dave', 'delete', 'docker.io/library/alpine', ['team-blue']), false);
  });

  it('never matches a role entry by username, nor a role for anonymous', () => {
    assert.equal(policy.allows('role:berth-admin', 'admin', null), false);
    assert.equal(policy.allows('berth-admin', 'admin', null), false);
    assert.equal(policy.allows(null, 'admin', null, ['berth-admin']), false);
  });

  it('keeps username rules working beside role rules', () => {
    assert.equal(policy.allows('carol', 'delete', 'docker.io/library/alpine'), true);
    assert.equal(policy.allows('carol', 'admin', null), false);
  });
});

describe('the roles claim', () => {
  it('reads a dotted path as Keycloak nests realm roles', () => {
    assert.deepEqual(rolesFromClaims({ realm_access: { roles: ['a', 'b', 3] } }, 'realm_access.roles'), ['a', 'b']);
    assert.deepEqual(rolesFromClaims({ groups: ['x'] }, 'groups'), ['x']);
    assert.equal(rolesFromClaims({ realm_access: {} }, 'realm_access.roles'), null);
    assert.equal(rolesFromClaims({ realm_access: 'admin' }, 'realm_access.roles'), null);
    assert.equal(rolesFromClaims(undefined, 'realm_access.roles'), null);
  });
});

function uiPolicy(overrides: Record<string, unknown>): UiPolicy {
  return new UiPolicy(parseConfig({ env: {}, overrides }));
}

const oidc = { issuer: 'https://kc.example.com/realms/ci', clientId: 'berth-ui' };
const who = (subject: string | null, roles: string[] = [], ip = '10.1.2.3'): Principal => ({ subject, roles, ip });

describe('UI modes', () => {
  it('login: admin and delete by role; see follows the pull rules', () => {
    const p = uiPolicy({ ui: { oidc, sessionSecret: 'x'.repeat(32) }, storage: { deleteEnabled: true }, auth: { policy: rules } });
    assert.equal(p.mode, 'login');
    assert.equal(p.canAdmin(who('alice', ['berth-admin'])), true);
    assert.equal(p.canAdmin(who('bob', ['viewer'])), false);
    assert.equal(p.canDelete(who('bob', ['team-red']), 'docker.io/team/x'), true);
    assert.equal(p.canDelete(who('bob', []), 'docker.io/team/x'), false);
    assert.equal(p.canSee(who('bob'), 'docker.io/library/alpine'), true);
  });

  it('login: delete stays off while storage.deleteEnabled is false, whatever the rules', () => {
    const p = uiPolicy({ ui: { oidc, sessionSecret: 'x'.repeat(32) }, auth: { policy: rules } });
    assert.equal(p.canDelete(who('alice', ['berth-admin']), 'docker.io/team/x'), false);
  });

  it('login with token auth: a pull rule limits what a user sees', () => {
    const p = uiPolicy({
      ui: { oidc, sessionSecret: 'x'.repeat(32) },
      auth: {
        mode: 'token',
        token: { realm: 'https://kc.example.com/t', service: 's', issuer: 'i', jwks: 'https://kc.example.com/certs' },
        policy: [{ subjects: ['role:readers'], actions: ['pull'], repositories: ['docker.io/library/*'] }],
      },
    });
    assert.equal(p.canSee(who('bob', ['readers']), 'docker.io/library/alpine'), true);
    assert.equal(p.canSee(who('bob', ['readers']), 'docker.io/team/app'), false);
    assert.equal(p.canSee(who('eve', []), 'docker.io/library/alpine'), false);
    assert.equal(p.seesAll(who('bob', ['readers'])), false);
  });

  it('open (no login, auth none): read-only, admin and delete only from http.adminNetworks', () => {
    const p = uiPolicy({ storage: { deleteEnabled: true } });
    assert.equal(p.mode, 'open');
    assert.equal(p.canSee(who(null), 'docker.io/library/alpine'), true);
    assert.equal(p.canAdmin(who(null, [], '10.1.2.3')), false);
    assert.equal(p.canAdmin(who(null, [], '127.0.0.1')), true);
    assert.equal(p.canDelete(who(null, [], '10.1.2.3'), 'docker.io/library/alpine'), false);
    assert.equal(p.canDelete(who(null, [], '127.0.0.1'), 'docker.io/library/alpine'), true);
  });

  it('closed (no login, token auth): nothing', () => {
    const p = uiPolicy({ auth: { mode: 'token', token: { realm: 'https://kc.example.com/t', service: 's', issuer: 'i', jwks: 'https://kc.example.com/certs' } } });
    assert.equal(p.mode, 'closed');
    assert.equal(p.canSee(who('x'), 'docker.io/library/alpine'), false);
    assert.equal(p.canAdmin(who(null, [], '127.0.0.1')), false);
  });
});
