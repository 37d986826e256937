// The bench's "node:http ceiling": a bare node:http server, in a process of its own, answering
// every GET/HEAD with one manifest's bytes and the headers Berth sends for a warm manifest
// (content-type, docker-content-digest, etag, content-length, docker-distribution-api-version,
// oci-namespace). No routing, no hooks, no logging, no metrics: what one Node process on this
// machine can answer at all, so Berth's manifest figures can be read against it as well as
// against nginx (which uses every core and no JavaScript).
//
//   node dist/test/bench/ceiling-server.js <port> <manifest file> <media type>
//
// The bytes are read once at start; every response is one write of the prebuilt header block
// and the body (Node's `res.end(body)` with the headers not yet sent), as Berth's path ends too.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

const [portArg, file, mediaType] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port <= 0 || port > 65_535 || file === undefined || mediaType === undefined) {
  process.stderr.write('usage: ceiling-server.js <port> <manifest file> <media type>\n');
  process.exit(2);
}
const body = readFileSync(file);
const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
const headers = {
  'docker-distribution-api-version': 'registry/2.0',
  'oci-namespace': 'docker.io',
  'content-type': mediaType,
  'docker-content-digest': digest,
  etag: `"${digest}"`,
  'content-length': String(body.length),
};

const server = createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
    return;
  }
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
});
server.listen(port, '127.0.0.1');
const stop = (): void => {
  server.close();
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
