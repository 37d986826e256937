/**
 * The replicas' internal endpoint: `GET /_berth/cluster/fills/<digest>` streams the staged bytes
 * of a blob fill running on this replica to another replica that missed the same blob while this
 * one held its lease (src/registry/cluster-fills.ts). Only for `Authorization: Bearer
 * <cluster.secret>` (compared in constant time); Range-capable (one range); bytes go out as they
 * land and the response ends when the fill ends: complete only once the digest verified here (the
 * fill holds back its last byte until then), cut when the fill fails. 404 when no fill of that
 * blob runs here (it ended, or never ran): the caller reads the committed blob instead.
 *
 * Registered only when cluster.advertiseUrl is set. Not a registry route: no /v2 access control,
 * and never reachable without the secret.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance } from 'fastify';
import { registryError } from '../../errors.js';
import { parseDigest } from '../../oci/reference.js';
import { FILL_EPOCH_HEADER, FILL_UPSTREAM_HEADER, type ClusterFills } from '../../registry/cluster-fills.js';
import { parseRange } from '../range.js';

export interface ClusterRouteOptions {
  fills: ClusterFills;
  secret: string;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Constant-time check of `Bearer <secret>` (both sides hashed first, so lengths never leak). */
export function bearerMatches(header: string | undefined, secret: string): boolean {
  if (header === undefined || !/^Bearer /i.test(header)) return false;
  return timingSafeEqual(sha256(header.slice(7).trim()), sha256(secret));
}

export function clusterRoutes(opts: ClusterRouteOptions) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get<{ Params: { digest: string } }>('/_berth/cluster/fills/:digest', async (request, reply) => {
      request.routeLabel = 'cluster-fill';
      if (!bearerMatches(request.headers.authorization, opts.secret)) {
        throw registryError('UNAUTHORIZED', 'the internal fill endpoint answers other replicas only (Bearer cluster.secret)');
      }
      const digest = parseDigest(request.params.digest);
      if (digest === null) throw registryError('DIGEST_INVALID', `"${request.params.digest}" is not a digest`);
      const served = opts.fills.served(digest);
      const fill = served ? await served.fill.catch(() => null) : null;
      if (!served || !fill || fill.state !== 'running') throw registryError('BLOB_UNKNOWN', 'no fill of this blob is running on this replica');
      const headers: Record<string, string> = {
        'content-type': 'application/octet-stream',
        'accept-ranges': 'bytes',
        'docker-content-digest': digest,
        [FILL_UPSTREAM_HEADER]: fill.upstream,
      };
      if (served.epoch !== null) headers[FILL_EPOCH_HEADER] = served.epoch;
      let status = 200;
      let start = 0;
      let end: number | null = null;
      if (fill.size !== null) {
        const parsed = parseRange(request.headers.range, fill.size);
        if (parsed.kind === 'unsatisfiable') {
          throw registryError('RANGE_INVALID', parsed.reason, { headers: { 'content-range': `bytes */${fill.size}` } });
        }
        if (parsed.kind === 'range') {
          ({ start, end } = parsed.range);
          status = 206;
          headers['content-range'] = `bytes ${start}-${end}/${fill.size}`;
          headers['content-length'] = String(end - start + 1);
        } else {
          headers['content-length'] = String(fill.size);
        }
      }
      const stream = fill.reader(start, end);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(status, headers);
      try {
        await pipeline(stream, res);
      } catch (err) {
        // The fill failed (the copy on the other side fails its check too) or that replica left.
        request.log.info({ digest, err: (err as Error).message }, 'fill stream to another replica ended early');
        res.destroy();
      }
    });
  };
}
