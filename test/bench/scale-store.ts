// A large store written straight to disk in the filesystem driver's layout (src/storage/filesystem.ts
// and the record keys of src/storage/records.ts), for the bench's scale section and for tests that
// need a store too big to fill over HTTP. Not through a server: 100,000 blobs take seconds, not
// the minutes real fills would.
//
// Shape: `images` tagged images `scale/r<i>:v1` on one upstream, each a manifest, a config and
// (blobs / images - 2) small layers, so blobs ≈ 10 × images by default. Every blob's bytes hash to
// its name, every manifest parses and names its config and layers, every tag and link record is
// what a fill writes, so the lifecycle sees a store exactly like one a mirror filled.
//
//   node dist/test/bench/scale-store.js <root> [blobs] [upstream]   (writes and prints a summary)
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync, utimesSync } from 'node:fs';
import { join } from 'node:path';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar';

export interface ScaleImage {
  name: string;
  tag: string;
  digest: string;
}

export interface ScaleStore {
  root: string;
  blobs: number;
  bytes: number;
  images: ScaleImage[];
  ms: number;
}

export interface ScaleOptions {
  /** Blobs in all (manifests, configs and layers); images = blobs / 10 unless given. */
  blobs: number;
  images?: number;
  /** The upstream name the records are filed under (the config's upstream `name`). */
  upstream?: string;
  /** Commit times are spread over this many ms before `now` (older images first). */
  spreadMs?: number;
  now?: number;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Write the store under `root` (created if missing; an existing store is added to). */
export function generateStore(root: string, o: ScaleOptions): ScaleStore {
  const began = Date.now();
  const upstream = o.upstream ?? 'docker.io';
  const images = Math.max(0, o.images ?? Math.floor(o.blobs / 10));
  const now = o.now ?? Date.now();
  const spread = o.spreadMs ?? 24 * 3600_000;
  const blobRoot = join(root, 'blobs', 'sha256');
  const metaRoot = join(root, 'meta');
  const made = new Set<string>();
  const dir = (p: string): string => {
    if (!made.has(p)) {
      mkdirSync(p, { recursive: true });
      made.add(p);
    }
    return p;
  };
  let blobs = 0;
  let bytes = 0;
  const putBlob = (data: Buffer, mtimeMs: number): string => {
    const hex = sha256(data);
    const path = join(dir(join(blobRoot, hex.slice(0, 2))), hex);
    writeFileSync(path, data);
    const t = mtimeMs / 1000;
    utimesSync(path, t, t);
    blobs += 1;
    bytes += data.length;
    return hex;
  };
  const putRecord = (key: string, value: unknown): void => {
    const path = join(metaRoot, `${key}.json`);
    dir(join(path, '..'));
    writeFileSync(path, JSON.stringify(value));
  };

  const out: ScaleImage[] = [];
  const perImage = images > 0 ? Math.max(3, Math.floor(o.blobs / images)) : 0;
  const upstreamKey = encodeURIComponent(upstream);
  for (let i = 0; i < images; i++) {
    const at = Math.floor(now - spread + (spread * i) / Math.max(1, images));
    const layers: { digest: string; size: number }[] = [];
    for (let l = 0; l < perImage - 2; l++) {
      // Small distinct bodies: the index's cost is per blob, not per byte.
      const data = Buffer.from(`scale layer ${i}/${l} `.padEnd(64 + ((i * 31 + l * 17) % 448), '.'));
      layers.push({ digest: `sha256:${putBlob(data, at)}`, size: data.length });
    }
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((x) => x.digest) }, created: new Date(at).toISOString(), i }));
    const configHex = putBlob(config, at);
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: `sha256:${configHex}`, size: config.length },
      layers: layers.map((x) => ({ mediaType: OCI_LAYER, digest: x.digest, size: x.size })),
    }));
    const mHex = putBlob(manifest, at);
    const digest = `sha256:${mHex}`;
    const name = `scale/r${i}`;
    putRecord(`manifests/sha256/${mHex}`, { mediaType: OCI_MANIFEST, size: manifest.length });
    putRecord(`repos/${upstreamKey}/${name}/_tags/v1`, { digest, mediaType: OCI_MANIFEST, size: manifest.length, fetchedAt: at, checkedAt: now });
    putRecord(`repos/${upstreamKey}/${name}/_manifests/sha256/${mHex}`, { linkedAt: at });
    out.push({ name, tag: 'v1', digest });
  }
  // Whatever is left of the count: blobs no image names (orphans, as interrupted pulls leave).
  for (let k = 0; blobs < o.blobs; k++) putBlob(Buffer.from(`scale orphan ${k} `.padEnd(128, '-')), now - spread);
  dir(join(root, 'spool'));
  return { root, blobs, bytes, images: out, ms: Date.now() - began };
}

// As a command: write a store for trying Berth at scale by hand.
if (process.argv[1] && /scale-store\.[jt]s$/.test(process.argv[1])) {
  const [root, n, upstream] = process.argv.slice(2);
  if (!root) {
    process.stderr.write('usage: node dist/test/bench/scale-store.js <root> [blobs=100000] [upstream=docker.io]\n');
    process.exit(2);
  }
  const s = generateStore(root, { blobs: Number(n ?? 100_000), ...(upstream ? { upstream } : {}) });
  process.stdout.write(`${s.blobs} blobs (${s.bytes} bytes), ${s.images.length} tagged images under ${root} in ${s.ms} ms\n`);
}
