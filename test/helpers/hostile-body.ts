// A response body a hostile or broken upstream sends: the same chunk over and over, as fast as
// the socket drains or one every `everyMs`, until the peer goes away or `limit` bytes went out.
// Used by the misbehaving-upstream suites (endless tag lists, tokens, manifests, drips).
import type { ServerResponse } from 'node:http';

export function streamRepeated(res: ServerResponse, chunk: Buffer | string, everyMs = 0, limit = Infinity): void {
  const data = Buffer.from(chunk);
  let sent = 0;
  const step = (): void => {
    while (!res.destroyed && sent < limit) {
      sent += data.length;
      if (everyMs > 0) {
        res.write(data);
        setTimeout(step, everyMs).unref();
        return;
      }
      if (!res.write(data)) {
        res.once('drain', step);
        return;
      }
    }
    if (!res.destroyed) res.end();
  };
  step();
}
