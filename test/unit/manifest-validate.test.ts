// Manifest validation before storage (issue 18 item 9): bytes an upstream calls a manifest are
// stored only when they parse as a manifest of the declared media type, with valid descriptors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { validateManifest } from '../../src/oci/manifest-validate.js';
import { MediaTypes } from '../../src/oci/media.js';

const D = (c: string): string => `sha256:${c.repeat(64)}`;
const desc = (c: string, extra: Record<string, unknown> = {}) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D(c), size: 10, ...extra });
const ociImage = { schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: desc('a', { mediaType: 'application/vnd.oci.image.config.v1+json' }), layers: [desc('b')] };
const ociIndex = { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [desc('c', { mediaType: MediaTypes.ociManifest, platform: { os: 'linux', architecture: 'amd64' } })] };
const dockerImage = { ...ociImage, mediaType: MediaTypes.dockerManifest };
const dockerList = { ...ociIndex, mediaType: MediaTypes.dockerList };

const bytes = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

function refused(v: unknown, declared: string | null, reason: RegExp): void {
  const got = validateManifest(Buffer.isBuffer(v) ? v : bytes(v), declared);
  assert.equal(got.ok, false, `expected a refusal for ${declared}`);
  if (!got.ok) assert.match(got.reason, reason);
}

test('valid manifests of each type are accepted with the declared media type', () => {
  assert.deepEqual(validateManifest(bytes(ociImage), MediaTypes.ociManifest), { ok: true, mediaType: MediaTypes.ociManifest });
  assert.deepEqual(validateManifest(bytes(ociIndex), `${MediaTypes.ociIndex}; charset=utf-8`), { ok: true, mediaType: MediaTypes.ociIndex });
  assert.deepEqual(validateManifest(bytes(dockerImage), MediaTypes.dockerManifest), { ok: true, mediaType: MediaTypes.dockerManifest });
  assert.deepEqual(validateManifest(bytes(dockerList), MediaTypes.dockerList), { ok: true, mediaType: MediaTypes.dockerList });
  // OCI allows leaving mediaType out of the body; an artifact may have no layers.
  const { mediaType: _m, ...bare } = ociImage;
  assert.deepEqual(validateManifest(bytes({ ...bare, layers: [] }), MediaTypes.ociManifest), { ok: true, mediaType: MediaTypes.ociManifest });
});

test('without a manifest Content-Type the body decides: its mediaType, else its shape', () => {
  assert.deepEqual(validateManifest(bytes(dockerImage), null), { ok: true, mediaType: MediaTypes.dockerManifest });
  assert.deepEqual(validateManifest(bytes(dockerList), 'application/json'), { ok: true, mediaType: MediaTypes.dockerList });
  const { mediaType: _a, ...bareImage } = ociImage;
  const { mediaType: _b, ...bareIndex } = ociIndex;
  assert.deepEqual(validateManifest(bytes(bareImage), null), { ok: true, mediaType: MediaTypes.ociManifest });
  assert.deepEqual(validateManifest(bytes(bareIndex), 'text/plain'), { ok: true, mediaType: MediaTypes.ociIndex });
  refused({ schemaVersion: 2, hello: 'world' }, null, /neither an image manifest nor an index/);
  refused({ ...ociImage, mediaType: 'application/vnd.example+json' }, null, /not a manifest type/);
});

test('a gzip body, non-JSON, or JSON that is not an object is refused', () => {
  refused(gzipSync(bytes(ociImage)), MediaTypes.ociManifest, /not JSON/);
  refused(Buffer.from('<html>502 Bad Gateway</html>'), MediaTypes.ociManifest, /not JSON/);
  refused(Buffer.from('[1,2,3]'), MediaTypes.ociManifest, /not a JSON object/);
  refused(Buffer.from('null'), null, /not a JSON object/);
  refused(Buffer.from(''), null, /not JSON/);
});

test('a body of another type than declared is refused', () => {
  refused(ociIndex, MediaTypes.ociManifest, /declared .*image\.manifest.*says mediaType .*image\.index/);
  refused(dockerImage, MediaTypes.ociManifest, /declared/);
  const { mediaType: _m, ...bareIndex } = ociIndex;
  refused(bareIndex, MediaTypes.ociManifest, /image manifest has no manifests list|config/);
  const { mediaType: _n, ...bareImage } = ociImage;
  refused(bareImage, MediaTypes.ociIndex, /an index has no config or layers/);
  refused(ociImage, 'application/gzip', /"application\/gzip" is not a manifest type/);
  refused(ociImage, 'application/vnd.docker.distribution.manifest.v1+prettyjws', /not a manifest type/);
});

test('schemaVersion must be 2, and Docker types must name their mediaType', () => {
  refused({ ...ociImage, schemaVersion: 1 }, MediaTypes.ociManifest, /schemaVersion is not 2/);
  refused({ ...ociImage, schemaVersion: '2' }, MediaTypes.ociManifest, /schemaVersion is not 2/);
  const { schemaVersion: _s, ...noVersion } = ociImage;
  refused(noVersion, MediaTypes.ociManifest, /schemaVersion/);
  const { mediaType: _m, ...bare } = dockerImage;
  refused(bare, MediaTypes.dockerManifest, /must name its mediaType/);
  refused({ ...ociImage, mediaType: 7 }, MediaTypes.ociManifest, /mediaType is not a string/);
});

test('descriptors need a valid digest and a non-negative integer size', () => {
  refused({ ...ociImage, config: undefined }, MediaTypes.ociManifest, /config is not an object/);
  refused({ ...ociImage, layers: 'x' }, MediaTypes.ociManifest, /layers is not an array/);
  refused({ ...ociImage, layers: [desc('b'), null] }, MediaTypes.ociManifest, /layers\[1\] is not an object/);
  refused({ ...ociImage, layers: [{ ...desc('b'), digest: 'sha256:nothex' }] }, MediaTypes.ociManifest, /layers\[0\]\.digest/);
  refused({ ...ociImage, layers: [{ ...desc('b'), digest: `md5:${'a'.repeat(32)}` }] }, MediaTypes.ociManifest, /layers\[0\]\.digest: unsupported digest algorithm/);
  refused({ ...ociImage, layers: [{ mediaType: 'x', size: 1 }] }, MediaTypes.ociManifest, /layers\[0\]\.digest is missing/);
  for (const size of [-1, 1.5, '10', null, Number.MAX_SAFE_INTEGER + 2]) {
    refused({ ...ociImage, layers: [{ ...desc('b'), size }] }, MediaTypes.ociManifest, /layers\[0\]\.size/);
  }
  refused({ ...ociImage, config: { ...desc('a'), mediaType: 3 } }, MediaTypes.ociManifest, /config\.mediaType is not a string/);
  refused({ ...ociIndex, manifests: [{ ...desc('c'), digest: D('C') }] }, MediaTypes.ociIndex, /manifests\[0\]\.digest/);
  refused({ ...ociImage, subject: { digest: D('d') } }, MediaTypes.ociManifest, /subject\.size/);
});
