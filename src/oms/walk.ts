/**
 * Listing and hashing a model's files the way OpenSSF Model Signing's reference
 * (sigstore/model-transparency 1.x, serialization method "files") does:
 *
 * - The model is a directory (every regular file below it is a resource, named by its POSIX path
 *   relative to the directory) or a single file (one resource, named ".").
 * - Ignored paths are absolute (or cwd-relative) filesystem paths; a path is skipped when it equals
 *   an ignored path or lies below one (so ignoring a directory ignores its whole subtree).
 * - By default the git paths directly in the model directory are ignored: .git, .gitattributes,
 *   .github, .gitignore (not nested ones).
 * - Symbolic links are refused (allow_symlinks = false), including the model path itself; so are
 *   sockets, FIFOs and devices. Empty directories contribute nothing.
 */
import { lstat, readdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { MlicError, fromFsError } from '../errors.js';
import { sha256File } from '../crypto/ecdsa.js';
import { compareResourceNames } from '../format/oms.js';

/** The git paths the reference ignores by default, relative to the model directory. */
export const OMS_DEFAULT_IGNORES: readonly string[] = ['.git', '.gitattributes', '.github', '.gitignore'];

export interface ModelFile {
  /** resource name: POSIX path relative to the model directory, or "." for a one-file model */
  name: string;
  /** absolute path on disk */
  path: string;
}

export interface ModelListing {
  /** absolute model path */
  root: string;
  /** true when the model is a single file */
  single: boolean;
  /** the subject name: the model path's base name */
  modelName: string;
  /** regular files, sorted as the reference sorts resources */
  files: ModelFile[];
  /** every ignored path that lies inside the model, relative to it, POSIX, sorted (what a v1.1 statement records) */
  ignorePaths: string[];
}

export interface ListOptions {
  /** filesystem paths to skip (absolute or relative to the current directory) */
  ignore?: readonly string[];
  /** paths relative to the model to skip (a signed statement's serialization.ignore_paths) */
  ignoreRelative?: readonly string[];
  /** skip .git, .gitattributes, .github, .gitignore in the model directory (default true) */
  ignoreGitPaths?: boolean;
}

function toPosix(rel: string): string {
  return sep === '/' ? rel : rel.split(sep).join('/');
}

function isUnder(p: string, dir: string): boolean {
  if (p === dir) return true;
  return p.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/** Lists a model's files; throws IO_NOT_FOUND, IO_UNSAFE_PATH (symlink) or IO_ERROR. */
export async function listModelFiles(modelPath: string, opts: ListOptions = {}): Promise<ModelListing> {
  if (typeof modelPath !== 'string' || modelPath === '') throw new MlicError('USAGE', 'a model path is required');
  const root = resolve(modelPath);
  const ignored = new Set<string>();
  for (const p of opts.ignore ?? []) ignored.add(resolve(p));
  if (opts.ignoreGitPaths ?? true) for (const g of OMS_DEFAULT_IGNORES) ignored.add(join(root, g));
  for (const r of opts.ignoreRelative ?? []) ignored.add(join(root, ...r.split('/')));
  const ignoreList = [...ignored];
  const isIgnored = (abs: string): boolean => ignoreList.some((ig) => isUnder(abs, ig));

  // What a v1.1 statement records: each ignored path inside the model, relative to it.
  const ignorePaths = new Set<string>();
  for (const ig of ignoreList) {
    const rel = relative(root, ig);
    if (rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel))) ignorePaths.add(rel === '' ? '.' : toPosix(rel));
  }

  let st;
  try {
    st = await lstat(root);
  } catch (e) {
    throw fromFsError(e, modelPath);
  }
  const files: ModelFile[] = [];
  const modelName = basename(root);
  if (st.isSymbolicLink()) throw symlinkError(modelPath);
  if (isIgnored(root)) {
    // the whole model is ignored: nothing to list
  } else if (st.isFile()) {
    files.push({ name: '.', path: root });
  } else if (st.isDirectory()) {
    await walkDir(root, root, isIgnored, files);
  } else {
    throw specialError(modelPath);
  }
  files.sort((a, b) => compareResourceNames(a.name, b.name));
  return { root, single: st.isFile(), modelName, files, ignorePaths: [...ignorePaths].sort(compareResourceNames) };
}

function symlinkError(p: string): MlicError {
  return new MlicError('IO_UNSAFE_PATH', `${p} is a symbolic link; OpenSSF Model Signing does not follow symlinks (allow_symlinks is false)`, {
    hint: 'copy the real file in its place, or ignore the link with --ignore',
  });
}

function specialError(p: string): MlicError {
  return new MlicError('IO_ERROR', `${p} is neither a regular file nor a directory (socket, FIFO or device)`, { hint: 'remove it or ignore it with --ignore' });
}

async function walkDir(root: string, dir: string, isIgnored: (abs: string) => boolean, out: ModelFile[]): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    throw fromFsError(e, dir);
  }
  for (const name of names) {
    const abs = join(dir, name);
    if (isIgnored(abs)) continue;
    let st;
    try {
      st = await lstat(abs);
    } catch (e) {
      throw fromFsError(e, abs);
    }
    if (st.isSymbolicLink()) throw symlinkError(abs);
    if (st.isDirectory()) await walkDir(root, abs, isIgnored, out);
    else if (st.isFile()) out.push({ name: toPosix(relative(root, abs)), path: abs });
    else throw specialError(abs);
  }
}

/** How many files are hashed at once: enough to overlap I/O with hashing, bounded (each holds a 1 MiB buffer). */
export function hashConcurrency(): number {
  return Math.min(8, Math.max(2, availableParallelism()));
}

/** sha256 of each file, several at once (bounded), each streamed. Returns name -> digest. */
export async function hashModelFiles(files: readonly ModelFile[], concurrency = hashConcurrency()): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const f = files[next++]!;
      out.set(f.name, await sha256File(f.path));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, files.length)) }, worker));
  return out;
}
