// The S3 driver's configuration: storage.s3 keys and defaults, the checks that name the missing
// key, BERTH_STORAGE_S3_* and Distribution's REGISTRY_STORAGE(_S3_*) variables, and the secret
// key masked wherever the config is printed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/config/errors.js';
import { defaultConfig, maskSecrets, parseConfig } from '../../src/config/load.js';
import type { BerthConfig } from '../../src/config/types.js';

function isConfigError(key: string, message: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.key, key);
    assert.match(err.message, message);
    return true;
  };
}

const S3_ENV = {
  BERTH_STORAGE_DRIVER: 's3',
  BERTH_STORAGE_S3_ENDPOINT: 'http://rgw.internal:7480/',
  BERTH_STORAGE_S3_BUCKET: 'berth',
};

describe('storage.s3', () => {
  it('defaults: filesystem driver, us-east-1, path style, no prefix, redirect off (10m, 1MiB)', () => {
    const s = defaultConfig().storage;
    assert.equal(s.driver, 'filesystem');
    assert.deepEqual(s.s3, {
      endpoint: null, region: 'us-east-1', bucket: null, prefix: '', forcePathStyle: true, accessKeyId: null, secretAccessKey: null,
      redirect: { enabled: false, publicEndpoint: null, ttl: 600_000, minSize: 1024 * 1024 },
    });
  });

  it('driver s3 needs an endpoint and a bucket, each named when missing', () => {
    assert.throws(() => parseConfig({ env: { BERTH_STORAGE_DRIVER: 's3', BERTH_STORAGE_S3_BUCKET: 'b' } }), isConfigError('storage.s3.endpoint', /required when storage.driver is s3/));
    assert.throws(() => parseConfig({ env: { BERTH_STORAGE_DRIVER: 's3', BERTH_STORAGE_S3_ENDPOINT: 'http://rgw:7480' } }), isConfigError('storage.s3.bucket', /required when storage.driver is s3/));
    assert.throws(() => parseConfig({ env: { ...S3_ENV, BERTH_STORAGE_S3_ACCESS_KEY_ID: 'AK' } }), isConfigError('storage.s3.secretAccessKey', /required when storage.s3.accessKeyId is set/));
    assert.throws(() => parseConfig({ env: { ...S3_ENV, BERTH_STORAGE_S3_ENDPOINT: 'rgw:7480' } }), isConfigError('storage.s3.endpoint', /an http:\/\/ or https:\/\/ URL/));
    assert.throws(() => parseConfig({ env: { ...S3_ENV, BERTH_STORAGE_S3_REDIRECT_TTL: '8d' } }), isConfigError('storage.s3.redirect.ttl', /at most 7d/));
    assert.throws(() => parseConfig({ env: { BERTH_STORAGE_DRIVER: 'gcs' } }), isConfigError('storage.driver', /filesystem, s3|s3/));
  });

  it('reads BERTH_STORAGE_S3_* variables, trailing slash off the endpoint', () => {
    const cfg = parseConfig({
      env: { ...S3_ENV, BERTH_STORAGE_S3_PREFIX: 'mirror', BERTH_STORAGE_S3_REDIRECT_ENABLED: 'true', BERTH_STORAGE_S3_REDIRECT_MIN_SIZE: '8MiB' },
    });
    assert.equal(cfg.storage.driver, 's3');
    assert.equal(cfg.storage.s3.endpoint, 'http://rgw.internal:7480');
    assert.equal(cfg.storage.s3.prefix, 'mirror');
    assert.equal(cfg.storage.s3.redirect.enabled, true);
    assert.equal(cfg.storage.s3.redirect.minSize, 8 * 1024 * 1024);
  });

  it("maps Distribution's REGISTRY_STORAGE=s3 and REGISTRY_STORAGE_S3_* names", () => {
    const cfg = parseConfig({
      env: {
        REGISTRY_STORAGE: 's3',
        REGISTRY_STORAGE_S3_REGIONENDPOINT: 'http://rgw:7480',
        REGISTRY_STORAGE_S3_REGION: 'default',
        REGISTRY_STORAGE_S3_BUCKET: 'registry',
        REGISTRY_STORAGE_S3_ACCESSKEY: 'AKIDEXAMPLE',
        REGISTRY_STORAGE_S3_SECRETKEY: 'wJalrXUtnFEMI',
        REGISTRY_STORAGE_S3_ROOTDIRECTORY: '/registry',
      },
    });
    const s3 = cfg.storage.s3;
    assert.equal(cfg.storage.driver, 's3');
    assert.deepEqual(
      { endpoint: s3.endpoint, region: s3.region, bucket: s3.bucket, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, prefix: s3.prefix },
      { endpoint: 'http://rgw:7480', region: 'default', bucket: 'registry', accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI', prefix: '/registry' },
    );
    assert.throws(() => parseConfig({ env: { REGISTRY_STORAGE: 'azure' } }), isConfigError('REGISTRY_STORAGE', /not supported by Berth \(supported: filesystem, s3\)/));
    assert.equal(parseConfig({ env: { ...S3_ENV, REGISTRY_STORAGE: 'filesystem', BERTH_STORAGE_DRIVER: 's3' } }).storage.driver, 's3', 'BERTH_* wins');
  });

  it('masks the secret key when the config is printed', () => {
    const cfg = parseConfig({ env: { ...S3_ENV, BERTH_STORAGE_S3_ACCESS_KEY_ID: 'AKIDEXAMPLE', BERTH_STORAGE_S3_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI' } });
    const masked = maskSecrets(cfg) as BerthConfig;
    assert.equal(masked.storage.s3.secretAccessKey, '***');
    assert.doesNotMatch(JSON.stringify(masked), /wJalrXUtnFEMI/);
  });
});
