/**
 * `mark` on a model (a file or a directory): writes a copy whose markable tensors carry a
 * licence's fingerprint; every other byte is the original's. Atomic: a single file is written to a
 * temporary name and renamed; a directory is built in a temporary directory beside the output
 * and renamed into place, so a crash leaves no partial model.
 */
import { mkdir, mkdtemp, open, rename, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { MlicError, fromFsError } from '../errors.js';
import { writeFileAtomic, registerTempDir, syncDir } from '../util/atomic.js';
import { removeTree } from '../util/safedir.js';
import type { SourceFile } from '../bundle/collect.js';
import { withSource } from '../bundle/sources.js';
import type { FileHandle } from 'node:fs/promises';
import { markInPlace, type MarkedTensor } from './embed.js';
import { indexModel, type ModelTensors } from './model.js';
import { isFloat, markable, type TensorRef } from './tensors.js';

export interface MarkReport {
  files: number;
  tensors: { total: number; marked: number };
  /** elements (parameters): all, of a float type (F32/F16/BF16), and marked */
  elements: { total: number; float: number; marked: number };
  /** share of all elements that carry the mark */
  share: number;
  /** tensors left as they are because of their element type (quantized or integer), by type */
  otherTypes: Record<string, number>;
  marked: MarkedTensor[];
}

export function reportOf(m: ModelTensors, marked: MarkedTensor[]): MarkReport {
  const all = m.tensors;
  const otherTypes: Record<string, number> = {};
  for (const t of all) if (!isFloat(t)) otherTypes[t.dtype] = (otherTypes[t.dtype] ?? 0) + 1;
  const total = all.reduce((n, t) => n + t.elements, 0);
  const markedElements = marked.reduce((n, t) => n + t.elements, 0);
  return {
    files: m.files.length,
    tensors: { total: all.length, marked: marked.length },
    elements: { total, float: all.filter(isFloat).reduce((n, t) => n + t.elements, 0), marked: markedElements },
    share: total ? markedElements / total : 0,
    otherTypes,
    marked,
  };
}

async function copyInto(f: SourceFile, fh: FileHandle, onBytes?: (n: number) => void): Promise<void> {
  await withSource(f, async (src) => {
    const buf = Buffer.alloc(1 << 20);
    for (let pos = 0; pos < f.size; ) {
      const want = Math.min(buf.length, f.size - pos);
      const { bytesRead } = await src.read(buf, 0, want, pos);
      if (bytesRead === 0) throw new MlicError('IO_ERROR', `${f.rel}: file ended at ${pos} bytes while reading (it changed while being read?)`);
      let done = 0;
      while (done < bytesRead) done += (await fh.write(buf, done, bytesRead - done, pos + done)).bytesWritten;
      pos += bytesRead;
      onBytes?.(bytesRead);
    }
  });
}

/** Copies and marks one file into `fh`. */
async function markOne(f: SourceFile, tensors: TensorRef[], fh: FileHandle, markKey: Uint8Array, strength: number | undefined, onBytes?: (n: number) => void): Promise<MarkedTensor[]> {
  await copyInto(f, fh, onBytes);
  const mine = tensors.filter((t) => t.file === f.rel).filter(markable);
  return markInPlace(fh, mine, markKey, { ...(strength !== undefined ? { strength } : {}), label: f.rel });
}

export interface MarkOptions {
  markKey: Uint8Array;
  strength?: number;
  force?: boolean;
  onBytes?: (n: number) => void;
}

/** Marks the model at `input` into `out` (a file for a file, a directory for a directory). */
export async function markModel(input: string, out: string, o: MarkOptions): Promise<MarkReport> {
  const m = await indexModel(input);
  const isDir = (await stat(input).catch((e: unknown) => Promise.reject(fromFsError(e, input)))).isDirectory();
  const marked: MarkedTensor[] = [];
  if (!isDir && m.files.length === 1) {
    const f = m.files[0]!;
    await writeFileAtomic(out, { force: o.force ?? false, read: true }, async (fh) => {
      marked.push(...(await markOne(f, m.tensors, fh, o.markKey, o.strength, o.onBytes)));
    });
    return reportOf(m, marked);
  }
  const exists = await stat(out).then(() => true, () => false);
  if (exists && !o.force) throw new MlicError('IO_EXISTS', `${out}: already exists`, { hint: 'use --force to overwrite' });
  const tmp = await mkdtemp(join(dirname(out), `.${basename(out)}.tmp-`)).catch((e: unknown) => Promise.reject(fromFsError(e, dirname(out))));
  const untrack = registerTempDir(tmp);
  try {
    for (const f of m.files) {
      const dest = join(tmp, ...f.rel.split('/'));
      await mkdir(dirname(dest), { recursive: true });
      const fh = await open(dest, 'wx+', 0o644);
      try {
        marked.push(...(await markOne(f, m.tensors, fh, o.markKey, o.strength, o.onBytes)));
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    if (exists) await removeTree(out);
    await rename(tmp, out);
    await syncDir(dirname(out));
  } catch (e) {
    await removeTree(tmp).catch(() => undefined);
    throw fromFsError(e, out);
  } finally {
    untrack();
  }
  return reportOf(m, marked);
}
