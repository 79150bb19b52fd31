/**
 * mlic unpack: decrypt the licensed files of a bundle into a directory. Each file is written
 * 0600 under a temporary name and renamed only after its last chunk authenticated and its
 * SHA-256 matched; if anything fails, every file this run wrote is removed.
 */
import { lstat, mkdir, open, rename, rm, unlink } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { MlicError, fromFsError } from '../errors.js';
import { wipe } from '../crypto/random.js';
import { unsafePathReason } from '../format/manifest.js';
import { authorizeBundle, type AuthorizeOptions, type Authorization } from '../license/runtime.js';
import { tempNameFor, trackTempFile } from '../util/atomic.js';
import { mapLimit } from '../util/limit.js';
import { defaultConcurrency } from '../crypto/engine.js';
import { decryptEngine, decryptFileToHandle } from './decrypt.js';

export interface UnpackOptions extends AuthorizeOptions {
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
  /** files decrypted at once (default: os.availableParallelism()) */
  concurrency?: number;
}

export interface UnpackResult {
  outDir: string;
  files: { path: string; size: number }[];
  licenseId: string;
  inGrace: boolean;
}

/** Refuses to write through a symbolic link anywhere below outDir. */
async function safeParent(outDir: string, rel: string): Promise<string> {
  const target = join(outDir, rel);
  if (relative(outDir, target).split(sep)[0] === '..') throw new MlicError('IO_UNSAFE_PATH', `${rel}: escapes the output directory`);
  let cur = outDir;
  for (const part of rel.split('/').slice(0, -1)) {
    cur = join(cur, part);
    try {
      const st = await lstat(cur);
      if (st.isSymbolicLink() || !st.isDirectory()) throw new MlicError('IO_UNSAFE_PATH', `${cur}: exists and is not a plain directory; refusing to write through it`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromFsError(e, cur);
      // Files are unpacked several at a time: another may have just made this directory.
      await mkdir(cur, { mode: 0o700 }).catch(async (me: NodeJS.ErrnoException) => {
        const st = me.code === 'EEXIST' ? await lstat(cur) : undefined;
        if (!st || st.isSymbolicLink() || !st.isDirectory()) throw fromFsError(me, cur);
      });
    }
  }
  return target;
}

export async function unpackAuthorized(a: Authorization, outDir: string, opts: { force?: boolean; onProgress?: (done: number, total: number) => void; concurrency?: number } = {}): Promise<{ path: string; size: number }[]> {
  const written = new Set<string>();
  const files = a.files.map((i) => a.manifest.files[i]!);
  const total = files.reduce((s, f) => s + f.size, 0);
  let done = 0;
  const onBytes = (n: number) => {
    done += n;
    opts.onProgress?.(done, total);
  };
  const finals: (() => void)[] = [];
  const concurrency = defaultConcurrency(files.length, opts.concurrency);
  const engine = decryptEngine(files, concurrency);
  try {
    await mapLimit(files, concurrency, async (f) => {
      const why = unsafePathReason(f.path);
      if (why) throw new MlicError('IO_UNSAFE_PATH', `${f.path}: ${why}`);
      const target = await safeParent(outDir, f.path);
      if (!opts.force) {
        const exists = await lstat(target).then(
          () => true,
          () => false,
        );
        if (exists) throw new MlicError('IO_EXISTS', `${target}: already exists`, { hint: 'use --force to overwrite' });
      } else {
        const st = await lstat(target).catch(() => undefined);
        if (st?.isSymbolicLink()) throw new MlicError('IO_UNSAFE_PATH', `${target}: is a symbolic link; refusing to overwrite through it`);
      }
      const tmp = tempNameFor(target);
      const fh = await open(tmp, 'wx', 0o600).catch((e) => {
        throw fromFsError(e, tmp);
      });
      written.add(tmp);
      const untrack = trackTempFile(tmp);
      try {
        await decryptFileToHandle(a.bundle, a.spans[f.index]!, f, a.bundleKey, fh, { engine, onBytes });
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, target);
      written.delete(tmp);
      written.add(target);
      untrack();
      // Until the whole unpack succeeds, a signal removes finished files too.
      finals.push(trackTempFile(target));
    });
    return files.map((f) => ({ path: f.path, size: f.size }));
  } catch (e) {
    for (const p of written) await unlink(p).catch(() => undefined);
    throw e;
  } finally {
    await engine.close();
    for (const u of finals) u();
  }
}

export async function unpack(bundlePath: string, outDir: string, opts: UnpackOptions = {}): Promise<UnpackResult> {
  const a = await authorizeBundle(bundlePath, { action: 'unpack', ...opts });
  try {
    const existed = await lstat(outDir).then(
      (st) => {
        if (st.isSymbolicLink() || !st.isDirectory()) throw new MlicError('IO_UNSAFE_PATH', `${outDir}: not a plain directory`);
        return true;
      },
      (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return false;
        throw fromFsError(e, outDir);
      },
    );
    if (!existed) await mkdir(outDir, { recursive: true, mode: 0o700 }).catch((e) => Promise.reject(fromFsError(e, outDir)));
    try {
      const files = await unpackAuthorized(a, outDir, opts);
      return { outDir, files, licenseId: a.license.licenseId, inGrace: a.decision.inGrace };
    } catch (e) {
      if (!existed) await rm(outDir, { recursive: true, force: true });
      throw e;
    }
  } finally {
    wipe(a.bundleKey);
    await a.bundle.close();
  }
}
