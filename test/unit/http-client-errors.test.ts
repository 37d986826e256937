// Requests refused before any route sees them (src/http/client-errors.ts), over real sockets to
// an in-process Berth: what Node's parser cannot read gets a minimal HTTP/1.1 answer with the OCI
// error body and a closed connection (a HEAD: no body); what Fastify's router cannot decode gets
// the OCI body through frameworkErrors. Never Fastify's `{"error":"Bad Request",...}`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startBerth, type BerthHandle } from '../helpers/berth.js';

let berth: BerthHandle;

before(async () => {
  // The upstream is a closed port: nothing here may reach it anyway.
  berth = await startBerth({
    upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:9', aliases: ['index.docker.io'] }],
    http: { headers: { 'x-team': 'platform' } },
  });
});

after(async () => {
  await berth?.stop();
});

/** Writes raw bytes on a fresh connection; resolves with everything read until the server closes it. */
function raw(bytes: Buffer | string): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(berth.port, '127.0.0.1', () => socket.write(bytes));
    const chunks: Buffer[] = [];
    socket.setTimeout(10_000, () => socket.destroy(new Error('the server did not close the connection')));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const [head = '', body = ''] = text.split('\r\n\r\n');
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body });
    });
  });
}

function ociCode(body: string): string {
  const parsed = JSON.parse(body) as { errors: Array<{ code: string; message: string; detail: unknown }> };
  assert.equal(parsed.errors.length, 1);
  const [e] = parsed.errors;
  assert.ok(e && typeof e.message === 'string' && 'detail' in e, body);
  return e.code;
}

test('a raw 0xA0 byte in the target: 400 NAME_INVALID in the OCI envelope, the usual headers, connection closed', async () => {
  const r = await raw(Buffer.from('GET /v2/library/alpine/manifests/v1\xa0 HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1'));
  assert.equal(r.status, 400);
  assert.equal(r.headers['content-type'], 'application/json');
  assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
  assert.equal(r.headers['x-team'], 'platform', 'http.headers ride along');
  assert.equal(r.headers['connection'], 'close');
  assert.equal(Number(r.headers['content-length']), Buffer.byteLength(r.body));
  assert.equal(ociCode(r.body), 'NAME_INVALID');
});

test('the same for HEAD: status and length, no body', async () => {
  const r = await raw(Buffer.from('HEAD /v2/library/alpine/manifests/v1\xa0 HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1'));
  assert.equal(r.status, 400);
  assert.ok(Number(r.headers['content-length']) > 0);
  assert.equal(r.body, '');
});

test('an unreadable method or header line: 400 UNKNOWN naming the parser reason; oversized headers: 431', async () => {
  const method = await raw('G@RBAGE / HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.equal(method.status, 400);
  assert.equal(ociCode(method.body), 'UNKNOWN');
  assert.match(method.body, /malformed HTTP request \(Invalid method encountered\)/);
  const header = await raw('GET /v2/ HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n');
  assert.equal(header.status, 400);
  assert.equal(ociCode(header.body), 'UNKNOWN');
  const big = await raw(`GET /v2/ HTTP/1.1\r\nHost: x\r\nx-big: ${'a'.repeat(64 * 1024)}\r\n\r\n`);
  assert.equal(big.status, 431);
  assert.equal(ociCode(big.body), 'UNKNOWN');
});

test('percent-encoding that decodes to invalid UTF-8: 400 NAME_INVALID through frameworkErrors, no FST_ERR body', async () => {
  const r = await berth.services.app.inject({ method: 'GET', url: '/v2/%c0%ae%c0%ae/library/alpine/manifests/v1' });
  assert.equal(r.statusCode, 400);
  assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
  assert.equal(r.headers['x-team'], 'platform');
  assert.equal(ociCode(r.body), 'NAME_INVALID');
  assert.doesNotMatch(r.body, /FST_ERR/);
});
