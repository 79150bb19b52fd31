/**
 * Atomic file creation: write under a temporary name in the target's directory, fsync, then
 * link (no overwrite) or rename (overwrite) into place. A failure, or SIGINT/SIGTERM through
 * cleanupTempFilesSync(), leaves no partial file behind.
 */
import { open, link, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { MlicError, fromFsError } from '../errors.js';
import { trackTempFile } from './cleanup.js';

export { cleanupTempFilesSync, trackTempFile, registerTempDir } from './cleanup.js';

export function tempNameFor(finalPath: string): string {
  return join(dirname(finalPath), `.${basename(finalPath)}.tmp-${randomBytes(6).toString('hex')}`);
}

export interface AtomicOptions {
  mode?: number;
  force?: boolean;
  /** fsync the file before it is renamed into place, and its directory after (default true) */
  sync?: boolean;
  /** with sync: also fsync the directory after the rename (default true) */
  syncDir?: boolean;
  /** open the temporary file for reading too (to change in place what was written) */
  read?: boolean;
}

/** fsyncs a directory, so that a rename or link inside it survives a power failure (best effort: not every filesystem allows it). */
export async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    /* e.g. EINVAL on filesystems without directory fsync */
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

export async function writeFileAtomic<T>(finalPath: string, opts: AtomicOptions, fn: (fh: FileHandle) => Promise<T>): Promise<T> {
  const tmp = tempNameFor(finalPath);
  let fh: FileHandle;
  try {
    fh = await open(tmp, opts.read ? 'wx+' : 'wx', opts.mode ?? 0o644);
  } catch (e) {
    throw fromFsError(e, dirname(finalPath));
  }
  const untrack = trackTempFile(tmp);
  let ok = false;
  try {
    if (opts.mode !== undefined) await fh.chmod(opts.mode);
    const result = await fn(fh);
    if (opts.sync !== false) await fh.sync();
    await fh.close();
    if (opts.force) await rename(tmp, finalPath);
    else {
      try {
        await link(tmp, finalPath);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST')
          throw new MlicError('IO_EXISTS', `${finalPath}: already exists`, { hint: 'use --force to overwrite' });
        throw e;
      }
      await unlink(tmp);
    }
    if (opts.sync !== false && opts.syncDir !== false) await syncDir(dirname(finalPath));
    ok = true;
    return result;
  } catch (e) {
    throw fromFsError(e, finalPath);
  } finally {
    if (!ok) {
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
    }
    untrack();
  }
}

export async function writeSmallFileAtomic(finalPath: string, data: string | Uint8Array, opts: AtomicOptions): Promise<void> {
  await writeFileAtomic(finalPath, opts, async (fh) => {
    await fh.writeFile(data);
  });
}
