// Deterministic test images, built in memory with no external tools, and a Distribution-API
// pusher. Same seed → byte-identical layers, config, manifests and digests; layer files are
// seeded random bytes (incompressible), so blob sizes are predictable.
//
// Layers: a ustar archive holding `layer<i>/` (0755) and `layer<i>/random.bin` (0644, the
// requested number of random bytes), mtime 0, uid/gid 0, gzipped with node:zlib (the gzip
// header's mtime is 0). Manifests are serialized exactly once: the Buffer IS the manifest and
// every digest is over those bytes.
import { createCipheriv, createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { request, type Dispatcher } from 'undici';
import type { Digest } from '../../src/oci/reference.js';

export type ImageFormat = 'oci' | 'docker';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** An Accept header value that admits all four manifest media types (what containerd sends, minus `*\/*`). */
export const MANIFEST_ACCEPT = [
  MediaTypes.dockerManifest,
  MediaTypes.dockerManifestList,
  MediaTypes.ociManifest,
  MediaTypes.ociIndex,
].join(', ');

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
}

export interface BuiltLayer {
  mediaType: string;
  /** Digest of `data` (the blob as pushed). */
  digest: string;
  /** `data.length`. */
  size: number;
  data: Buffer;
  /** sha256 of the uncompressed tar (equals `digest` for uncompressed layers). */
  diffId: string;
}

export interface BuiltImage {
  format: ImageFormat;
  platform: Platform;
  /** Manifest media type (OCI image manifest or Docker schema2). */
  mediaType: string;
  manifest: Buffer;
  manifestDigest: string;
  config: Buffer;
  configDigest: string;
  configMediaType: string;
  layers: BuiltLayer[];
  /** Descriptor of this manifest, with `platform`, as it appears in an index. */
  descriptor: Descriptor;
}

export interface BuiltIndex {
  format: ImageFormat;
  /** OCI image index or Docker manifest list. */
  mediaType: string;
  manifest: Buffer;
  manifestDigest: string;
  /** The per-platform images, in `platforms` order. */
  images: BuiltImage[];
  descriptor: Descriptor;
}

// ---------------------------------------------------------------------------------------------
// Digests and seeded randomness

export function sha256(buf: Uint8Array | string): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** `sha256:<hex>` of the bytes, typed as the parsed digest storage takes (it is one by construction). */
export function digestOf(buf: Uint8Array | string): Digest {
  return `sha256:${sha256(buf)}` as Digest;
}

/** Fills `target` with bytes determined by `seed` (AES-256-CTR keystream keyed by sha256(seed)). */
export function fillSeededBytes(seed: string, target: Uint8Array): void {
  const key = createHash('sha256').update('berth-test-bytes\0').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const chunk = 1024 * 1024;
  const zeros = Buffer.alloc(Math.min(chunk, target.length));
  for (let off = 0; off < target.length; off += chunk) {
    const n = Math.min(chunk, target.length - off);
    target.set(cipher.update(zeros.subarray(0, n)), off);
  }
}

/** `size` seeded random bytes. */
export function seededBytes(seed: string, size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  fillSeededBytes(seed, buf);
  return buf;
}

/** A seeded PRNG (mulberry32 over a 32-bit hash of the seed): returns floats in [0, 1). */
export function seededRandom(seed: string): () => number {
  let a = createHash('sha256').update(seed).digest().readUInt32LE(0);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------
// ustar writer

export interface TarEntry {
  /** Path inside the archive; directories may end with '/'. */
  name: string;
  type: 'file' | 'dir';
  /** File contents (ignored for directories). */
  data?: Uint8Array;
  /** Default 0o644 for files, 0o755 for directories. */
  mode?: number;
}

const BLOCK = 512;

function padTo512(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}

function writeOctal(header: Buffer, offset: number, width: number, value: number): void {
  // width-1 zero-padded octal digits then NUL, as GNU tar and Go's archive/tar write them.
  const text = value.toString(8).padStart(width - 1, '0');
  if (text.length > width - 1) throw new Error(`tar: ${value} does not fit in ${width} octal digits`);
  header.write(text, offset, width - 1, 'ascii');
  header[offset + width - 1] = 0;
}

function splitName(name: string): { name: string; prefix: string } {
  if (Buffer.byteLength(name) <= 100) return { name, prefix: '' };
  for (let i = name.lastIndexOf('/'); i > 0; i = name.lastIndexOf('/', i - 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest !== '') return { name: rest, prefix };
  }
  throw new Error(`tar: name too long for ustar: ${name}`);
}

/** One 512-byte ustar header (mtime 0, uid/gid 0, owner root). */
export function tarHeader(entry: { name: string; type: 'file' | 'dir'; size: number; mode?: number }): Buffer {
  const h = Buffer.alloc(BLOCK);
  const isDir = entry.type === 'dir';
  const fullName = isDir && !entry.name.endsWith('/') ? `${entry.name}/` : entry.name;
  const { name, prefix } = splitName(fullName);
  h.write(name, 0, 100, 'utf8');
  writeOctal(h, 100, 8, entry.mode ?? (isDir ? 0o755 : 0o644));
  writeOctal(h, 108, 8, 0); // uid
  writeOctal(h, 116, 8, 0); // gid
  writeOctal(h, 124, 12, isDir ? 0 : entry.size);
  writeOctal(h, 136, 12, 0); // mtime
  h.write('        ', 148, 8, 'ascii'); // checksum field counts as spaces while summing
  h.write(isDir ? '5' : '0', 156, 1, 'ascii');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  h.write('root', 265, 32, 'ascii');
  h.write('root', 297, 32, 'ascii');
  writeOctal(h, 329, 8, 0); // devmajor
  writeOctal(h, 337, 8, 0); // devminor
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return h;
}

/** A complete ustar archive (entries in the given order, then two zero blocks). */
export function tarArchive(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.type === 'file' ? (e.data ?? new Uint8Array(0)) : new Uint8Array(0);
    parts.push(tarHeader({ name: e.name, type: e.type, size: data.length, mode: e.mode }));
    if (data.length > 0) {
      parts.push(Buffer.from(data.buffer, data.byteOffset, data.length));
      const pad = padTo512(data.length) - data.length;
      if (pad > 0) parts.push(Buffer.alloc(pad));
    }
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

/** gzip with node:zlib; deterministic (header mtime 0, fixed level) for a given Node build. */
export function gzipDeterministic(data: Uint8Array): Buffer {
  return gzipSync(data, { level: 1 });
}

// ---------------------------------------------------------------------------------------------
// Images and indexes

const EPOCH = '1970-01-01T00:00:00Z';
const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };
/** Size of each layer's random file when `layers` is given as a count. */
export const DEFAULT_LAYER_SIZE = 1024;

export interface BuildImageOptions {
  seed: string;
  /** A count of layers (each DEFAULT_LAYER_SIZE random bytes) or the random-file size of each layer. Default 1. */
  layers?: number | readonly number[];
  /** Default linux/amd64. */
  platform?: Platform;
  /** Default 'oci'. */
  format?: ImageFormat;
  /** Layer compression; default 'gzip'. 'none' pushes plain tar layers (faster for big ones). */
  compression?: 'gzip' | 'none';
}

function layerSizes(layers: number | readonly number[] | undefined): number[] {
  if (layers === undefined) return [DEFAULT_LAYER_SIZE];
  if (typeof layers === 'number') return Array.from({ length: layers }, () => DEFAULT_LAYER_SIZE);
  return [...layers];
}

function layerMediaType(format: ImageFormat, gzip: boolean): string {
  if (format === 'oci') return gzip ? MediaTypes.ociLayerGzip : MediaTypes.ociLayer;
  return gzip ? MediaTypes.dockerLayerGzip : MediaTypes.dockerLayer;
}

function platformJson(p: Platform): Platform {
  // Fixed key order so serialization is stable whatever order the caller wrote.
  return p.variant === undefined
    ? { architecture: p.architecture, os: p.os }
    : { architecture: p.architecture, os: p.os, variant: p.variant };
}

function assemble(
  seed: string,
  format: ImageFormat,
  platform: Platform,
  layers: BuiltLayer[],
  history: string[],
): BuiltImage {
  const configObj = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant === undefined ? {} : { variant: platform.variant }),
    created: EPOCH,
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: ['/bin/sh'],
      Labels: { 'org.berth.test.seed': seed },
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: history.map((created_by) => ({ created: EPOCH, created_by })),
  };
  const config = Buffer.from(JSON.stringify(configObj));
  const configDigest = digestOf(config);
  const configMediaType = format === 'oci' ? MediaTypes.ociConfig : MediaTypes.dockerConfig;
  const mediaType = format === 'oci' ? MediaTypes.ociManifest : MediaTypes.dockerManifest;
  const manifestObj = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: configMediaType, digest: configDigest, size: config.length },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  const manifest = Buffer.from(`${JSON.stringify(manifestObj, null, 2)}\n`);
  const manifestDigest = digestOf(manifest);
  return {
    format,
    platform: platformJson(platform),
    mediaType,
    manifest,
    manifestDigest,
    config,
    configDigest,
    configMediaType,
    layers,
    descriptor: { mediaType, digest: manifestDigest, size: manifest.length, platform: platformJson(platform) },
  };
}

/** Builds a single-platform image; see BuildImageOptions. Deterministic in all its inputs. */
export function buildImage(opts: BuildImageOptions): BuiltImage {
  const format = opts.format ?? 'oci';
  const platform = opts.platform ?? DEFAULT_PLATFORM;
  const gzip = (opts.compression ?? 'gzip') === 'gzip';
  const sizes = layerSizes(opts.layers);
  const layers: BuiltLayer[] = sizes.map((size, i) => {
    const dir = `layer${i}`;
    const tar = tarArchive([
      { name: `${dir}/`, type: 'dir' },
      { name: `${dir}/random.bin`, type: 'file', data: seededBytes(`${opts.seed}#layer${i}`, size) },
    ]);
    const diffId = digestOf(tar);
    const data = gzip ? gzipDeterministic(tar) : tar;
    return {
      mediaType: layerMediaType(format, gzip),
      digest: gzip ? digestOf(data) : diffId,
      size: data.length,
      data,
      diffId,
    };
  });
  const history = sizes.map((size, i) => `berth-test: layer${i}/random.bin (${size} bytes)`);
  return assemble(opts.seed, format, platform, layers, history);
}

export interface BuildLargeBlobImageOptions {
  seed: string;
  /** Bytes of random data in the single layer. */
  size: number;
  format?: ImageFormat;
  platform?: Platform;
  /**
   * false (default): the layer is an uncompressed tar holding `big/random.bin` of `size` bytes
   * (blob size = size rounded up to a multiple of 512, plus 2048). true: the layer blob is exactly the `size`
   * random bytes (not a valid tar; registries do not care, unpacking clients would).
   */
  raw?: boolean;
}

/**
 * A one-layer image for big-blob tests (64–256 MiB). The layer is uncompressed (media type
 * `...layer.v1.tar` / `...rootfs.diff.tar`) and built in place in a single Buffer: no gzip, no
 * intermediate copies. Takes roughly 0.3 s per 256 MiB here (AES keystream + one sha256).
 */
export function buildLargeBlobImage(opts: BuildLargeBlobImageOptions): BuiltImage {
  const format = opts.format ?? 'oci';
  const platform = opts.platform ?? DEFAULT_PLATFORM;
  let data: Buffer;
  if (opts.raw === true) {
    data = seededBytes(`${opts.seed}#large`, opts.size);
  } else {
    const dirHeader = tarHeader({ name: 'big/', type: 'dir', size: 0 });
    const fileHeader = tarHeader({ name: 'big/random.bin', type: 'file', size: opts.size });
    const bodyStart = 2 * BLOCK;
    data = Buffer.alloc(bodyStart + padTo512(opts.size) + 2 * BLOCK);
    dirHeader.copy(data, 0);
    fileHeader.copy(data, BLOCK);
    fillSeededBytes(`${opts.seed}#large`, data.subarray(bodyStart, bodyStart + opts.size));
  }
  const digest = digestOf(data);
  const layer: BuiltLayer = { mediaType: layerMediaType(format, false), digest, size: data.length, data, diffId: digest };
  return assemble(opts.seed, format, platform, [layer], [`berth-test: large blob (${opts.size} bytes)`]);
}

export interface BuildIndexOptions {
  seed: string;
  /** Default [linux/amd64, linux/arm64/v8]. */
  platforms?: readonly Platform[];
  /** 'oci' → OCI image index over OCI manifests; 'docker' → manifest list over schema2 manifests. Default 'oci'. */
  format?: ImageFormat;
  /** Per-platform image layers, as in BuildImageOptions. */
  layers?: number | readonly number[];
  compression?: 'gzip' | 'none';
}

/** Builds one image per platform (seed `<seed>|<os>/<arch>[/<variant>]`) and an index over them. */
export function buildIndex(opts: BuildIndexOptions): BuiltIndex {
  const format = opts.format ?? 'oci';
  const platforms = opts.platforms ?? [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64', variant: 'v8' },
  ];
  const images = platforms.map((platform) =>
    buildImage({
      seed: `${opts.seed}|${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''}`,
      layers: opts.layers,
      platform,
      format,
      compression: opts.compression,
    }),
  );
  const mediaType = format === 'oci' ? MediaTypes.ociIndex : MediaTypes.dockerManifestList;
  const indexObj = {
    schemaVersion: 2,
    mediaType,
    manifests: images.map((img) => img.descriptor),
  };
  const manifest = Buffer.from(`${JSON.stringify(indexObj, null, 2)}\n`);
  const manifestDigest = digestOf(manifest);
  return {
    format,
    mediaType,
    manifest,
    manifestDigest,
    images,
    descriptor: { mediaType, digest: manifestDigest, size: manifest.length },
  };
}

// ---------------------------------------------------------------------------------------------
// Pushing and fetching over the Distribution HTTP API

export interface RegistryRequestOptions {
  /** Extra request headers, e.g. `{ authorization: 'Bearer …' }`. */
  headers?: Record<string, string>;
  /** undici dispatcher; default the global one. */
  dispatcher?: Dispatcher;
}

function header(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

function base(registryUrl: string): string {
  return registryUrl.replace(/\/+$/, '');
}

async function fail(what: string, statusCode: number, body: Dispatcher.ResponseData['body']): Promise<never> {
  const text = await body.text().catch(() => '');
  throw new Error(`${what}: HTTP ${statusCode} ${text.slice(0, 500)}`);
}

/** Uploads one blob monolithically unless HEAD says it exists. Returns what happened. */
export async function pushBlob(
  registryUrl: string,
  repo: string,
  digest: string,
  data: Uint8Array,
  opts: RegistryRequestOptions = {},
): Promise<'exists' | 'uploaded'> {
  const root = base(registryUrl);
  const headers = opts.headers ?? {};
  const head = await request(`${root}/v2/${repo}/blobs/${digest}`, { method: 'HEAD', headers, dispatcher: opts.dispatcher });
  await head.body.dump();
  if (head.statusCode === 200) return 'exists';
  if (head.statusCode !== 404) await fail(`HEAD blob ${digest}`, head.statusCode, head.body);

  const start = await request(`${root}/v2/${repo}/blobs/uploads/`, {
    method: 'POST',
    headers: { ...headers, 'content-length': '0' },
    dispatcher: opts.dispatcher,
  });
  if (start.statusCode !== 202) await fail(`POST upload for ${digest}`, start.statusCode, start.body);
  await start.body.dump();
  const location = header(start.headers, 'location');
  if (location === undefined) throw new Error(`POST upload for ${digest}: no Location header`);
  const target = new URL(location, `${root}/`);
  target.searchParams.set('digest', digest);

  const put = await request(target, {
    method: 'PUT',
    headers: { ...headers, 'content-type': 'application/octet-stream', 'content-length': String(data.length) },
    body: data,
    dispatcher: opts.dispatcher,
  });
  if (put.statusCode !== 201) await fail(`PUT blob ${digest}`, put.statusCode, put.body);
  await put.body.dump();
  return 'uploaded';
}

/** PUTs manifest bytes under a tag or digest with `mediaType` as Content-Type; returns Docker-Content-Digest. */
export async function pushManifest(
  registryUrl: string,
  repo: string,
  reference: string,
  manifest: Uint8Array,
  mediaType: string,
  opts: RegistryRequestOptions = {},
): Promise<string> {
  const res = await request(`${base(registryUrl)}/v2/${repo}/manifests/${reference}`, {
    method: 'PUT',
    headers: { ...(opts.headers ?? {}), 'content-type': mediaType, 'content-length': String(manifest.length) },
    body: manifest,
    dispatcher: opts.dispatcher,
  });
  if (res.statusCode !== 201) await fail(`PUT manifest ${repo}:${reference}`, res.statusCode, res.body);
  await res.body.dump();
  const expected = digestOf(manifest);
  const got = header(res.headers, 'docker-content-digest');
  if (got !== undefined && got !== expected) {
    throw new Error(`PUT manifest ${repo}:${reference}: registry says ${got}, bytes hash to ${expected}`);
  }
  return expected;
}

/** Pushes config + layers, then the manifest under `tag` (or by digest when tag is null). Returns the manifest digest. */
export async function pushImage(
  registryUrl: string,
  repo: string,
  tag: string | null,
  image: BuiltImage,
  opts: RegistryRequestOptions = {},
): Promise<string> {
  for (const layer of image.layers) await pushBlob(registryUrl, repo, layer.digest, layer.data, opts);
  await pushBlob(registryUrl, repo, image.configDigest, image.config, opts);
  return pushManifest(registryUrl, repo, tag ?? image.manifestDigest, image.manifest, image.mediaType, opts);
}

/** Pushes every child image by digest, then the index under `tag` (or by digest). Returns the index digest. */
export async function pushIndex(
  registryUrl: string,
  repo: string,
  tag: string | null,
  index: BuiltIndex,
  opts: RegistryRequestOptions = {},
): Promise<string> {
  for (const img of index.images) await pushImage(registryUrl, repo, null, img, opts);
  return pushManifest(registryUrl, repo, tag ?? index.manifestDigest, index.manifest, index.mediaType, opts);
}

export interface FetchedManifest {
  status: number;
  body: Buffer;
  /** Content-Type as sent. */
  mediaType: string | undefined;
  /** Docker-Content-Digest as sent. */
  digest: string | undefined;
  headers: Record<string, string | string[] | undefined>;
}

/** GET (or HEAD) a manifest; `accept` defaults to MANIFEST_ACCEPT. Never throws on HTTP status. */
export async function fetchManifest(
  registryUrl: string,
  repo: string,
  reference: string,
  opts: RegistryRequestOptions & { accept?: string; method?: 'GET' | 'HEAD' } = {},
): Promise<FetchedManifest> {
  const res = await request(`${base(registryUrl)}/v2/${repo}/manifests/${reference}`, {
    method: opts.method ?? 'GET',
    headers: { ...(opts.headers ?? {}), accept: opts.accept ?? MANIFEST_ACCEPT },
    dispatcher: opts.dispatcher,
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  return {
    status: res.statusCode,
    body,
    mediaType: header(res.headers, 'content-type'),
    digest: header(res.headers, 'docker-content-digest'),
    headers: res.headers,
  };
}

/** GETs a blob (following no redirects) and returns status and bytes. Never throws on HTTP status. */
export async function fetchBlob(
  registryUrl: string,
  repo: string,
  digest: string,
  opts: RegistryRequestOptions = {},
): Promise<{ status: number; body: Buffer; headers: Record<string, string | string[] | undefined> }> {
  const res = await request(`${base(registryUrl)}/v2/${repo}/blobs/${digest}`, {
    method: 'GET',
    headers: opts.headers ?? {},
    dispatcher: opts.dispatcher,
  });
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()), headers: res.headers };
}
