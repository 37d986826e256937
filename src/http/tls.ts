/**
 * HTTPS on http.port: the server options for a certificate pair, and the reloader that swaps in a
 * new pair without a restart when the files change.
 *
 * Rotation is found by polling, not fs.watch: cert-manager and the kubelet replace a mounted
 * Secret by swapping a `..data` symlink to a new directory, which inotify on the file names does
 * not see, and watches are unreliable on network and overlay mounts. Every `http.tls.reloadInterval`
 * both files are stat()ed (following symlinks: device, inode, size, mtime); a change is loaded once
 * it has held for one more interval, so a pair written file by file (certificate first, key a
 * moment later) is never read half-way. The new pair is checked as at boot (readTlsPair in
 * src/config/disk.ts) and handed to `server.setSecureContext`: new connections get it, open ones
 * keep theirs. A pair that does not load is logged once, as a warning naming the key, and the old
 * one is served until the files change again.
 */
import { stat } from 'node:fs/promises';
import type { Server as TlsServer } from 'node:tls';
import type { ServerOptions } from 'node:https';
import type { Logger } from 'pino';
import { Agent } from 'undici';
import { readTlsPair, type TlsPair } from '../config/disk.js';
import { ConfigError } from '../config/errors.js';
import type { BerthConfig } from '../config/types.js';

export type { TlsPair } from '../config/disk.js';

type HttpConfig = BerthConfig['http'];

/** The pair named by http.tls, or null when TLS is off. Throws a ConfigError naming the key. */
export async function loadTls(http: HttpConfig): Promise<TlsPair | null> {
  const { certificate, key } = http.tls;
  if (certificate === null || key === null) return null;
  return readTlsPair(certificate, key);
}

/**
 * Options for https.createServer (Fastify's `https`). A client that opens a connection and never
 * finishes the handshake is cut after http.headersTimeout, as one that never finishes its headers is.
 */
export function httpsOptions(pair: TlsPair, http: HttpConfig): ServerOptions {
  return { cert: pair.cert, key: pair.key, handshakeTimeout: http.headersTimeout };
}

/** What the log says about a pair. */
export function describePair(pair: TlsPair): Record<string, string> {
  return { fingerprint: pair.fingerprint, subject: pair.subject, names: pair.names, notAfter: pair.notAfter };
}

/**
 * For `berth healthcheck`, which asks this host's own port: the certificate names the public host,
 * not 127.0.0.1, so it is not verified; the probe only asks whether the server answers.
 */
export function localProbeDispatcher(): Agent {
  return new Agent({ connect: { rejectUnauthorized: false } });
}

export interface TlsReloaderOptions {
  server: TlsServer;
  http: HttpConfig;
  /** The pair the server was started with. */
  current: TlsPair;
  log: Logger;
}

/** Polls the two files and swaps a changed, valid pair into the server (see the header). */
export class TlsReloader {
  private readonly certFile: string;
  private readonly keyFile: string;
  private timer: NodeJS.Timeout | null = null;
  private polling = false;
  /** The files' signature when `current` was read. */
  private loaded = '';
  /** A changed signature seen on the last poll, waiting to hold for one interval. */
  private pending: string | null = null;
  /** A signature that failed to load (warned once; tried again only when the files change). */
  private failed: string | null = null;
  private currentPair: TlsPair;

  constructor(private readonly opts: TlsReloaderOptions) {
    const { certificate, key } = opts.http.tls;
    if (certificate === null || key === null) throw new Error('TlsReloader needs http.tls.certificate and http.tls.key');
    this.certFile = certificate;
    this.keyFile = key;
    this.currentPair = opts.current;
  }

  /** The pair new connections get. */
  get current(): TlsPair {
    return this.currentPair;
  }

  /** Record the files' present state as the loaded one and begin polling. */
  async start(): Promise<void> {
    this.loaded = await this.signature();
    this.timer = setInterval(() => void this.poll(), this.opts.http.tls.reloadInterval);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One look at the files; exported for tests that step it by hand. */
  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const sig = await this.signature();
      if (sig === this.loaded || sig === this.failed) {
        this.pending = null;
        return;
      }
      if (sig !== this.pending) {
        this.pending = sig; // changed since the last look: let it settle for one interval
        return;
      }
      this.pending = null;
      await this.load(sig);
    } finally {
      this.polling = false;
    }
  }

  private async load(sig: string): Promise<void> {
    const { log } = this.opts;
    let pair: TlsPair;
    try {
      pair = await readTlsPair(this.certFile, this.keyFile);
      this.opts.server.setSecureContext({ cert: pair.cert, key: pair.key });
    } catch (err) {
      this.failed = sig;
      // A ConfigError already names the key (`http.tls.key: … is not the key of …`); drop its `config:` prefix.
      const reason = err instanceof ConfigError ? `${err.key}: ${err.detail}` : `http.tls.certificate: ${err instanceof Error ? err.message : String(err)}`;
      log.warn({ reason, serving: this.currentPair.fingerprint }, 'the changed TLS certificate or key cannot be used; still serving the previous certificate');
      return;
    }
    this.loaded = sig;
    this.failed = null;
    const previous = this.currentPair.fingerprint;
    this.currentPair = pair;
    log.info({ ...describePair(pair), previous }, 'TLS certificate reloaded');
  }

  /** Device, inode, size and mtime of both files (symlinks followed); a missing file reads as its error code. */
  private async signature(): Promise<string> {
    const one = async (file: string): Promise<string> => {
      try {
        const s = await stat(file);
        return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
      } catch (err) {
        return `error:${(err as NodeJS.ErrnoException).code ?? 'unknown'}`;
      }
    };
    return `${await one(this.certFile)}|${await one(this.keyFile)}`;
  }
}
