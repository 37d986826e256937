// Pull-side conformance with the OCI distribution-spec (v1.1), run as ONE table against Berth and,
// as a control, against the plain Distribution it mirrors. The official conformance suite cannot
// be built here (no Go module proxy), so each row restates a MUST or SHOULD of the spec's pull,
// content-discovery and error sections, an expectation of the suite's pull workflow (the sha256 of
// "hello world", `.INVALID_MANIFEST_NAME`, `sha256:totallywrong`), or a Distribution behaviour real
// clients rely on (ETag/304, Accept negotiation). Rows say where Distribution 2.8 legitimately
// differs (its tags/list ignores `n`, it accepts pushes); the Berth expectation is never relaxed
// to match it.
//
// Both targets serve the same repository, seeded into the Distribution: an OCI image (`v1`, the
// suite's pre-seeded shape), a Docker schema2 image, an OCI index, a Docker manifest list and
// extra tags for pagination.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request } from 'undici';
import {
  buildImage, buildIndex, pushImage, pushIndex, pushManifest, digestOf, MediaTypes, startDistribution,
  type Distribution, type FaultProxy, type BuiltImage, type BuiltIndex,
} from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';

const REPO = 'library/conformance';
const MISSING_REPO = 'library/never-pushed';
/** sha256 of "hello world": the suite's "blob that does not exist". */
const HELLO_WORLD = 'sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9';
/** The spec's error codes (code-1 … code-14). */
const SPEC_CODES = [
  'BLOB_UNKNOWN', 'BLOB_UPLOAD_INVALID', 'BLOB_UPLOAD_UNKNOWN', 'DIGEST_INVALID', 'MANIFEST_BLOB_UNKNOWN', 'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN', 'NAME_INVALID', 'NAME_UNKNOWN', 'SIZE_INVALID', 'UNAUTHORIZED', 'DENIED', 'UNSUPPORTED', 'TOOMANYREQUESTS',
];
const EXTRA_TAGS = ['10', '9', 'B', 'a', 'rc-1', 'z_last'];

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  header(name: string): string | undefined;
  json(): unknown;
}

interface Target {
  name: 'berth' | 'distribution';
  url: string;
  send(method: string, path: string, opts?: { headers?: Record<string, string>; body?: Buffer | string; allow5xx?: boolean }): Promise<Res>;
}

interface Fixtures {
  img: BuiltImage;
  dockerImg: BuiltImage;
  index: BuiltIndex;
  list: BuiltIndex;
  /** Every tag of REPO, ASCIIbetically sorted. */
  tags: string[];
}

type Check = (t: Target, fx: Fixtures) => Promise<void>;

interface Row {
  /** Where the requirement comes from: a spec MUST/SHOULD (with its endpoint or section), the suite, or a client need. */
  source: string;
  title: string;
  check: Check;
  /**
   * The control run against Distribution: 'same' runs `check`; `{ differs, check }` runs another
   * check and says why; `{ differs }` alone skips the control with that reason.
   */
  control: 'same' | { differs: string; check?: Check };
}

// ---------------------------------------------------------------------------------------------
// Assertions shared by rows

function errorCodes(res: Res): string[] {
  assert.match(res.header('content-type') ?? '', /^application\/json/, 'an error body is JSON');
  const doc = res.json() as { errors?: unknown };
  assert.ok(Array.isArray(doc.errors) && doc.errors.length > 0, `an "errors" array: ${res.body.toString()}`);
  return (doc.errors as unknown[]).map((e) => {
    assert.ok(typeof e === 'object' && e !== null, 'each error is an object');
    const { code, message } = e as { code?: unknown; message?: unknown };
    assert.equal(typeof code, 'string');
    assert.match(code as string, /^[A-Z_]+$/, 'code: upper-case letters and underscores only');
    if (message !== undefined) assert.equal(typeof message, 'string', 'message, when present, is a string');
    return code as string;
  });
}

/** Status and OCI envelope with one of `codes` (all of them from the spec's table). */
function assertError(res: Res, status: number, codes: string[]): void {
  assert.equal(res.status, status, `status ${res.status}: ${res.body.toString().slice(0, 300)}`);
  const got = errorCodes(res);
  for (const c of got) assert.ok(SPEC_CODES.includes(c), `${c} is one of the spec's codes`);
  assert.ok(got.some((c) => codes.includes(c)), `one of ${codes.join('/')} in ${got.join(',')}`);
}

function assertManifest(res: Res, m: { manifest: Buffer; manifestDigest: string; mediaType: string }, method: 'GET' | 'HEAD'): void {
  assert.equal(res.status, 200, res.body.toString().slice(0, 300));
  assert.equal(res.header('content-type'), m.mediaType, 'Content-Type is the stored media type, without parameters');
  assert.equal(res.header('docker-content-digest'), m.manifestDigest);
  assert.equal(res.header('content-length'), String(m.manifest.length));
  if (method === 'GET') {
    assert.ok(res.body.equals(m.manifest), 'body is the manifest byte for byte');
    const declared = (JSON.parse(res.body.toString()) as { mediaType?: string }).mediaType;
    assert.equal(declared, res.header('content-type'), 'Content-Type agrees with the mediaType field');
  } else {
    assert.equal(res.body.length, 0, 'HEAD has no body');
  }
}

const ACCEPT_ALL = [MediaTypes.dockerManifest, MediaTypes.dockerManifestList, MediaTypes.ociManifest, MediaTypes.ociIndex, '*/*'].join(', ');
const acceptOci = { accept: MediaTypes.ociManifest };

/** Status and headers of a response whose body is not read (for a server that breaks the body). */
function responseHead(url: string, headers: Record<string, string>): Promise<{ status: number; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers, agent: false }, (res) => {
      resolve({ status: res.statusCode ?? 0, headers: res.headers });
      res.on('error', () => undefined);
      res.destroy();
    });
    req.once('error', reject);
    req.end();
  });
}

async function followTagPages(t: Target, first: string): Promise<{ pages: string[][]; links: (string | undefined)[] }> {
  const pages: string[][] = [];
  const links: (string | undefined)[] = [];
  let next: string | undefined = first;
  while (next !== undefined && pages.length < 20) {
    const res = await t.send('GET', next);
    assert.equal(res.status, 200);
    pages.push((res.json() as { tags: string[] }).tags);
    const link = res.header('link');
    links.push(link);
    next = link === undefined ? undefined : /^<([^>]+)>;\s*rel="next"$/.exec(link)?.[1];
    if (link !== undefined) assert.ok(next, `Link is RFC 5988 with rel="next": ${link}`);
  }
  return { pages, links };
}

// ---------------------------------------------------------------------------------------------
// The table

const ROWS: Row[] = [
  // --- API version check (end-1)
  {
    source: 'MUST end-1',
    title: 'GET /v2/ answers 200 with a JSON body and Docker-Distribution-API-Version',
    control: 'same',
    async check(t) {
      const r = await t.send('GET', '/v2/');
      assert.equal(r.status, 200);
      assert.match(r.header('content-type') ?? '', /^application\/json/);
      assert.deepEqual(r.json(), {});
      assert.equal(r.header('docker-distribution-api-version'), 'registry/2.0');
    },
  },
  // --- Manifests (end-3)
  {
    source: 'MUST end-3 + suite',
    title: 'GET a manifest by tag with the suite\'s OCI-only Accept: 200, exact bytes, Content-Type, Docker-Content-Digest',
    control: 'same',
    async check(t, fx) {
      assertManifest(await t.send('GET', `/v2/${REPO}/manifests/v1`, { headers: acceptOci }), fx.img, 'GET');
    },
  },
  {
    source: 'MUST HEAD + suite',
    title: 'HEAD a manifest by tag: 200 with Docker-Content-Digest, Content-Length and Content-Type, no body',
    control: 'same',
    async check(t, fx) {
      assertManifest(await t.send('HEAD', `/v2/${REPO}/manifests/v1`, { headers: acceptOci }), fx.img, 'HEAD');
    },
  },
  {
    source: 'MUST end-3',
    title: 'GET a manifest by digest: 200 with the bytes that hash to the requested digest',
    control: 'same',
    async check(t, fx) {
      const r = await t.send('GET', `/v2/${REPO}/manifests/${fx.img.manifestDigest}`, { headers: acceptOci });
      assertManifest(r, fx.img, 'GET');
      assert.equal(digestOf(r.body), fx.img.manifestDigest);
    },
  },
  {
    source: 'MUST HEAD',
    title: 'HEAD a manifest by digest: 200 with Docker-Content-Digest and Content-Length, no body',
    control: 'same',
    async check(t, fx) {
      assertManifest(await t.send('HEAD', `/v2/${REPO}/manifests/${fx.img.manifestDigest}`, { headers: acceptOci }), fx.img, 'HEAD');
    },
  },
  {
    source: 'MUST end-3 (Content-Type = pushed type)',
    title: 'a Docker schema2 manifest is served as application/vnd.docker.distribution.manifest.v2+json',
    control: 'same',
    async check(t, fx) {
      assertManifest(await t.send('GET', `/v2/${REPO}/manifests/docker`, { headers: { accept: ACCEPT_ALL } }), fx.dockerImg, 'GET');
    },
  },
  {
    source: 'MUST end-3 (Content-Type = pushed type)',
    title: 'an OCI index is served byte-exact as application/vnd.oci.image.index.v1+json, never trimmed',
    control: 'same',
    async check(t, fx) {
      assertManifest(await t.send('GET', `/v2/${REPO}/manifests/index`, { headers: { accept: ACCEPT_ALL } }), fx.index, 'GET');
      assertManifest(await t.send('HEAD', `/v2/${REPO}/manifests/index`, { headers: { accept: ACCEPT_ALL } }), fx.index, 'HEAD');
    },
  },
  {
    source: 'MUST end-3 (Content-Type = pushed type)',
    title: 'a Docker manifest list is served byte-exact as application/vnd.docker.distribution.manifest.list.v2+json',
    control: 'same',
    async check(t, fx) {
      assertManifest(await t.send('GET', `/v2/${REPO}/manifests/list`, { headers: { accept: ACCEPT_ALL } }), fx.list, 'GET');
    },
  },
  {
    source: 'MUST end-3',
    title: 'every platform manifest an index names is served by digest',
    control: 'same',
    async check(t, fx) {
      for (const img of [...fx.index.images, ...fx.list.images]) {
        assertManifest(await t.send('GET', `/v2/${REPO}/manifests/${img.manifestDigest}`, { headers: { accept: ACCEPT_ALL } }), img, 'GET');
      }
    },
  },
  {
    source: 'client need (Distribution: ETag, If-None-Match)',
    title: 'a manifest carries ETag "<digest>" and If-None-Match with it answers 304',
    control: 'same',
    async check(t, fx) {
      const r = await t.send('GET', `/v2/${REPO}/manifests/v1`, { headers: acceptOci });
      assert.equal(r.header('etag'), `"${fx.img.manifestDigest}"`);
      const again = await t.send('GET', `/v2/${REPO}/manifests/v1`, { headers: { ...acceptOci, 'if-none-match': `"${fx.img.manifestDigest}"` } });
      assert.equal(again.status, 304);
      assert.equal(again.body.length, 0);
    },
  },
  {
    source: 'client need (Distribution Accept negotiation)',
    title: 'an OCI manifest asked for by a client that accepts only Docker schema2 is a 404 MANIFEST_UNKNOWN, not a wrong type',
    control: 'same',
    async check(t) {
      assertError(await t.send('GET', `/v2/${REPO}/manifests/v1`, { headers: { accept: MediaTypes.dockerManifest } }), 404, ['MANIFEST_UNKNOWN']);
    },
  },
  {
    source: 'MUST end-3 failure',
    title: 'GET a tag that does not exist: 404 MANIFEST_UNKNOWN in the OCI envelope',
    control: 'same',
    async check(t) {
      assertError(await t.send('GET', `/v2/${REPO}/manifests/no-such-tag`, { headers: acceptOci }), 404, ['MANIFEST_UNKNOWN']);
    },
  },
  {
    source: 'MUST HEAD failure',
    title: 'HEAD a tag that does not exist: 404 with no body',
    control: 'same',
    async check(t) {
      const r = await t.send('HEAD', `/v2/${REPO}/manifests/no-such-tag`, { headers: acceptOci });
      assert.equal(r.status, 404);
      assert.equal(r.body.length, 0);
    },
  },
  {
    source: 'MUST end-3 failure',
    title: 'GET a well-formed digest that does not exist (sha256 of "hello world"): 404 MANIFEST_UNKNOWN',
    control: 'same',
    async check(t) {
      assertError(await t.send('GET', `/v2/${REPO}/manifests/${HELLO_WORLD}`, { headers: acceptOci }), 404, ['MANIFEST_UNKNOWN']);
    },
  },
  {
    source: 'MUST ("pulling a repository that does not exist MUST return 404")',
    title: 'a manifest of a repository that does not exist: 404 NAME_UNKNOWN or MANIFEST_UNKNOWN',
    control: 'same',
    async check(t) {
      assertError(await t.send('GET', `/v2/${MISSING_REPO}/manifests/latest`, { headers: acceptOci }), 404, ['NAME_UNKNOWN', 'MANIFEST_UNKNOWN']);
    },
  },
  {
    source: 'suite (invalid tag → 404, never 400 or 5xx)',
    title: 'GET and HEAD .INVALID_MANIFEST_NAME: 404 (Berth: with MANIFEST_UNKNOWN in the envelope)',
    control: {
      differs: 'Distribution\'s router does not match the reference and answers a plain-text 404; only the status is checked',
      async check(t) {
        assert.equal((await t.send('GET', `/v2/${REPO}/manifests/.INVALID_MANIFEST_NAME`)).status, 404);
        assert.equal((await t.send('HEAD', `/v2/${REPO}/manifests/.INVALID_MANIFEST_NAME`)).status, 404);
      },
    },
    async check(t) {
      assertError(await t.send('GET', `/v2/${REPO}/manifests/.INVALID_MANIFEST_NAME`, { headers: acceptOci }), 404, ['MANIFEST_UNKNOWN']);
      const head = await t.send('HEAD', `/v2/${REPO}/manifests/.INVALID_MANIFEST_NAME`, { headers: acceptOci });
      assert.equal(head.status, 404);
      assert.equal(head.body.length, 0);
    },
  },
  {
    source: 'suite (malformed digest → 400 with an OCI body, or 404)',
    title: 'GET manifests/sha256:totallywrong: Berth answers 400 DIGEST_INVALID in the envelope',
    control: {
      differs: 'Distribution 2.8 looks the reference up as a tag and answers 500 UNKNOWN, which the suite rejects',
      async check(t) {
        const r = await t.send('GET', `/v2/${REPO}/manifests/sha256:totallywrong`, { headers: acceptOci, allow5xx: true });
        assert.equal(r.status, 500);
      },
    },
    async check(t) {
      assertError(await t.send('GET', `/v2/${REPO}/manifests/sha256:totallywrong`, { headers: acceptOci }), 400, ['DIGEST_INVALID']);
    },
  },
  {
    source: 'MUST name grammar',
    title: 'a repository name outside the grammar (upper case) is refused with 400 NAME_INVALID, never forwarded',
    control: { differs: 'Distribution\'s router answers a plain-text 404 for a name outside the grammar', async check(t) {
      const r = await t.send('GET', '/v2/Library/Conformance/manifests/v1', { headers: acceptOci });
      assert.equal(r.status, 404);
    } },
    async check(t) {
      assertError(await t.send('GET', '/v2/Library/Conformance/manifests/v1', { headers: acceptOci }), 400, ['NAME_INVALID']);
    },
  },
  // --- Blobs (end-2)
  {
    source: 'MUST end-2',
    title: 'GET a blob: 200, the exact bytes, Docker-Content-Digest matching them, Content-Length',
    control: 'same',
    async check(t, fx) {
      for (const [digest, data] of [[fx.img.configDigest, fx.img.config], ...fx.img.layers.map((l) => [l.digest, l.data] as const)] as const) {
        const r = await t.send('GET', `/v2/${REPO}/blobs/${digest}`);
        assert.equal(r.status, 200);
        assert.ok(r.body.equals(data));
        assert.equal(r.header('docker-content-digest'), digestOf(r.body));
        assert.equal(r.header('content-length'), String(data.length));
      }
    },
  },
  {
    source: 'MUST HEAD',
    title: 'HEAD a blob: 200 with Content-Length and Docker-Content-Digest, no body',
    control: 'same',
    async check(t, fx) {
      const layer = fx.img.layers[1];
      assert.ok(layer);
      const r = await t.send('HEAD', `/v2/${REPO}/blobs/${layer.digest}`);
      assert.equal(r.status, 200);
      assert.equal(r.header('content-length'), String(layer.size));
      assert.equal(r.header('docker-content-digest'), layer.digest);
      assert.equal(r.body.length, 0);
    },
  },
  {
    source: 'MUST end-2 failure + suite',
    title: 'GET the blob sha256("hello world"): 404 BLOB_UNKNOWN; HEAD: 404 with no body',
    control: 'same',
    async check(t) {
      assertError(await t.send('GET', `/v2/${REPO}/blobs/${HELLO_WORLD}`), 404, ['BLOB_UNKNOWN']);
      const head = await t.send('HEAD', `/v2/${REPO}/blobs/${HELLO_WORLD}`);
      assert.equal(head.status, 404);
      assert.equal(head.body.length, 0);
    },
  },
  {
    source: 'MUST digest grammar',
    title: 'a blob digest outside the grammar is refused with 400 DIGEST_INVALID',
    control: { differs: 'Distribution\'s router answers 404 for a non-hex digest', async check(t) {
      const r = await t.send('GET', `/v2/${REPO}/blobs/sha256:totallywrong`);
      assert.ok(r.status === 400 || r.status === 404, `status ${r.status}`);
    } },
    async check(t) {
      assertError(await t.send('GET', `/v2/${REPO}/blobs/sha256:totallywrong`), 400, ['DIGEST_INVALID']);
    },
  },
  {
    source: 'SHOULD Range (RFC 9110)',
    title: 'a blob Range bytes=0-9 is answered 206 with Content-Range and exactly those bytes',
    control: 'same',
    async check(t, fx) {
      const layer = fx.img.layers[2];
      assert.ok(layer);
      const r = await t.send('GET', `/v2/${REPO}/blobs/${layer.digest}`, { headers: { range: 'bytes=0-9' } });
      assert.equal(r.status, 206);
      assert.equal(r.header('content-range'), `bytes 0-9/${layer.size}`);
      assert.equal(r.header('content-length'), '10');
      assert.ok(r.body.equals(layer.data.subarray(0, 10)));
    },
  },
  {
    source: 'SHOULD Range (containerd resumes with bytes=N-)',
    title: 'an open-ended Range bytes=N- is answered 206 with the rest of the blob',
    control: 'same',
    async check(t, fx) {
      const layer = fx.img.layers[2];
      assert.ok(layer);
      const from = Math.floor(layer.size / 3);
      const r = await t.send('GET', `/v2/${REPO}/blobs/${layer.digest}`, { headers: { range: `bytes=${from}-` } });
      assert.equal(r.status, 206);
      assert.equal(r.header('content-range'), `bytes ${from}-${layer.size - 1}/${layer.size}`);
      assert.ok(r.body.equals(layer.data.subarray(from)));
    },
  },
  {
    source: 'SHOULD Range (RFC 9110 suffix range)',
    title: 'a suffix Range bytes=-N is answered 206 with the last N bytes',
    control: 'same',
    async check(t, fx) {
      const layer = fx.img.layers[2];
      assert.ok(layer);
      const r = await t.send('GET', `/v2/${REPO}/blobs/${layer.digest}`, { headers: { range: 'bytes=-100' } });
      assert.equal(r.status, 206);
      assert.equal(r.header('content-range'), `bytes ${layer.size - 100}-${layer.size - 1}/${layer.size}`);
      assert.ok(r.body.equals(layer.data.subarray(layer.size - 100)));
    },
  },
  {
    source: 'SHOULD Range (RFC 9110 §15.5.17)',
    title: 'a Range that starts past the end is answered 416 with Content-Range: bytes */size',
    control: {
      differs: 'Distribution 2.8 sends the 416 head with the whole blob\'s Content-Length and no body, so the connection breaks after the head',
      async check(t, fx) {
        const layer = fx.img.layers[2];
        assert.ok(layer);
        const head = await responseHead(`${t.url}/v2/${REPO}/blobs/${layer.digest}`, { range: `bytes=${layer.size + 1}-` });
        assert.equal(head.status, 416);
        assert.equal(head.headers['content-range'], `bytes */${layer.size}`);
      },
    },
    async check(t, fx) {
      const layer = fx.img.layers[2];
      assert.ok(layer);
      const r = await t.send('GET', `/v2/${REPO}/blobs/${layer.digest}`, { headers: { range: `bytes=${layer.size + 1}-` } });
      assert.equal(r.status, 416);
      assert.equal(r.header('content-range'), `bytes */${layer.size}`);
    },
  },
  {
    source: 'client need (digest and Content-Length contract)',
    title: 'a blob is never sent with a Content-Encoding, whatever Accept-Encoding the client offers',
    control: 'same',
    async check(t, fx) {
      const layer = fx.img.layers[0];
      assert.ok(layer);
      const r = await t.send('GET', `/v2/${REPO}/blobs/${layer.digest}`, { headers: { 'accept-encoding': 'zstd;q=1.0, gzip;q=0.8, deflate;q=0.5' } });
      assert.equal(r.status, 200);
      assert.equal(r.header('content-encoding'), undefined);
      assert.equal(r.header('content-length'), String(layer.size));
      assert.equal(digestOf(r.body), layer.digest);
    },
  },
  // --- Tags (end-8a, end-8b)
  {
    source: 'MUST end-8a',
    title: 'tags/list answers {name, tags} with every tag, sorted ASCIIbetically',
    control: {
      differs: 'Distribution 2.8 returns the same set of tags but does not promise their order',
      async check(t, fx) {
        const r = await t.send('GET', `/v2/${REPO}/tags/list`);
        assert.equal(r.status, 200);
        const doc = r.json() as { name: string; tags: string[] };
        assert.equal(doc.name, REPO);
        assert.deepEqual([...doc.tags].sort(), fx.tags);
      },
    },
    async check(t, fx) {
      const r = await t.send('GET', `/v2/${REPO}/tags/list`);
      assert.equal(r.status, 200);
      assert.match(r.header('content-type') ?? '', /^application\/json/);
      assert.deepEqual(r.json(), { name: REPO, tags: fx.tags });
    },
  },
  {
    source: 'MUST end-8b (n)',
    title: 'tags/list?n=3 returns the first 3 tags and a Link rel="next" to the rest',
    control: { differs: 'Distribution 2.8 ignores n on tags/list and returns every tag' },
    async check(t, fx) {
      const r = await t.send('GET', `/v2/${REPO}/tags/list?n=3`);
      assert.equal(r.status, 200);
      assert.deepEqual((r.json() as { tags: string[] }).tags, fx.tags.slice(0, 3));
      assert.equal(r.header('link'), `</v2/${REPO}/tags/list?last=${fx.tags[2] ?? ''}&n=3>; rel="next"`);
    },
  },
  {
    source: 'MUST end-8b (last is exclusive)',
    title: 'tags/list?n=3&last=<tag> returns the next 3 tags after <tag>, which is not repeated',
    control: { differs: 'Distribution 2.8 ignores n and last on tags/list' },
    async check(t, fx) {
      const last = fx.tags[2] ?? '';
      const r = await t.send('GET', `/v2/${REPO}/tags/list?n=3&last=${encodeURIComponent(last)}`);
      assert.deepEqual((r.json() as { tags: string[] }).tags, fx.tags.slice(3, 6));
    },
  },
  {
    source: 'MUST end-8b (last without n)',
    title: 'tags/list?last=<tag> returns every tag after <tag>',
    control: { differs: 'Distribution 2.8 ignores last on tags/list' },
    async check(t, fx) {
      const last = fx.tags[4] ?? '';
      const r = await t.send('GET', `/v2/${REPO}/tags/list?last=${encodeURIComponent(last)}`);
      assert.deepEqual((r.json() as { tags: string[] }).tags, fx.tags.slice(5));
      assert.equal(r.header('link'), undefined);
    },
  },
  {
    source: 'MUST end-8b (n=0)',
    title: 'tags/list?n=0 returns an empty list and no Link header',
    control: { differs: 'Distribution 2.8 ignores n on tags/list' },
    async check(t) {
      const r = await t.send('GET', `/v2/${REPO}/tags/list?n=0`);
      assert.equal(r.status, 200);
      assert.deepEqual((r.json() as { tags: string[] }).tags, []);
      assert.equal(r.header('link'), undefined);
    },
  },
  {
    source: 'MUST end-8b (fewer than n only with a Link or at the end)',
    title: 'following Link headers from tags/list?n=2 visits every tag exactly once, in order; the last page has no Link',
    control: { differs: 'Distribution 2.8 ignores n: one page with every tag and no Link', async check(t, fx) {
      const { pages, links } = await followTagPages(t, `/v2/${REPO}/tags/list?n=2`);
      assert.equal(pages.length, 1);
      assert.deepEqual([...(pages[0] ?? [])].sort(), fx.tags);
      assert.deepEqual(links, [undefined]);
    } },
    async check(t, fx) {
      const { pages, links } = await followTagPages(t, `/v2/${REPO}/tags/list?n=2`);
      assert.deepEqual(pages.flat(), fx.tags);
      for (const [i, p] of pages.entries()) if (i < pages.length - 1) assert.equal(p.length, 2, 'a page with a Link is full');
      assert.equal(links[links.length - 1], undefined);
    },
  },
  {
    source: 'MUST end-8a failure',
    title: 'tags/list of a repository that does not exist: 404 NAME_UNKNOWN',
    control: 'same',
    async check(t) {
      assertError(await t.send('GET', `/v2/${MISSING_REPO}/tags/list`), 404, ['NAME_UNKNOWN']);
    },
  },
  // --- Push and delete on a read-only mirror (end-4 … end-7, end-9, end-10, end-13)
  {
    source: 'MUST error codes (UNSUPPORTED, code-13)',
    title: 'starting a blob upload (end-4a) on the mirror: 405 UNSUPPORTED',
    control: { differs: 'Distribution is a writable registry: the upload starts (202)', async check(t) {
      const r = await t.send('POST', '/v2/library/conformance-push/blobs/uploads/', { headers: { 'content-length': '0' } });
      assert.equal(r.status, 202);
    } },
    async check(t) {
      assertError(await t.send('POST', `/v2/${REPO}/blobs/uploads/`, { headers: { 'content-length': '0' } }), 405, ['UNSUPPORTED']);
    },
  },
  {
    source: 'MUST error codes (UNSUPPORTED, code-13)',
    title: 'a cross-repository mount (end-11) on the mirror: 405 UNSUPPORTED',
    control: { differs: 'Distribution mounts the blob (201)', async check(t, fx) {
      const r = await t.send('POST', `/v2/library/conformance-push/blobs/uploads/?mount=${fx.img.configDigest}&from=${REPO}`, { headers: { 'content-length': '0' } });
      assert.equal(r.status, 201);
    } },
    async check(t, fx) {
      const r = await t.send('POST', `/v2/library/conformance-push/blobs/uploads/?mount=${fx.img.configDigest}&from=${REPO}`, { headers: { 'content-length': '0' } });
      assertError(r, 405, ['UNSUPPORTED']);
    },
  },
  {
    source: 'MUST error codes (UNSUPPORTED, code-13)',
    title: 'PATCH, PUT and GET on an upload session (end-5, end-6, end-13) on the mirror: 405 UNSUPPORTED',
    control: { differs: 'Distribution answers 404 BLOB_UPLOAD_UNKNOWN for a session it never opened', async check(t) {
      const r = await t.send('PATCH', `/v2/${REPO}/blobs/uploads/5f0c3bd3-5c5b-4b7e-a1de-7f61f1c4f0a1`, { body: 'x' });
      assert.equal(r.status, 404);
    } },
    async check(t) {
      const session = `/v2/${REPO}/blobs/uploads/5f0c3bd3-5c5b-4b7e-a1de-7f61f1c4f0a1`;
      assertError(await t.send('PATCH', session, { body: 'x' }), 405, ['UNSUPPORTED']);
      assertError(await t.send('PUT', `${session}?digest=${HELLO_WORLD}`, { body: 'hello world' }), 405, ['UNSUPPORTED']);
      assertError(await t.send('GET', session), 405, ['UNSUPPORTED']);
    },
  },
  {
    source: 'MUST error codes (UNSUPPORTED, code-13)',
    title: 'pushing a manifest (end-7) to the mirror: 405 UNSUPPORTED, and the tag does not appear',
    control: { differs: 'Distribution accepts the manifest (201)', async check(t, fx) {
      const r = await t.send('PUT', '/v2/library/conformance-push/manifests/pushed', {
        headers: { 'content-type': fx.img.mediaType }, body: fx.img.manifest,
      });
      assert.ok(r.status === 201 || r.status === 400, `status ${r.status}`);
    } },
    async check(t, fx) {
      const r = await t.send('PUT', `/v2/${REPO}/manifests/pushed`, { headers: { 'content-type': fx.img.mediaType }, body: fx.img.manifest });
      assertError(r, 405, ['UNSUPPORTED']);
      assert.equal((await t.send('HEAD', `/v2/${REPO}/manifests/pushed`, { headers: acceptOci })).status, 404);
    },
  },
  {
    source: 'MUST end-9 (deletion disabled → 400 or 405)',
    title: 'deleting a manifest on the mirror (delete not enabled): 405 UNSUPPORTED, and it is still served',
    control: 'same',
    async check(t, fx) {
      assertError(await t.send('DELETE', `/v2/${REPO}/manifests/${fx.img.manifestDigest}`), 405, ['UNSUPPORTED']);
      assert.equal((await t.send('HEAD', `/v2/${REPO}/manifests/${fx.img.manifestDigest}`, { headers: acceptOci })).status, 200);
    },
  },
  {
    source: 'MUST end-10 (deletion disabled → 400 or 405)',
    title: 'deleting a blob on the mirror: 405 UNSUPPORTED, and it is still served',
    control: 'same',
    async check(t, fx) {
      assertError(await t.send('DELETE', `/v2/${REPO}/blobs/${fx.img.configDigest}`), 405, ['UNSUPPORTED']);
      assert.equal((await t.send('HEAD', `/v2/${REPO}/blobs/${fx.img.configDigest}`)).status, 200);
    },
  },
  // --- Referrers (end-12a) and proxying
  {
    source: 'MUST (backwards compatibility: a client falls back to the referrers tag schema only on 404)',
    title: 'the referrers API, which the mirror does not serve, answers 404 so clients fall back to the tag schema',
    control: 'same',
    async check(t, fx) {
      const r = await t.send('GET', `/v2/${REPO}/referrers/${fx.img.manifestDigest}`);
      assert.equal(r.status, 404, `status ${r.status}: ${r.body.toString().slice(0, 200)}`);
    },
  },
  {
    source: 'SHOULD proxying (OCI-Namespace)',
    title: 'a pull with ?ns=docker.io is served and the namespace is echoed in OCI-Namespace',
    control: { differs: 'Distribution is not a proxy: it ignores ns and sends no OCI-Namespace', async check(t, fx) {
      assertManifest(await t.send('GET', `/v2/${REPO}/manifests/v1?ns=docker.io`, { headers: acceptOci }), fx.img, 'GET');
    } },
    async check(t, fx) {
      const r = await t.send('GET', `/v2/${REPO}/manifests/v1?ns=docker.io`, { headers: acceptOci });
      assertManifest(r, fx.img, 'GET');
      assert.equal(r.header('oci-namespace'), 'docker.io');
      const blob = await t.send('HEAD', `/v2/${REPO}/blobs/${fx.img.configDigest}?ns=docker.io`);
      assert.equal(blob.status, 200);
      assert.equal(blob.header('oci-namespace'), 'docker.io');
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Running the table against both targets

let rig: Rig;
let upstream: Distribution;
let upstreamProxy: FaultProxy;
let berth: BerthHandle;
let fx: Fixtures;

function makeTarget(name: Target['name'], url: () => string): Target {
  return {
    name,
    get url() {
      return url();
    },
    async send(method, path, opts = {}) {
      const res = await request(`${url()}${path}`, {
        method: method as 'GET',
        headers: opts.headers ?? {},
        body: opts.body,
      });
      const body = Buffer.from(await res.body.arrayBuffer());
      const headers = res.headers;
      const r: Res = {
        status: res.statusCode,
        headers,
        body,
        header: (n) => {
          const v = headers[n.toLowerCase()];
          return Array.isArray(v) ? v.join(', ') : v;
        },
        json: () => JSON.parse(body.toString('utf8')) as unknown,
      };
      if (opts.allow5xx !== true) assert.ok(r.status < 500, `${method} ${path}: never a 5xx (got ${r.status}: ${body.toString().slice(0, 200)})`);
      if (name === 'berth') assert.equal(r.header('docker-distribution-api-version'), 'registry/2.0', `${method} ${path}: API version header`);
      return r;
    },
  };
}

before(async () => {
  const img = buildImage({ seed: 'conformance-oci', layers: [1024, 40_000, 200_000] });
  const dockerImg = buildImage({ seed: 'conformance-docker', format: 'docker', layers: 2 });
  const index = buildIndex({ seed: 'conformance-index', format: 'oci' });
  const list = buildIndex({ seed: 'conformance-list', format: 'docker' });
  rig = await startRig({
    seed: async (registry) => {
      await pushImage(registry.url, REPO, 'v1', img);
      await pushImage(registry.url, REPO, 'docker', dockerImg);
      await pushIndex(registry.url, REPO, 'index', index);
      await pushIndex(registry.url, REPO, 'list', list);
      for (const tag of EXTRA_TAGS) await pushManifest(registry.url, REPO, tag, img.manifest, img.mediaType);
    },
    upstreams: { 'docker.io': { tagTtl: '1h' } },
  });
  const tags = ['v1', 'docker', 'index', 'list', ...EXTRA_TAGS].sort();
  fx = { img, dockerImg, index, list, tags };
  ({ upstream, proxy: upstreamProxy, berth } = rig);
});

after(async () => {
  await rig?.stop();
});

const targets = [makeTarget('berth', () => berth.url), makeTarget('distribution', () => upstream.url)];

for (const target of targets) {
  describe(target.name === 'berth' ? 'Berth' : 'Distribution 2.8 (control)', () => {
    for (const row of ROWS) {
      const name = `[${row.source}] ${row.title}`;
      if (target.name === 'berth') {
        test(name, () => row.check(target, fx));
      } else if (row.control === 'same') {
        test(name, () => row.check(target, fx));
      } else if (row.control.check !== undefined) {
        const alt = row.control.check;
        test(`${name} — differs: ${row.control.differs}`, () => alt(target, fx));
      } else {
        test(name, { skip: `differs: ${row.control.differs}` }, () => undefined);
      }
    }
  });
}

test('Berth never forwarded a malformed request upstream', () => {
  const bad = upstreamProxy.requests.filter((r) => /INVALID_MANIFEST_NAME|totallywrong|\/Library\//.test(r.path));
  assert.deepEqual(bad.map((r) => `${r.method} ${r.path}`), []);
  const writes = upstreamProxy.requests.filter((r) => !['GET', 'HEAD'].includes(r.method));
  assert.deepEqual(writes.map((r) => `${r.method} ${r.path}`), [], 'no push or delete reached the upstream');
});

// ---------------------------------------------------------------------------------------------
// Hosted repositories (issue 14): the push side — push, mount, delete, referrers — against a
// Berth with `repositories: [{ match: "ci/**", mode: hosted }]` (and storage.deleteEnabled), with
// a plain Distribution 2.8 with delete enabled as the control. Distribution has no referrers API.

const HOSTED_PREFIX = 'ci/conformance';

interface PushFixtures {
  img: BuiltImage;
  other: BuiltImage;
}

type PushCheck = (t: Target, fx: PushFixtures) => Promise<void>;

interface PushRow {
  source: string;
  title: string;
  check: PushCheck;
  control: 'same' | { differs: string; check?: PushCheck };
}

async function uploadStart(t: Target, repo: string): Promise<string> {
  const r = await t.send('POST', `/v2/${repo}/blobs/uploads/`, { headers: { 'content-length': '0' } });
  assert.equal(r.status, 202, r.body.toString());
  const location = r.header('location');
  assert.ok(location, 'Location');
  return location.startsWith('http') ? new URL(location).pathname + new URL(location).search : location;
}

function withDigest(location: string, digest: string): string {
  return `${location}${location.includes('?') ? '&' : '?'}digest=${digest}`;
}

async function pushAllBlobs(t: Target, repo: string, img: BuiltImage): Promise<void> {
  for (const [d, data] of [[img.configDigest, img.config], ...img.layers.map((l) => [l.digest, l.data] as const)] as const) {
    // A session and a PUT with the body: what every registry takes (2.8 ignores POST ?digest=).
    const location = await uploadStart(t, repo);
    const r = await t.send('PUT', withDigest(location, d), { headers: { 'content-type': 'application/octet-stream' }, body: data });
    assert.equal(r.status, 201, r.body.toString());
  }
}

async function putManifest(t: Target, repo: string, ref: string, img: { manifest: Buffer; mediaType: string }): Promise<Res> {
  return t.send('PUT', `/v2/${repo}/manifests/${ref}`, { headers: { 'content-type': img.mediaType }, body: img.manifest });
}

const PUSH_ROWS: PushRow[] = [
  {
    source: 'MUST end-4b (monolithic POST ?digest=)',
    title: 'a monolithic upload answers 201 with the blob Location, and the blob is served',
    control: { differs: 'Distribution 2.8 ignores ?digest= on POST and opens a session (202), which the spec allows', async check(t, fx) {
      const layer = fx.img.layers[0]!;
      const r = await t.send('POST', `/v2/${HOSTED_PREFIX}-mono/blobs/uploads/?digest=${layer.digest}`, { headers: { 'content-type': 'application/octet-stream' }, body: layer.data });
      assert.equal(r.status, 202);
    } },
    async check(t, fx) {
      const repo = `${HOSTED_PREFIX}-mono`;
      const layer = fx.img.layers[0]!;
      const r = await t.send('POST', `/v2/${repo}/blobs/uploads/?digest=${layer.digest}`, { headers: { 'content-type': 'application/octet-stream' }, body: layer.data });
      assert.equal(r.status, 201);
      assert.match(r.header('location') ?? '', new RegExp(`/v2/${repo}/blobs/${layer.digest}$`));
      const got = await t.send('GET', `/v2/${repo}/blobs/${layer.digest}`);
      assert.ok(got.body.equals(layer.data));
    },
  },
  {
    source: 'MUST end-5 (streaming PATCH), end-6 (PUT ?digest=)',
    title: 'a session: PATCH without Content-Range, then PUT ?digest= → 201; the Range header says 0-<last>',
    control: 'same',
    async check(t, fx) {
      const repo = `${HOSTED_PREFIX}-stream`;
      const layer = fx.img.layers[2]!;
      const location = await uploadStart(t, repo);
      const p = await t.send('PATCH', location, { headers: { 'content-type': 'application/octet-stream' }, body: layer.data });
      assert.equal(p.status, 202);
      assert.equal(p.header('range'), `0-${layer.size - 1}`);
      const next = p.header('location') ?? location;
      const path = next.startsWith('http') ? new URL(next).pathname + new URL(next).search : next;
      const put = await t.send('PUT', withDigest(path, layer.digest));
      assert.equal(put.status, 201);
      assert.equal(put.header('docker-content-digest'), layer.digest);
    },
  },
  {
    source: 'MUST end-5 (chunked, in order; out of order → 416)',
    title: 'chunked PATCH with Content-Range: in order 202, out of order 416',
    control: { differs: 'Distribution 2.8 does not compare a chunk\'s start with the upload\'s offset (it appends and answers 202)' },
    async check(t, fx) {
      const repo = `${HOSTED_PREFIX}-chunks`;
      const data = fx.img.layers[1]!.data;
      const location = await uploadStart(t, repo);
      const half = Math.floor(data.length / 2);
      const c1 = await t.send('PATCH', location, { headers: { 'content-type': 'application/octet-stream', 'content-range': `0-${half - 1}`, 'content-length': String(half) }, body: data.subarray(0, half) });
      assert.equal(c1.status, 202);
      const next = c1.header('location') ?? location;
      const path = next.startsWith('http') ? new URL(next).pathname + new URL(next).search : next;
      const skip = await t.send('PATCH', path, { headers: { 'content-type': 'application/octet-stream', 'content-range': `${half + 10}-${data.length - 1}`, 'content-length': String(data.length - half - 10) }, body: data.subarray(half + 10) });
      assert.equal(skip.status, 416);
    },
  },
  {
    source: 'MUST end-6 (digest mismatch → DIGEST_INVALID)',
    title: 'the final PUT with a digest the bytes do not hash to: 400 DIGEST_INVALID, and no blob',
    control: 'same',
    async check(t, fx) {
      const repo = `${HOSTED_PREFIX}-wrong`;
      const location = await uploadStart(t, repo);
      const wrong = digestOf('not these bytes');
      const put = await t.send('PUT', withDigest(location, wrong), { headers: { 'content-type': 'application/octet-stream' }, body: fx.other.config });
      assertError(put, 400, ['DIGEST_INVALID']);
      assert.equal((await t.send('HEAD', `/v2/${repo}/blobs/${wrong}`)).status, 404);
    },
  },
  {
    source: 'MUST end-7 (manifest PUT)',
    title: 'a manifest PUT by tag: 201 with Location and Docker-Content-Digest, served byte-exact',
    control: 'same',
    async check(t, fx) {
      const repo = `${HOSTED_PREFIX}-app`;
      await pushAllBlobs(t, repo, fx.img);
      const r = await putManifest(t, repo, 'v1', fx.img);
      assert.equal(r.status, 201, r.body.toString());
      assert.equal(r.header('docker-content-digest'), fx.img.manifestDigest);
      assert.match(r.header('location') ?? '', new RegExp(`/v2/${repo}/manifests/`));
      assertManifest(await t.send('GET', `/v2/${repo}/manifests/v1`, { headers: acceptOci }), fx.img, 'GET');
    },
  },
  {
    source: 'MUST end-7 (MANIFEST_BLOB_UNKNOWN)',
    title: 'a manifest naming a blob the repository does not hold: 400 MANIFEST_BLOB_UNKNOWN',
    control: 'same',
    async check(t, fx) {
      const r = await putManifest(t, `${HOSTED_PREFIX}-empty`, 'v1', fx.other);
      assertError(r, 400, ['MANIFEST_BLOB_UNKNOWN']);
    },
  },
  {
    source: 'MAY end-11 (cross-repository mount)',
    title: 'mount from a repository that holds the blob: 201; from one that does not: 202 and a session',
    control: 'same',
    async check(t, fx) {
      const from = `${HOSTED_PREFIX}-app`;
      const layer = fx.img.layers[0]!;
      const ok = await t.send('POST', `/v2/${HOSTED_PREFIX}-mounted/blobs/uploads/?mount=${layer.digest}&from=${from}`, { headers: { 'content-length': '0' } });
      assert.equal(ok.status, 201);
      assert.equal((await t.send('HEAD', `/v2/${HOSTED_PREFIX}-mounted/blobs/${layer.digest}`)).status, 200);
      const no = await t.send('POST', `/v2/${HOSTED_PREFIX}-mounted/blobs/uploads/?mount=${fx.other.configDigest}&from=${from}`, { headers: { 'content-length': '0' } });
      assert.equal(no.status, 202);
    },
  },
  {
    source: 'MUST end-9 (manifest delete by digest → 202)',
    title: 'deleting a manifest by digest: 202, then 404',
    control: 'same',
    async check(t, fx) {
      const repo = `${HOSTED_PREFIX}-del`;
      await pushAllBlobs(t, repo, fx.other);
      assert.equal((await putManifest(t, repo, 'v1', fx.other)).status, 201);
      const r = await t.send('DELETE', `/v2/${repo}/manifests/${fx.other.manifestDigest}`);
      assert.equal(r.status, 202);
      assert.equal((await t.send('HEAD', `/v2/${repo}/manifests/${fx.other.manifestDigest}`, { headers: acceptOci })).status, 404);
    },
  },
  {
    source: 'MAY end-9 (tag delete)',
    title: 'deleting a tag: 202, the tag is gone, the manifest stays by digest',
    control: { differs: 'Distribution 2.8 does not delete by tag: it refuses the DELETE and the tag stays', async check(t, fx) {
      const repo = `${HOSTED_PREFIX}-tagdel`;
      await pushAllBlobs(t, repo, fx.other);
      assert.equal((await putManifest(t, repo, 'old', fx.other)).status, 201);
      const r = await t.send('DELETE', `/v2/${repo}/manifests/old`);
      assert.ok(r.status >= 400, `status ${r.status}`);
      assert.equal((await t.send('HEAD', `/v2/${repo}/manifests/old`, { headers: acceptOci })).status, 200);
    } },
    async check(t, fx) {
      const repo = `${HOSTED_PREFIX}-tagdel`;
      await pushAllBlobs(t, repo, fx.other);
      assert.equal((await putManifest(t, repo, 'old', fx.other)).status, 201);
      const r = await t.send('DELETE', `/v2/${repo}/manifests/old`);
      assert.equal(r.status, 202);
      assert.equal((await t.send('HEAD', `/v2/${repo}/manifests/old`, { headers: acceptOci })).status, 404);
      assert.equal((await t.send('HEAD', `/v2/${repo}/manifests/${fx.other.manifestDigest}`, { headers: acceptOci })).status, 200);
    },
  },
  {
    source: 'MUST end-10 (blob delete → 202)',
    title: 'deleting a blob: 202, then 404',
    control: 'same',
    async check(t, fx) {
      const repo = `${HOSTED_PREFIX}-blobdel`;
      await pushAllBlobs(t, repo, fx.other);
      const r = await t.send('DELETE', `/v2/${repo}/blobs/${fx.other.configDigest}`);
      assert.equal(r.status, 202);
      assert.equal((await t.send('HEAD', `/v2/${repo}/blobs/${fx.other.configDigest}`)).status, 404);
    },
  },
  {
    source: 'MUST end-12a (referrers: an index, never 404 for an unknown subject)',
    title: 'a manifest with subject is answered with OCI-Subject and listed by the referrers API',
    control: { differs: 'Distribution 2.8 has no referrers API (404)', async check(t, fx) {
      assert.equal((await t.send('GET', `/v2/${HOSTED_PREFIX}-app/referrers/${fx.img.manifestDigest}`)).status, 404);
    } },
    async check(t, fx) {
      const repo = `${HOSTED_PREFIX}-app`;
      const artifact = Buffer.from(JSON.stringify({
        schemaVersion: 2, mediaType: MediaTypes.ociManifest, artifactType: 'application/vnd.example.sbom',
        config: { mediaType: fx.img.configMediaType, digest: fx.img.configDigest, size: fx.img.config.length },
        layers: [], subject: { mediaType: fx.img.mediaType, digest: fx.img.manifestDigest, size: fx.img.manifest.length },
      }));
      const put = await putManifest(t, repo, digestOf(artifact), { manifest: artifact, mediaType: MediaTypes.ociManifest });
      assert.equal(put.status, 201, put.body.toString());
      assert.equal(put.header('oci-subject'), fx.img.manifestDigest);
      const r = await t.send('GET', `/v2/${repo}/referrers/${fx.img.manifestDigest}`);
      assert.equal(r.status, 200);
      assert.equal(r.header('content-type'), MediaTypes.ociIndex);
      const idx = r.json() as { manifests: { digest: string; artifactType?: string }[] };
      assert.deepEqual(idx.manifests.map((m) => [m.digest, m.artifactType]), [[digestOf(artifact), 'application/vnd.example.sbom']]);
      const none = await t.send('GET', `/v2/${repo}/referrers/${HELLO_WORLD}`);
      assert.equal(none.status, 200);
      assert.deepEqual((none.json() as { manifests: unknown[] }).manifests, []);
    },
  },
];

describe('Hosted repositories: push, mount, delete, referrers', () => {
  let hostedBerth: BerthHandle;
  let control: Distribution;
  let pfx: PushFixtures;
  before(async () => {
    control = await startDistribution({ deleteEnabled: true });
    hostedBerth = await rig.addBerth({ repositories: [{ match: 'ci/**', mode: 'hosted' }], storage: { deleteEnabled: true } });
    pfx = {
      img: buildImage({ seed: 'conformance-push', layers: [1024, 40_000, 300_000] }),
      other: buildImage({ seed: 'conformance-push-other', layers: 1 }),
    };
  });
  after(async () => {
    await control?.stop();
  });
  const pushTargets = [makeTarget('berth', () => hostedBerth.url), makeTarget('distribution', () => control.url)];
  for (const target of pushTargets) {
    describe(target.name === 'berth' ? 'Berth (hosted)' : 'Distribution 2.8 (control, delete enabled)', () => {
      for (const row of PUSH_ROWS) {
        const name = `[${row.source}] ${row.title}`;
        if (target.name === 'berth' || row.control === 'same') {
          test(name, () => row.check(target, pfx));
        } else if (row.control.check !== undefined) {
          const alt = row.control.check;
          test(`${name} — differs: ${row.control.differs}`, () => alt(target, pfx));
        } else {
          test(name, { skip: `differs: ${row.control.differs}` }, () => undefined);
        }
      }
    });
  }
});
