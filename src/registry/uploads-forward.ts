/**
 * Upload sessions across replicas: a request for a session another replica holds (its record
 * names the owner's cluster.advertiseUrl, src/registry/uploads.ts) is forwarded to that owner's
 * internal endpoint (`/_berth/cluster/uploads/<id>`, src/http/routes/cluster-uploads.ts,
 * `Authorization: Bearer <cluster.secret>`), and the owner's answer is relayed: status, Location,
 * Range, Docker-Upload-UUID, Docker-Content-Digest and the OCI error body. The owner's staged
 * bytes never move; the request body streams through, never buffered (a PATCH of a whole layer
 * is read from the client only as fast as the owner writes it), and only the owner's small answer
 * is read whole (at most ANSWER_MAX bytes).
 *
 * The caller has authorized the client already; the owner takes the secret as that proof and
 * answers only for sessions it holds itself, so a request is forwarded at most once.
 *
 * Imports: errors, undici. Never Fastify.
 */
import { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import { registryError } from '../errors.js';

/** The owner is on the same private network: a replica that does not accept within this is gone. */
const CONNECT_MS = 3_000;
/**
 * After the whole body is sent, the owner answers once it has written it (and for a final PUT,
 * verified and committed it: a rename on a filesystem, a copy on S3). Generous, never endless.
 */
const ANSWER_HEADERS_MS = 120_000;
/** Between two bytes of the owner's answer (an empty body or an OCI error document). */
const ANSWER_BODY_MS = 30_000;
/** The owner's answer bodies are empty or an OCI error document; more is not an answer. */
const ANSWER_MAX = 64 * 1024;

/** Bytes of the client's body read ahead of the owner (one socket read): no more is held here. */
const RELAY_AHEAD = 64 * 1024;
/** Error codes that mean the owner could not be reached at all (nothing of the body was sent to it). */
const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/** Headers of the owner's answer that the client sees. */
const RELAYED = ['location', 'range', 'docker-upload-uuid', 'docker-content-digest', 'oci-chunk-min-length', 'content-type'];

/**
 * The client's body as undici reads it: chunk by chunk, as fast as the owner takes them. Not the
 * stream itself, which undici destroys when the owner cannot be reached, taking the client's
 * connection with it before the answer is sent; this way an unread body stays the server's
 * to drain, as with any early answer.
 */
async function* relayBody(body: Readable): AsyncGenerator<Buffer> {
  for await (const chunk of body as AsyncIterable<Buffer>) yield chunk;
}

/** The internal endpoint's path for one upload session. */
export function uploadForwardPath(id: string): string {
  return `/_berth/cluster/uploads/${encodeURIComponent(id)}`;
}

export interface ForwardRequest {
  method: string;
  name: string;
  id: string;
  /** `?digest=` of a final PUT. */
  digest?: string;
  /** Content-Type, Content-Length, Content-Range as the client sent them. */
  headers: Record<string, string | undefined>;
  /** The client's body, streamed through (null: none). */
  body: Readable | null;
}

export interface ForwardedAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface UploadForwarderOptions {
  secret: string;
}

export class UploadForwarder {
  private readonly agent: Agent;

  constructor(private readonly o: UploadForwarderOptions) {
    this.agent = new Agent({ connections: 64, headersTimeout: ANSWER_HEADERS_MS, bodyTimeout: ANSWER_BODY_MS, connect: { timeout: CONNECT_MS } });
  }

  /** Forward one request for a session `owner` holds; throws an OCI error when it cannot be. */
  async forward(owner: string, f: ForwardRequest): Promise<ForwardedAnswer> {
    const url = new URL(uploadForwardPath(f.id), owner);
    url.searchParams.set('name', f.name);
    if (f.digest !== undefined) url.searchParams.set('digest', f.digest);
    const headers: Record<string, string> = { authorization: `Bearer ${this.o.secret}` };
    for (const [k, v] of Object.entries(f.headers)) if (v !== undefined) headers[k] = v;
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        method: f.method as Dispatcher.HttpMethod,
        headers,
        body: f.body ? Readable.from(relayBody(f.body), { objectMode: false, highWaterMark: RELAY_AHEAD }) : null,
        dispatcher: this.agent,
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (UNREACHABLE.has(code)) {
        throw registryError('BLOB_UPLOAD_UNKNOWN', `the upload is held by the replica at ${owner}, which cannot be reached (${code}); nothing was stored, start the upload again`, { detail: { uuid: f.id } });
      }
      // Broken off half way (the owner died, the client went away, the owner never answered):
      // the owner drops a session whose body broke off, so the upload is gone either way.
      throw registryError('BLOB_UPLOAD_INVALID', `the request to the replica at ${owner} holding the upload broke off (${code || (err as Error).message}); start the upload again`, { detail: { uuid: f.id } });
    }
    const parts: Buffer[] = [];
    let n = 0;
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        n += chunk.length;
        if (n > ANSWER_MAX) throw new Error(`an answer longer than ${ANSWER_MAX} bytes`);
        parts.push(chunk);
      }
    } catch (err) {
      res.body.destroy();
      throw registryError('BLOB_UPLOAD_INVALID', `the replica at ${owner} holding the upload answered ${res.statusCode} but its answer broke off (${(err as Error).message})`, { detail: { uuid: f.id } });
    }
    if (res.statusCode === 401) {
      // The owner refused this replica's secret: a configuration fault, not the client's.
      throw registryError('UNAVAILABLE', `the replica at ${owner} holding the upload refused this replica's cluster.secret (every replica needs the same one)`, { detail: { uuid: f.id } });
    }
    const out: Record<string, string> = {};
    for (const h of RELAYED) {
      const v = res.headers[h];
      if (typeof v === 'string') out[h] = v;
    }
    return { status: res.statusCode, headers: out, body: Buffer.concat(parts, n) };
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}
