// The JWKS URL is read under a byte cap and one absolute deadline (issue 18 item 1, the JWKS
// leftover): a realm, or whatever answers at its address, that streams an endless document,
// drips a byte at a time below every idle timeout, declares a huge length or sends a compressed
// body costs at most the cap and the deadline. Nothing of such a body is kept, the failure is
// logged with its reason, and a good JWKS from the Keycloak emulator still loads (the control).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { TrustStore } from '../../src/auth/keys.js';
import { startKeycloakEmulator, type KeycloakEmulator } from '../helpers/keycloak.js';

let server: Server;
let base: string;
let kc: KeycloakEmulator;
const open = new Set<ServerResponse>();
const timers = new Set<NodeJS.Timeout>();

const CAP = 64 * 1024;
const DEADLINE_MS = 800;

before(async () => {
  kc = await startKeycloakEmulator();
  server = createServer((req, res) => {
    open.add(res);
    res.on('close', () => open.delete(res));
    switch (req.url) {
      case '/endless': {
        // A JSON-looking document that never ends, as fast as the socket takes it.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"keys":[');
        const chunk = Buffer.alloc(16 * 1024, 0x20);
        const pump = (): void => {
          while (!res.destroyed && res.write(chunk));
          if (!res.destroyed) res.once('drain', pump);
        };
        pump();
        return;
      }
      case '/drip': {
        // One byte every 100 ms: never idle long enough for a body timeout to fire.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{');
        const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write(' ')), 100);
        timers.add(t);
        return;
      }
      case '/huge': {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(CAP * 1000) });
        res.write('{"keys":[');
        return;
      }
      case '/gzip': {
        const body = gzipSync(JSON.stringify({ keys: [] }));
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': String(body.length) });
        res.end(body);
        return;
      }
      case '/stall': {
        // Accepts the request and never answers.
        return;
      }
      default:
        res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  for (const t of timers) clearInterval(t);
  for (const res of open) res.destroy();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await kc?.stop();
});

/** A TrustStore on `jwks` with the test's caps, and the log lines it wrote. */
function store(jwks: string): { trust: TrustStore; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const trust = new TrustStore({
    rootCertBundle: null, jwks, refreshMs: 3_600_000, log: pino({ level: 'debug' }, sink), fetchLimits: { maxBytes: CAP, deadlineMs: DEADLINE_MS },
  });
  return { trust, lines };
}

async function timedStart(path: string): Promise<{ ms: number; size: number; error: string }> {
  const { trust, lines } = store(`${base}${path}`);
  const started = Date.now();
  try {
    await trust.start();
    const ms = Date.now() - started;
    // pino writes asynchronously to a stream: let the line arrive.
    await new Promise((r) => setImmediate(r));
    const line = lines.find((l) => l['msg'] === 'cannot fetch auth.token.jwks; no JWKS keys yet');
    return { ms, size: trust.size, error: String(line?.['error'] ?? '') };
  } finally {
    trust.close();
  }
}

test('an endless JWKS body is cut at the byte cap, nothing of it kept', async () => {
  const r = await timedStart('/endless');
  assert.equal(r.size, 0);
  assert.match(r.error, new RegExp(`over the ${CAP}-byte cap`));
  assert.ok(r.ms < DEADLINE_MS + 1_000, `cut at the cap, not at a timeout (${r.ms} ms)`);
});

test('a JWKS dripping a byte every 100 ms is cut at the deadline, not held open forever', { timeout: 20_000 }, async () => {
  const r = await timedStart('/drip');
  assert.equal(r.size, 0);
  assert.match(r.error, new RegExp(`did not finish within \\d+ ms`));
  assert.ok(r.ms >= DEADLINE_MS - 100 && r.ms < DEADLINE_MS + 1_500, `cut at the ${DEADLINE_MS} ms deadline (${r.ms} ms)`);
});

test('a JWKS server that never answers is given up at the deadline', { timeout: 20_000 }, async () => {
  const r = await timedStart('/stall');
  assert.equal(r.size, 0);
  assert.match(r.error, /within \d+ ms/);
  assert.ok(r.ms < DEADLINE_MS + 1_500, `${r.ms} ms`);
});

test('a declared length over the cap and an unasked-for gzip body are refused before reading', async () => {
  const huge = await timedStart('/huge');
  assert.match(huge.error, /declares \d+ bytes, over the/);
  assert.ok(huge.ms < DEADLINE_MS, `refused on the headers (${huge.ms} ms)`);
  const gz = await timedStart('/gzip');
  assert.match(gz.error, /"gzip"-encoded body/);
});

test('control: the realm JWKS loads under the same caps', async () => {
  const { trust } = store(kc.jwksUrl);
  try {
    await trust.start();
    assert.ok(trust.size > 0, 'the realm keys are trusted');
    assert.ok(trust.lookup(kc.jwksKid) !== undefined);
  } finally {
    trust.close();
  }
});
