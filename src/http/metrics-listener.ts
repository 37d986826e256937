/**
 * `/metrics` on its own port (`metrics.port`, on `http.host`), so Prometheus can scrape a port
 * the registry's clients never reach (a NetworkPolicy or firewall rule per port). It serves
 * `GET /metrics` and nothing else; `metrics.networks` applies here too (to the peer address:
 * no proxy headers are believed on this port). Opened when the app becomes ready, closed with it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { compileNetworks } from './networks.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The port the separate metrics listener is bound to (metrics.port; resolved when 0), or null. */
    metricsPort: number | null;
  }
}

/** Install on the root instance (the port is then `app.metricsPort`). Does nothing without metrics.port. */
export function installMetricsListener(app: FastifyInstance): void {
  app.decorate('metricsPort', null);
  const { port, enabled } = app.config.metrics;
  if (port === null || !enabled) return;
  const scrapers = compileNetworks(app.config.metrics.networks, 'metrics.networks');
  let server: Server | null = null;
  const send = (res: import('node:http').ServerResponse, status: number, body: string, type = 'application/json'): void => {
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const error = (code: string, message: string): string => JSON.stringify({ errors: [{ code, message, detail: null }] });

  app.addHook('onReady', async () => {
    const s = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path !== '/metrics') return send(res, 404, error('NAME_UNKNOWN', 'this port serves only /metrics'));
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        return send(res, 405, error('UNSUPPORTED', `${req.method ?? ''} is not supported on /metrics`));
      }
      const peer = req.socket.remoteAddress ?? '';
      if (scrapers.cidrs.length > 0 && !scrapers.has(peer)) {
        return send(res, 403, error('DENIED', `/metrics answers only clients in metrics.networks; ${peer} is not one`));
      }
      app.metrics.registry.metrics().then(
        (text) => send(res, 200, req.method === 'HEAD' ? '' : text, app.metrics.registry.contentType),
        (err: unknown) => {
          app.log.error({ err }, 'metrics collection failed');
          send(res, 500, error('UNKNOWN', 'metrics collection failed; see the server log'));
        },
      );
    });
    // A stalled scraper must not hold a socket forever either.
    s.headersTimeout = 10_000;
    s.requestTimeout = 10_000;
    s.setTimeout(30_000);
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, app.config.http.host, () => {
        s.off('error', reject);
        resolve();
      });
    });
    server = s;
    app.metricsPort = (s.address() as AddressInfo).port;
    app.log.info({ port: app.metricsPort, host: app.config.http.host }, 'metrics listener ready (metrics.port)');
  });
  app.addHook('onClose', async () => {
    const s = server;
    server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  });
}
