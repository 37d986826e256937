// Which upstream failures count towards the breaker (issue 18 fuzz finding): only those that
// mean the upstream cannot serve anyone. A 500 to one request's content (Distribution answers one
// to a manifest GET by a blob's digest) is a failure of that request, still relayed as
// UNAVAILABLE, but never a step towards refusing every client for failTimeout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UpstreamError, fromNetworkError, fromStatus, toRegistryError } from '../../src/upstream/errors.js';
import { deadlineError } from '../../src/upstream/body.js';
import { Breaker } from '../../src/upstream/breaker.js';

test('502, 503 and 504 are outages; 500, 501 and 505 answer one request and are not', () => {
  for (const s of [502, 503, 504]) assert.equal(fromStatus('docker.io', s, 'GET /v2/x').isOutage, true, String(s));
  for (const s of [500, 501, 505, 599]) {
    const e = fromStatus('docker.io', s, 'GET /v2/x');
    assert.equal(e.kind, 'unavailable', `${s} is still a failure of this request`);
    assert.equal(e.isOutage, false, String(s));
    assert.equal(toRegistryError(e, 'MANIFEST_UNKNOWN').statusCode, 503, `${s} still answers the client 503`);
  }
});

test('refused, reset and timed-out connections, DNS failures, deadlines and cut bodies are outages', () => {
  for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_SOCKET']) {
    const err = Object.assign(new Error(code), { code });
    assert.equal(fromNetworkError('docker.io', err, 'GET /v2/x').isOutage, true, code);
  }
  assert.equal(deadlineError('docker.io', 'GET /v2/x', 1500).isOutage, true);
  assert.equal(new UpstreamError('docker.io', 'unavailable', 'body cut', { causeCode: 'UND_ERR_SOCKET' }).isOutage, true);
});

test('not-found, denied, rate-limited, bad and corrupt answers never count', () => {
  for (const s of [400, 401, 403, 404, 429]) assert.equal(fromStatus('docker.io', s, 'GET /v2/x').isOutage, false, String(s));
  assert.equal(new UpstreamError('docker.io', 'bad-response', 'too large').isOutage, false);
  assert.equal(new UpstreamError('docker.io', 'integrity', 'digest mismatch').isOutage, false);
});

test('a breaker fed any number of 500s stays closed; five 503s open it', () => {
  const breaker = new Breaker(5, 30_000, () => 0);
  const feed = (e: UpstreamError): void => (e.isOutage ? breaker.failure() : breaker.success());
  for (let i = 0; i < 50; i++) feed(fromStatus('docker.io', 500, 'GET /v2/x/manifests/sha256:…'));
  assert.equal(breaker.state, 'closed');
  for (let i = 0; i < 5; i++) feed(fromStatus('docker.io', 503, 'GET /v2/x'));
  assert.equal(breaker.state, 'open');
});
