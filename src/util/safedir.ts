/**
 * Writing files below a directory without following symbolic links that another local user could
 * swap in between a check and a write (openat-style). Node has no openat, so on Linux each
 * directory is opened once with O_DIRECTORY|O_NOFOLLOW and everything inside it is reached
 * through /proc/self/fd/<fd>/<name>: the kernel resolves that magic link to the directory that was
 * opened and checked, whatever its name points to now. A component that is a symbolic link, or
 * not a directory, is refused (IO_UNSAFE_PATH). Files are created with O_EXCL|O_NOFOLLOW.
 *
 * Where /proc/self/fd is missing (not Linux), paths are used with an lstat check first: the race
 * remains there (docs/SECURITY.md says so).
 */
import { constants, existsSync } from 'node:fs';
import { link, lstat, mkdir, open, readdir, rename, rm, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { MlicError, fromFsError } from '../errors.js';

const PROC_FD = existsSync('/proc/self/fd');
const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

function unsafe(path: string, e?: unknown): MlicError {
  return new MlicError('IO_UNSAFE_PATH', `${path}: is a symbolic link or not a plain directory; refusing to write through it`, e === undefined ? {} : { cause: e });
}

export class SafeDir {
  private constructor(
    /** for messages */
    readonly shown: string,
    private readonly fh: FileHandle | undefined,
    private readonly path: string,
  ) {}

  /** Opens an existing directory (not a symbolic link). */
  static async open(path: string): Promise<SafeDir> {
    if (!PROC_FD) {
      const st = await lstat(path).catch((e) => Promise.reject(fromFsError(e, path)));
      if (!st.isDirectory()) throw unsafe(path);
      return new SafeDir(path, undefined, path);
    }
    try {
      const fh = await open(path, DIR_FLAGS);
      return new SafeDir(path, fh, `/proc/self/fd/${fh.fd}`);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'ENOTDIR') throw unsafe(path, e);
      throw fromFsError(e, path);
    }
  }

  /** Where `name` inside this directory is reached (through the opened handle where there is one). */
  at(name: string): string {
    return join(this.path, name);
  }

  /** The subdirectory `name`, created (0700) when missing; a symbolic link or file there is refused. */
  async sub(name: string): Promise<SafeDir> {
    const shown = join(this.shown, name);
    try {
      await mkdir(this.at(name), { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fromFsError(e, shown);
    }
    if (!PROC_FD) {
      const st = await lstat(this.at(name));
      if (!st.isDirectory()) throw unsafe(shown);
      return new SafeDir(shown, undefined, this.at(name));
    }
    try {
      const fh = await open(this.at(name), DIR_FLAGS);
      return new SafeDir(shown, fh, `/proc/self/fd/${fh.fd}`);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'ENOTDIR') throw unsafe(shown, e);
      throw fromFsError(e, shown);
    }
  }

  /** A new file (0600, O_EXCL|O_NOFOLLOW) under a temporary name of fixed length (any name up to 255 bytes fits); commit() gives it its name. */
  async createTemp(name: string): Promise<{ fh: FileHandle; temp: string }> {
    void name;
    const temp = `.mlic-tmp-${randomBytes(8).toString('hex')}`;
    try {
      const fh = await open(this.at(temp), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      return { fh, temp };
    } catch (e) {
      throw fromFsError(e, join(this.shown, temp));
    }
  }

  /** Renames `temp` to `name`: replacing what is there with `force` (a link there is replaced, never followed), else IO_EXISTS. */
  async commit(temp: string, name: string, force: boolean): Promise<void> {
    const shown = join(this.shown, name);
    if (force) {
      const st = await lstat(this.at(name)).catch(() => undefined);
      if (st?.isDirectory()) throw new MlicError('IO_EXISTS', `${shown}: is a directory`);
      await rename(this.at(temp), this.at(name)).catch((e) => Promise.reject(fromFsError(e, shown)));
      return;
    }
    try {
      await link(this.at(temp), this.at(name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new MlicError('IO_EXISTS', `${shown}: already exists`, { hint: 'use --force to overwrite' });
      throw fromFsError(e, shown);
    }
    await unlink(this.at(temp));
  }

  async exists(name: string): Promise<boolean> {
    return lstat(this.at(name)).then(
      () => true,
      () => false,
    );
  }

  async remove(name: string): Promise<void> {
    await unlink(this.at(name)).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.fh?.close().catch(() => undefined);
  }
}

/**
 * Removes a directory tree that may be deeper than PATH_MAX (a bundle may hold 4096-byte paths),
 * never following a symbolic link, with one directory handle open at a time (Linux: walks through
 * /proc/self/fd). Elsewhere it is fs.rm. A missing path is not an error.
 */
export async function removeTree(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return;
  if (!st.isDirectory()) return unlink(path);
  if (!PROC_FD) return rm(path, { recursive: true, force: true });
  const names: string[] = [];
  let cur = await open(path, DIR_FLAGS);
  try {
    for (;;) {
      const at = (n: string) => `/proc/self/fd/${cur.fd}/${n}`;
      let sub: string | undefined;
      for (const n of await readdir(`/proc/self/fd/${cur.fd}`)) {
        const s = await lstat(at(n));
        if (s.isDirectory()) sub = sub ?? n;
        else await unlink(at(n));
      }
      if (sub !== undefined) {
        const next = await open(at(sub), DIR_FLAGS);
        await cur.close();
        cur = next;
        names.push(sub);
        continue;
      }
      const name = names.pop();
      if (name === undefined) break;
      const parent = await open(at('..'), DIR_FLAGS);
      await cur.close();
      cur = parent;
      await rmdir(`/proc/self/fd/${cur.fd}/${name}`);
    }
  } finally {
    await cur.close().catch(() => undefined);
  }
  await rmdir(path);
}
