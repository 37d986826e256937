/**
 * The OCI Distribution pull API on /v2/. One wildcard route: repository names contain '/', so the
 * path is parsed from the right (src/http/v2-path.ts), routed to an upstream
 * (src/registry/routing.ts), authorized, and answered by the Repository the resolver picks for
 * it (src/registry/repository.ts; today always the mirror). References and digests are parsed
 * here, once, after authorization; the layers below take the typed values. Push and delete
 * answer 405 UNSUPPORTED unless a feature enables them.
 *
 * Hosted repositories (issue 14): a name the `repositories` rules make hosted is decided before
 * upstream routing; its push side is answered by src/http/routes/v2-push.ts and its pull side by
 * the hosted registry through the same Repository seam.
 */
import { ReadStream, read as readFd } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { registryError } from '../../errors.js';
import { isValidName, type Digest } from '../../oci/reference.js';
import { parseAccept } from '../accept.js';
import { parseV2Path, type V2Route } from '../v2-path.js';
import type { Routed } from '../../registry/routing.js';
import { blobDigest, manifestRef, MirrorOnly, type BlobHandle, type Repository, type RepositoryResolver } from '../../registry/repository.js';
import type { AccessItem } from '../../auth/access.js';
import { parseRange } from '../range.js';
import { commonHeaders, recordRequest } from '../hooks.js';
import { auditRequest } from '../request-log.js';
import { hostedAccess, hostedPush } from './v2-push.js';

type Query = Record<string, string | string[] | undefined>;

function q(query: unknown, key: string): string | undefined {
  const v = (query as Query | undefined)?.[key];
  return Array.isArray(v) ? v[0] : v;
}

/** Route label for metrics (bounded: never a repository name). */
export function routeLabel(route: V2Route): string {
  switch (route.kind) {
    case 'base': return 'v2';
    case 'catalog': return 'catalog';
    case 'manifest': return 'manifest';
    case 'blob': return 'blob';
    case 'tags': return 'tags';
    case 'upload': return 'upload';
    case 'referrers': return 'referrers';
    default: return 'unknown';
  }
}

export interface V2Options {
  /**
   * Picks the Repository that answers each request and lists repositories for `_catalog`.
   * Without one, every name is answered by the mirror the app was built with.
   */
  repositories?: RepositoryResolver;
}

export async function v2Routes(app: FastifyInstance, opts: V2Options = {}): Promise<void> {
  const hosted = app.hosted;
  const repositories = opts.repositories ?? (hosted ? hosted.resolver(app.mirror) : new MirrorOnly(app.mirror));
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const url = request.url;
    const qi = url.indexOf('?');
    const pathOnly = qi >= 0 ? url.slice(0, qi) : url;
    let rest = pathOnly.replace(/^\/v2\/?/, '');
    // Most paths hold no escape at all: decoded only when there is one.
    if (rest.includes('%')) {
      try {
        rest = decodeURIComponent(rest);
      } catch {
        throw registryError('NAME_INVALID', 'the path is not valid percent-encoding');
      }
    }
    const route = parseV2Path(rest);
    request.routeLabel = routeLabel(route);
    const method = request.method;
    const ns = q(request.query, 'ns');

    if (route.kind === 'base') {
      if (method !== 'GET' && method !== 'HEAD') throw registryError('UNSUPPORTED', `${method} /v2/`);
      await app.access.authorize({ authorization: request.headers.authorization, ip: request.clientIp }, []);
      return reply.type('application/json').send('{}');
    }
    if (route.kind === 'catalog') {
      if (method !== 'GET') throw registryError('UNSUPPORTED', `${method} on _catalog`);
      await app.access.authorize({ authorization: request.headers.authorization, ip: request.clientIp }, [
        { type: 'registry', name: 'catalog', actions: ['*'] },
      ]);
      return catalog(app, repositories, request, reply);
    }
    if (route.kind === 'unknown') throw registryError('NAME_UNKNOWN', `no API route for ${pathOnly}`);

    // Hosted names are decided on the name as sent, before upstream routing.
    if (hosted && hosted.isHosted(route.name, ns)) {
      if (!isValidName(route.name)) throw registryError('NAME_INVALID', `"${route.name}" is not a valid repository name`);
      const routed = hosted.route(route.name);
      const pushed = await hostedPush(app, hosted, request, reply, route, routed);
      if (pushed !== undefined || route.kind === 'upload') return pushed;
      await app.access.authorize({ authorization: request.headers.authorization, ip: request.clientIp }, hostedAccess(routed.name, ['pull']));
      return pull(app, repositories.resolve(routed), request, reply, route, routed, ns);
    }

    const routed = app.router.route(route.name, ns);
    reply.header('oci-namespace', routed.upstream.name);
    const access = (actions: string[]): AccessItem[] => [
      { type: 'repository', name: routed.requested, upstream: routed.upstream.name, cacheName: routed.name, actions },
    ];

    if (route.kind === 'upload' || (route.kind === 'manifest' && method === 'PUT')) {
      throw registryError('UNSUPPORTED', `${route.name} is mirrored, not hosted: pushes go to the upstream registry, or to a name a \`repositories\` rule with mode: hosted matches`);
    }
    if (method === 'DELETE') {
      // An operation the mirror does not offer is 405 for everyone; only a real delete is authorized.
      if (route.kind !== 'manifest' || !app.manifestDelete) {
        throw registryError('UNSUPPORTED', 'deletion is not enabled on this mirror (storage.deleteEnabled)');
      }
      await app.access.authorize({ authorization: request.headers.authorization, ip: request.clientIp }, access(['delete']));
      const deleted = await app.manifestDelete(routed, route.reference, reply);
      auditRequest(request, 'manifest.delete', `${routed.upstream.name}/${routed.name}${route.reference.includes(':') ? '@' : ':'}${route.reference}`);
      return deleted;
    }
    if (method !== 'GET' && method !== 'HEAD') throw registryError('UNSUPPORTED', `${method} is not supported by this mirror`);
    await app.access.authorize({ authorization: request.headers.authorization, ip: request.clientIp }, access(['pull']));

    return pull(app, repositories.resolve(routed), request, reply, route, routed, ns);
  };
  // Pushes carry bodies of any type (blob chunks, manifests). Nothing is parsed here: without
  // this, Fastify would answer 415 before the handler. Hosted pushes read the raw request
  // stream (v2-push.ts); a body nobody reads is drained by Node when the response ends.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => {
    done(null);
  });
  app.route({ method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'], url: '/v2', handler });
  app.route({ method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'], url: '/v2/*', handler });
}

/** GET/HEAD of a manifest, blob or tag list, answered by the repository the resolver picked. */
async function pull(
  app: FastifyInstance, repository: Repository, request: FastifyRequest, reply: FastifyReply,
  route: Exclude<V2Route, { kind: 'base' } | { kind: 'catalog' } | { kind: 'unknown' } | { kind: 'upload' }>, routed: Routed, ns: string | undefined,
): Promise<unknown> {
  switch (route.kind) {
    case 'manifest':
      return manifest(app, repository, request, reply, routed, route.reference);
    case 'blob':
      return blob(app, repository, request, reply, routed, blobDigest(route.digest));
    case 'tags':
      return tags(repository, request, reply, routed, ns);
    case 'referrers':
      // A 404 is what tells a client to fall back to the referrers tag schema (spec end-12a).
      throw registryError('NAME_UNKNOWN', 'the referrers API is not served by this mirror');
  }
}

/** Parsed Accept headers by their text: clients send a handful of distinct ones. */
const acceptSets = new Map<string, Set<string>>();
const ACCEPT_SETS_MAX = 256;

/** The client's Accept as media types, parsed once per distinct header (read only below). */
function acceptOf(accept: string | string[] | undefined): Set<string> {
  if (typeof accept !== 'string') return parseAccept(accept);
  let set = acceptSets.get(accept);
  if (set === undefined) {
    set = parseAccept(accept);
    if (acceptSets.size >= ACCEPT_SETS_MAX) acceptSets.clear();
    acceptSets.set(accept, set);
  }
  return set;
}

async function manifest(
  app: FastifyInstance, repository: Repository, request: FastifyRequest, reply: FastifyReply, routed: Routed, reference: string,
) {
  const m = await repository.getManifest(routed, manifestRef(reference), acceptOf(request.headers.accept));
  const etag = `"${m.digest}"`;
  reply
    .header('content-type', m.mediaType)
    .header('docker-content-digest', m.digest)
    .header('etag', etag)
    .header('content-length', String(m.bytes.length));
  if (m.stale) reply.header('warning', '110 - "Response is Stale"');
  const inm = request.headers['if-none-match'];
  if (inm && inm.split(',').some((t) => t.trim() === etag || t.trim() === '*')) {
    reply.removeHeader('content-length');
    return reply.code(304).send();
  }
  if (request.method === 'HEAD') return reply.send();
  app.metrics.served('cache', m.bytes.length);
  return reply.send(m.bytes);
}

async function blob(
  app: FastifyInstance, repository: Repository, request: FastifyRequest, reply: FastifyReply, routed: Routed, digest: Digest,
) {
  if (request.method === 'HEAD') {
    const s = await repository.statBlob(routed, digest);
    reply.header('docker-content-digest', digest).header('content-type', 'application/octet-stream').header('accept-ranges', 'bytes');
    if (s.size !== null) reply.header('content-length', String(s.size));
    return reply.send();
  }
  const h = await repository.getBlob(routed, digest);
  const location = await redirectTo(app, request, h);
  if (location !== null) return reply.code(307).header('location', location).header('docker-content-digest', digest).send();
  const headers: Record<string, string> = {
    ...commonHeaders(app, reply),
    'docker-content-digest': digest,
    'content-type': 'application/octet-stream',
    'accept-ranges': 'bytes',
    etag: `"${digest}"`,
    'cache-control': 'max-age=31536000',
  };
  let status = 200;
  let range;
  if (h.size !== null) {
    const parsed = parseRange(request.headers.range, h.size);
    if (parsed.kind === 'unsatisfiable') {
      throw registryError('RANGE_INVALID', parsed.reason, { headers: { 'content-range': `bytes */${h.size}` } });
    }
    if (parsed.kind === 'range') {
      range = parsed.range;
      status = 206;
      headers['content-range'] = `bytes ${range.start}-${range.end}/${h.size}`;
      headers['content-length'] = String(range.end - range.start + 1);
    } else {
      headers['content-length'] = String(h.size);
    }
  }
  const stream = await h.open(range);
  const length = headers['content-length'] ? Number(headers['content-length']) : null;
  const fd = fileDescriptor(stream);
  if (fd !== null && length !== null) return sendFile(app, request, reply, status, headers, stream, fd, range?.start ?? 0, length, h.source);
  return sendStream(app, request, reply, status, headers, stream, h.source, length);
}

/**
 * `storage.s3.redirect`: a GET of a cached blob (no Range, at least `minSize` bytes) is sent to a
 * presigned URL on the object store instead of through this process. HEAD, Range requests, small
 * blobs and fills in progress are always served here. Null when the request is served here.
 */
async function redirectTo(
  app: FastifyInstance, request: FastifyRequest, h: BlobHandle,
): Promise<string | null> {
  // Apps assembled without a store (route tests) have no driver decorated.
  const driver = app.hasDecorator('driver') ? app.driver : null;
  if (!driver?.presign) return null;
  const r = app.config.storage.s3.redirect;
  if (!r.enabled || h.source !== 'cache' || request.headers.range !== undefined || h.size === null || h.size < r.minSize) return null;
  return driver.presign(h.digest, Math.max(1, Math.round(r.ttl / 1000)));
}

/**
 * Blobs bypass Fastify's reply serialization: headers are written once and the file stream is
 * piped straight to the socket (measurably faster for large bodies). Metrics and the access log
 * are recorded by hand, since Fastify's onResponse hooks do not run for a hijacked reply.
 */
async function sendStream(
  app: FastifyInstance, request: FastifyRequest, reply: FastifyReply, status: number,
  headers: Record<string, string>, stream: Readable, source: 'cache' | 'upstream', length: number | null,
): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(status, headers);
  request.bytesSent = 0;
  try {
    const piped = pipeline(stream, res);
    stream.on('data', (chunk: Buffer) => { request.bytesSent = (request.bytesSent ?? 0) + chunk.length; });
    await piped;
    if (length !== null) app.metrics.servedBytes.inc({ source }, length);
  } catch (err) {
    // A client that went away, or a fill that failed: the response is cut short, never completed
    // with wrong bytes. The fill itself goes on for other clients.
    request.log.info({ err: (err as Error).message, digest: headers['docker-content-digest'] }, 'blob response ended early');
    res.destroy();
  } finally {
    recordRequest(app, request, reply, status);
  }
}

/**
 * The descriptor behind a body that is a plain file not yet read from (a cached blob opened by the
 * filesystem driver), else null. Like a server that hands file bodies to sendfile, the blob route
 * recognises a file and sends it the cheapest way Node offers (sendFile below); every other body
 * (a fill in progress, another driver) goes through sendStream.
 */
function fileDescriptor(stream: Readable): number | null {
  if (!(stream instanceof ReadStream) || stream.bytesRead !== 0 || stream.readableFlowing !== null) return null;
  const fd: unknown = (stream as ReadStream & { fd?: unknown }).fd;
  return typeof fd === 'number' ? fd : null;
}

/** Read-buffer sizes for file bodies: largest while few blobs are in flight, smaller under load. */
const FILE_CHUNK_MAX = 512 * 1024;
const FILE_CHUNK_MIN = 64 * 1024;
/**
 * Memory the file bodies' buffers may take together before chunks shrink (and the most the pool
 * keeps): 512 KiB chunks for up to 31 blobs in flight. Measured at 32 clients: 256 KiB chunks
 * (a 16 MiB budget) served 12 % less and used 12 % more CPU per byte for 20 MiB less RSS;
 * 1 MiB chunks gained nothing; one buffer per response instead of two lost a fifth or more.
 */
const FILE_BUFFER_BUDGET = 32 * 1024 * 1024;

/**
 * Buffers for file bodies, reused from one response to the next: no fresh allocation per chunk,
 * no page faults on new memory, no garbage for the collector. Two per response.
 */
class ChunkPool {
  private readonly free = new Map<number, Buffer[]>();
  private kept = 0;
  active = 0;

  /** Two chunks per response must fit the budget; at least FILE_CHUNK_MIN. */
  chunkSize(): number {
    let size = FILE_CHUNK_MAX;
    while (size > FILE_CHUNK_MIN && 2 * size * (this.active + 1) > FILE_BUFFER_BUDGET) size /= 2;
    return size;
  }

  take(size: number): Buffer {
    const b = this.free.get(size)?.pop();
    if (b === undefined) return Buffer.allocUnsafeSlow(size);
    this.kept -= size;
    return b;
  }

  give(b: Buffer): void {
    if (this.kept + b.length > FILE_BUFFER_BUDGET) return;
    const list = this.free.get(b.length) ?? [];
    list.push(b);
    this.free.set(b.length, list);
    this.kept += b.length;
  }
}

const chunks = new ChunkPool();

function readAt(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    readFd(fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/**
 * Resolves once the socket has taken the bytes (so the buffer may be reused). Rejects when the
 * client goes away: a write to a response whose socket is already gone never calls back.
 */
function writeChunk(res: ServerResponse, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (res.destroyed) {
      reject(new Error('the client went away'));
      return;
    }
    const gone = (): void => reject(new Error('the client went away'));
    res.once('close', gone);
    res.write(chunk, (err) => {
      res.removeListener('close', gone);
      if (err) reject(err);
      else resolve();
    });
  });
}

/**
 * A cached blob: `length` bytes of the file from `start`, read in large chunks into two pooled
 * buffers, each written to the socket while the next is read. Against
 * `pipeline(createReadStream(1 MiB), res)` this measured about a quarter less CPU per byte and
 * half the memory at 32 clients (docs/benchmarks.md). The stream is never read; it is
 * destroyed at the end, which closes the file.
 */
async function sendFile(
  app: FastifyInstance, request: FastifyRequest, reply: FastifyReply, status: number,
  headers: Record<string, string>, stream: Readable, fd: number, start: number, length: number,
  source: 'cache' | 'upstream',
): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(status, headers);
  const size = chunks.chunkSize();
  chunks.active += 1;
  let a = chunks.take(size);
  let b = chunks.take(size);
  let clean = false;
  request.bytesSent = 0;
  try {
    const end = start + length;
    let pos = start;
    let n = length > 0 ? await readAt(fd, a, Math.min(size, end - pos), pos) : 0;
    while (n > 0) {
      pos += n;
      const wrote = writeChunk(res, n === a.length ? a : a.subarray(0, n));
      const next = pos < end ? readAt(fd, b, Math.min(size, end - pos), pos) : Promise.resolve(0);
      // Both must settle before either buffer is touched again.
      const [w, r] = await Promise.allSettled([wrote, next]);
      if (w.status === 'rejected') throw w.reason;
      request.bytesSent += n;
      if (r.status === 'rejected') throw r.reason;
      n = r.value;
      [a, b] = [b, a];
    }
    if (pos !== end) throw new Error(`blob file ended after ${pos - start} of ${length} bytes`);
    clean = true;
    res.end();
    app.metrics.servedBytes.inc({ source }, length);
  } catch (err) {
    // A client that went away, or a read that failed: the response is cut short, never completed
    // with wrong bytes.
    request.log.info({ err: (err as Error).message, digest: headers['docker-content-digest'] }, 'blob response ended early');
    res.destroy();
  } finally {
    chunks.active -= 1;
    // After a failure a buffer may still be referenced by a cancelled write: let it go.
    if (clean) {
      chunks.give(a);
      chunks.give(b);
    }
    stream.destroy();
    recordRequest(app, request, reply, status);
  }
}

async function tags(repository: Repository, request: FastifyRequest, reply: FastifyReply, routed: Routed, ns: string | undefined) {
  const { n, last } = pagination(request.query, Infinity);
  const all = await repository.listTags(routed);
  const after = last !== undefined ? all.filter((t) => t > last) : all;
  const page = n === undefined ? after : after.slice(0, n);
  if (n !== undefined && n > 0 && after.length > n && page.length > 0) {
    const params = new URLSearchParams({ last: page[page.length - 1] ?? '', n: String(n) });
    if (ns) params.set('ns', ns);
    reply.header('link', `</v2/${routed.requested}/tags/list?${params.toString()}>; rel="next"`);
  }
  return reply.type('application/json').send(JSON.stringify({ name: routed.requested, tags: page }));
}

const CATALOG_DEFAULT = 100;
const CATALOG_MAX = 1000;

async function catalog(app: FastifyInstance, repositories: RepositoryResolver, request: FastifyRequest, reply: FastifyReply) {
  const { n: asked, last } = pagination(request.query, CATALOG_MAX);
  const n = asked ?? CATALOG_DEFAULT;
  const all = await repositories.catalog((u, name) => app.router.publicName(u, name));
  const after = last !== undefined ? all.filter((r) => r > last) : all;
  const page = after.slice(0, n);
  if (n > 0 && after.length > n) {
    const params = new URLSearchParams({ last: page[page.length - 1] ?? '', n: String(n) });
    reply.header('link', `</v2/_catalog?${params.toString()}>; rel="next"`);
  }
  return reply.type('application/json').send(JSON.stringify({ repositories: page }));
}

function pagination(query: unknown, max: number): { n: number | undefined; last: string | undefined } {
  const nRaw = q(query, 'n');
  const last = q(query, 'last');
  let n: number | undefined;
  if (nRaw !== undefined && nRaw !== '') {
    if (!/^\d+$/.test(nRaw)) throw registryError('PAGINATION_NUMBER_INVALID', `n must be a non-negative integer, got "${nRaw}"`);
    n = Number(nRaw);
    if (n > max) throw registryError('PAGINATION_NUMBER_INVALID', `n may be at most ${max}`, { detail: { n, max } });
  }
  return { n, last: last === '' ? undefined : last };
}
