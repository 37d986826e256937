// Property-based fuzzing of Berth's HTTP surface (fast-check): generators for hostile `/v2`
// requests (names, tags, digests, dot segments, percent-encoding, Range, Accept, ?ns/?n/?last)
// and `/api/v1` calls with JSON bodies; a raw sender that puts the path on the wire exactly as
// generated (no URL normalisation); the oracle checks every answer must pass; and a tally of
// what was sent and seen, for the report. Imports nothing from src/.
import { readdir, lstat, realpath } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import fc from 'fast-check';
import { Client } from 'undici';

export interface FuzzRequest {
  method: string;
  /** Exactly what goes on the request line (printable latin-1, no spaces). */
  path: string;
  headers: Record<string, string>;
  body?: string;
}

export interface FuzzResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  ms: number;
}

/** What the suite needs to know to generate requests that hit real content and real routing. */
export interface FuzzWorld {
  /** Repositories seeded upstream, with their tags and every digest they hold. */
  repos: { name: string; tags: string[]; digests: string[] }[];
  /** Configured upstream names and aliases (legitimate `ns` values and path prefixes). */
  upstreamNames: string[];
  /** host:port of a registry Berth is NOT configured for: it must never see a request. */
  foreignHost: string;
}

// ------------------------------------------------------------------------------ generators

const lower = 'abcdefghijklmnopqrstuvwxyz0123456789';
const hex = '0123456789abcdef';

const fromChars = (chars: string, min: number, max: number): fc.Arbitrary<string> =>
  fc.string({ unit: fc.constantFrom(...chars.split('')), minLength: min, maxLength: max });

/** A name component of the OCI grammar: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`. */
const component = fc
  .tuple(fromChars(lower, 1, 8), fc.array(fc.tuple(fc.constantFrom('.', '_', '__', '-', '--'), fromChars(lower, 1, 6)), { maxLength: 2 }))
  .map(([head, tail]) => head + tail.map(([s, c]) => s + c).join(''));

/** Printable latin-1 without space or '?' / '#' (those would end the path). */
const pathChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...'abcXYZ019._-~/%:@!$&\'()*+,;=[]'.split('')) },
  { weight: 1, arbitrary: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)).filter((c) => c !== '?' && c !== '#') },
  { weight: 1, arbitrary: fc.integer({ min: 0xa0, max: 0xff }).map((c) => String.fromCharCode(c)) },
);

/** Segments that have broken path handling somewhere before. */
const nastySegment = fc.constantFrom(
  '..', '.', '', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '%2f', '..%2f..', '%2F..%2F', '%5c..%5c', '..\\..', '%00', 'a%00b', '%',
  '%zz', '%c0%ae%c0%ae', '%ef%bc%8e', 'UPPER', 'Library', '~user', 'a'.repeat(256), '__', '-a', 'a-', 'a..b', 'a__b', 'a___b',
  '_catalog', 'manifests', 'blobs', 'tags', 'list', 'uploads', 'referrers', 'sha256:', 'etc', 'passwd', 'proc', 'self',
);

function nameArb(w: FuzzWorld): fc.Arbitrary<string> {
  const known = fc.constantFrom(...w.repos.map((r) => r.name), 'fuzz', 'library/missing', 'no/such/repo');
  const prefixed = fc.tuple(fc.constantFrom(...w.upstreamNames, w.foreignHost, `localhost:${w.foreignHost.split(':')[1] ?? ''}`), fc.constantFrom(...w.repos.map((r) => r.name)))
    .map(([h, n]) => `${h}/${n}`);
  const valid = fc.array(component, { minLength: 1, maxLength: 4 }).map((c) => c.join('/'));
  const hostile = fc.array(fc.oneof(nastySegment, component, fc.string({ unit: pathChar, maxLength: 12 })), { minLength: 1, maxLength: 6 }).map((c) => c.join('/'));
  return fc.oneof({ weight: 4, arbitrary: known }, { weight: 2, arbitrary: prefixed }, { weight: 2, arbitrary: valid }, { weight: 3, arbitrary: hostile });
}

function digestArb(w: FuzzWorld): fc.Arbitrary<string> {
  const known = w.repos.flatMap((r) => r.digests);
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...known) },
    { weight: 2, arbitrary: fromChars(hex, 64, 64).map((h) => `sha256:${h}`) },
    { weight: 1, arbitrary: fromChars(hex, 0, 80).map((h) => `sha256:${h}`) },
    { weight: 1, arbitrary: fromChars(hex, 128, 128).map((h) => `sha512:${h}`) },
    { weight: 1, arbitrary: fc.constantFrom(...known).map((d) => d.toUpperCase()) },
    { weight: 1, arbitrary: fc.constantFrom(...known).map((d) => d.replace('sha256:', 'sha256+b64:')) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        'sha256:../../../../etc/passwd', 'sha256:..%2f..%2fetc', 'sha256:', ':abc', 'md5:d41d8cd98f00b204e9800998ecf8427e', 'sha256:%2e%2e',
        'sha256:' + 'g'.repeat(64), 'sha256::' + '0'.repeat(64), '..', '.', 'latest', 'sha256:' + '0'.repeat(64) + '/..',
      ),
    },
    { weight: 1, arbitrary: fc.string({ unit: pathChar, maxLength: 90 }) },
  );
}

function referenceArb(w: FuzzWorld): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...w.repos.flatMap((r) => r.tags), 'latest', 'nope') },
    { weight: 2, arbitrary: digestArb(w) },
    { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,130}$/) },
    { weight: 1, arbitrary: fc.constantFrom('.', '..', '-x', '.x', 'a'.repeat(129), 'a'.repeat(128), 'v1:', 'v1@sha256:', '%2e%2e') },
  );
}

/** The part after `/v2/`. */
function v2RestArb(w: FuzzWorld): fc.Arbitrary<string> {
  const name = nameArb(w);
  return fc.oneof(
    { weight: 6, arbitrary: fc.tuple(name, referenceArb(w)).map(([n, r]) => `${n}/manifests/${r}`) },
    { weight: 5, arbitrary: fc.tuple(name, digestArb(w)).map(([n, d]) => `${n}/blobs/${d}`) },
    { weight: 2, arbitrary: name.map((n) => `${n}/tags/list`) },
    { weight: 1, arbitrary: fc.tuple(name, digestArb(w)).map(([n, d]) => `${n}/referrers/${d}`) },
    { weight: 1, arbitrary: fc.tuple(name, fc.constantFrom('', '/', '/abc', '/../../x')).map(([n, s]) => `${n}/blobs/uploads${s}`) },
    { weight: 1, arbitrary: fc.constantFrom('', '_catalog', '_catalog/', 'manifests/x', '/blobs/x', 'tags/list') },
    { weight: 1, arbitrary: fc.string({ unit: pathChar, maxLength: 120 }) },
  );
}

const encodeAll = (s: string): string => [...s].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join('');

/** Rewrites a path the ways a hostile client would: percent-encoding, dot segments, doubled slashes. */
const pathMutation = fc.oneof(
  { weight: 6, arbitrary: fc.constant((p: string) => p) },
  { weight: 1, arbitrary: fc.nat(40).map((i) => (p: string) => p.slice(0, i) + encodeAll(p.slice(i, i + 3)) + p.slice(i + 3)) },
  { weight: 1, arbitrary: fc.constant((p: string) => p.replace(/\//g, '%2f')) },
  { weight: 1, arbitrary: fc.constant((p: string) => p.replace(/\//g, '//')) },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.nat(6), fc.constantFrom('../', './', '%2e%2e/', '..%2f', '.%2E/', '../../../../', '..;/'))
      .map(([at, seg]) => (p: string) => {
        const parts = p.split('/');
        const i = Math.min(at, parts.length);
        return [...parts.slice(0, i), seg.replace(/\/$/, ''), ...parts.slice(i)].join('/');
      }),
  },
);

function queryArb(w: FuzzWorld): fc.Arbitrary<string> {
  const port = w.foreignHost.split(':')[1] ?? '';
  const ns = fc.oneof(
    fc.constantFrom(...w.upstreamNames, w.foreignHost, `localhost:${port}`, `[::1]:${port}`, `127.0.0.1:${port}/`, '', 'DOCKER.IO', 'docker.io.', 'http://' + w.foreignHost, 'evil.example', '%00'),
    fc.string({ unit: pathChar, maxLength: 30 }).map(encodeURIComponent),
  );
  const n = fc.oneof(fc.integer({ min: -5, max: 10_000 }).map(String), fc.constantFrom('', 'abc', '1e3', '0x10', '99999999999999999999', '1.5', '-0', ' 3'));
  const last = fc.oneof(fc.constantFrom('v1', '', 'zzz', '%00', '..'), fc.string({ unit: pathChar, maxLength: 20 }).map(encodeURIComponent));
  const param = fc.oneof(
    { weight: 3, arbitrary: ns.map((v) => `ns=${v}`) },
    { weight: 2, arbitrary: n.map((v) => `n=${encodeURIComponent(v)}`) },
    { weight: 2, arbitrary: last.map((v) => `last=${v}`) },
    { weight: 1, arbitrary: fc.constantFrom('ns', 'n', 'last', 'ns=a&ns=b', '=', '&&', 'digest=sha256:x', 'mount=x&from=y') },
  );
  return fc.oneof({ weight: 2, arbitrary: fc.constant('') }, { weight: 3, arbitrary: fc.array(param, { minLength: 1, maxLength: 4 }).map((ps) => `?${ps.join('&')}`) });
}

const rangeArb: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(fc.nat(400_000), fc.nat(400_000)).map(([a, b]) => `bytes=${a}-${b}`),
  fc.nat(400_000).map((a) => `bytes=${a}-`),
  fc.nat(400_000).map((n) => `bytes=-${n}`),
  fc.tuple(fc.nat(100), fc.nat(100), fc.nat(100)).map(([a, b, c]) => `bytes=${a}-${b},${c}-`),
  fc.constantFrom('bytes=', 'bytes=-', 'bytes=--1', 'bytes=1-0', 'bytes=99999999999999999999999-', 'bytes=0-99999999999999999999999',
    'items=0-1', 'bytes = 0-1', 'BYTES=0-0', 'bytes=0x10-', 'bytes=1e3-', 'bytes=-0', 'bytes=0-0,', 'bytes=a-b'),
  fc.string({ unit: 'grapheme-ascii', maxLength: 40 }),
);

const mediaTypes = [
  'application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws', 'application/json', '*/*', 'text/html', 'application/*',
];
const acceptArb: fc.Arbitrary<string> = fc.oneof(
  fc.array(fc.tuple(fc.constantFrom(...mediaTypes), fc.option(fc.constantFrom(';q=0', ';q=0.5', ';q=1', ';q=abc', '; charset=utf-8', ';;;'))), { minLength: 1, maxLength: 5 })
    .map((ts) => ts.map(([t, p]) => t + (p ?? '')).join(', ')),
  fc.constantFrom('', ',', ',,,', ';', 'APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON', 'a'.repeat(2000)),
  fc.string({ unit: 'grapheme-ascii', maxLength: 60 }),
);

const methodArb = fc.oneof(
  { weight: 8, arbitrary: fc.constant('GET') },
  { weight: 4, arbitrary: fc.constant('HEAD') },
  { weight: 2, arbitrary: fc.constantFrom('POST', 'PUT', 'PATCH', 'DELETE') },
  { weight: 1, arbitrary: fc.constantFrom('OPTIONS', 'TRACE') },
);

/**
 * A pull a real client could send (a seeded repository, a real tag or digest) with `?ns` naming
 * some host: the requests that would reach the foreign registry if routing ever followed an
 * unconfigured `ns`. Hostile shapes alone rarely get that far.
 */
function plausiblePullArb(w: FuzzWorld): fc.Arbitrary<FuzzRequest> {
  const port = w.foreignHost.split(':')[1] ?? '';
  const ns = fc.constantFrom(w.foreignHost, `localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, ...w.upstreamNames);
  const route = fc.constantFrom(...w.repos.flatMap((r) => [
    ...r.tags.map((t) => `${r.name}/manifests/${t}`),
    ...r.digests.map((d) => `${r.name}/blobs/${d}`),
    `${r.name}/tags/list`,
  ]));
  return fc.record({ method: fc.constantFrom('GET', 'HEAD'), route, ns })
    .map(({ method, route: r, ns: n }) => ({ method, path: `/v2/${r}?ns=${n}`, headers: {} }));
}

/** One hostile `/v2` request (one in ten a plausible pull naming some host as `?ns`). */
export function v2RequestArb(w: FuzzWorld): fc.Arbitrary<FuzzRequest> {
  return fc.oneof({ weight: 9, arbitrary: hostileV2RequestArb(w) }, { weight: 1, arbitrary: plausiblePullArb(w) });
}

function hostileV2RequestArb(w: FuzzWorld): fc.Arbitrary<FuzzRequest> {
  return fc
    .record({
      method: methodArb,
      rest: v2RestArb(w),
      mutate: pathMutation,
      query: queryArb(w),
      range: fc.option(rangeArb, { freq: 3 }),
      accept: fc.option(acceptArb, { freq: 2 }),
      ifNoneMatch: fc.option(fc.constantFrom('*', '"x"', ...w.repos.flatMap((r) => r.digests.slice(0, 1)).map((d) => `"${d}"`)), { freq: 8 }),
      body: fc.option(fc.string({ maxLength: 64 }), { freq: 4 }),
    })
    .map((r) => {
      const headers: Record<string, string> = {};
      if (r.range !== null) headers['range'] = r.range;
      if (r.accept !== null) headers['accept'] = r.accept;
      if (r.ifNoneMatch !== null) headers['if-none-match'] = r.ifNoneMatch;
      const withBody = r.body !== null && r.method !== 'GET' && r.method !== 'HEAD' && r.method !== 'TRACE';
      if (withBody) headers['content-type'] = 'application/octet-stream';
      return {
        method: r.method,
        path: `/v2/${r.mutate(r.rest)}${r.query}`,
        headers,
        ...(withBody ? { body: r.body ?? '' } : {}),
      };
    });
}

/** References for `POST /api/v1/prewarm` and targets for `DELETE /api/v1/cache/...`. */
function refArb(w: FuzzWorld): fc.Arbitrary<string> {
  const host = fc.constantFrom('', ...w.upstreamNames.map((h) => `${h}/`), `${w.foreignHost}/`, 'localhost/', '../');
  const sep2 = fc.oneof(referenceArb(w).map((r) => (r.includes(':') ? `@${r}` : `:${r}`)), fc.constant(''));
  return fc.oneof(
    { weight: 3, arbitrary: fc.tuple(host, nameArb(w), sep2).map(([h, n, s]) => `${h}${n}${s}`) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  );
}

/** One `/api/v1` call: every route, odd methods, odd bodies and content types. */
export function apiRequestArb(w: FuzzWorld): fc.Arbitrary<FuzzRequest> {
  const jsonBody = fc.oneof(
    { weight: 4, arbitrary: refArb(w).map((ref) => JSON.stringify({ ref })) },
    { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }).map((ref) => JSON.stringify({ ref })) },
    { weight: 1, arbitrary: fc.constantFrom('', '{', '{"ref":', 'null', '[]', '"x"', '{"ref":"a","ref":"b"}', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}') },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }) },
  );
  const contentType = fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data', 'application/octet-stream', '');
  const call = fc.oneof(
    { weight: 1, arbitrary: fc.constantFrom('GET /upstreams', 'GET /cache', 'GET /prewarm', 'GET /', 'GET /nope', 'GET /cache/gc').map((c) => ({ c, suffix: '' })) },
    { weight: 1, arbitrary: fc.constantFrom('', 'true', '1', 'false', 'yes', '%00').map((v) => ({ c: 'POST /cache/gc', suffix: `?dryRun=${v}` })) },
    { weight: 3, arbitrary: fc.constant({ c: 'POST /prewarm', suffix: '' }) },
    { weight: 2, arbitrary: fc.tuple(refArb(w), pathMutation).map(([ref, m]) => ({ c: `DELETE /cache/${m(ref).replace(/[?#\s]/g, '')}`, suffix: '' })) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom('PUT', 'PATCH', 'DELETE', 'POST', 'OPTIONS'), fc.constantFrom('/upstreams', '/prewarm', '/cache', '/x/../upstreams', '/%2e%2e/v2/')).map(([m, p]) => ({ c: `${m} ${p}`, suffix: '' })) },
  );
  return fc.record({ call, body: jsonBody, contentType, sendBody: fc.boolean() }).map(({ call: { c, suffix }, body, contentType: ct, sendBody }) => {
    const space = c.indexOf(' ');
    const method = c.slice(0, space);
    const path = `/api/v1${c.slice(space + 1)}${suffix}`;
    const headers: Record<string, string> = {};
    const bodyAllowed = method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS';
    if (bodyAllowed && (sendBody || method === 'POST')) {
      if (ct !== '') headers['content-type'] = ct;
      return { method, path: latin1Only(path), headers, body };
    }
    return { method, path: latin1Only(path), headers };
  });
}

/** Percent-encodes what cannot go on a request line (spaces, controls, anything past latin-1). */
function latin1Only(path: string): string {
  return [...path].map((c) => {
    const code = c.codePointAt(0) ?? 0;
    if (code > 0x20 && code <= 0xff && code !== 0x7f) return c;
    return encodeURIComponent(c);
  }).join('');
}

// ------------------------------------------------------------------------------ sending

/**
 * Sends each request on a connection of its own (so one answer that closes its connection cannot
 * fail the next request), the path byte for byte as given.
 */
export function rawSender(origin: string): { send(req: FuzzRequest): Promise<FuzzResponse>; close(): Promise<void> } {
  const client = new Client(origin, { headersTimeout: 30_000, bodyTimeout: 30_000, pipelining: 1 });
  return {
    async send(req) {
      const started = Date.now();
      const res = await client.request({
        method: req.method as 'GET',
        path: req.path,
        headers: req.headers,
        reset: true,
        ...(req.body !== undefined ? { body: req.body } : {}),
      });
      const body = Buffer.from(await res.body.arrayBuffer());
      return { status: res.statusCode, headers: res.headers, body, ms: Date.now() - started };
    },
    close: () => client.close(),
  };
}

// ------------------------------------------------------------------------------ the oracle

/** The OCI error codes of the distribution spec (and `UNKNOWN`); a 4xx on /v2 must use one. */
export const OCI_ERROR_CODES = new Set([
  'BLOB_UNKNOWN', 'BLOB_UPLOAD_INVALID', 'BLOB_UPLOAD_UNKNOWN', 'DIGEST_INVALID', 'MANIFEST_BLOB_UNKNOWN', 'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN', 'NAME_INVALID', 'NAME_UNKNOWN', 'SIZE_INVALID', 'UNAUTHORIZED', 'DENIED', 'UNSUPPORTED',
  'TOOMANYREQUESTS', 'RANGE_INVALID', 'PAGINATION_NUMBER_INVALID', 'TAG_INVALID', 'UNAVAILABLE', 'UNKNOWN',
]);

const header = (res: FuzzResponse, name: string): string => {
  const v = res.headers[name];
  return Array.isArray(v) ? v.join(', ') : (v ?? '');
};

/** Why a 4xx body is not `{"errors":[{"code","message","detail"}]}` with a known code, or null when it is. */
export function ociErrorProblem(res: FuzzResponse): string | null {
  if (!/^application\/json\b/i.test(header(res, 'content-type'))) return `content-type ${JSON.stringify(header(res, 'content-type'))}, not application/json`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(res.body.toString('utf8'));
  } catch {
    return `body is not JSON: ${JSON.stringify(res.body.toString('utf8').slice(0, 120))}`;
  }
  const errors = (parsed as { errors?: unknown } | null)?.errors;
  if (!Array.isArray(errors) || errors.length === 0) return `no "errors" array: ${JSON.stringify(parsed).slice(0, 160)}`;
  for (const e of errors as Record<string, unknown>[]) {
    if (typeof e['code'] !== 'string' || !OCI_ERROR_CODES.has(e['code'])) return `unknown code ${JSON.stringify(e['code'])}`;
    if (typeof e['message'] !== 'string') return `no message for ${String(e['code'])}`;
    if (!('detail' in e)) return `no detail for ${String(e['code'])}`;
  }
  return null;
}

/**
 * True when every byte of the request target is printable ASCII. Node's parser answers any other
 * target (latin-1 bytes 0x80-0xff, DEL) with 400 before Fastify or Berth see the request.
 */
export function isHttpTarget(path: string): boolean {
  return /^[\x21-\x7e]*$/.test(path);
}

/**
 * What every answer to a fuzzed request must satisfy; returns the violations (none = pass). A
 * request line Node's parser refuses must get a 400, on /v2 with an OCI error body too.
 * `upstreamFailed`: the upstream answered this request with a 5xx.
 */
export function checkResponse(req: FuzzRequest, res: FuzzResponse, upstreamFailed = false): string[] {
  const problems: string[] = [];
  // The one 5xx allowed: the real upstream answered 5xx to this very request (Distribution 2.8
  // does for a manifest GET by a blob's digest), relayed as 502/503 in an OCI body.
  const relayed = upstreamFailed && (res.status === 502 || res.status === 503) && (req.method === 'HEAD' || ociErrorProblem(res) === null);
  if (res.status >= 500 && !relayed) problems.push(`a ${res.status}: ${res.body.toString('utf8').slice(0, 200)}`);
  const isV2 = req.path.startsWith('/v2');
  if (!isHttpTarget(req.path)) {
    // Node's HTTP parser refuses the request line before any route sees it.
    if (res.status !== 400) problems.push(`a request line Node cannot parse answered ${res.status}, not 400`);
    const p = isV2 && req.method !== 'HEAD' ? ociErrorProblem(res) : null;
    if (p !== null) problems.push(`an unparsable /v2 request line is not answered with an OCI error: ${p}`);
    return problems;
  }
  if (isV2 && res.status >= 400 && res.status < 500 && req.method !== 'HEAD') {
    const p = ociErrorProblem(res);
    if (p !== null) problems.push(`${res.status} on /v2 is not an OCI error: ${p}`);
  }
  if (isV2 && res.status === 401 && header(res, 'www-authenticate') === '') problems.push('401 without WWW-Authenticate');
  if (req.path.startsWith('/api/v1') && req.method !== 'HEAD' && res.body.length > 0) {
    try {
      JSON.parse(res.body.toString('utf8'));
    } catch {
      problems.push(`/api/v1 answered ${res.status} with a body that is not JSON: ${JSON.stringify(res.body.toString('utf8').slice(0, 120))}`);
    }
  }
  if (/\bat [\w.<>]+ \(|node:internal|\/dist\/src\//.test(res.body.toString('utf8'))) problems.push('a stack trace or source path in the body');
  return problems;
}

// ------------------------------------------------------------------------------ figures

export class Tally {
  requests = 0;
  readonly statuses = new Map<number, number>();
  readonly codes = new Map<string, number>();
  /** Answers the oracle let through for a stated reason (a known, reported defect; a relayed upstream 5xx), by reason. */
  readonly known = new Map<string, number>();
  slowestMs = 0;

  addKnown(label: string): void {
    this.known.set(label, (this.known.get(label) ?? 0) + 1);
  }

  add(res: FuzzResponse): void {
    this.requests += 1;
    this.statuses.set(res.status, (this.statuses.get(res.status) ?? 0) + 1);
    this.slowestMs = Math.max(this.slowestMs, res.ms);
    if (res.status >= 400 && res.body.length > 0) {
      try {
        const code = (JSON.parse(res.body.toString('utf8')) as { errors?: { code?: string }[] }).errors?.[0]?.code;
        if (code) this.codes.set(code, (this.codes.get(code) ?? 0) + 1);
      } catch {
        // not JSON: the oracle reports it where it matters
      }
    }
  }

  toString(): string {
    const s = [...this.statuses].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}×${v}`).join(' ');
    const c = [...this.codes].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}×${v}`).join(' ');
    const k = [...this.known].map(([label, v]) => `${v}× ${label}`).join('; ');
    return `${this.requests} requests; statuses ${s}; error codes ${c}; slowest ${this.slowestMs} ms${k ? `; let through: ${k}` : ''}`;
  }
}

// ------------------------------------------------------------------------------ the file tree

/**
 * Every path under `dir` (relative, '/'-separated, directories with a trailing '/'), skipping the
 * contents of `skip` (a descendant of dir). Symlinks are listed, not followed.
 */
export async function listTree(dir: string, skip?: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      const rel = relative(dir, p).split(sep).join('/');
      const st = await lstat(p);
      if (st.isDirectory()) {
        out.push(`${rel}/`);
        if (p !== skip) await walk(p);
      } else out.push(rel);
    }
  };
  await walk(dir);
  return out;
}

/** Entries under `root` that are symlinks, or whose real path leaves `root`. */
export async function escapesFrom(root: string): Promise<string[]> {
  const realRoot = await realpath(root);
  const bad: string[] = [];
  for (const rel of await listTree(root)) {
    const p = join(root, rel);
    if ((await lstat(p)).isSymbolicLink()) bad.push(`${rel} is a symlink`);
    else if (!(await realpath(p)).startsWith(realRoot)) bad.push(`${rel} resolves outside the root`);
  }
  return bad;
}
