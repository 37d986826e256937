// A blob upstream that stalls after its headers (issue 18 item 6). While no byte has gone to the
// client it gets 503 UNAVAILABLE with Retry-After (OCI error JSON) once the upstream has made no
// progress for headersTimeout, instead of an empty reply when the body timeout fires; after bytes
// were sent the response is cut and the reason logged. A real Distribution behind the fault proxy,
// whose stallAfter rule sends headers and some bytes, then nothing.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import {
  buildLargeBlobImage, pushImage, fetchBlob, digestOf, stallAfter,
  type Distribution, type FaultProxy, type BuiltImage,
} from '../helpers/index.js';
import type { BerthHandle } from '../helpers/berth.js';
import { startRig, type Rig } from '../helpers/rig.js';

let rig: Rig;
let upstream: Distribution;
let proxy: FaultProxy;
let berth: BerthHandle;
let early: BuiltImage;
let late: BuiltImage;
const MiB = 1024 * 1024;

before(async () => {
  rig = await startRig({ upstreams: { 'docker.io': { headersTimeout: '1s', bodyTimeout: '3s' } } });
  ({ upstream, proxy, berth } = rig);
  early = buildLargeBlobImage({ seed: 'first-byte-early', size: 2 * MiB, raw: true });
  late = buildLargeBlobImage({ seed: 'first-byte-late', size: 2 * MiB, raw: true });
  await pushImage(upstream.url, 'library/stall', 'early', early);
  await pushImage(upstream.url, 'library/stall', 'late', late);
});

after(async () => {
  await rig?.stop();
});

beforeEach(() => {
  rig.resetProxy();
});

function layerOf(img: BuiltImage): string {
  const d = img.layers[0]?.digest;
  assert.ok(d);
  return d;
}

test('an upstream that sends headers and then nothing: 503 with Retry-After before any byte, not an empty reply', async () => {
  const digest = layerOf(early);
  proxy.setRules([stallAfter(0, { match: { kind: 'blob', method: 'GET' } })]);
  const started = Date.now();
  const res = await request(`${berth.url}/v2/library/stall/blobs/${digest}`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  const body = await res.body.text();
  const took = Date.now() - started;
  assert.equal(res.statusCode, 503, body);
  assert.ok(Number(res.headers['retry-after']) >= 1, 'Retry-After says when to come back');
  const doc = JSON.parse(body) as { errors: { code: string; message: string }[] };
  assert.equal(doc.errors[0]?.code, 'UNAVAILABLE');
  assert.match(doc.errors[0]?.message ?? '', /docker\.io sent no bytes of blob sha256:[0-9a-f]{64}/);
  assert.ok(took < 2_900, `answered after the first-byte deadline (${took} ms), before the 3 s body timeout`);
  assert.ok(berth.logs().some((l) => l.includes('failed before its first byte') && l.includes('FIRST_BYTE_TIMEOUT')));

  // Once the upstream behaves, the blob is served and cached whole.
  proxy.setRules([]);
  await new Promise((r) => setTimeout(r, 2_500)); // the stalled fill ends at the body timeout
  const ok = await fetchBlob(berth.url, 'library/stall', digest);
  assert.equal(ok.status, 200);
  assert.equal(digestOf(ok.body), digest);
});

test('an upstream that stalls after bytes were sent: the response is cut, never completed, and the reason is logged', async () => {
  const digest = layerOf(late);
  proxy.setRules([stallAfter(600 * 1024, { match: { kind: 'blob', method: 'GET' } })]);
  const res = await request(`${berth.url}/v2/library/stall/blobs/${digest}`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  assert.equal(res.statusCode, 200, 'bytes flowed, so the status line went out');
  let received = 0;
  await assert.rejects(async () => {
    for await (const chunk of res.body) received += (chunk as Buffer).length;
  }, 'the body is cut short, not ended as if complete');
  assert.ok(received > 0 && received < 2 * MiB, `received ${received} bytes`);
  assert.ok(
    berth.logs().some((l) => l.includes('blob response ended early') && l.includes(digest) && /timeout/i.test(l)),
    'the cut is logged with its reason',
  );
});
