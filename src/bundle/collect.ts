/** Collects the files to pack from files, directories and tar archives, refusing anything unsafe. */
import { lstat, open, readdir, realpath, stat } from 'node:fs/promises';
import { basename, join, sep } from 'node:path';
import { MlicError, fromFsError } from '../errors.js';
import { MAX_FILES, unsafePathReason } from '../format/manifest.js';
import { inspectModelFile } from '../format/models/index.js';
import { collectArchive, isArchiveName } from './archive.js';
import { withSource, type SourceFile } from './sources.js';

export type { SourceFile } from './sources.js';

export interface InputRoot {
  path: string;
  /** prefix for the relative paths (component bundles), '' for none */
  prefix: string;
  component?: string;
}

export async function collectInputs(roots: InputRoot[]): Promise<SourceFile[]> {
  const out: SourceFile[] = [];
  const order = { next: 0 };
  for (const r of roots) out.push(...(await collectOne(r, order)));
  const seen = new Set<string>();
  for (const f of out) {
    if (seen.has(f.rel)) throw new MlicError('USAGE', `two inputs map to the same path in the bundle: ${f.rel}`);
    seen.add(f.rel);
  }
  if (out.length > MAX_FILES) throw new MlicError('USAGE', `too many files (${out.length}; at most ${MAX_FILES})`);
  // Bytewise order of the UTF-8 paths (docs/FORMAT.md §3), not UTF-16 code units.
  return out.sort((a, b) => Buffer.compare(Buffer.from(a.rel), Buffer.from(b.rel)));
}

/** A file on disk. */
function diskFile(abs: string, rel: string, size: number, comp: { component?: string }): SourceFile {
  const f: SourceFile = {
    rel,
    size,
    ...comp,
    inspect: () => withSource(f, (src) => inspectModelFile(src, size, rel)),
    open: () => open(abs, 'r'),
  };
  return f;
}

async function collectOne(root: InputRoot, order: { next: number }): Promise<SourceFile[]> {
  let st;
  try {
    st = await stat(root.path);
  } catch (e) {
    throw fromFsError(e, root.path);
  }
  const withPrefix = (rel: string) => (root.prefix ? `${root.prefix}/${rel}` : rel);
  const comp = root.component !== undefined ? { component: root.component } : {};
  if (st.isFile() && isArchiveName(root.path)) return collectArchive(root, st, order);
  if (st.isFile()) {
    const rel = withPrefix(basename(root.path));
    checkRel(rel, root.path);
    return [diskFile(await realpath(root.path), rel, st.size, comp)];
  }
  if (!st.isDirectory()) throw new MlicError('IO_NOT_REGULAR', `${root.path}: not a regular file or directory`);
  const rootReal = await realpath(root.path);
  const files: SourceFile[] = [];
  const walk = async (dirAbs: string, dirRel: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(dirAbs)).sort();
    } catch (e) {
      throw fromFsError(e, dirAbs);
    }
    for (const name of names) {
      const abs = join(dirAbs, name);
      const rel = dirRel ? `${dirRel}/${name}` : name;
      const shown = join(root.path, rel);
      let l;
      try {
        l = await lstat(abs);
      } catch (e) {
        throw fromFsError(e, shown);
      }
      if (l.isSymbolicLink()) {
        let target: string;
        try {
          target = await realpath(abs);
        } catch (e) {
          throw new MlicError('IO_UNSAFE_PATH', `${shown}: symbolic link points nowhere`, { cause: e });
        }
        if (!target.startsWith(rootReal + sep))
          throw new MlicError('IO_UNSAFE_PATH', `${shown}: symbolic link points outside the model directory (${target})`, {
            hint: 'copy the file into the directory, or pack the directory the link points into',
          });
        const ts = await stat(target);
        if (!ts.isFile()) throw new MlicError('IO_UNSAFE_PATH', `${shown}: symbolic link to a directory or special file is not supported`);
        checkRel(withPrefix(rel), shown);
        files.push(diskFile(target, withPrefix(rel), ts.size, comp));
      } else if (l.isDirectory()) {
        await walk(abs, rel);
      } else if (l.isFile()) {
        checkRel(withPrefix(rel), shown);
        files.push(diskFile(abs, withPrefix(rel), l.size, comp));
      } else {
        throw new MlicError('IO_NOT_REGULAR', `${shown}: not a regular file (device, socket or pipe)`);
      }
    }
  };
  await walk(rootReal, '');
  if (files.length === 0) throw new MlicError('USAGE', `${root.path}: directory is empty, nothing to pack`);
  return files;
}

function checkRel(rel: string, shown: string): void {
  const why = unsafePathReason(rel);
  if (why) throw new MlicError('IO_UNSAFE_PATH', `${shown}: unsafe file name (${why})`);
}
