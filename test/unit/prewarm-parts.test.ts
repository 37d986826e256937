// The small decisions pre-warm rests on: how a ref is read and routed, what a tag pattern and a
// platform filter select, job ids, retry delays, and how each failure is classed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Router } from '../../src/registry/routing.js';
import {
  PrewarmDeferred, PrewarmPermanentError, PrewarmTransientError, classify, parseImageRef, parsePlatform, tagPattern, wantedPlatform,
} from '../../src/registry/prewarm.js';
import { entryIdFor, runJobId, scheduledJobId, schedulerIdFor, entryIdOfScheduler } from '../../src/queue/jobs.js';
import { retryDelay } from '../../src/queue/transport.js';
import { nextCronRun } from '../../src/queue/cron.js';
import { UpstreamError } from '../../src/upstream/errors.js';
import { registryError } from '../../src/errors.js';
import type { UpstreamConfig } from '../../src/config/types.js';
import { ConfigError } from '../../src/config/errors.js';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { createPrewarmService } from '../../src/queue/index.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';

function upstream(name: string, extra: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return {
    name, url: `https://${name}`, aliases: [], username: null, password: null, tagTtl: 600_000, staleWhileRevalidate: 0,
    maxFails: 5, failTimeout: 30_000, maxConnections: 8, notFoundTtl: 0, connectTimeout: 1000, headersTimeout: 1000,
    bodyTimeout: 1000, libraryPrefix: name === 'docker.io', realmHosts: [], maxBodySize: 4 << 20, maxTokenSize: 64 << 10,
    maxTags: 100_000, requestDeadline: 60_000, ...extra,
  };
}

const router = new Router([upstream('docker.io', { aliases: ['index.docker.io'] }), upstream('ghcr.io')], 'docker.io');

describe('reading a pre-warm ref', () => {
  it('routes like a client request: default upstream, library/ prefix, host prefixes and aliases', () => {
    const a = parseImageRef('alpine:3.20', router);
    assert.equal(a.routed.upstream.name, 'docker.io');
    assert.equal(a.routed.name, 'library/alpine');
    assert.equal(a.tag, '3.20');
    assert.equal(a.digest, null);
    const b = parseImageRef('docker.io/library/php:8.3-fpm-alpine3.19', router);
    assert.equal(b.routed.name, 'library/php');
    assert.equal(b.tag, '8.3-fpm-alpine3.19');
    const c = parseImageRef('index.docker.io/moby/buildkit', router);
    assert.equal(c.routed.name, 'moby/buildkit');
    assert.equal(c.tag, null, 'no tag: the run uses latest');
    const d = parseImageRef('ghcr.io/org/app@sha256:' + 'a'.repeat(64), router);
    assert.equal(d.routed.upstream.name, 'ghcr.io');
    assert.equal(d.routed.name, 'org/app');
    assert.equal(d.digest, `sha256:${'a'.repeat(64)}`);
  });

  it('refuses a registry the mirror does not serve, a bad tag and a bad digest, as permanent errors', () => {
    assert.throws(() => parseImageRef('quay.io/org/app:1', router), (e: unknown) => e instanceof PrewarmPermanentError && /quay\.io.*not a configured upstream/.test(e.message));
    assert.throws(() => parseImageRef('localhost:5000/app:1', router), PrewarmPermanentError);
    assert.throws(() => parseImageRef('alpine:bad*tag', router), PrewarmPermanentError);
    assert.throws(() => parseImageRef('alpine@sha256:123', router), PrewarmPermanentError);
    assert.throws(() => parseImageRef('Alpine:3', router), PrewarmPermanentError);
  });
});

describe('tag patterns and platform filters', () => {
  it('a glob matches whole tags: * is any run of characters, ? one, dots are literal', () => {
    const re = tagPattern('3.19.*');
    assert.deepEqual(['3.19.0', '3.19.1', '3.19', '3.190', '13.19.1', '3.19.1-rc'].filter((t) => re.test(t)), ['3.19.0', '3.19.1', '3.19.1-rc']);
    assert.ok(tagPattern('8.3-fpm-alpine3.1?').test('8.3-fpm-alpine3.19'));
    assert.ok(!tagPattern('8.3-fpm-alpine3.1?').test('8.3-fpm-alpine3.190'));
  });

  it('a platform filter names os/arch and, when given, the variant', () => {
    const amd = { digest: 'x', size: 1, platform: { os: 'linux', architecture: 'amd64' } };
    const arm = { digest: 'y', size: 1, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } };
    const att = { digest: 'z', size: 1, platform: { os: 'unknown', architecture: 'unknown' } };
    assert.deepEqual([amd, arm, att].filter((d) => wantedPlatform(d, [])), [amd, arm, att], 'no filter: everything');
    assert.deepEqual([amd, arm, att].filter((d) => wantedPlatform(d, [parsePlatform('linux/arm64')])), [arm]);
    assert.deepEqual([amd, arm, att].filter((d) => wantedPlatform(d, [parsePlatform('linux/arm64/v7')])), []);
    assert.deepEqual([amd, arm, att].filter((d) => wantedPlatform(d, ['linux/amd64', 'linux/arm64/v8'].map(parsePlatform))), [amd, arm]);
  });
});

describe('job ids', () => {
  it('are deterministic, readable, free of ":" and distinct per ref and pattern', () => {
    const id = entryIdFor('docker.io/library/alpine:3.20', null);
    assert.equal(id, entryIdFor('docker.io/library/alpine:3.20', null));
    assert.match(id, /^docker\.io-library-alpine-3\.20-[0-9a-f]{10}$/);
    assert.notEqual(entryIdFor('alpine', '3.19.*'), entryIdFor('alpine', '3.20.*'));
    for (const s of [runJobId(id), schedulerIdFor(id), scheduledJobId(id, 1_700_000_000_000), entryIdFor('localhost:5000/a@sha256:ab', null)]) {
      assert.ok(!s.includes(':'), s);
    }
    assert.equal(entryIdOfScheduler(schedulerIdFor(id)), id);
    assert.equal(entryIdOfScheduler('someone-else'), null);
  });
});

describe('retry timing and schedules', () => {
  it('backs off exponentially from retryDelay, and never sooner than Retry-After', () => {
    assert.deepEqual([1, 2, 3, 4].map((n) => retryDelay(n, 30_000, new Error('x'))), [30_000, 60_000, 120_000, 240_000]);
    assert.equal(retryDelay(1, 1_000, new PrewarmTransientError('503', 120)), 120_000);
    assert.equal(retryDelay(3, 1_000, new PrewarmTransientError('503', 1)), 4_000);
  });

  it('reads cron patterns of 5 and 6 fields', () => {
    const from = Date.UTC(2025, 0, 1, 0, 0, 30);
    assert.equal(nextCronRun('* * * * * *', from), from + 1_000);
    assert.equal(nextCronRun('*/15 * * * *', from) % (15 * 60_000), 0);
    assert.throws(() => nextCronRun('not a cron', from));
  });
});

describe('classifying a failed run', () => {
  const now = 1_000_000;
  it('unknown image and refused access are permanent; outages are transient with their Retry-After', () => {
    for (const kind of ['not-found', 'denied', 'unauthorized'] as const) {
      assert.ok(classify(new UpstreamError('docker.io', kind, kind), 'alpine', null, now) instanceof PrewarmPermanentError, kind);
    }
    const t = classify(new UpstreamError('docker.io', 'unavailable', '503', { status: 503, retryAfter: 7 }), 'alpine', null, now);
    assert.ok(t instanceof PrewarmTransientError);
    assert.equal(t.retryAfter, 7);
    assert.ok(classify(new UpstreamError('docker.io', 'integrity', 'cut'), 'alpine', null, now) instanceof PrewarmTransientError);
    assert.ok(classify(new Error('EIO'), 'alpine', null, now) instanceof PrewarmTransientError);
  });

  it('a 429 defers the run instead of failing it', () => {
    const d = classify(new UpstreamError('docker.io', 'rate-limited', '429', { status: 429, retryAfter: 30 }), 'alpine', null, now);
    assert.ok(d instanceof PrewarmDeferred);
    assert.equal(d.until, now + 30_000);
    const r = classify(registryError('TOOMANYREQUESTS', 'limit', { headers: { 'retry-after': '12' } }), 'alpine', null, now);
    assert.ok(r instanceof PrewarmDeferred);
    assert.equal(r.until, now + 12_000);
    assert.ok(classify(registryError('NAME_UNKNOWN', 'gone'), 'alpine', null, now) instanceof PrewarmPermanentError);
    assert.ok(classify(registryError('UNAVAILABLE', 'down'), 'alpine', null, now) instanceof PrewarmTransientError);
  });
});

describe('pre-warm entries from the config', () => {
  const log = createLogger('silent');
  const wiring = async (text: string) => {
    const config = parseConfig({ text });
    const driver = new FilesystemDriver('/nonexistent-never-touched');
    return () => createPrewarmService({
      config, router: new Router(config.upstreams, config.defaultUpstream), metrics: new Metrics({ defaults: false }), log, driver, mirror: null,
    });
  };

  it('config/prewarm.example.yaml loads, and every entry in it is one the mirror can serve', async () => {
    const config = await loadConfig({ file: 'config/prewarm.example.yaml', env: {} });
    assert.ok(config.prewarm.images.length >= 8);
    const service = createPrewarmService({
      config, router: new Router(config.upstreams, config.defaultUpstream), metrics: new Metrics({ defaults: false }), log,
      driver: new FilesystemDriver('/nonexistent-never-touched'), mirror: null,
    });
    assert.equal(service.entries.length, config.prewarm.images.length);
    assert.equal(new Set(service.entries.map((e) => e.id)).size, service.entries.length);
    assert.ok(service.entries.some((e) => e.tags === '3.19.*' && e.name === 'library/alpine'));
    await service.close();
  });

  it('a ref on an unconfigured registry, or a ref listed twice, stops the start naming the key', async () => {
    const bad = await wiring('prewarm:\n  images:\n    - alpine:3.20\n    - quay.io/org/app:1\n');
    assert.throws(bad, (e: unknown) => e instanceof ConfigError && /prewarm\.images\[1\]\.ref/.test(e.message) && /quay\.io/.test(e.message));
    const twice = await wiring('prewarm:\n  images:\n    - alpine:3.20\n    - alpine:3.20\n');
    assert.throws(twice, (e: unknown) => e instanceof ConfigError && /prewarm\.images\[1\]\.ref/.test(e.message) && /listed twice/.test(e.message));
  });

  it('finds a configured entry by any spelling of its ref', async () => {
    const make = await wiring('prewarm:\n  images:\n    - docker.io/library/alpine:3.20\n');
    const service = make();
    assert.equal(service.find('alpine:3.20')?.ref, 'docker.io/library/alpine:3.20');
    assert.equal(service.find('index.docker.io/library/alpine:3.20')?.ref, 'docker.io/library/alpine:3.20');
    assert.equal(service.find('alpine:3.19'), null);
    await service.close();
  });
});
