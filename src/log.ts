/**
 * The one logger factory. pino, structured, with secrets kept out wherever they can appear:
 *  - known fields are redacted by path (request headers such as Authorization and cookies,
 *    upstream credentials, tokens, passwords), at the top level and one or two levels down;
 *  - URLs (the access log's `url`, any `location`) lose their userinfo and the query parameters
 *    that carry credentials (presigned-URL signatures, tokens);
 *  - error messages and stacks are scrubbed of `Basic …` / `Bearer …` credentials and of URL
 *    userinfo before they are written.
 * No line repeats a key (jq, Loki and Elasticsearch keep only the last): a field named like one
 * pino writes itself (`msg`, `level`, `time`, `pid`, `hostname`, `service`) is renamed `<key>_`.
 */
import { pino, stdSerializers, type Logger, type DestinationStream } from 'pino';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  'headers["proxy-authorization"]',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["proxy-authorization"]',
  'authorization',
  '*.authorization',
  'password',
  '*.password',
  '*.*.password',
  'token',
  '*.token',
  'access_token',
  '*.access_token',
  'refresh_token',
  '*.refresh_token',
  'secret',
  '*.secret',
  'config.upstreams[*].password',
  'upstreams[*].password',
];

export const CENSOR = '[redacted]';

/** Query parameters whose values are credentials: S3/GCS/Azure presigned URLs, tokens. */
const SECRET_PARAMS = /^(x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential|signature|sig|token|access_token|refresh_token|password|secret|key|client_secret)$/i;

/** A URL (absolute or a path with a query) with userinfo and credential-bearing parameters masked. */
export function scrubUrl(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const q = value.indexOf('?');
  let head = q >= 0 ? value.slice(0, q) : value;
  head = head.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, `$1${CENSOR}@`);
  if (q < 0) return head;
  const query = value
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq >= 0 ? pair.slice(0, eq) : pair;
      let decoded = name;
      try {
        decoded = decodeURIComponent(name);
      } catch {
        // keep the raw name
      }
      return eq >= 0 && SECRET_PARAMS.test(decoded) ? `${name}=${CENSOR}` : pair;
    })
    .join('&');
  return `${head}?${query}`;
}

/** Credentials that can end up inside free text (error messages from libraries, stacks). */
export function scrubText(text: string): string {
  return text
    // A credential, not a challenge (`Bearer realm="…"` stays readable).
    .replace(/\b(Basic|Bearer)\s+(?!(?:realm|service|scope|error)=)[A-Za-z0-9._~+/-]{4,}=*/gi, `$1 ${CENSOR}`)
    .replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, `$1${CENSOR}@`)
    .replace(/([?&](?:x-amz-signature|x-amz-credential|signature|token|access_token|password)=)[^&\s"']+/gi, `$1${CENSOR}`);
}

/** Keys pino writes on every line (with `base`); a logged object must not repeat them. */
const OWN_KEYS = ['msg', 'level', 'time', 'pid', 'hostname', 'service'] as const;

function withoutOwnKeys(obj: Record<string, unknown>): Record<string, unknown> {
  if (!OWN_KEYS.some((k) => Object.hasOwn(obj, k))) return obj;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) out[(OWN_KEYS as readonly string[]).includes(k) ? `${k}_` : k] = v;
  return out;
}

function scrubError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const out = stdSerializers.err(err) as unknown as Record<string, unknown>;
  for (const k of ['message', 'stack']) {
    const v = out[k];
    if (typeof v === 'string') out[k] = scrubText(v);
  }
  return out;
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const opts = {
    level,
    redact: { paths: REDACT_PATHS, censor: CENSOR },
    serializers: { err: scrubError, error: scrubError, url: scrubUrl, location: scrubUrl },
    base: { service: 'berth' },
    hooks: {
      // The message text itself (the last string argument) is free text too.
      logMethod(this: Logger, args: unknown[], method: (...a: unknown[]) => void) {
        method.apply(this, args.map((a, i) => {
          if (typeof a === 'string') return scrubText(a);
          // The merging object (first argument), unless it is an Error, which pino serializes as `err`.
          if (i === 0 && typeof a === 'object' && a !== null && !(a instanceof Error) && !Array.isArray(a)) return withoutOwnKeys(a as Record<string, unknown>);
          return a;
        }));
      },
    },
  };
  return destination ? pino(opts, destination) : pino(opts);
}
