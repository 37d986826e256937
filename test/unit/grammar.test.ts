import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkDigest, isValidName, isValidTag } from '../../src/oci/reference.js';
import { parseV2Path } from '../../src/http/v2-path.js';
import { parseRange } from '../../src/http/range.js';
import { parseChallenge } from '../../src/upstream/challenge.js';
import { OriginPolicy } from '../../src/upstream/origin.js';

test('repository names follow the OCI grammar', () => {
  for (const ok of ['alpine', 'library/alpine', 'a/b/c', 'my-org/my_app', 'a__b', 'x.y/z--w', 'ghcr.io/org/app'.replace('ghcr.io/', '')]) {
    assert.equal(isValidName(ok), true, ok);
  }
  for (const bad of ['', 'Alpine', '/alpine', 'alpine/', 'a//b', '-a', 'a_', 'a..b', 'a/./b', 'a/../b', 'x'.repeat(256)]) {
    assert.equal(isValidName(bad), false, bad);
  }
});

test('tags follow the OCI grammar; .INVALID_MANIFEST_NAME is not a tag', () => {
  assert.equal(isValidTag('latest'), true);
  assert.equal(isValidTag('3.20.1-alpine_x'), true);
  assert.equal(isValidTag('_x'), true);
  assert.equal(isValidTag('.INVALID_MANIFEST_NAME'), false);
  assert.equal(isValidTag('-x'), false);
  assert.equal(isValidTag('a'.repeat(129)), false);
});

test('digests are checked for grammar, algorithm and encoding', () => {
  assert.equal(checkDigest(`sha256:${'a'.repeat(64)}`).ok, true);
  assert.equal(checkDigest(`sha512:${'0'.repeat(128)}`).ok, true);
  assert.equal(checkDigest('sha256:totallywrong').ok, false);
  assert.equal(checkDigest(`sha256:${'A'.repeat(64)}`).ok, false);
  assert.equal(checkDigest(`md5:${'a'.repeat(32)}`).ok, false);
  assert.equal(checkDigest('nocolon').ok, false);
});

test('v2 paths split from the right so names may contain slashes', () => {
  assert.deepEqual(parseV2Path(''), { kind: 'base' });
  assert.deepEqual(parseV2Path('_catalog'), { kind: 'catalog' });
  assert.deepEqual(parseV2Path('a/b/manifests/latest'), { kind: 'manifest', name: 'a/b', reference: 'latest' });
  assert.deepEqual(parseV2Path('a/manifests/x/blobs/sha256:ab'), { kind: 'blob', name: 'a/manifests/x', digest: 'sha256:ab' });
  assert.deepEqual(parseV2Path('org/app/tags/list'), { kind: 'tags', name: 'org/app' });
  assert.equal(parseV2Path('org/app/blobs/uploads/').kind, 'upload');
  assert.equal(parseV2Path('org/app/whatever').kind, 'unknown');
});

test('single byte ranges: open, closed, suffix, clamped, unsatisfiable, ignored', () => {
  assert.deepEqual(parseRange(undefined, 10), { kind: 'none' });
  assert.deepEqual(parseRange('bytes=0-4', 10), { kind: 'range', range: { start: 0, end: 4 } });
  assert.deepEqual(parseRange('bytes=5-', 10), { kind: 'range', range: { start: 5, end: 9 } });
  assert.deepEqual(parseRange('bytes=-3', 10), { kind: 'range', range: { start: 7, end: 9 } });
  assert.deepEqual(parseRange('bytes=8-100', 10), { kind: 'range', range: { start: 8, end: 9 } });
  assert.equal(parseRange('bytes=10-', 10).kind, 'unsatisfiable');
  assert.equal(parseRange('bytes=5-2', 10).kind, 'unsatisfiable');
  assert.equal(parseRange('bytes=abc', 10).kind, 'unsatisfiable');
  assert.equal(parseRange('bytes=-', 10).kind, 'unsatisfiable');
  assert.deepEqual(parseRange('items=0-1', 10), { kind: 'none' });
  assert.deepEqual(parseRange('bytes=0-1,3-4', 10), { kind: 'none' });
});

test('bearer challenges parse in any order; credentials stay within the registrable domain', () => {
  const c = parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"');
  assert.deepEqual(c, { scheme: 'bearer', realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' });
  assert.equal(parseChallenge('Bearer service="x"'), null);
  assert.equal(parseChallenge('Basic realm="r"')?.scheme, 'basic');
  // Credentials follow origins (see upstream-origin.test.ts): Docker Hub's realm because its
  // realmHosts default names it; another port of the same host no longer passes.
  const credentialsAllowed = (base: URL, realm: URL, realmHosts: string[] = []): boolean => new OriginPolicy(base, realmHosts).credentialsAllowed(realm);
  assert.equal(credentialsAllowed(new URL('https://registry-1.docker.io'), new URL('https://auth.docker.io/token'), ['auth.docker.io']), true);
  assert.equal(credentialsAllowed(new URL('https://registry-1.docker.io'), new URL('https://evil.example.com/token'), ['auth.docker.io']), false);
  assert.equal(credentialsAllowed(new URL('http://127.0.0.1:5000'), new URL('http://127.0.0.1:6000/auth')), false);
  assert.equal(credentialsAllowed(new URL('http://127.0.0.1:5000'), new URL('http://127.0.0.1:5000/auth')), true);
  assert.equal(credentialsAllowed(new URL('http://127.0.0.1:5000'), new URL('http://127.0.0.2:6000/auth')), false);
});
