// Shared by the lifecycle-*.test.ts files: pulling an image through Berth and checking every
// byte, waiting for the lifecycle layer to finish its work, reading the store (from disk for the
// filesystem driver), and images assembled from given layer blobs (so two images can share a layer).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import type { CacheLifecycle } from '../../src/storage/lifecycle.js';
import { MediaTypes, digestOf, fetchBlob, fetchManifest, pushBlob, pushManifest, type BuiltLayer } from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';

/** What a pull needs to know about an image. */
export interface PullableImage {
  manifest: Buffer;
  manifestDigest: string;
  config: Buffer;
  configDigest: string;
  layers: { digest: string; size: number; data: Buffer; mediaType: string }[];
}

export function lifecycleOf(berth: BerthHandle): CacheLifecycle {
  const lc = berth.services.app.lifecycle;
  assert.ok(lc, 'the lifecycle background service is running');
  return lc;
}

/** Pull manifest (by `ref`) and every blob through Berth; each must come back byte-exact. */
export async function pullImage(url: string, repo: string, ref: string, img: PullableImage): Promise<void> {
  const m = await fetchManifest(url, repo, ref);
  assert.equal(m.status, 200, `manifest ${repo}:${ref}: ${m.body.toString().slice(0, 300)}`);
  assert.equal(m.digest, img.manifestDigest);
  assert.equal(digestOf(m.body), img.manifestDigest);
  for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) {
    const b = await fetchBlob(url, repo, d);
    assert.equal(b.status, 200, `blob ${d} of ${repo}:${ref}: ${b.status}`);
    assert.equal(digestOf(b.body), d, `blob ${d} of ${repo}:${ref} arrived intact`);
  }
}

/** Wait until the lifecycle has heard of every digest (fills commit just after the last byte goes out), then until it is idle. */
export async function settle(berth: BerthHandle, digests: string[], timeoutMs = 10_000): Promise<void> {
  const lc = lifecycleOf(berth);
  const deadline = Date.now() + timeoutMs;
  while (!digests.every((d) => lc.has(d))) {
    if (Date.now() > deadline) throw new Error(`lifecycle did not see ${digests.filter((d) => !lc.has(d)).join(', ')} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  await lc.settled();
}

export function imageDigests(img: PullableImage): string[] {
  return [img.manifestDigest, img.configDigest, ...img.layers.map((l) => l.digest)];
}

/** Every blob file under `<root>/blobs`, digest → size. */
export async function storedBlobs(root: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const base = join(root, 'blobs');
  for (const alg of await readdir(base).catch(() => [])) {
    for (const shard of await readdir(join(base, alg))) {
      for (const hex of await readdir(join(base, alg, shard))) {
        out.set(`${alg}:${hex}`, (await stat(join(base, alg, shard, hex))).size);
      }
    }
  }
  return out;
}

/**
 * The blobs a running Berth stores, digest → size: read from its folder on disk for the
 * filesystem driver (not through the driver under test), listed by the driver otherwise.
 */
export async function storedBlobsOf(berth: BerthHandle): Promise<Map<string, number>> {
  if (berth.services.driver.name === 'filesystem') return storedBlobs(berth.root);
  const out = new Map<string, number>();
  for await (const b of berth.services.driver.listBlobs()) out.set(b.digest, b.size);
  return out;
}

/** sha256 of a file, streamed. */
export async function fileDigest(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) h.update(chunk as Buffer);
  return `sha256:${h.digest('hex')}`;
}

export function blobPath(root: string, digest: string): string {
  const hex = digest.slice(digest.indexOf(':') + 1);
  return join(root, 'blobs', digest.slice(0, digest.indexOf(':')), hex.slice(0, 2), hex);
}

/** An OCI image manifest over the given layer blobs (shared layers make shared blobs). */
export function imageFromLayers(seed: string, layers: BuiltLayer[]): PullableImage {
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: [{ created_by: `berth-test: ${seed}` }],
  }));
  const configDigest = digestOf(config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: { mediaType: MediaTypes.ociConfig, digest: configDigest, size: config.length },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  }));
  return { manifest, manifestDigest: digestOf(manifest), config, configDigest, layers };
}

export async function pushPullable(registryUrl: string, repo: string, tag: string, img: PullableImage): Promise<void> {
  for (const l of img.layers) await pushBlob(registryUrl, repo, l.digest, l.data);
  await pushBlob(registryUrl, repo, img.configDigest, img.config);
  await pushManifest(registryUrl, repo, tag, img.manifest, MediaTypes.ociManifest);
}

export async function getJson(url: string, method: 'GET' | 'POST' | 'DELETE' = 'GET'): Promise<{ status: number; json: Record<string, unknown> }> {
  // State-changing admin calls must say JSON (a cross-site form cannot), even without a body.
  const res = await request(url, { method, ...(method === 'GET' ? {} : { headers: { 'content-type': 'application/json' } }) });
  const text = await res.body.text();
  return { status: res.statusCode, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

export async function metricValue(url: string, name: string): Promise<number | null> {
  const res = await request(`${url}/metrics`);
  const text = await res.body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? null : Number(line.slice(name.length + 1));
}

export const MiB = 1024 * 1024;
