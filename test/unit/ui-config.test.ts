// The `ui` config section (issue 15) and the UI's manifest classification: defaults, the
// environment, validation that names the key, secrets masked when printed; and every kind of
// manifest a registry holds (image, index, Docker list, BuildKit cache, artifact) told apart.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/config/errors.js';
import { maskSecrets, parseConfig } from '../../src/config/load.js';
import { BUILDKIT_CACHE_CONFIG, configView, manifestShape, pullCommands } from '../../src/ui/manifest-view.js';

const SECRET = 's'.repeat(32);

function refusedAt(key: string, message: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.key, key);
    assert.match(err.message, message);
    return true;
  };
}

describe('ui config', () => {
  it('defaults: the UI on, no login', () => {
    const cfg = parseConfig({ env: {} });
    assert.deepEqual(cfg.ui, {
      enabled: true,
      oidc: { issuer: null, clientId: null, clientSecret: null, scopes: ['openid', 'profile', 'email'], rolesClaim: 'realm_access.roles' },
      sessionSecret: null,
    });
  });

  it('reads BERTH_UI_* variables', () => {
    const cfg = parseConfig({
      env: {
        BERTH_UI_ENABLED: 'false',
        BERTH_UI_OIDC_ISSUER: 'https://kc.example.com/realms/ci/',
        BERTH_UI_OIDC_CLIENT_ID: 'berth-ui',
        BERTH_UI_OIDC_CLIENTSECRET: 'cs',
        BERTH_UI_SESSION_SECRET: SECRET,
      },
    });
    assert.equal(cfg.ui.enabled, false);
    assert.equal(cfg.ui.oidc.issuer, 'https://kc.example.com/realms/ci', 'trailing slash dropped');
    assert.equal(cfg.ui.oidc.clientId, 'berth-ui');
    assert.equal(cfg.ui.sessionSecret, SECRET);
  });

  it('refuses a login without a session secret, or with a short one', () => {
    const oidc = { issuer: 'https://kc.example.com/realms/ci', clientId: 'berth-ui' };
    assert.throws(() => parseConfig({ overrides: { ui: { oidc } } }), refusedAt('ui.sessionSecret', /required when ui\.oidc is set/));
    assert.throws(() => parseConfig({ overrides: { ui: { oidc, sessionSecret: 'short' } } }), refusedAt('ui.sessionSecret', /at least 32 characters, got 5/));
    assert.throws(() => parseConfig({ overrides: { ui: { oidc: { issuer: 'https://kc.example.com/realms/ci' }, sessionSecret: SECRET } } }), refusedAt('ui.oidc.clientId', /required/));
    assert.throws(() => parseConfig({ overrides: { ui: { oidc: { clientId: 'x' } } } }), refusedAt('ui.oidc.issuer', /required/));
    assert.throws(() => parseConfig({ overrides: { ui: { oidc: { ...oidc, issuer: 'kc.example.com' }, sessionSecret: SECRET } } }), refusedAt('ui.oidc.issuer', /http/));
    assert.throws(() => parseConfig({ overrides: { ui: { oidc: { ...oidc, scopes: ['profile'] }, sessionSecret: SECRET } } }), refusedAt('ui.oidc.scopes', /openid/));
    assert.throws(() => parseConfig({ overrides: { ui: { oidc: { ...oidc, rolesClaim: 'a..b' }, sessionSecret: SECRET } } }), refusedAt('ui.oidc.rolesClaim', /dotted/));
    assert.throws(() => parseConfig({ overrides: { ui: { oidk: {} } } }), /ui\.oidk/);
  });

  it('masks the client secret and the session secret when printed', () => {
    const cfg = parseConfig({ overrides: { ui: { oidc: { issuer: 'https://kc.example.com/realms/ci', clientId: 'berth-ui', clientSecret: 'very-secret' }, sessionSecret: SECRET } } });
    const printed = JSON.stringify(maskSecrets(cfg));
    assert.doesNotMatch(printed, /very-secret/);
    assert.doesNotMatch(printed, new RegExp(SECRET));
    assert.match(printed, /"clientId":"berth-ui"/);
  });
});

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const d = (n: number): string => `sha256:${String(n).repeat(64).slice(0, 64)}`;

describe('manifest kinds', () => {
  it('an OCI image and a Docker image', () => {
    const oci = manifestShape(json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d(1), size: 100 }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d(2), size: 1000 }] }), null);
    assert.equal(oci.kind, 'image');
    assert.equal(oci.size, 1100);
    assert.equal(oci.layers.length, 1);
    const docker = manifestShape(json({ schemaVersion: 2, config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: d(1), size: 1 }, layers: [] }), 'application/vnd.docker.distribution.manifest.v2+json');
    assert.equal(docker.kind, 'image');
  });

  it('an index with platforms and an attestation, and a Docker list', () => {
    const index = manifestShape(json({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d(3), size: 500, platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d(4), size: 501, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d(5), size: 50, platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } },
      ],
    }), null);
    assert.equal(index.kind, 'index');
    assert.deepEqual(index.platforms.map((p) => p.platform), ['linux/amd64', 'linux/arm64/v8', null]);
    assert.equal(index.platforms[2]?.annotation, 'attestation-manifest');
    const list = manifestShape(json({ schemaVersion: 2, manifests: [{ digest: d(3), size: 1, platform: { os: 'linux', architecture: 'amd64' } }] }), 'application/vnd.docker.distribution.manifest.list.v2+json');
    assert.equal(list.kind, 'docker-list');
  });

  it('BuildKit caches, as an index and as an image manifest', () => {
    const asIndex = manifestShape(json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d(6), size: 9 }, { mediaType: BUILDKIT_CACHE_CONFIG, digest: d(7), size: 9 }] }), null);
    assert.equal(asIndex.kind, 'buildkit-cache');
    const asImage = manifestShape(json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: BUILDKIT_CACHE_CONFIG, digest: d(7), size: 9 }, layers: [] }), null);
    assert.equal(asImage.kind, 'buildkit-cache');
  });

  it('artifacts: artifactType, or a config that is no image config', () => {
    assert.equal(manifestShape(json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: 'application/vnd.example.sbom', config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: d(8), size: 2 }, layers: [] }), null).kind, 'artifact');
    assert.equal(manifestShape(json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.cncf.helm.config.v1+json', digest: d(8), size: 2 }, layers: [] }), null).kind, 'artifact');
  });

  it('malformed bytes are unknown, not an error', () => {
    assert.equal(manifestShape(Buffer.from('{nope'), null).kind, 'unknown');
  });

  it('reads the config fields an operator looks for', () => {
    const v = configView(json({ created: '2026-01-01T00:00:00Z', os: 'linux', architecture: 'amd64', config: { Env: ['PATH=/bin'], Entrypoint: ['/app'], Labels: { a: 'b' } }, history: [{ created_by: 'RUN make', empty_layer: false }, { created_by: 'ENV X=1', empty_layer: true }] }));
    assert.deepEqual(v?.env, ['PATH=/bin']);
    assert.deepEqual(v?.entrypoint, ['/app']);
    assert.deepEqual(v?.labels, { a: 'b' });
    assert.deepEqual(v?.history.map((h) => [h.createdBy, h.emptyLayer]), [['RUN make', false], ['ENV X=1', true]]);
    assert.equal(configView(Buffer.from('[]')), null);
  });

  it('pull commands go through this mirror', () => {
    const hub = pullCommands('mirror.example.com', false, 'library/alpine', '3.20');
    assert.equal(hub['docker'], 'docker pull mirror.example.com/library/alpine:3.20');
    assert.equal(hub['podman'], 'podman pull mirror.example.com/library/alpine:3.20');
    assert.equal(hub['containerd'], 'ctr images pull mirror.example.com/library/alpine:3.20');
    const ghcr = pullCommands('127.0.0.1:5000', true, 'ghcr.io/org/app', d(9));
    assert.equal(ghcr['docker'], `docker pull 127.0.0.1:5000/ghcr.io/org/app@${d(9)}`);
    assert.equal(ghcr['containerd'], `ctr images pull --plain-http 127.0.0.1:5000/ghcr.io/org/app@${d(9)}`);
  });
});
