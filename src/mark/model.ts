/** A model on disk (a file, a directory or a tar archive, as pack takes them) and its tensors. */
import { collectInputs, type SourceFile } from '../bundle/collect.js';
import { readOrder, withSource } from '../bundle/sources.js';
import type { ReadAt, ReadSource } from '../util/read-at.js';
import { MlicError } from '../errors.js';
import { listTensors, type TensorRef } from './tensors.js';

export interface ModelTensors {
  files: SourceFile[];
  tensors: TensorRef[];
}

/**
 * Lists every tensor of every model file under `path`; files that hold no tensors are kept (mark
 * copies them). Throws MODEL_INVALID for a malformed model file, and for a tensor whose bytes are
 * not inside a file of the model (ONNX external data named but not there, or too short).
 */
export async function indexModel(path: string): Promise<ModelTensors> {
  const files = await collectInputs([{ path, prefix: '' }]);
  const tensors: TensorRef[] = [];
  for (const i of readOrder(files)) {
    const f = files[i]!;
    tensors.push(...(await withSource(f, (src) => listTensors(src, f.size, f.rel))));
  }
  const sizes = new Map(files.map((f) => [f.rel, f.size]));
  for (const t of tensors) {
    const size = sizes.get(t.file);
    if (size === undefined)
      throw new MlicError('MODEL_INVALID', `tensor ${JSON.stringify(t.name.slice(0, 80))} is stored in ${JSON.stringify(t.file.slice(0, 200))}, which is not part of ${path}`, {
        hint: 'give the directory that holds the model and its external data files',
      });
    if (!Number.isSafeInteger(t.offset) || !Number.isSafeInteger(t.length) || t.offset < 0 || t.length < 0 || t.offset + t.length > size)
      throw new MlicError('MODEL_INVALID', `tensor ${JSON.stringify(t.name.slice(0, 80))}: bytes ${t.offset}..${t.offset + t.length} are outside ${t.file} (${size} bytes)`);
  }
  return { files, tensors };
}

/** Opens the model's files on demand and keeps them open until close(). */
export class OpenFiles {
  private open = new Map<string, Promise<ReadSource>>();
  constructor(private readonly files: readonly SourceFile[]) {}

  get(rel: string): Promise<ReadAt> {
    let p = this.open.get(rel);
    if (!p) {
      const f = this.files.find((x) => x.rel === rel);
      if (!f) throw new RangeError(`no file ${rel}`);
      p = f.open();
      this.open.set(rel, p);
    }
    return p;
  }

  async close(): Promise<void> {
    for (const p of this.open.values()) await (await p.catch(() => undefined))?.close();
    this.open.clear();
  }
}
