/**
 * Temporary files and directories in flight, removed by cleanupTempFilesSync() when the process
 * is interrupted (SIGINT, SIGTERM, SIGHUP, a closed pipe). Kept apart from the atomic writer so
 * that the CLI's entry point loads nothing more than this.
 */
import { unlinkSync, rmSync } from 'node:fs';

const pending = new Set<string>();
const pendingDirs = new Set<string>();

/** Removes every temporary file and directory still in flight (for signal handlers). */
export function cleanupTempFilesSync(): void {
  for (const p of pending) {
    try {
      unlinkSync(p);
    } catch {
      /* already gone */
    }
  }
  pending.clear();
  for (const d of pendingDirs) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      // Deeper than PATH_MAX: GNU rm walks with directory handles. (child_process is loaded only
      // here: loading it at start-up cost every command ~10 ms.)
      process.getBuiltinModule('node:child_process').spawnSync('rm', ['-rf', '--', d], { stdio: 'ignore' });
    }
  }
  pendingDirs.clear();
}

/** Tracks a temporary file for removal by cleanupTempFilesSync(); returns the untrack function. */
export function trackTempFile(path: string): () => void {
  pending.add(path);
  return () => pending.delete(path);
}

export function registerTempDir(dir: string): () => void {
  pendingDirs.add(dir);
  return () => pendingDirs.delete(dir);
}

let takeover: ((sig: NodeJS.Signals) => void) | undefined;

/**
 * Lets a long-running command (the licence server) stop gracefully on the first SIGINT/SIGTERM
 * instead of exiting at once; a second signal exits as usual. Returns the release function.
 */
export function handleSignalsWith(fn: (sig: NodeJS.Signals) => void): () => void {
  takeover = fn;
  return () => {
    if (takeover === fn) takeover = undefined;
  };
}

/** For the CLI's signal handler: true when a command took this signal over (once). */
export function signalTakenOver(sig: NodeJS.Signals): boolean {
  const f = takeover;
  if (!f) return false;
  takeover = undefined;
  f(sig);
  return true;
}
