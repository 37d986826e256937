// Last-resort cleanup for test helpers: child processes and temp dirs registered here are
// killed/removed synchronously when the test process exits (normally, by an uncaught error, or
// on SIGINT/SIGTERM), even if a test forgot to call stop() or threw before reaching it; a
// detached watchdog covers SIGKILL of the test process. Helpers unguard as soon as they clean
// up normally.
// Imports nothing from the project.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type SyncCleanup = () => void;

const pending = new Set<SyncCleanup>();
let installed = false;

function runAll(): void {
  for (const fn of [...pending]) {
    pending.delete(fn);
    try {
      fn();
    } catch {
      // Exit-time cleanup is best effort: one failure must not stop the others.
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  runAll();
  process.removeListener(signal, onSignal);
  // Only re-raise when nobody else handles the signal (e.g. a server under test that shuts
  // down gracefully on SIGTERM); otherwise their handler decides when to exit.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', runAll);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** Registers a synchronous cleanup to run at process exit; returns a function that unregisters it. */
export function registerExitCleanup(fn: SyncCleanup): () => void {
  install();
  pending.add(fn);
  return () => {
    pending.delete(fn);
  };
}

// ---------------------------------------------------------------------------------------------
// Orphan watchdog. An exit hook cannot run when the test process is SIGKILLed (a CI timeout, an
// OOM kill), so children and temp dirs are also listed in a file that a small detached shell
// watches: when this process is gone it SIGKILLs the listed pids and removes the listed dirs.
// After a normal exit the hooks above have already cleaned up and the list is deleted first.

const listFile = join(tmpdir(), `berth-test-guard-${process.pid}.list`);
const guarded = new Map<number, string>();
let guardSeq = 0;
let watchdog: ChildProcess | undefined;

const WATCHDOG = `
p=$1; list=$2
alive() { [ -r "/proc/$p/stat" ] && [ "$(sed 's/.*) //' "/proc/$p/stat" | cut -c1)" != Z ]; }
while alive; do sleep 1; done
[ -f "$list" ] || exit 0
while read -r kind val; do
  case "$kind" in
    pid) kill -s KILL -- "$val" 2>/dev/null ;;
    dir) rm -rf -- "$val" ;;
  esac
done < "$list"
rm -f -- "$list"
`;

function writeList(): void {
  try {
    if (guarded.size === 0) rmSync(listFile, { force: true });
    else {
      // Kill first, then remove the dirs the killed processes were writing into.
      const lines = [...guarded.values()];
      const ordered = [...lines.filter((l) => l.startsWith('pid ')), ...lines.filter((l) => !l.startsWith('pid '))];
      writeFileSync(listFile, `${ordered.join('\n')}\n`);
    }
  } catch {
    // The watchdog is a backstop; failing to update it must not fail a test.
  }
}

function ensureWatchdog(): void {
  if (watchdog !== undefined) return;
  try {
    watchdog = spawn('/bin/sh', ['-c', WATCHDOG, 'berth-test-guard', String(process.pid), listFile], {
      detached: true,
      stdio: 'ignore',
    });
    watchdog.on('error', () => undefined);
    watchdog.unref();
    const dog = watchdog;
    registerExitCleanup(() => {
      rmSync(listFile, { force: true });
      dog.kill('SIGKILL');
    });
  } catch {
    // no /bin/sh: exit hooks still cover every exit except SIGKILL
  }
}

function guard(line: string, cleanup: SyncCleanup): () => void {
  ensureWatchdog();
  const id = ++guardSeq;
  guarded.set(id, line);
  writeList();
  const unregister = registerExitCleanup(cleanup);
  return () => {
    unregister();
    if (guarded.delete(id)) writeList();
  };
}

/**
 * Kills pid (a negative pid means a process group) with SIGKILL when this process exits, or,
 * if this process is SIGKILLed, from the watchdog. Returns an unguard function.
 */
export function guardProcess(pid: number): () => void {
  return guard(`pid ${pid}`, () => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  });
}

/** Removes dir when this process exits (or from the watchdog). Returns an unguard function. */
export function guardDir(dir: string): () => void {
  if (/[\n\r]/.test(dir)) throw new Error(`guardDir: unsupported path ${JSON.stringify(dir)}`);
  return guard(`dir ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
}
