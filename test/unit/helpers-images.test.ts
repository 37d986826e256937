// Protects the test infrastructure itself: deterministic images, real pushes to Distribution,
// and each fault the proxy injects. Every other Berth test trusts these helpers.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createSign, createPublicKey, type KeyObject, createPrivateKey } from 'node:crypto';
import { writeFileSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { request } from 'undici';
import {
  buildImage,
  buildIndex,
  buildLargeBlobImage,
  digestOf,
  fetchBlob,
  fetchManifest,
  MediaTypes,
  pushImage,
  pushIndex,
  seededRandom,
  type BuiltImage,
} from '../helpers/images.js';
import { startDistribution, type Distribution } from '../helpers/registry.js';
import {
  cutAfter,
  dockerHubRateLimit,
  flipByte,
  latency,
  rateLimitHeaders,
  redirectBlobs,
  refuse,
  responseHeaders,
  startBlobCdn,
  startFaultProxy,
  status,
  type BlobCdn,
  type FaultProxy,
} from '../helpers/fault-proxy.js';
import { makeTempDir, removeTempDir } from '../helpers/tmp.js';
import { which } from '../helpers/proc.js';

/** Parses a ustar archive: [{name, type, size, mode}] after verifying each header checksum. */
function listTar(tar: Buffer): { name: string; type: string; size: number; mode: number }[] {
  const out: { name: string; type: string; size: number; mode: number }[] = [];
  let off = 0;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    assert.equal(h.subarray(257, 263).toString('latin1'), 'ustar\0', 'ustar magic');
    const stored = parseInt(h.subarray(148, 156).toString('latin1'), 8);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] as number);
    assert.equal(stored, sum, 'header checksum');
    const name = h.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(h.subarray(124, 136).toString('latin1'), 8);
    const mode = parseInt(h.subarray(100, 108).toString('latin1'), 8);
    assert.equal(parseInt(h.subarray(136, 148).toString('latin1'), 8), 0, 'mtime 0');
    out.push({ name, type: String.fromCharCode(h[156] as number), size, mode });
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

describe('image builder', () => {
  test('the same seed builds byte-identical images and indexes', () => {
    const a = buildImage({ seed: 's1', layers: [100, 5000], format: 'oci' });
    const b = buildImage({ seed: 's1', layers: [100, 5000], format: 'oci' });
    assert.equal(a.manifestDigest, b.manifestDigest);
    assert.ok(a.manifest.equals(b.manifest));
    assert.equal(a.configDigest, b.configDigest);
    assert.deepEqual(
      a.layers.map((l) => l.digest),
      b.layers.map((l) => l.digest),
    );
    const i1 = buildIndex({ seed: 'x', format: 'docker', layers: 2 });
    const i2 = buildIndex({ seed: 'x', format: 'docker', layers: 2 });
    assert.equal(i1.manifestDigest, i2.manifestDigest);
    assert.ok(i1.manifest.equals(i2.manifest));
  });

  test('seed, format and platform each change the digests', () => {
    const base = buildImage({ seed: 's1', layers: 1 });
    assert.notEqual(buildImage({ seed: 's2', layers: 1 }).manifestDigest, base.manifestDigest);
    assert.notEqual(buildImage({ seed: 's2', layers: 1 }).layers[0]?.digest, base.layers[0]?.digest);
    assert.notEqual(buildImage({ seed: 's1', layers: 1, format: 'docker' }).manifestDigest, base.manifestDigest);
    assert.notEqual(
      buildImage({ seed: 's1', layers: 1, platform: { os: 'linux', architecture: 'arm64' } }).configDigest,
      base.configDigest,
    );
    assert.notEqual(buildIndex({ seed: 'a' }).manifestDigest, buildIndex({ seed: 'b' }).manifestDigest);
    const r1 = seededRandom('q');
    const r2 = seededRandom('q');
    assert.deepEqual([r1(), r1(), r1()], [r2(), r2(), r2()]);
  });

  test('manifests, configs and indexes carry the right media types, sizes, diff_ids and platforms', () => {
    for (const format of ['oci', 'docker'] as const) {
      const img = buildImage({ seed: 'mt', layers: [10, 20], format, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
      const m = JSON.parse(img.manifest.toString()) as {
        mediaType: string;
        config: { mediaType: string; digest: string; size: number };
        layers: { mediaType: string; digest: string; size: number }[];
      };
      assert.equal(m.mediaType, format === 'oci' ? MediaTypes.ociManifest : MediaTypes.dockerManifest);
      assert.equal(img.mediaType, m.mediaType);
      assert.equal(m.config.digest, digestOf(img.config));
      assert.equal(m.config.size, img.config.length);
      assert.equal(m.layers.length, 2);
      m.layers.forEach((l, i) => {
        const layer = img.layers[i];
        assert.ok(layer);
        assert.equal(l.digest, digestOf(layer.data));
        assert.equal(l.size, layer.data.length);
        assert.equal(l.mediaType, format === 'oci' ? MediaTypes.ociLayerGzip : MediaTypes.dockerLayerGzip);
      });
      const cfg = JSON.parse(img.config.toString()) as { architecture: string; os: string; variant: string; rootfs: { diff_ids: string[] }; history: unknown[] };
      assert.equal(cfg.architecture, 'arm');
      assert.equal(cfg.variant, 'v7');
      assert.equal(cfg.os, 'linux');
      assert.equal(cfg.history.length, 2);
      assert.deepEqual(
        cfg.rootfs.diff_ids,
        img.layers.map((l) => digestOf(gunzipSync(l.data))),
      );
    }
    const idx = buildIndex({
      seed: 'p',
      format: 'oci',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ],
    });
    const parsed = JSON.parse(idx.manifest.toString()) as { mediaType: string; manifests: { digest: string; mediaType: string; size: number; platform: unknown }[] };
    assert.equal(parsed.mediaType, MediaTypes.ociIndex);
    assert.deepEqual(parsed.manifests[1]?.platform, { architecture: 'arm64', os: 'linux', variant: 'v8' });
    assert.equal(parsed.manifests[0]?.digest, idx.images[0]?.manifestDigest);
    assert.equal(parsed.manifests[0]?.size, idx.images[0]?.manifest.length);
    const list = buildIndex({ seed: 'p', format: 'docker' });
    assert.equal(list.mediaType, MediaTypes.dockerManifestList);
    assert.equal(list.images[0]?.mediaType, MediaTypes.dockerManifest);
  });

  test('layers are gzip (header mtime 0) ustar archives that tar lists', async () => {
    const img = buildImage({ seed: 'tar', layers: [1234] });
    const layer = img.layers[0];
    assert.ok(layer);
    assert.deepEqual([...layer.data.subarray(0, 2)], [0x1f, 0x8b]);
    assert.equal(layer.data.readUInt32LE(4), 0, 'gzip mtime');
    const entries = listTar(gunzipSync(layer.data));
    assert.deepEqual(entries, [
      { name: 'layer0/', type: '5', size: 0, mode: 0o755 },
      { name: 'layer0/random.bin', type: '0', size: 1234, mode: 0o644 },
    ]);
    if (which('tar') !== null) {
      const dir = await makeTempDir('tar');
      try {
        const file = join(dir, 'layer.tar.gz');
        writeFileSync(file, layer.data);
        const r = spawnSync('tar', ['-tzvf', file], { encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /layer0\/\n/);
        assert.match(r.stdout, /root\/root\s+1234 .*layer0\/random\.bin/);
        const x = spawnSync('tar', ['-xzf', file, '-C', dir], { encoding: 'utf8' });
        assert.equal(x.status, 0, x.stderr);
        assert.equal(readFileSync(join(dir, 'layer0/random.bin')).length, 1234);
      } finally {
        await removeTempDir(dir);
      }
    }
    const plain = buildImage({ seed: 'tar', layers: [10], compression: 'none' });
    assert.equal(plain.layers[0]?.mediaType, MediaTypes.ociLayer);
    assert.equal(plain.layers[0]?.digest, plain.layers[0]?.diffId);
  });

  test('large blob images: a plain tar around the exact-size file, or exactly `size` raw bytes', () => {
    const size = 8 * 1024 * 1024 + 3;
    const img = buildLargeBlobImage({ seed: 'big', size });
    const layer = img.layers[0];
    assert.ok(layer);
    assert.equal(layer.mediaType, MediaTypes.ociLayer);
    assert.equal(layer.size, Math.ceil(size / 512) * 512 + 2048);
    assert.deepEqual(
      listTar(layer.data).map((e) => [e.name, e.size]),
      [
        ['big/', 0],
        ['big/random.bin', size],
      ],
    );
    assert.equal(buildLargeBlobImage({ seed: 'big', size }).manifestDigest, img.manifestDigest);
    const raw = buildLargeBlobImage({ seed: 'big', size, raw: true, format: 'docker' });
    assert.equal(raw.layers[0]?.size, size);
    assert.equal(raw.layers[0]?.mediaType, MediaTypes.dockerLayer);
  });
});

describe('push, read back and inject faults against a real Distribution', () => {
  let registry: Distribution;
  let proxy: FaultProxy;
  let cdn: BlobCdn;
  const image = buildImage({ seed: 'rt-image', layers: [4096, 70_000], format: 'oci' });
  const ociIndex = buildIndex({ seed: 'rt-index', format: 'oci', layers: 1 });
  const dockerList = buildIndex({ seed: 'rt-list', format: 'docker', layers: 1 });
  const bigLayer = (img: BuiltImage) => {
    const l = img.layers[1];
    assert.ok(l);
    return l;
  };

  before(async () => {
    registry = await startDistribution({ deleteEnabled: true });
    proxy = await startFaultProxy(registry.url);
    cdn = await startBlobCdn(registry.url);
  });
  after(async () => {
    await cdn?.stop();
    await proxy?.stop();
    await registry?.stop();
  });

  test('pushes an image, an OCI index and a Docker manifest list, and GETs back the same bytes', async () => {
    // Through the proxy: proves upload Locations are rewritten to the proxy and bodies stream.
    assert.equal(await pushImage(proxy.url, 'library/img', 'v1', image), image.manifestDigest);
    assert.equal(await pushIndex(proxy.url, 'library/multi', 'oci', ociIndex), ociIndex.manifestDigest);
    assert.equal(await pushIndex(registry.url, 'library/multi', 'list', dockerList), dockerList.manifestDigest);
    assert.ok(proxy.count({ method: 'PUT', kind: 'upload', status: 201 }) >= 4);

    const cases = [
      { repo: 'library/img', tag: 'v1', want: image, accept: MediaTypes.ociManifest },
      { repo: 'library/multi', tag: 'oci', want: ociIndex, accept: MediaTypes.ociIndex },
      { repo: 'library/multi', tag: 'list', want: dockerList, accept: MediaTypes.dockerManifestList },
    ];
    for (const c of cases) {
      const got = await fetchManifest(registry.url, c.repo, c.tag, { accept: c.accept });
      assert.equal(got.status, 200, `${c.repo}:${c.tag}`);
      assert.ok(got.body.equals(c.want.manifest), `${c.repo}:${c.tag} bytes`);
      assert.equal(got.digest, c.want.manifestDigest);
      assert.equal(got.mediaType, c.want.mediaType);
    }
    for (const child of dockerList.images) {
      const got = await fetchManifest(registry.url, 'library/multi', child.manifestDigest);
      assert.equal(got.status, 200);
      assert.equal(got.mediaType, MediaTypes.dockerManifest);
      assert.ok(got.body.equals(child.manifest));
    }
    const blob = await fetchBlob(registry.url, 'library/img', bigLayer(image).digest);
    assert.equal(blob.status, 200);
    assert.equal(digestOf(blob.body), bigLayer(image).digest);
  });

  test('a second push only HEADs blobs that already exist', async () => {
    proxy.reset();
    await pushImage(proxy.url, 'library/img', 'v1', image);
    assert.equal(proxy.count({ method: 'HEAD', kind: 'blob', status: 200 }), 3);
    assert.equal(proxy.count({ kind: 'upload' }), 0);
    assert.equal(proxy.count({ method: 'PUT', kind: 'manifest' }), 1);
  });

  test('the proxy counts requests by method, kind and path', async () => {
    proxy.reset();
    await fetchManifest(proxy.url, 'library/img', 'v1');
    await fetchManifest(proxy.url, 'library/img', 'v1', { method: 'HEAD' });
    await fetchBlob(proxy.url, 'library/img', image.configDigest);
    await (await request(`${proxy.url}/v2/library/img/tags/list`)).body.dump();
    await (await request(`${proxy.url}/v2/`)).body.dump();
    assert.equal(proxy.counts.count({ kind: 'manifest' }), 2);
    assert.equal(proxy.counts.count({ kind: 'manifest', method: 'GET' }), 1);
    assert.equal(proxy.counts.count({ kind: 'blob', pathIncludes: image.configDigest }), 1);
    assert.equal(proxy.counts.count({ kind: 'tags' }), 1);
    assert.equal(proxy.counts.count({ kind: 'base', status: 200 }), 1);
    assert.equal(proxy.counts.total(), 5);
    assert.equal(proxy.counts.byKind().manifest, 2);
    assert.equal(proxy.requests[0]?.headers.accept?.includes(MediaTypes.ociIndex), true);
  });

  test('cutAfter sends the full Content-Length, then only N bytes, then closes; times limits it', async () => {
    proxy.reset();
    const layer = bigLayer(image);
    proxy.setRules([cutAfter(1000, { match: { kind: 'blob', method: 'GET' }, times: 1 })]);
    const res = await request(`${proxy.url}/v2/library/img/blobs/${layer.digest}`);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-length'], String(layer.size));
    let received = 0;
    await assert.rejects(async () => {
      for await (const chunk of res.body) received += (chunk as Buffer).length;
    });
    assert.equal(received, 1000);
    assert.equal(proxy.requests[0]?.bytesSent, 1000);
    const again = await fetchBlob(proxy.url, 'library/img', layer.digest);
    assert.equal(digestOf(again.body), layer.digest, 'second request passes through');
    assert.equal(proxy.count({ fault: 'cutAfter' }), 1);
    proxy.setRules([]);
  });

  test('flipByte corrupts one byte and keeps the length', async () => {
    const layer = bigLayer(image);
    proxy.setRules([flipByte(65_000, { match: { kind: 'blob' } })]);
    const got = await fetchBlob(proxy.url, 'library/img', layer.digest);
    assert.equal(got.status, 200);
    assert.equal(got.body.length, layer.size);
    assert.notEqual(digestOf(got.body), layer.digest);
    let diffs = 0;
    for (let i = 0; i < layer.size; i++) if (got.body[i] !== layer.data[i]) diffs++;
    assert.equal(diffs, 1);
    assert.equal(got.body[65_000], (layer.data[65_000] as number) ^ 0xff);
    proxy.setRules([]);
  });

  test('dockerHubRateLimit answers like Docker Hub, after N requests and for manifests only', async () => {
    proxy.reset();
    proxy.setRules([dockerHubRateLimit({ retryAfter: 30 }, { match: { kind: 'manifest' }, after: 1 })]);
    assert.equal((await fetchManifest(proxy.url, 'library/img', 'v1')).status, 200);
    const limited = await fetchManifest(proxy.url, 'library/img', 'v1');
    assert.equal(limited.status, 429);
    assert.equal(limited.headers['ratelimit-limit'], '100;w=21600');
    assert.equal(limited.headers['ratelimit-remaining'], '0;w=21600');
    assert.equal(limited.headers['docker-ratelimit-source'], '127.0.0.1');
    assert.equal(limited.headers['retry-after'], '30');
    assert.deepEqual(JSON.parse(limited.body.toString()), {
      errors: [
        {
          code: 'TOOMANYREQUESTS',
          message:
            'You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limits',
        },
      ],
    });
    assert.equal((await fetchBlob(proxy.url, 'library/img', image.configDigest)).status, 200);
    assert.equal(proxy.count({ status: 429 }), 1);
    proxy.setRules([status(503, { body: { errors: [{ code: 'UNAVAILABLE' }] } }, { times: 1 })]);
    const unavailable = await fetchManifest(proxy.url, 'library/img', 'v1');
    assert.equal(unavailable.status, 503);
    assert.equal(unavailable.mediaType, 'application/json');
    proxy.setRules([]);
  });

  test('rateLimitHeaders decorate passed-through responses; responseHeaders set and remove', async () => {
    proxy.setRules([
      rateLimitHeaders({ limit: 10, remaining: (n) => 10 - n }, { match: { kind: 'manifest' } }),
      responseHeaders({ 'docker-content-digest': null, 'x-extra': 'yes' }, { match: { kind: 'manifest' } }),
    ]);
    const first = await fetchManifest(proxy.url, 'library/img', 'v1');
    const second = await fetchManifest(proxy.url, 'library/img', 'v1');
    assert.equal(first.status, 200);
    assert.ok(first.body.equals(image.manifest));
    assert.equal(first.headers['ratelimit-remaining'], '9;w=21600');
    assert.equal(second.headers['ratelimit-remaining'], '8;w=21600');
    assert.equal(second.headers['ratelimit-limit'], '10;w=21600');
    assert.equal(first.digest, undefined);
    assert.equal(first.headers['x-extra'], 'yes');
    proxy.setRules([]);
  });

  test('refuse drops the connection without a response; latency delays', async () => {
    proxy.reset();
    proxy.setRules([refuse({ match: { kind: 'manifest' }, times: 1 }), latency(150, { match: { kind: 'blob' } })]);
    await assert.rejects(fetchManifest(proxy.url, 'library/img', 'v1'));
    assert.equal(proxy.requests[0]?.status, 0);
    assert.equal((await fetchManifest(proxy.url, 'library/img', 'v1')).status, 200);
    const t0 = Date.now();
    assert.equal((await fetchBlob(proxy.url, 'library/img', image.configDigest)).status, 200);
    assert.ok(Date.now() - t0 >= 140);
    proxy.setRules([]);
  });

  test('redirectBlobs sends blob GETs to a CDN that refuses Authorization headers', async () => {
    proxy.reset();
    cdn.reset();
    const layer = bigLayer(image);
    proxy.setRules([redirectBlobs(cdn.url)]);
    const auth = { authorization: 'Bearer not-for-the-cdn' };
    const redirected = await fetchBlob(proxy.url, 'library/img', layer.digest, { headers: auth });
    assert.equal(redirected.status, 307);
    const location = String(redirected.headers['location']);
    assert.ok(location.startsWith(`${cdn.url}/cdn/library/img/blobs/${layer.digest}?`), location);
    const head = await request(`${proxy.url}/v2/library/img/blobs/${layer.digest}`, { method: 'HEAD' });
    await head.body.dump();
    assert.equal(head.statusCode, 200, 'HEAD is not redirected');

    // A well-behaved client drops Authorization on the cross-host hop.
    const good = await request(location);
    const body = Buffer.from(await good.body.arrayBuffer());
    assert.equal(good.statusCode, 200);
    assert.equal(digestOf(body), layer.digest);
    assert.equal(cdn.authorizationRejections, 0);
    assert.equal(cdn.requests[0]?.authorization, undefined);

    const ranged = await request(location, { headers: { range: 'bytes=10-19' } });
    assert.equal(ranged.statusCode, 206);
    assert.ok(Buffer.from(await ranged.body.arrayBuffer()).equals(layer.data.subarray(10, 20)));

    const leaky = await request(location, { headers: auth });
    await leaky.body.dump();
    assert.equal(leaky.statusCode, 400);
    assert.equal(cdn.authorizationRejections, 1);
    assert.equal(cdn.requests.at(-1)?.authorization, auth.authorization);
    proxy.setRules([]);
  });

  test('a Distribution pull-through cache in front of the proxy fills through it', async () => {
    proxy.reset();
    const cache = await startDistribution({ proxyRemoteUrl: proxy.url });
    try {
      const got = await fetchManifest(cache.url, 'library/img', 'v1', { accept: MediaTypes.ociManifest });
      assert.equal(got.status, 200);
      assert.equal(got.digest, image.manifestDigest);
      assert.ok(proxy.count({ kind: 'manifest' }) >= 1);
    } finally {
      await cache.stop();
    }
  });

  test('an unreachable target answers 502', async () => {
    const dead = await startFaultProxy('http://127.0.0.1:1');
    try {
      const got = await fetchManifest(dead.url, 'library/img', 'v1');
      assert.equal(got.status, 502);
      assert.equal(dead.count({ status: 502 }), 1);
    } finally {
      await dead.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Token auth through the proxy: an ES256 JWT with an x5c chain that Distribution 2.8 accepts.

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64url');
}

function mintToken(key: KeyObject, certDer: Buffer, claims: Record<string, unknown>): string {
  const head = b64url(JSON.stringify({ typ: 'JWT', alg: 'ES256', x5c: [certDer.toString('base64')] }));
  const body = b64url(JSON.stringify(claims));
  const signer = createSign('SHA256');
  signer.update(`${head}.${body}`);
  const sig = signer.sign({ key, dsaEncoding: 'ieee-p1363' });
  return `${head}.${body}.${b64url(sig)}`;
}

describe('token auth passes through the fault proxy', { skip: which('openssl') === null ? 'openssl not installed' : false }, () => {
  let dir: string;
  let tokenServer: Server;
  let registry: Distribution;
  let proxy: FaultProxy;
  let realm: string;

  before(async () => {
    dir = await makeTempDir('auth');
    const r = spawnSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=berth-test-token'],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const key = createPrivateKey(readFileSync(join(dir, 'key.pem')));
    const certPem = readFileSync(join(dir, 'cert.pem'), 'utf8');
    const certDer = Buffer.from(certPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    assert.ok(createPublicKey(certPem));
    tokenServer = createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      const scope = u.searchParams.get('scope');
      const access = scope === null ? [] : [{ type: 'repository', name: scope.split(':')[1], actions: ['pull', 'push'] }];
      const now = Math.floor(Date.now() / 1000);
      const token = mintToken(key, certDer, { iss: 'berth-test', sub: 'tester', aud: 'berth-registry', exp: now + 300, nbf: now - 10, iat: now, jti: String(now), access });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token, expires_in: 300 }));
    });
    await new Promise<void>((resolve) => tokenServer.listen(0, '127.0.0.1', resolve));
    realm = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/token`;
    registry = await startDistribution({
      auth: { realm, service: 'berth-registry', issuer: 'berth-test', rootCertBundle: join(dir, 'cert.pem') },
    });
    proxy = await startFaultProxy(registry.url);
  });
  after(async () => {
    await proxy?.stop();
    await registry?.stop();
    await new Promise<void>((resolve) => (tokenServer ? tokenServer.close(() => resolve()) : resolve()));
    if (dir) await removeTempDir(dir);
  });

  test('the challenge names the target realm and a minted token pushes and pulls through the proxy', async () => {
    const challenge = await fetchManifest(proxy.url, 'library/auth', 'v1');
    assert.equal(challenge.status, 401);
    const www = String(challenge.headers['www-authenticate']);
    assert.match(www, new RegExp(`^Bearer realm="${realm}",service="berth-registry",scope="repository:library/auth:pull"`));
    const tokenRes = await request(`${realm}?service=berth-registry&scope=repository:library/auth:pull,push`);
    const { token } = (await tokenRes.body.json()) as { token: string };
    const headers = { authorization: `Bearer ${token}` };
    const img = buildImage({ seed: 'auth', layers: 1, format: 'docker' });
    await pushImage(proxy.url, 'library/auth', 'v1', img, { headers });
    const got = await fetchManifest(proxy.url, 'library/auth', 'v1', { headers });
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(img.manifest));
    assert.equal(proxy.count({ status: 401 }), 1);
  });
});
