/**
 * The push side of the OCI Distribution API, for hosted repositories only (src/registry/hosted*.ts;
 * a mirrored name never gets here: src/http/routes/v2.ts answers 405 UNSUPPORTED for it).
 *
 *  - `POST /v2/<name>/blobs/uploads/` starts a session (202), or uploads monolithically with
 *    `?digest=` (201), or mounts with `?mount=&from=` (201 when the blob is in the store and the
 *    caller may pull `from`, mirrored repositories included; else 202 and a session).
 *  - `PATCH …/uploads/<id>` appends a chunk: streaming without Content-Range (dockerd, BuildKit),
 *    or with one that must start where the upload stands (416 with the current Range otherwise).
 *  - `PUT …/uploads/<id>?digest=` (with an optional last chunk) verifies and commits (201).
 *  - `GET …/uploads/<id>` says where it stands (204), `DELETE` cancels it (204).
 *  - `PUT /v2/<name>/manifests/<ref>[?tag=…]`, `DELETE` of manifests, tags and blobs (202), and
 *    `GET /v2/<name>/referrers/<digest>[?artifactType=]`.
 *
 * Request bodies are the raw request stream (v2.ts registers a content-type parser that consumes
 * nothing): blob bodies stream into staging, a manifest body is read up to hosted.maxManifestSize.
 * Headers (Location, Range, Docker-Upload-UUID, OCI-Chunk-Min-Length) follow the spec.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { isRegistryError, registryError } from '../../errors.js';
import type { Digest } from '../../oci/reference.js';
import type { AccessItem } from '../../auth/access.js';
import type { HostedService } from '../../registry/hosted-service.js';
import { blobDigest, manifestRef } from '../../registry/repository.js';
import type { Routed } from '../../registry/routing.js';
import { rangeHeader, uploadLocation, type ChunkRange, type UploadState } from '../../registry/uploads.js';
import { isValidTag, looksLikeDigest } from '../../oci/reference.js';
import type { V2Route } from '../v2-path.js';
import { auditRequest } from '../request-log.js';

type Query = Record<string, string | string[] | undefined>;

/**
 * The smallest chunk this registry asks of a chunked upload: none (any chunk is taken as it is),
 * said explicitly so a client that reads the header does not guess.
 */
const CHUNK_MIN_LENGTH = '0';

function first(query: unknown, key: string): string | undefined {
  const v = (query as Query | undefined)?.[key];
  return Array.isArray(v) ? v[0] : v;
}

function all(query: unknown, key: string): string[] {
  const v = (query as Query | undefined)?.[key];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** The access item of a hosted repository: named as the client sends it, judged by policy on that name. */
export function hostedAccess(name: string, actions: string[]): AccessItem[] {
  return [{ type: 'repository', name, hosted: true, actions }];
}

function authInput(request: FastifyRequest): { authorization: string | undefined; ip: string } {
  return { authorization: request.headers.authorization, ip: request.clientIp };
}

/** Content-Length when the client sent one (a streaming PATCH sends none). */
function contentLength(request: FastifyRequest): number | null {
  const raw = request.headers['content-length'];
  if (raw === undefined || !/^\d+$/.test(raw)) return null;
  return Number(raw);
}

/** Does the request carry a body at all? */
function hasBody(request: FastifyRequest): boolean {
  const len = contentLength(request);
  return (len !== null && len > 0) || request.headers['transfer-encoding'] !== undefined;
}

function body(request: FastifyRequest): IncomingMessage {
  return request.raw;
}

/** Content-Range of a chunk: `<start>-<end>` (the spec's form), also with a `bytes ` or `bytes=` prefix. */
function chunkRange(request: FastifyRequest, offset: () => number): ChunkRange | null {
  const raw = request.headers['content-range'];
  if (raw === undefined) return null;
  const m = /^(?:bytes[= ])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(raw.trim());
  if (!m || Number(m[2]) < Number(m[1])) {
    throw registryError('BLOB_UPLOAD_RANGE', `Content-Range "${raw}" is not <start>-<end>`, { headers: { range: rangeHeader(offset()) } });
  }
  return { start: Number(m[1]), end: Number(m[2]) };
}

function uploadHeaders(reply: FastifyReply, s: UploadState): FastifyReply {
  return reply
    .header('location', uploadLocation(s.name, s.id))
    .header('range', rangeHeader(s.offset))
    .header('docker-upload-uuid', s.id)
    .header('content-length', '0');
}

function blobCreated(reply: FastifyReply, name: string, digest: string): FastifyReply {
  return reply.code(201)
    .header('location', `/v2/${name}/blobs/${digest}`)
    .header('docker-content-digest', digest)
    .header('content-length', '0');
}

/**
 * Answer a request for a hosted repository that the pull routes do not (uploads, manifest PUT,
 * deletes, referrers). Returns undefined for a plain GET/HEAD of a manifest, blob or tag list,
 * which v2.ts answers through the Repository seam.
 */
export async function hostedPush(
  app: FastifyInstance, hosted: HostedService, request: FastifyRequest, reply: FastifyReply,
  route: Exclude<V2Route, { kind: 'base' } | { kind: 'catalog' } | { kind: 'unknown' }>, routed: Routed,
): Promise<unknown> {
  const name = routed.name;
  const method = request.method;
  const registry = hosted.registry;
  const authorize = (actions: string[]) => app.access.authorize(authInput(request), hostedAccess(name, actions));

  if (route.kind === 'upload') return upload(app, hosted, request, reply, name, route.rest);

  if (route.kind === 'manifest' && method === 'PUT') {
    await authorize(['pull', 'push']);
    if (!looksLikeDigest(route.reference) && !isValidTag(route.reference)) throw registryError('TAG_INVALID', `"${route.reference}" is not a valid tag`);
    const ref = manifestRef(route.reference);
    const tags = all(request.query, 'tag');
    for (const t of tags) if (!isValidTag(t)) throw registryError('TAG_INVALID', `"${t}" is not a valid tag`);
    const bytes = await readManifestBody(request, registry.maxManifestSize);
    const pushed = await registry.putManifest(name, ref, tags, bytes, request.headers['content-type']);
    auditRequest(request, 'manifest.push', `${name}@${pushed.digest}`, { tags: pushed.tags });
    reply.code(201)
      .header('location', `/v2/${name}/manifests/${pushed.digest}`)
      .header('docker-content-digest', pushed.digest)
      .header('content-length', '0');
    if (pushed.subject) reply.header('oci-subject', pushed.subject);
    return reply.send();
  }

  if (method === 'DELETE') {
    if (route.kind === 'tags') throw registryError('UNSUPPORTED', 'DELETE of a tag list');
    if (!app.config.storage.deleteEnabled) {
      throw registryError('UNSUPPORTED', 'deletion is not enabled (storage.deleteEnabled)');
    }
    if (route.kind === 'referrers') throw registryError('UNSUPPORTED', 'DELETE of a referrers list');
    await authorize(['delete']);
    if (route.kind === 'manifest') {
      const ref = manifestRef(route.reference);
      await registry.deleteManifest(name, ref);
      auditRequest(request, ref.kind === 'tag' ? 'tag.delete' : 'manifest.delete', `${name}${ref.kind === 'tag' ? ':' : '@'}${route.reference}`);
    } else {
      const digest = blobDigest(route.digest);
      await registry.deleteBlob(name, digest);
      auditRequest(request, 'blob.delete', `${name}@${digest}`);
    }
    return reply.code(202).header('content-length', '0').send();
  }

  if (route.kind === 'referrers') {
    if (method !== 'GET' && method !== 'HEAD') throw registryError('UNSUPPORTED', `${method} on referrers`);
    await authorize(['pull']);
    const subject = blobDigest(route.digest);
    const artifactType = first(request.query, 'artifactType');
    const r = await registry.referrers(name, subject, artifactType);
    reply.header('content-type', 'application/vnd.oci.image.index.v1+json').header('content-length', String(r.body.length));
    if (r.filtered) reply.header('oci-filters-applied', 'artifactType');
    return request.method === 'HEAD' ? reply.send() : reply.send(r.body);
  }

  if (method === 'GET' || method === 'HEAD') return undefined;
  throw registryError('UNSUPPORTED', `${method} on ${route.kind === 'blob' ? 'a blob' : route.kind === 'tags' ? 'a tag list' : 'a manifest'}`);
}

async function upload(
  app: FastifyInstance, hosted: HostedService, request: FastifyRequest, reply: FastifyReply, name: string, rest: string,
): Promise<unknown> {
  const method = request.method;
  const uploads = hosted.registry.uploads;
  const id = rest.replace(/^\/+/, '');
  await app.access.authorize(authInput(request), hostedAccess(name, ['pull', 'push']));

  if (id === '') {
    if (method !== 'POST') throw registryError('UNSUPPORTED', `${method} on the uploads collection`);
    const mount = first(request.query, 'mount');
    const from = first(request.query, 'from');
    const digestParam = first(request.query, 'digest');
    if (mount !== undefined) {
      const digest = blobDigest(mount);
      if (from !== undefined && from !== '' && (await mayMount(app, hosted, request, from, digest)) && (await hosted.registry.mount(name, digest))) {
        auditRequest(request, 'blob.mount', `${name}@${digest}`, { from });
        return blobCreated(reply, name, digest).send();
      }
    } else if (digestParam !== undefined) {
      const digest = blobDigest(digestParam);
      const { size } = await uploads.monolithic(name, digest, body(request), contentLength(request));
      auditRequest(request, 'blob.push', `${name}@${digest}`, { size });
      return blobCreated(reply, name, digest).send();
    }
    const s = await uploads.begin(name);
    return uploadHeaders(reply.code(202), s).header('oci-chunk-min-length', CHUNK_MIN_LENGTH).send();
  }

  if (id.includes('/')) throw registryError('BLOB_UPLOAD_UNKNOWN', 'not an upload location');
  // A session another replica holds (replicas with cluster.advertiseUrl): pass the request on to it.
  const owner = hosted.forwarder ? await uploads.remoteOwner(name, id) : null;
  if (owner !== null && hosted.forwarder) return forwardToOwner(hosted, request, reply, owner, name, id);
  return uploadSession(hosted, request, reply, name, id);
}

/**
 * A request on an upload session this process holds (GET/HEAD status, PATCH, final PUT, DELETE),
 * already authorized: from a client, or from another replica (routes/cluster-uploads.ts).
 */
export async function uploadSession(hosted: HostedService, request: FastifyRequest, reply: FastifyReply, name: string, id: string): Promise<unknown> {
  const method = request.method;
  const uploads = hosted.registry.uploads;
  switch (method) {
    case 'GET':
    case 'HEAD': {
      const s = await uploads.status(name, id);
      return uploadHeaders(reply.code(204), s).send();
    }
    case 'PATCH': {
      const at = await uploads.status(name, id);
      const range = chunkRange(request, () => at.offset);
      const s = await uploads.append(name, id, body(request), range, contentLength(request));
      return uploadHeaders(reply.code(202), s).send();
    }
    case 'PUT': {
      const digestParam = first(request.query, 'digest');
      if (digestParam === undefined || digestParam === '') throw registryError('DIGEST_INVALID', 'the final PUT of an upload needs ?digest=');
      const digest = blobDigest(digestParam);
      const withBody = hasBody(request);
      const { size } = await uploads.finish(name, id, digest, withBody ? body(request) : null, withBody ? contentLength(request) : null);
      auditRequest(request, 'blob.push', `${name}@${digest}`, { size });
      return blobCreated(reply, name, digest).send();
    }
    case 'DELETE':
      await uploads.cancel(name, id);
      return reply.code(204).header('content-length', '0').send();
    default:
      throw registryError('UNSUPPORTED', `${method} on an upload`);
  }
}

/** Pass a session request to the replica holding it, streaming the body, and relay its answer. */
async function forwardToOwner(
  hosted: HostedService, request: FastifyRequest, reply: FastifyReply, owner: string, name: string, id: string,
): Promise<unknown> {
  const forwarder = hosted.forwarder;
  if (!forwarder) throw registryError('BLOB_UPLOAD_UNKNOWN', 'no such upload on this replica', { detail: { uuid: id } });
  const method = request.method;
  const withBody = (method === 'PATCH' || method === 'PUT') && hasBody(request);
  const digest = first(request.query, 'digest');
  const answer = await forwarder.forward(owner, {
    method, name, id,
    ...(digest !== undefined ? { digest } : {}),
    headers: { 'content-type': request.headers['content-type'], 'content-length': request.headers['content-length'], 'content-range': request.headers['content-range'] },
    body: withBody ? body(request) : null,
  });
  request.log.debug({ upload: id, owner, status: answer.status }, 'upload request passed on to the replica holding it');
  reply.code(answer.status);
  for (const [k, v] of Object.entries(answer.headers)) reply.header(k, v);
  reply.header('content-length', String(answer.body.length));
  return answer.body.length > 0 && method !== 'HEAD' ? reply.send(answer.body) : reply.send();
}

/**
 * May the caller mount `digest` from `from`? Only if it may pull `from` (hosted or mirrored) and
 * `from` holds the blob in this store: a hosted repository's links, or the mirror's own rule for
 * which repository may serve a cached digest (a blob not cached is no mount). Any refusal means
 * "upload it instead", never an error.
 */
async function mayMount(app: FastifyInstance, hosted: HostedService, request: FastifyRequest, from: string, digest: Digest): Promise<boolean> {
  try {
    if (hosted.isHosted(from, undefined)) {
      await app.access.authorize(authInput(request), hostedAccess(from, ['pull']));
      return (await hosted.registry.blobSize(from, digest)) !== null;
    }
    const routed = app.router.route(from, undefined);
    await app.access.authorize(authInput(request), [
      { type: 'repository', name: routed.requested, upstream: routed.upstream.name, cacheName: routed.name, actions: ['pull'] },
    ]);
    const info = await app.mirror.statBlob(routed, digest);
    return info.source === 'cache';
  } catch (err) {
    request.log.debug({ err: (err as Error).message, from, digest }, 'mount refused; the client uploads instead');
    return false;
  }
}

/** A manifest body, at most `max` bytes (413 MANIFEST_TOO_LARGE beyond, before reading on). */
async function readManifestBody(request: FastifyRequest, max: number): Promise<Buffer> {
  const tooLarge = () => registryError('MANIFEST_TOO_LARGE', `the manifest is larger than hosted.maxManifestSize (${max} bytes)`, { detail: { max } });
  const declared = contentLength(request);
  if (declared !== null && declared > max) throw tooLarge();
  const parts: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of request.raw as AsyncIterable<Buffer>) {
      n += chunk.length;
      if (n > max) throw tooLarge();
      parts.push(chunk);
    }
  } catch (err) {
    if (isRegistryError(err)) throw err;
    throw registryError('MANIFEST_INVALID', `the manifest body broke off after ${n} bytes (${(err as Error).message})`);
  }
  if (declared !== null && n !== declared) throw registryError('MANIFEST_INVALID', `the body ended after ${n} of ${declared} bytes`);
  return Buffer.concat(parts, n);
}
