// The replicas' config: cluster.* from YAML and BERTH_CLUSTER_* variables, what is refused at
// load (an advertised replica without its secret or Redis), and the secret masked when printed.
// No servers: parseConfig is loadConfig without the disk checks; `berth cluster rebuild`'s refusals
// run the CLI.
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/config/errors.js';
import { maskSecrets, parseConfig } from '../../src/config/load.js';

const SECRET = 'a-secret-of-24-characters';

function refused(key: string, message: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.key, key);
    assert.match(err.message, message);
    return true;
  };
}

test('cluster.* defaults to null: a single process coordinates nothing', () => {
  assert.deepEqual(parseConfig({}).cluster, { replicaId: null, advertiseUrl: null, secret: null });
});

test('cluster.* comes from YAML and from BERTH_CLUSTER_* variables, the variables winning', () => {
  const cfg = parseConfig({
    text: `redis: { url: "redis://r:6379" }\ncluster: { replicaId: a-1, secret: "${SECRET}", advertiseUrl: "http://10.0.0.1:5000/" }\n`,
    env: { BERTH_CLUSTER_ADVERTISE_URL: 'http://10.0.0.7:5000', BERTH_CLUSTER_REPLICA_ID: 'pod-7' },
  });
  assert.deepEqual(cfg.cluster, { replicaId: 'pod-7', advertiseUrl: 'http://10.0.0.7:5000', secret: SECRET });
});

test('an advertised replica needs cluster.secret and redis.url; bad values name their key', () => {
  assert.throws(() => parseConfig({ text: `redis: { url: "redis://r:6379" }\ncluster: { advertiseUrl: "http://a:5000" }\n` }),
    refused('cluster.secret', /required when cluster.advertiseUrl is set/));
  assert.throws(() => parseConfig({ text: `cluster: { advertiseUrl: "http://a:5000", secret: "${SECRET}" }\n` }),
    refused('redis.url', /required when cluster.advertiseUrl is set/));
  assert.throws(() => parseConfig({ text: `redis: { url: "redis://r:6379" }\ncluster: { advertiseUrl: "a:5000", secret: "${SECRET}" }\n` }),
    refused('cluster.advertiseUrl', /http/));
  assert.throws(() => parseConfig({ text: 'cluster: { secret: short }\n' }), refused('cluster.secret', /at least 16/));
  assert.throws(() => parseConfig({ text: 'cluster: { replicaId: "a b" }\n' }), refused('cluster.replicaId', /letters/));
});

test('cluster.secret is masked when the config is printed', () => {
  const cfg = parseConfig({ text: `redis: { url: "redis://:pw@r:6379" }\ncluster: { secret: "${SECRET}", advertiseUrl: "http://a:5000" }\n` });
  const printed = JSON.stringify(maskSecrets(cfg));
  assert.ok(!printed.includes(SECRET), 'the secret is not printed');
  assert.match(printed, /"secret":"\*\*\*"/);
  assert.match(printed, /"advertiseUrl":"http:\/\/a:5000"/);
});

test('berth cluster rebuild without redis.url says there is nothing to rebuild (exit 78); an unknown flag is a usage error', () => {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BERTH_') && !k.startsWith('REGISTRY_')));
  const none = spawnSync(process.execPath, ['dist/src/cli.js', 'cluster', 'rebuild'], { env, encoding: 'utf8' });
  assert.equal(none.status, 78, none.stderr);
  assert.match(none.stderr, /redis\.url is not set/);
  const bad = spawnSync(process.execPath, ['dist/src/cli.js', 'cluster', 'rebuild', '--force'], { env, encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown option "--force"/);
  const help = spawnSync(process.execPath, ['dist/src/cli.js', 'cluster', 'rebuild', '--help'], { env, encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--dry-run/);
});
