/**
 * The mirror's blob path. Local → stream it (Range-capable). Miss → exactly one upstream
 * download per digest however many clients ask (led or joined through the fill coordinator);
 * joined clients stream the bytes as they arrive; only a verified blob is committed. A HEAD
 * never downloads. While the disk is full, each client's blob is streamed through uncached.
 *
 * Imports: storage/, upstream/, oci/, metrics. Never Fastify.
 */
import type { Readable } from 'node:stream';
import { registryError } from '../errors.js';
import type { Digest } from '../oci/reference.js';
import type { ByteRange } from '../storage/driver.js';
import { isNoSpace } from '../storage/space.js';
import { verifiedStream } from '../storage/verify-stream.js';
import { UpstreamError, toRegistryError } from '../upstream/errors.js';
import { BlobFill } from './blob-fill.js';
import { firstByte } from './first-byte.js';
import type { SharedFill } from './fills.js';
import { asUpstreamError, contentLength, type MirrorContext } from './mirror-context.js';
import type { Holding, RepoScope } from './mirror-scope.js';
import type { BlobHandle, BlobInfo } from './repository.js';
import type { Routed } from './routing.js';

/** How long a streamed-through blob's upstream response waits to be opened before it is let go. */
const STREAM_THROUGH_OPEN_MS = 30_000;

export class MirrorBlobs {
  constructor(private readonly ctx: MirrorContext, private readonly scope: RepoScope) {}

  /**
   * May this repository have a blob someone else cached, or a fill someone else leads?
   * (mirror-scope.ts) Throws the catalogued error a miss would end in when it may not.
   */
  private async holds(r: Routed, digest: Digest): Promise<Holding> {
    try {
      return await this.scope.check(r, digest, 'blob');
    } catch (err) {
      if (err instanceof UpstreamError) throw toRegistryError(err, 'BLOB_UNKNOWN');
      throw err;
    }
  }

  /**
   * A handle on a blob: from the store when cached, else from the one upstream fill for this
   * digest (started now, or joined). HEAD callers use `statBlob` instead: no download for a HEAD.
   */
  async getBlob(r: Routed, digest: Digest): Promise<BlobHandle> {
    const { ctx } = this;
    // Checked once, before this client touches content another repository brought in.
    let holding: Holding | null = null;
    for (let attempt = 0; ; attempt++) {
      const local = await ctx.driver.statBlob(digest);
      if (local) {
        if (holding === null) {
          holding = await this.holds(r, digest).catch((err: unknown) => {
            ctx.count('blob', 'miss');
            throw err;
          });
          if (attempt === 0) ctx.count('blob', holding === 'held' ? 'hit' : 'revalidated');
        } else if (attempt === 0) {
          ctx.count('blob', 'hit');
        }
        ctx.hooks?.accessed(digest);
        return {
          digest, size: local.size, source: 'cache',
          open: async (range) => {
            const got = await ctx.driver.readBlob(digest, range);
            if (got) return got.stream;
            // Evicted between the stat and the open (lifecycle layer): fetch it again rather
            // than fail a client that has not been sent a byte yet.
            return (await this.getBlob(r, digest)).open(range);
          },
        };
      }
      // Disk full (lifecycle layer): no fill to join or start; this client gets its own stream.
      if (ctx.fills.runningBlob(digest) === undefined && ctx.hooks?.canStore?.() === false) {
        return this.streamThrough(r, digest, attempt === 0);
      }
      const { promise: pending, shared } = ctx.fills.blob(digest, () => this.startFill(r, digest));
      if (attempt === 0) ctx.count('blob', shared ? 'coalesced' : 'miss');
      let fill: SharedFill;
      try {
        fill = await pending;
        if (!shared) this.scope.grant(r, digest);
        // Joining a fill needs the same check as a cached blob, made once the fill has started:
        // by then its leader has granted its own repository (registered first, it resumes
        // first), so a second client of that repository joins without asking upstream, and a
        // client of another repository is checked (one HEAD) before it reads a byte. The fill
        // goes on for its own clients either way.
        if (shared) holding ??= await this.holds(r, digest);
      } catch (err) {
        if (err instanceof UpstreamError) throw toRegistryError(err, 'BLOB_UNKNOWN');
        if (isNoSpace(err)) {
          // Not even the spool file could be created: stream this one through.
          ctx.hooks?.storageFull?.(err, null);
          return this.streamThrough(r, digest, false);
        }
        throw err;
      }
      if (fill.state === 'failed' && isNoSpace(fill.error)) return this.streamThrough(r, digest, false);
      if (fill.state === 'failed') {
        // It failed before this client could read a byte: forget it, and (once) start afresh
        // rather than hand the client another request's failure.
        ctx.fills.abandonBlob(digest, pending);
        if (shared && attempt === 0) continue;
        throw toRegistryError(asUpstreamError(fill, r), 'BLOB_UNKNOWN');
      }
      if (fill.state === 'done') {
        // Committed meanwhile: the store has it.
        return { digest, size: fill.written, source: 'cache', open: async (range) => this.openStored(digest, range) };
      }
      const running = fill;
      return {
        digest, size: running.size, source: 'upstream',
        open: async (range) => {
          // Between the handle and the open the fill may have ended: committed bytes come from
          // the store; a failure is answered as one (no bytes were sent yet), except a full disk,
          // which this client gets round by streaming the blob through.
          if (running.state === 'failed' && isNoSpace(running.error)) return (await this.streamThrough(r, digest, false)).open(range);
          if (running.state === 'failed') throw toRegistryError(asUpstreamError(running, r), 'BLOB_UNKNOWN');
          if (running.state === 'done') return this.openStored(digest, range);
          return this.untilFirstByte(r, digest, running.reader(range?.start ?? 0, range?.end ?? null), () => running.written);
        },
      };
    }
  }

  /**
   * Hand a stream from upstream to the route only once it has a byte (src/registry/first-byte.ts):
   * an upstream that stalls after its headers for `headersTimeout` (no progress) is answered 503
   * with Retry-After while no status line has gone out, instead of an empty reply later.
   */
  private async untilFirstByte(r: Routed, digest: Digest, stream: Readable, progress: () => number): Promise<Readable> {
    try {
      return await firstByte(stream, { ms: r.upstream.headersTimeout, progress, upstream: r.upstream.name, digest });
    } catch (err) {
      const e = err instanceof UpstreamError ? err : new UpstreamError(r.upstream.name, 'unavailable', `blob ${digest}: download failed: ${(err as Error).message}`);
      this.ctx.log.warn({ upstream: r.upstream.name, digest, cause: e.causeCode ?? e.kind, reason: e.message }, 'blob from upstream failed before its first byte; answered with an error');
      throw toRegistryError(e, 'BLOB_UNKNOWN');
    }
  }

  private async openStored(digest: Digest, range: ByteRange | undefined): Promise<Readable> {
    const got = await this.ctx.driver.readBlob(digest, range);
    if (!got) throw registryError('BLOB_UNKNOWN', 'blob was removed while being opened');
    return got.stream;
  }

  /** Lead a new fill: the upstream GET, then the download into the store, reported to the hooks. */
  private async startFill(r: Routed, digest: Digest): Promise<SharedFill> {
    const { ctx } = this;
    const res = await ctx.upstreams.client(r.upstream).request({ method: 'GET', path: `/v2/${r.name}/blobs/${digest}`, kind: 'blob', repository: r.name });
    const size = contentLength(res.headers);
    let fill: BlobFill;
    try {
      fill = await BlobFill.create(digest, r.upstream.name, size, ctx.driver);
    } catch (err) {
      res.body.destroy();
      throw err;
    }
    const upstreamName = r.upstream.name;
    void fill
      .run(res.body as AsyncIterable<Buffer>, (n) =>
        ctx.metrics.upstreamBytes.inc({ upstream: upstreamName }, n))
      .then(() => {
        if (fill.state === 'done') ctx.hooks?.stored(digest, fill.written, 'blob');
        if (fill.state === 'failed' && isNoSpace(fill.error)) ctx.hooks?.storageFull?.(fill.error, fill.size);
        if (fill.state === 'failed') {
          ctx.log.warn({ upstream: upstreamName, digest, err: fill.error?.message }, 'blob fill failed; nothing was cached');
        }
      });
    return fill;
  }

  /**
   * Degraded mode while the disk is full: this client's own upstream GET, streamed straight
   * through, hash-checked and not stored (src/storage/verify-stream.ts). One upstream request per
   * client until space returns, which is the price of still answering at all.
   */
  private async streamThrough(r: Routed, digest: Digest, count: boolean): Promise<BlobHandle> {
    const { ctx } = this;
    if (count) ctx.count('blob', 'miss');
    let res;
    try {
      res = await ctx.upstreams.client(r.upstream).request({ method: 'GET', path: `/v2/${r.name}/blobs/${digest}`, kind: 'blob', repository: r.name });
    } catch (err) {
      if (err instanceof UpstreamError) throw toRegistryError(err, 'BLOB_UNKNOWN');
      throw err;
    }
    const body = res.body;
    const size = contentLength(res.headers);
    const upstreamName = r.upstream.name;
    // A handle that is never opened (the request failed on a bad Range) must not hold the connection.
    const abandon = setTimeout(() => body.destroy(), STREAM_THROUGH_OPEN_MS);
    abandon.unref();
    return {
      digest, size, source: 'upstream',
      open: async (range) => {
        clearTimeout(abandon);
        let received = 0;
        const stream = verifiedStream(body as AsyncIterable<Buffer>, {
          digest, size, ...(range ? { range } : {}),
          mismatch: (reason) => new UpstreamError(upstreamName, 'integrity', `blob ${digest}: ${reason}`),
          onBytes: (n) => {
            received += n;
            ctx.metrics.upstreamBytes.inc({ upstream: upstreamName }, n);
          },
        });
        return this.untilFirstByte(r, digest, stream, () => received);
      },
    };
  }

  /** Size of a blob without downloading it: the store, a running fill, or an upstream HEAD. */
  async statBlob(r: Routed, digest: Digest): Promise<BlobInfo> {
    const { ctx } = this;
    const local = await ctx.driver.statBlob(digest);
    if (local) {
      const holding = await this.holds(r, digest);
      ctx.count('blob', holding === 'held' ? 'hit' : 'revalidated');
      return { size: local.size, source: 'cache' };
    }
    const running = ctx.fills.runningBlob(digest);
    if (running) {
      await this.holds(r, digest);
      const fill = await running.catch(() => null);
      if (fill && fill.size !== null) return { size: fill.size, source: 'upstream' };
    }
    try {
      const res = await ctx.upstreams.client(r.upstream).request({ method: 'HEAD', path: `/v2/${r.name}/blobs/${digest}`, kind: 'blob', repository: r.name });
      res.body.resume();
      this.scope.grant(r, digest);
      return { size: contentLength(res.headers), source: 'upstream' };
    } catch (err) {
      if (err instanceof UpstreamError) throw toRegistryError(err, 'BLOB_UNKNOWN');
      throw err;
    }
  }

  /**
   * Pre-warm: make sure a blob is in the store without reading it. Cached: nothing to do. Else
   * start, or join, the one fill for the digest (the same one clients join) and wait until it
   * commits. `beforeFetch` runs only when this call would start a new upstream download, so a
   * budget check there can still stop it. Throws UpstreamError when the fill fails.
   */
  async ensureBlob(r: Routed, digest: Digest, beforeFetch?: () => void): Promise<'cached' | 'fetched' | 'joined'> {
    const { ctx } = this;
    if (await ctx.driver.statBlob(digest)) {
      ctx.hooks?.accessed(digest);
      return 'cached';
    }
    if (ctx.fills.runningBlob(digest) === undefined) beforeFetch?.();
    const { promise, shared } = ctx.fills.blob(digest, () => this.startFill(r, digest));
    const fill = await promise;
    await fill.finished.catch(() => {
      throw asUpstreamError(fill, r);
    });
    return shared ? 'joined' : 'fetched';
  }
}
