// No JSON log line repeats a key (issue 17.3): a failed request used to log
// {"code":…,"msg":"upstream …","msg":"request failed"}, and jq, Loki and Elasticsearch keep only
// the last, so the reason was lost. Two real `berth serve` processes (auth none and token, in front
// of a real Distribution and the Keycloak emulator) get representative traffic — pulls, 404s, an
// upstream that is down, auth failures, admin calls, a pre-warm one-off, shutdown — and every line
// they write is scanned with a duplicate-detecting JSON reader.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import {
  startDistribution, buildImage, pushImage, fetchManifest, fetchBlob, freePort, duplicateKeys, type Distribution, type BuiltImage,
} from '../helpers/index.js';
import { startBerthProcess, upstreamOverride, type BerthProcess } from '../helpers/berth.js';
import { startKeycloakEmulator, type KeycloakEmulator } from '../helpers/keycloak.js';

let upstream: Distribution;
let kc: KeycloakEmulator;
let image: BuiltImage;

before(async () => {
  upstream = await startDistribution();
  kc = await startKeycloakEmulator();
  image = buildImage({ seed: 'log-keys', layers: [1000, 30_000] });
  await pushImage(upstream.url, 'library/logged', '1', image);
});

after(async () => {
  await kc?.stop();
  await upstream?.stop();
});

async function call(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<number> {
  const res = await request(url, { method: (opts.method ?? 'GET') as 'GET', headers: opts.headers, body: opts.body });
  await res.body.dump();
  return res.statusCode;
}

/** Every JSON line the process wrote, checked; returns them parsed. */
function checkLines(output: string, who: string): Array<Record<string, unknown>> {
  const lines = output.split('\n').filter((l) => l.trim().startsWith('{'));
  const problems: string[] = [];
  for (const line of lines) {
    for (const d of duplicateKeys(line)) problems.push(`${d.path}.${d.key} repeated in ${line}`);
  }
  assert.deepEqual(problems, [], `${who}: lines with a repeated key`);
  return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('the duplicate-key scanner finds what JSON.parse hides', () => {
  assert.deepEqual(duplicateKeys('{"code":"X","msg":"a","msg":"b"}'), [{ path: '$', key: 'msg' }]);
  assert.deepEqual(duplicateKeys('{"err":{"type":"E","type":"F"},"list":[{"a":1,"a":2}]}'), [
    { path: '$.err', key: 'type' },
    { path: '$.list[0]', key: 'a' },
  ]);
  assert.deepEqual(duplicateKeys('{"a":"\\"msg\\":1","b":[1,2.5e3,true,null],"c":{}}'), []);
});

test('auth none: pulls, 404s, a down upstream, admin calls, a pre-warm one-off and shutdown log no repeated key', async () => {
  const dead = await freePort();
  let berth: BerthProcess | null = await startBerthProcess({
    upstreams: [upstreamOverride(upstream.url), { name: 'down.example', url: `http://127.0.0.1:${dead}`, maxFails: 1 }],
    log: { level: 'debug' },
  });
  try {
    const url = berth.url;
    assert.equal((await fetchManifest(url, 'library/logged', '1')).status, 200);
    for (const l of image.layers) assert.equal((await fetchBlob(url, 'library/logged', l.digest)).status, 200);
    assert.equal(await call(`${url}/v2/library/missing/manifests/1`), 404);
    assert.equal(await call(`${url}/v2/library/logged/blobs/sha256:${'0'.repeat(64)}`), 404);
    assert.equal(await call(`${url}/v2/app/manifests/1?ns=down.example`), 503);
    assert.equal(await call(`${url}/v2/app/manifests/2?ns=down.example`), 503, 'and again, with the breaker open');
    assert.equal(await call(`${url}/nowhere`), 404);
    assert.equal(await call(`${url}/api/v1/upstreams`), 200);
    assert.equal(await call(`${url}/api/v1/cache/gc`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' }), 415);
    const prewarm = await call(`${url}/api/v1/prewarm`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ref":"docker.io/library/nothing:1"}' });
    assert.equal(prewarm, 202);
    await new Promise((r) => setTimeout(r, 1_000)); // let the one-off run and log its failure
    const proc = berth;
    berth = null;
    await proc.stop();
    const lines = checkLines(proc.proc.output(), 'auth none');
    assert.ok(lines.length >= 15, `the run logged (${lines.length} lines)`);
    const failed = lines.find((l) => l['msg'] === 'request failed');
    assert.ok(failed, 'the down upstream is logged as a failed request');
    assert.equal(failed['code'], 'UNAVAILABLE');
    assert.match(String(failed['reason']), /upstream/, 'the reason survives beside the message');
    assert.ok(lines.some((l) => typeof l['exposure'] === 'object'), 'the start-up exposure line is there');
  } finally {
    await berth?.stop();
  }
});

test('auth token: challenges, forged and valid tokens, admin refusals log no repeated key', async () => {
  let berth: BerthProcess | null = await startBerthProcess({
    upstreams: [upstreamOverride(upstream.url)],
    auth: { mode: 'token', token: { realm: kc.tokenUrl, service: kc.service, issuer: kc.issuer, rootCertBundle: kc.trustBundlePath } },
    log: { level: 'debug' },
  });
  try {
    const url = berth.url;
    assert.equal(await call(`${url}/v2/library/logged/manifests/1`), 401);
    assert.equal(await call(`${url}/v2/library/logged/manifests/1`, { headers: { authorization: 'Bearer not.a.token' } }), 401);
    const t = await kc.fetchToken('alice', 'repository:library/logged:pull');
    assert.equal(t.status, 200);
    const bearer = { authorization: `Bearer ${t.token ?? ''}` };
    assert.equal((await fetchManifest(url, 'library/logged', '1', { headers: bearer })).status, 200);
    assert.equal(await call(`${url}/v2/library/other/manifests/1`, { headers: bearer }), 401, 'a token for another repository');
    assert.equal(await call(`${url}/api/v1/upstreams`), 401);
    assert.equal(await call(`${url}/api/v1/upstreams`, { headers: bearer }), 403);
    const proc = berth;
    berth = null;
    await proc.stop();
    const lines = checkLines(proc.proc.output(), 'auth token');
    assert.ok(lines.length >= 8, `the run logged (${lines.length} lines)`);
  } finally {
    await berth?.stop();
  }
});
