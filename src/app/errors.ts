/**
 * StartupError: a command could not start because of the machine, not the config's syntax — the
 * port is taken, the storage root cannot be created or written. The message is one sentence
 * that names the setting to change (`http.port`, `storage.root`); cli.ts prints it without a
 * stack and exits 1.
 */

export class StartupError extends Error {
  override readonly name = 'StartupError';
  readonly code = 'ERR_BERTH_STARTUP';

  constructor(
    /** The setting to change: `http.port`, `storage.root`. */
    readonly setting: string,
    message: string,
  ) {
    super(message);
  }

  /** A failure to prepare storage.root (mkdir, the spool sweep) in words an operator can act on. */
  static fromStorage(root: string, err: unknown): StartupError {
    const code = (err as NodeJS.ErrnoException | null)?.code;
    const path = (err as NodeJS.ErrnoException | null)?.path ?? root;
    const why: Record<string, string> = {
      ENOENT: `${path} does not exist and cannot be created`,
      ENOTDIR: `${path} is not a directory`,
      EACCES: `this process (uid ${process.getuid?.() ?? '?'}) may not write ${path}`,
      EPERM: `this process may not write ${path}`,
      EROFS: `${path} is on a read-only filesystem`,
      ENOSPC: `the volume holding ${path} is full`,
      EEXIST: `${path} exists and is not a directory`,
    };
    const reason = (code !== undefined ? why[code] : undefined) ?? (err instanceof Error ? err.message : String(err));
    return new StartupError('storage.root', `storage.root ${root} cannot be used: ${reason}${code ? ` (${code})` : ''}; set storage.root (BERTH_STORAGE_ROOT) to a writable directory`);
  }

  /** A failure to listen on http.host:http.port. */
  static fromListen(host: string, port: number, err: unknown): StartupError | null {
    const code = (err as NodeJS.ErrnoException | null)?.code;
    if (code === 'EADDRINUSE') {
      return new StartupError('http.port', `http.port ${port} on ${host} is already in use (EADDRINUSE): stop the other process or set http.port (BERTH_HTTP_PORT) to a free port`);
    }
    if (code === 'EACCES') {
      return new StartupError('http.port', `http.port ${port} on ${host} needs privileges this process lacks (EACCES): use a port above 1023 or set http.port (BERTH_HTTP_PORT)`);
    }
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') {
      return new StartupError('http.host', `http.host ${host} is not an address of this machine (${code}): set http.host (BERTH_HTTP_HOST), e.g. 0.0.0.0`);
    }
    return null;
  }
}
