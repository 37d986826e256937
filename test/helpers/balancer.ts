// A round-robin TCP load balancer in a few lines of node:net, as in front of Berth replicas:
// each new client connection goes to the next target in turn (no HTTP awareness, so keep-alive
// requests on one connection stay with one replica, as with a real L4 balancer). Counts the
// connections each target got, so a test can show that both replicas served.
import { createServer, connect, type Socket } from 'node:net';

export interface Balancer {
  /** `127.0.0.1:<port>`, as a client config names a registry. */
  host: string;
  url: string;
  port: number;
  /** Connections handed to each target so far, in target order. */
  connections(): number[];
  stop(): Promise<void>;
}

/** Targets are `host:port` strings. */
export async function startBalancer(targets: readonly string[]): Promise<Balancer> {
  let next = 0;
  const counts = targets.map(() => 0);
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const i = next++ % targets.length;
    counts[i] = (counts[i] ?? 0) + 1;
    const [host = '127.0.0.1', port = '0'] = (targets[i] ?? '').split(':');
    const upstream = connect(Number(port), host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    port,
    connections: () => [...counts],
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
