// The repository name a client token must carry (issue 18 item 7): the upstream is part of it,
// except for the default upstream's names, which stay as dockerd and containerd send them. The
// items are built from the real Router's output exactly as the /v2 route builds them, so the
// scope name's reading of a routed name (was the upstream named in the path?) is checked against
// what routing really produces; then TokenAccess is checked to demand and challenge that name.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { isRegistryError } from '../../src/errors.js';
import { Router } from '../../src/registry/routing.js';
import { scopeName, upstreamInPath, type AccessItem } from '../../src/auth/scope.js';
import { TokenAccess } from '../../src/auth/token.js';
import { startKeycloakEmulator, type KeycloakEmulator } from '../helpers/keycloak.js';

const upstreams = [
  { name: 'docker.io', url: 'https://registry-1.docker.io', aliases: ['index.docker.io', 'registry-1.docker.io'] },
  { name: 'ghcr.io', url: 'https://ghcr.io', aliases: ['ghcr-mirror.example'] },
  { name: 'quay.io', url: 'https://quay.io', libraryPrefix: true },
];
const config = parseConfig({ overrides: { upstreams } });
const router = new Router(config.upstreams, config.defaultUpstream);
const naming = {
  defaultUpstream: 'docker.io',
  upstreamHosts: new Set(config.upstreams.flatMap((u) => [u.name, ...u.aliases])),
};

/** The access item the /v2 route builds for a request name and ?ns. */
function item(requested: string, ns?: string): AccessItem {
  const r = router.route(requested, ns);
  return { type: 'repository', name: r.requested, upstream: r.upstream.name, cacheName: r.name, actions: ['pull'] };
}

const cases: Array<[requested: string, ns: string | undefined, scope: string, inPath: boolean]> = [
  // The default upstream: names as today.
  ['alpine', undefined, 'alpine', false],
  ['library/alpine', undefined, 'library/alpine', false],
  ['library/alpine', 'docker.io', 'library/alpine', false],
  ['library/alpine', 'index.docker.io', 'library/alpine', false],
  ['org/app', 'docker.io', 'org/app', false],
  ['docker.io/library/alpine', undefined, 'docker.io/library/alpine', true],
  ['index.docker.io/alpine', undefined, 'index.docker.io/alpine', true],
  // A first component naming a configured upstream that the router did not strip (ns given)
  // would read as that upstream's repository: it gets the upstream in front. A host no upstream
  // has stays as asked (it cannot be another upstream's name: the router refuses it in a path).
  ['ghcr.io/org/app', 'docker.io', 'docker.io/ghcr.io/org/app', false],
  ['docker.io/library/alpine', 'docker.io', 'docker.io/docker.io/library/alpine', false],
  ['other.example/org/app', 'docker.io', 'other.example/org/app', false],
  // Other upstreams: named in the scope, whichever way the client chose the upstream.
  ['library/small', 'ghcr.io', 'ghcr.io/library/small', false],
  ['org/app', 'ghcr.io', 'ghcr.io/org/app', false],
  ['org/app', 'ghcr-mirror.example', 'ghcr.io/org/app', false],
  ['ghcr.io/org/app', undefined, 'ghcr.io/org/app', true],
  ['ghcr-mirror.example/org/app', undefined, 'ghcr-mirror.example/org/app', true],
  ['ghcr.io/org/app', 'ghcr.io', 'ghcr.io/ghcr.io/org/app', false],
  // An upstream that adds library/ (one-component names) besides Docker Hub.
  ['quay.io/small', undefined, 'quay.io/small', true],
  ['quay.io/library/small', undefined, 'quay.io/library/small', true],
  ['small', 'quay.io', 'quay.io/small', false],
  ['library/small', 'quay.io', 'quay.io/library/small', false],
];

for (const [requested, ns, scope, inPath] of cases) {
  test(`scope name of ${requested}${ns === undefined ? '' : ` ?ns=${ns}`} is ${scope}`, () => {
    const i = item(requested, ns);
    assert.equal(upstreamInPath(i), inPath);
    assert.equal(scopeName(i, naming), scope);
  });
}

test('no two routes to different repositories share a scope name, and every route to one repository of another upstream names that upstream', () => {
  const seen = new Map<string, string>();
  for (const [requested, ns] of cases) {
    const i = item(requested, ns);
    const where = `${i.upstream ?? ''}/${i.cacheName ?? ''}`;
    const s = scopeName(i, naming);
    const before = seen.get(s);
    if (before !== undefined) assert.equal(before, where, `scope ${s} names ${before} and ${where}`);
    seen.set(s, where);
    if (i.upstream !== 'docker.io') assert.ok(s.includes('/') && /\./.test(s.split('/')[0] ?? ''), `${s} names a registry`);
  }
});

test('the catalog and items without an upstream keep their names', () => {
  assert.equal(scopeName({ type: 'registry', name: 'catalog', actions: ['*'] }, naming), 'catalog');
  assert.equal(scopeName({ type: 'repository', name: 'library/a', actions: ['pull'] }, naming), 'library/a');
});

describe('TokenAccess', () => {
  let kc: KeycloakEmulator;
  let access: TokenAccess;
  before(async () => {
    kc = await startKeycloakEmulator();
    const tokenConfig = parseConfig({
      overrides: {
        upstreams,
        auth: { mode: 'token', token: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: kc.trustBundlePath } },
      },
    });
    access = await TokenAccess.create(tokenConfig, pino({ level: 'silent' }));
  });
  after(async () => {
    await access?.close();
    await kc?.stop();
  });

  async function outcome(scope: string, requested: string, ns?: string): Promise<string> {
    try {
      await access.authorize({ authorization: `Bearer ${kc.mintToken({ scope })}`, ip: '192.0.2.1' }, [item(requested, ns)]);
      return 'ok';
    } catch (err) {
      assert.ok(isRegistryError(err));
      return err.headers?.['www-authenticate'] ?? err.code;
    }
  }

  test('a token names the upstream of the repository it pulls, and the challenge says which', async () => {
    assert.equal(await outcome('repository:library/small:pull', 'library/small', 'docker.io'), 'ok');
    assert.equal(await outcome('repository:library/small:pull', 'library/small'), 'ok');
    const refused = await outcome('repository:library/small:pull', 'library/small', 'ghcr.io');
    assert.match(refused, /scope="repository:ghcr\.io\/library\/small:pull",error="insufficient_scope"$/);
    assert.match(await outcome('repository:library/small:pull', 'ghcr.io/library/small'), /error="insufficient_scope"$/);
    assert.equal(await outcome('repository:ghcr.io/library/small:pull', 'library/small', 'ghcr.io'), 'ok');
    assert.equal(await outcome('repository:ghcr.io/library/small:pull', 'ghcr.io/library/small'), 'ok');
    assert.match(await outcome('repository:ghcr.io/library/small:pull', 'library/small'), /scope="repository:library\/small:pull",error="insufficient_scope"$/);
    assert.match(await outcome('repository:*:*', 'library/small', 'ghcr.io'), /error="insufficient_scope"$/, 'a "*" name is no wildcard');
  });
});
