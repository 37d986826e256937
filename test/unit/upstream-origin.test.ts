// Where an upstream's credentials and requests may go (src/upstream/origin.ts): credentials only
// to the upstream's own origin and its configured realms, redirects and realms only over https or
// the upstream's own scheme, and never to an internal address unless the upstream is internal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LookupFunction } from 'node:net';
import { OriginPolicy, REFUSED_ADDRESS, hostIsInternal, isInternalAddress } from '../../src/upstream/origin.js';
import { ConfigError } from '../../src/config/errors.js';
import { loadConfig } from '../../src/config/load.js';

const u = (s: string): URL => new URL(s);

test('credentials: not to another host that merely shares the last two DNS labels', () => {
  const azure = new OriginPolicy(u('https://myreg.azurecr.io'), []);
  assert.equal(azure.credentialsAllowed(u('https://myreg.azurecr.io/oauth2/token')), true);
  assert.equal(azure.credentialsAllowed(u('https://attacker.azurecr.io/oauth2/token')), false);
  const uk = new OriginPolicy(u('https://registry.example.co.uk'), []);
  assert.equal(uk.credentialsAllowed(u('https://evil.co.uk/token')), false);
  assert.equal(uk.credentialsAllowed(u('https://auth.example.co.uk/token')), false, 'a sibling host is not allowed unless listed');
});

test('credentials: not to another port or scheme of the same host', () => {
  const p = new OriginPolicy(u('https://registry.example.com'), []);
  assert.equal(p.credentialsAllowed(u('https://registry.example.com:8443/token')), false);
  assert.equal(p.credentialsAllowed(u('http://registry.example.com/token')), false);
  assert.equal(p.credentialsAllowed(u('https://registry.example.com:443/token')), true, 'the default port is the same origin');
});

test('credentials: to the realms listed in realmHosts, as host, host:port or origin', () => {
  const p = new OriginPolicy(u('http://10.0.0.5:5000'), ['auth.corp.example', '10.0.0.6:8080', 'https://sso.example.com']);
  assert.equal(p.credentialsAllowed(u('http://auth.corp.example/token')), true, 'a bare host takes the upstream scheme');
  assert.equal(p.credentialsAllowed(u('https://auth.corp.example/token')), false);
  assert.equal(p.credentialsAllowed(u('http://10.0.0.6:8080/auth')), true);
  assert.equal(p.credentialsAllowed(u('http://10.0.0.6:8081/auth')), false);
  assert.equal(p.credentialsAllowed(u('https://sso.example.com/realms/x')), true);
});

test('config: Docker Hub upstreams default realmHosts to auth.docker.io, others to none; bad entries name the key', async () => {
  const cfg = await loadConfig({
    file: null,
    env: {},
    overrides: {
      upstreams: [
        { name: 'docker.io', url: 'https://registry-1.docker.io' },
        { name: 'ghcr.io', url: 'https://ghcr.io' },
        { name: 'corp', url: 'https://registry.corp.example', realmHosts: ['sso.corp.example:8443'] },
      ],
    },
  });
  assert.deepEqual(cfg.upstreams.map((x) => x.realmHosts), [['auth.docker.io'], [], ['sso.corp.example:8443']]);
  const hub = new OriginPolicy(u('https://registry-1.docker.io'), cfg.upstreams[0]?.realmHosts ?? []);
  assert.equal(hub.credentialsAllowed(u('https://auth.docker.io/token')), true);
  assert.equal(hub.credentialsAllowed(u('https://evil.docker.io.example/token')), false);
  await assert.rejects(
    loadConfig({ file: null, env: {}, overrides: { upstreams: [{ name: 'x', url: 'https://x.example', realmHosts: ['https://a.example/token'] }] } }),
    (e: unknown) => e instanceof ConfigError && /upstreams\[0\]\.realmHosts\[0\]|realmHosts\[0\]/.test(e.message),
  );
});

test('internal addresses: loopback, private, link-local, CGNAT, unique-local, mapped; public ones are not', () => {
  for (const ip of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0',
    '::1', '::', 'fe80::1', 'fd00::1', 'fc00::5', '::ffff:127.0.0.1', '::ffff:10.0.0.1', '[::1]', 'fe80::1%eth0', '224.0.0.1']) {
    assert.equal(isInternalAddress(ip), true, ip);
  }
  for (const ip of ['93.184.216.34', '8.8.8.8', '172.32.0.1', '100.128.0.1', '2606:4700::1111', '::ffff:8.8.8.8', 'not-an-ip']) {
    assert.equal(isInternalAddress(ip), false, ip);
  }
  assert.equal(hostIsInternal('localhost'), true);
  assert.equal(hostIsInternal('foo.localhost'), true);
  assert.equal(hostIsInternal('[::1]'), true);
  assert.equal(hostIsInternal('8.8.8.8'), false);
  assert.equal(hostIsInternal('cdn.example.com'), null, 'a name is judged when it resolves');
});

test('redirects and realms: https or the upstream scheme only, never internal for a public upstream', () => {
  const hub = new OriginPolicy(u('https://registry-1.docker.io'), ['auth.docker.io']);
  assert.equal(hub.refusal(u('https://production.cloudflare.docker.com/blob')), null);
  assert.match(hub.refusal(u('http://production.cloudflare.docker.com/blob')) ?? '', /neither https/);
  assert.match(hub.refusal(u('file:///etc/passwd')) ?? '', /neither https/);
  for (const t of ['https://169.254.169.254/latest/meta-data', 'https://127.0.0.1:2375/', 'https://10.0.0.1/', 'https://[::1]/', 'https://localhost/']) {
    assert.match(hub.refusal(u(t)) ?? '', /internal address/, t);
  }
  const lan = new OriginPolicy(u('http://10.0.0.5:5000'), []);
  assert.equal(lan.refusal(u('http://10.0.0.7:9000/bucket/blob')), null, 'a LAN registry may send its blobs to a LAN store');
  assert.equal(lan.refusal(u('https://s3.example.com/blob')), null);
});

/** A resolver answering from a table, in both callback shapes Node uses (`all` or not). */
function fakeLookup(table: Record<string, string>): LookupFunction {
  return ((hostname: string, options: { all?: boolean }, cb: (...a: unknown[]) => void) => {
    const address = table[hostname];
    if (address === undefined) return cb(Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' }));
    const family = address.includes(':') ? 6 : 4;
    if (options.all) cb(null, [{ address, family }]);
    else cb(null, address, family);
  }) as unknown as LookupFunction;
}

function resolve(lookup: LookupFunction, host: string, all: boolean): Promise<unknown> {
  return new Promise((res, rej) => {
    (lookup as unknown as (h: string, o: unknown, cb: (...a: unknown[]) => void) => void)(host, { all }, (err: unknown, address: unknown) => {
      if (err) rej(err as Error);
      else res(address);
    });
  });
}

test('guarded DNS: a public upstream\'s redirect to a name resolving internal is refused at connect time', async () => {
  const table = { 'registry.example': '93.184.216.34', 'cdn.example': '10.0.0.9', 'good-cdn.example': '151.101.1.1' };
  for (const all of [false, true]) {
    const guard = new OriginPolicy(u('https://registry.example'), []).guardLookup(fakeLookup(table));
    await resolve(guard, 'registry.example', all);
    await assert.rejects(resolve(guard, 'cdn.example', all), (e: unknown) => (e as { code?: string }).code === REFUSED_ADDRESS);
    assert.ok(await resolve(guard, 'good-cdn.example', all));
  }
});

test('guarded DNS: once the upstream itself resolves internal, internal targets are allowed', async () => {
  const table = { 'registry.corp': '10.0.0.5', 'minio.corp': '10.0.0.6' };
  const guard = new OriginPolicy(u('https://registry.corp'), []).guardLookup(fakeLookup(table));
  await resolve(guard, 'registry.corp', true);
  assert.ok(await resolve(guard, 'minio.corp', true));
});
