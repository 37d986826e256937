// Routing a request name to an upstream: ?ns= first, then a leading path component that is a
// registry host, then the default upstream. A registry host that is not a configured upstream is
// refused exactly like an unknown ns (NAME_UNKNOWN), never sent to the default upstream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { isRegistryError } from '../../src/errors.js';
import { Router } from '../../src/registry/routing.js';

const config = parseConfig({
  overrides: {
    upstreams: [
      { name: 'docker.io', url: 'https://registry-1.docker.io', aliases: ['index.docker.io'] },
      { name: 'registry.local:5000', url: 'http://registry.local:5000' },
    ],
  },
});
const router = new Router(config.upstreams, config.defaultUpstream);

function refusal(fn: () => unknown): { code: string; statusCode: number; message: string } {
  try {
    fn();
  } catch (err) {
    assert.ok(isRegistryError(err), `a registry error, got ${String(err)}`);
    return { code: err.code, statusCode: err.statusCode, message: err.message };
  }
  assert.fail('expected the route to be refused');
}

test('names without a registry host go to the default upstream, with library/ on Docker Hub', () => {
  assert.deepEqual(
    { ...router.route('alpine', undefined), upstream: router.route('alpine', undefined).upstream.name },
    { upstream: 'docker.io', name: 'library/alpine', requested: 'alpine' },
  );
  assert.equal(router.route('org/app', undefined).name, 'org/app');
  assert.equal(router.route('my-org/app.web', undefined).upstream.name, 'docker.io', 'a dot after the first component is no host');
});

test('a leading configured host or alias routes there and leaves the cache name without it', () => {
  const r = router.route('index.docker.io/library/alpine', undefined);
  assert.equal(r.upstream.name, 'docker.io');
  assert.equal(r.name, 'library/alpine');
});

test('a path-prefixed registry host that is not configured is refused like ?ns= is, not forwarded to Docker Hub', () => {
  const byPath = refusal(() => router.route('ghcr.io/org/app', undefined));
  const byNs = refusal(() => router.route('org/app', 'ghcr.io'));
  assert.equal(byPath.code, 'NAME_UNKNOWN');
  assert.equal(byPath.statusCode, 404);
  assert.deepEqual([byPath.code, byPath.statusCode], [byNs.code, byNs.statusCode], 'the same OCI error as an unknown ns');
  assert.match(byPath.message, /"ghcr\.io" \(the first component of "ghcr\.io\/org\/app"\) is not an upstream this mirror serves/);
  // `localhost` is a host by the reference grammar even without a dot.
  assert.equal(refusal(() => router.route('localhost/app', undefined)).code, 'NAME_UNKNOWN');
  assert.equal(refusal(() => router.route('quay.io/a/b/c', undefined)).code, 'NAME_UNKNOWN');
});

test('with ?ns= the name is taken as it is (no path-prefix routing on top)', () => {
  const r = router.route('org/app', 'docker.io');
  assert.equal(r.upstream.name, 'docker.io');
  assert.equal(r.name, 'org/app');
});
