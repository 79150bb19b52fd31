/**
 * mlic unpack: decrypt the licensed files of a bundle into a directory. Every directory is opened
 * once and written through that handle (util/safedir.ts), so a symbolic link swapped in by another
 * user cannot redirect plaintext. Each file is written 0600 under a temporary name and renamed
 * only after its last chunk authenticated and its SHA-256 matched; if anything fails, every file
 * this run wrote is removed, and the output directory too when this run created it.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { MlicError, fromFsError } from '../errors.js';
import { wipe } from '../crypto/random.js';
import { unsafePathReason } from '../format/paths.js';
import { SafeDir, removeTree } from '../util/safedir.js';
import { trackTempFile } from '../util/atomic.js';
import { mapLimit } from '../util/limit.js';
import { defaultConcurrency } from '../crypto/engine.js';
import { decryptEngine, decryptFileToHandle } from '../bundle/decrypt.js';
import { authorizeBundle, type AuthorizeOptions, type Authorization } from './licences.js';

export interface UnpackOptions extends AuthorizeOptions {
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
  /** files decrypted at once (default: os.availableParallelism()); the output does not depend on it */
  concurrency?: number;
}

export interface UnpackResult {
  outDir: string;
  files: { path: string; size: number }[];
  licenseId: string;
  inGrace: boolean;
}

/** Decrypts the authorized files into `root` (an opened directory), several files at a time. */
export async function unpackAuthorized(
  a: Pick<Authorization, 'bundle' | 'manifest' | 'spans' | 'bundleKey' | 'files'>,
  root: SafeDir,
  opts: { force?: boolean; onProgress?: (done: number, total: number) => void; concurrency?: number } = {},
): Promise<{ path: string; size: number }[]> {
  const files = a.files.map((i) => a.manifest.files[i]!);
  const total = files.reduce((s, f) => s + f.size, 0);
  let done = 0;
  const onBytes = (n: number) => {
    done += n;
    opts.onProgress?.(done, total);
  };
  // One opening per directory, shared by the files being written into it at once.
  const dirs = new Map<string, Promise<SafeDir>>([['', Promise.resolve(root)]]);
  const dirOf = (rel: string): Promise<SafeDir> => {
    let d = dirs.get(rel);
    if (!d) {
      const i = rel.lastIndexOf('/');
      d = dirOf(i < 0 ? '' : rel.slice(0, i)).then((parent) => parent.sub(i < 0 ? rel : rel.slice(i + 1)));
      dirs.set(rel, d);
    }
    return d;
  };
  const written: { dir: SafeDir; name: string; untrack: () => void }[] = [];
  const concurrency = defaultConcurrency(files.length, opts.concurrency);
  const engine = decryptEngine(files, concurrency);
  try {
    await mapLimit(files, concurrency, async (f) => {
      const why = unsafePathReason(f.path);
      if (why) throw new MlicError('IO_UNSAFE_PATH', `${f.path}: ${why}`);
      const slash = f.path.lastIndexOf('/');
      const dir = await dirOf(slash < 0 ? '' : f.path.slice(0, slash));
      const name = f.path.slice(slash + 1);
      if (!opts.force && (await dir.exists(name))) throw new MlicError('IO_EXISTS', `${f.path}: already exists in the output directory`, { hint: 'use --force to overwrite' });
      const { fh, temp } = await dir.createTemp(name);
      const entry = { dir, name: temp, untrack: trackTempFile(dir.at(temp)) };
      written.push(entry);
      try {
        await decryptFileToHandle(a.bundle, a.spans[f.index]!, f, a.bundleKey, fh, { engine, onBytes });
        await fh.sync().catch((e: unknown) => {
          throw fromFsError(e, f.path);
        });
      } finally {
        await fh.close().catch(() => undefined);
      }
      await dir.commit(temp, name, opts.force ?? false);
      entry.untrack();
      // Until the whole unpack succeeds, a failure (or a signal) removes finished files too.
      entry.name = name;
      entry.untrack = trackTempFile(dir.at(name));
    });
    return files.map((f) => ({ path: f.path, size: f.size }));
  } catch (e) {
    for (const w of written) await w.dir.remove(w.name);
    throw e;
  } finally {
    await engine.close();
    for (const w of written) w.untrack();
    for (const d of dirs.values()) {
      const dir = await d.catch(() => undefined);
      if (dir && dir !== root) await dir.close();
    }
  }
}

export async function unpack(bundlePath: string, outDir: string, opts: UnpackOptions = {}): Promise<UnpackResult> {
  const a = await authorizeBundle(bundlePath, { action: 'unpack', ...opts });
  // resolve() drops a trailing slash, which would make the checks below follow a symbolic link.
  const out = resolve(outDir);
  let created = false;
  try {
    try {
      // Missing parents are made as `mkdir -p` makes them; the output directory itself is private.
      await mkdir(dirname(out), { recursive: true });
      await mkdir(out, { mode: 0o700 });
      created = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fromFsError(e, outDir);
    }
    const root = await SafeDir.open(out);
    try {
      const files = await unpackAuthorized(a, root, opts);
      return { outDir, files, licenseId: a.license.licenseId, inGrace: a.decision.inGrace };
    } catch (e) {
      // A clean-up failure never replaces the error that caused it.
      if (created) await removeTree(out).catch(() => undefined);
      throw e;
    } finally {
      await root.close();
    }
  } finally {
    wipe(a.bundleKey);
    await a.bundle.close();
  }
}
