/**
 * The replicas' internal endpoint for upload sessions: `GET|HEAD|PATCH|PUT|DELETE
 * /_berth/cluster/uploads/<id>?name=<repository>[&digest=…]` answers, for a session this replica
 * holds, exactly what the public `/v2/<name>/blobs/uploads/<id>` would (src/http/routes/v2-push.ts),
 * for another replica that received the client's request and passes it on
 * (src/registry/uploads-forward.ts). Bodies stream into this replica's staging as they arrive.
 *
 * Only for `Authorization: Bearer <cluster.secret>` (constant time): the forwarding replica has
 * authorized the client already. Never forwards again: a session this replica does not hold is
 * BLOB_UPLOAD_UNKNOWN. Registered only with cluster.advertiseUrl and hosted repositories.
 */
import type { FastifyInstance } from 'fastify';
import { registryError } from '../../errors.js';
import { isValidName } from '../../oci/reference.js';
import type { HostedService } from '../../registry/hosted-service.js';
import { bearerMatches } from './cluster.js';
import { uploadSession } from './v2-push.js';

export interface ClusterUploadRouteOptions {
  hosted: HostedService;
  secret: string;
}

export function clusterUploadRoutes(opts: ClusterUploadRouteOptions) {
  return async (app: FastifyInstance): Promise<void> => {
    // Bodies are blob chunks: read as a stream by the upload, never parsed here.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_request, _payload, done) => {
      done(null);
    });
    app.route<{ Params: { id: string }; Querystring: { name?: string } }>({
      method: ['GET', 'HEAD', 'PATCH', 'PUT', 'DELETE'],
      url: '/_berth/cluster/uploads/:id',
      handler: async (request, reply) => {
        request.routeLabel = 'cluster-upload';
        if (!bearerMatches(request.headers.authorization, opts.secret)) {
          throw registryError('UNAUTHORIZED', 'the internal upload endpoint answers other replicas only (Bearer cluster.secret)');
        }
        const name = request.query.name ?? '';
        if (!isValidName(name) || !opts.hosted.isHosted(name, undefined)) throw registryError('NAME_INVALID', `"${name}" is not a hosted repository`);
        const id = request.params.id;
        if (opts.hosted.registry.uploads.holds(id) === false) {
          throw registryError('BLOB_UPLOAD_UNKNOWN', 'this replica does not hold that upload (it restarted, or the session ended)', { detail: { uuid: id } });
        }
        return uploadSession(opts.hosted, request, reply, name, id);
      },
    });
  };
}
