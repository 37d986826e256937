/**
 * Manifests as the UI shows them: what kind of thing a manifest is (image, index, Docker list,
 * BuildKit cache, artifact), the platforms of an index, an image's layers, and the fields of its
 * config an operator looks for (env, entrypoint, labels, created, history). Pure functions over
 * the stored bytes; nothing here reads the store.
 */
import { MediaTypes } from '../oci/media.js';

export type ManifestKind = 'image' | 'index' | 'docker-list' | 'buildkit-cache' | 'artifact' | 'unknown';

/** BuildKit's cache config media type (registry cache exports: `--cache-to type=registry`). */
export const BUILDKIT_CACHE_CONFIG = 'application/vnd.buildkit.cacheconfig.v0';
const IMAGE_CONFIGS = new Set(['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json']);

export interface PlatformEntry {
  digest: string;
  mediaType: string | null;
  size: number;
  /** `os/architecture[/variant]`, or null for entries without a platform (attestations, caches). */
  platform: string | null;
  /** Set on an attestation manifest (`vnd.docker.reference.type`). */
  annotation: string | null;
}

export interface LayerEntry {
  digest: string;
  mediaType: string | null;
  size: number;
}

export interface ManifestShape {
  kind: ManifestKind;
  mediaType: string;
  artifactType: string | null;
  platforms: PlatformEntry[];
  config: LayerEntry | null;
  layers: LayerEntry[];
  /** Sum of the config and layers (an image), or of the listed manifests (an index). */
  size: number;
  annotations: Record<string, string>;
  /** The manifest this one refers to (`subject`: a signature's image), when it names one. */
  subject: LayerEntry | null;
}

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

function descriptor(v: unknown): LayerEntry | null {
  if (!isObj(v) || typeof v['digest'] !== 'string') return null;
  return { digest: v['digest'], mediaType: str(v['mediaType']), size: num(v['size']) };
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isObj(v)) for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

/** Read a manifest's shape; `storedType` is the media type it was served with. Malformed JSON → kind `unknown`. */
export function manifestShape(bytes: Buffer, storedType: string | null): ManifestShape {
  let doc: Json = {};
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as unknown;
    if (isObj(parsed)) doc = parsed;
  } catch {
    doc = {};
  }
  const mediaType = storedType ?? str(doc['mediaType']) ?? (Array.isArray(doc['manifests']) ? MediaTypes.ociIndex : MediaTypes.ociManifest);
  const artifactType = str(doc['artifactType']);
  const annotations = stringMap(doc['annotations']);
  const platforms: PlatformEntry[] = (Array.isArray(doc['manifests']) ? doc['manifests'] : []).flatMap((m: unknown) => {
    const d = descriptor(m);
    if (!d || !isObj(m)) return [];
    const p = isObj(m['platform']) ? m['platform'] : null;
    const os = p ? str(p['os']) : null;
    const arch = p ? str(p['architecture']) : null;
    const variant = p ? str(p['variant']) : null;
    const platform = os && arch && os !== 'unknown' ? [os, arch, variant].filter(Boolean).join('/') : null;
    const ann = stringMap(m['annotations'])['vnd.docker.reference.type'] ?? null;
    return [{ ...d, platform, annotation: ann }];
  });
  const config = descriptor(doc['config']);
  const layers = (Array.isArray(doc['layers']) ? doc['layers'] : []).map(descriptor).filter((l): l is LayerEntry => l !== null);
  const size = platforms.length > 0 ? platforms.reduce((a, p) => a + p.size, 0) : layers.reduce((a, l) => a + l.size, config?.size ?? 0);
  const subject = descriptor(doc['subject']);
  return { kind: classify(mediaType, artifactType, config, platforms, Object.keys(doc).length === 0), mediaType, artifactType, platforms, config, layers, size, annotations, subject };
}

function classify(mediaType: string, artifactType: string | null, config: LayerEntry | null, platforms: PlatformEntry[], empty: boolean): ManifestKind {
  if (empty) return 'unknown';
  const isCache = (t: string | null): boolean => t === BUILDKIT_CACHE_CONFIG;
  if (mediaType === MediaTypes.dockerList) return 'docker-list';
  if (mediaType === MediaTypes.ociIndex) {
    if (platforms.some((p) => isCache(p.mediaType))) return 'buildkit-cache';
    return artifactType !== null ? 'artifact' : 'index';
  }
  if (isCache(config?.mediaType ?? null)) return 'buildkit-cache';
  if (artifactType !== null) return 'artifact';
  if (config !== null && config.mediaType !== null && !IMAGE_CONFIGS.has(config.mediaType)) return 'artifact';
  return mediaType === MediaTypes.dockerManifest || mediaType === MediaTypes.ociManifest ? 'image' : 'unknown';
}

export interface ConfigView {
  created: string | null;
  os: string | null;
  architecture: string | null;
  env: string[];
  entrypoint: string[] | null;
  cmd: string[] | null;
  workingDir: string | null;
  user: string | null;
  labels: Record<string, string>;
  exposedPorts: string[];
  history: { created: string | null; createdBy: string; emptyLayer: boolean; comment: string | null }[];
}

/** The parts of an image config (`application/vnd.oci.image.config.v1+json`) the UI shows; null when it is not one. */
export function configView(bytes: Buffer): ConfigView | null {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return null;
  }
  if (!isObj(doc)) return null;
  const c = isObj(doc['config']) ? doc['config'] : {};
  const list = (v: unknown): string[] | null => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : null);
  return {
    created: str(doc['created']),
    os: str(doc['os']),
    architecture: str(doc['architecture']),
    env: list(c['Env']) ?? [],
    entrypoint: list(c['Entrypoint']),
    cmd: list(c['Cmd']),
    workingDir: str(c['WorkingDir']) || null,
    user: str(c['User']) || null,
    labels: stringMap(c['Labels']),
    exposedPorts: isObj(c['ExposedPorts']) ? Object.keys(c['ExposedPorts']) : [],
    history: (Array.isArray(doc['history']) ? doc['history'] : []).filter(isObj).map((h) => ({
      created: str(h['created']),
      createdBy: str(h['created_by']) ?? '',
      emptyLayer: h['empty_layer'] === true,
      comment: str(h['comment']),
    })),
  };
}

/**
 * Pull commands that go through this mirror: `host` is how clients reach it (host[:port]),
 * `repository` the client name (a non-default upstream is its first component, `ghcr.io/org/app`),
 * `plainHttp` when the mirror is reached without TLS (containerd then needs `--plain-http`).
 */
export function pullCommands(host: string, plainHttp: boolean, repository: string, reference: string): Record<string, string> {
  const ref = `${host}/${repository}${/^[a-z0-9]+:[a-f0-9]{32,}$/.test(reference) ? '@' : ':'}${reference}`;
  return {
    docker: `docker pull ${ref}`,
    podman: `podman pull ${plainHttp ? '--tls-verify=false ' : ''}${ref}`,
    containerd: `ctr images pull ${plainHttp ? '--plain-http ' : ''}${ref}`,
  };
}
