/**
 * The one catalogue of errors Berth answers with. Each entry is an `@fastify/error` constructor
 * whose `code` is the OCI distribution error code and whose `statusCode` is the HTTP status, so
 * the HTTP layer renders any of them as `{"errors":[{"code","message","detail"}]}` without a
 * lookup. Layers below HTTP (registry/, storage/, upstream/) throw these; they import no Fastify.
 */
import createError, { type FastifyErrorConstructor } from '@fastify/error';

type Ctor = FastifyErrorConstructor<{ code: string; statusCode: number }, [string?]>;

function oci(code: string, status: number, message: string): Ctor {
  // `%s` lets a caller add the specific reason; without one the generic text stands alone.
  return createError(code, `${message}%s`, status) as Ctor;
}

export const Errors = {
  BLOB_UNKNOWN: oci('BLOB_UNKNOWN', 404, 'blob unknown to registry'),
  MANIFEST_UNKNOWN: oci('MANIFEST_UNKNOWN', 404, 'manifest unknown'),
  MANIFEST_INVALID: oci('MANIFEST_INVALID', 400, 'manifest invalid'),
  NAME_UNKNOWN: oci('NAME_UNKNOWN', 404, 'repository name not known to registry'),
  NAME_INVALID: oci('NAME_INVALID', 400, 'invalid repository name'),
  DIGEST_INVALID: oci('DIGEST_INVALID', 400, 'invalid digest'),
  TAG_INVALID: oci('TAG_INVALID', 400, 'invalid tag'),
  RANGE_INVALID: oci('RANGE_INVALID', 416, 'requested range not satisfiable'),
  PAGINATION_NUMBER_INVALID: oci('PAGINATION_NUMBER_INVALID', 400, 'invalid number of results requested'),
  UNAUTHORIZED: oci('UNAUTHORIZED', 401, 'authentication required'),
  DENIED: oci('DENIED', 403, 'requested access to the resource is denied'),
  UNSUPPORTED: oci('UNSUPPORTED', 405, 'the operation is unsupported'),
  TOOMANYREQUESTS: oci('TOOMANYREQUESTS', 429, 'too many requests'),
  UNAVAILABLE: oci('UNAVAILABLE', 503, 'upstream registry unavailable'),
  BAD_GATEWAY: oci('UNKNOWN', 502, 'upstream registry answered with an error'),
  UNKNOWN: oci('UNKNOWN', 500, 'unknown error'),
  // Push side of hosted repositories (issue 14).
  BLOB_UPLOAD_UNKNOWN: oci('BLOB_UPLOAD_UNKNOWN', 404, 'blob upload unknown to registry'),
  BLOB_UPLOAD_INVALID: oci('BLOB_UPLOAD_INVALID', 400, 'blob upload invalid'),
  /** A chunk that does not start where the upload stands: 416 with the current Range. */
  BLOB_UPLOAD_RANGE: oci('BLOB_UPLOAD_INVALID', 416, 'chunk out of order'),
  SIZE_INVALID: oci('SIZE_INVALID', 400, 'provided length did not match content length'),
  MANIFEST_BLOB_UNKNOWN: oci('MANIFEST_BLOB_UNKNOWN', 400, 'manifest references a manifest or blob unknown to registry'),
  /** A manifest PUT over hosted.maxManifestSize. */
  MANIFEST_TOO_LARGE: oci('SIZE_INVALID', 413, 'manifest too large'),
  /** A path no route serves outside /v2 (the admin API): not a repository, so not NAME_UNKNOWN. */
  NOT_FOUND: oci('NOT_FOUND', 404, 'no such route'),
} as const;

export type ErrorName = keyof typeof Errors;

/** Extra fields a registry error may carry to the HTTP layer. */
export interface ErrorExtras {
  detail?: unknown;
  headers?: Record<string, string>;
}

export interface RegistryError extends Error {
  code: string;
  statusCode: number;
  detail?: unknown;
  headers?: Record<string, string>;
}

/** Build a catalogued error with an optional specific reason, OCI `detail` and response headers. */
export function registryError(name: ErrorName, reason?: string, extras: ErrorExtras = {}): RegistryError {
  const err = new Errors[name](reason ? `: ${reason}` : '') as RegistryError;
  if (extras.detail !== undefined) err.detail = extras.detail;
  if (extras.headers) err.headers = extras.headers;
  return err;
}

export function isRegistryError(err: unknown): err is RegistryError {
  if (!(err instanceof Error)) return false;
  const e = err as Partial<RegistryError>;
  return typeof e.code === 'string' && typeof e.statusCode === 'number' &&
    Object.values(Errors).some((C) => err instanceof C);
}
