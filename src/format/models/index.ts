/**
 * Model file detection and validation: safetensors (+ sharded index), GGUF, ONNX (+ external
 * data), JSON, text, binary.
 *
 * Every input is hostile. Invariants:
 * - memory stays bounded: reads go through a 64 KiB window at explicit offsets; tensor payloads
 *   (safetensors data, GGUF tensor data, ONNX raw_data and other length-delimited fields) are
 *   skipped by offset, never read. The only larger reads are a safetensors header (at most
 *   100,000,000 bytes, the safetensors library's own limit) and a JSON file (at most 64 MiB).
 * - every length and count is checked against the bytes left in its enclosing structure before
 *   it is used, and against a sane cap;
 * - a malformed model file throws MlicError('MODEL_INVALID') naming the file and what is wrong;
 *   a failed read throws MlicError('IO_ERROR'). Nothing else escapes.
 *
 * The rules follow what the real loaders enforce (safetensors' Metadata::validate, llama.cpp's
 * gguf reader, onnxruntime's external-data handling), so a file accepted here is one they load.
 */
import type { ReadAt } from '../../util/read-at.js';
import { MlicError } from '../../errors.js';
import { Reader, TEXT_SNIFF, type ModelFileInfo } from './reader.js';
import { inspectJson, inspectSafetensorsIndex, isText } from './json.js';
import { inspectSafetensors, looksLikeSafetensors } from './safetensors.js';
import { inspectGguf } from './gguf.js';
import { inspectOnnx } from './onnx.js';

export type { ModelFormat, ModelFileInfo } from './reader.js';
export { checkModelSet } from './set.js';

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Reads through an open file handle (or any ReadAt, e.g. an archive member) with bounded memory (never reads a whole multi-GB file into
 * memory; positional reads, big tensor payloads skipped by offset). `name` is the relative path
 * (used for extension hints such as .json/.onnx/.gguf/.safetensors). Throws
 * MlicError('MODEL_INVALID', message naming the file and what is wrong) for malformed
 * safetensors/GGUF/ONNX/safetensors-index files, MlicError('IO_ERROR') when reading fails.
 */
export async function inspectModelFile(fh: ReadAt, size: number, name: string): Promise<ModelFileInfo> {
  if (!Number.isSafeInteger(size) || size < 0) throw new MlicError('IO_ERROR', `${name}: invalid file size ${size}`);
  const r = new Reader(fh, size, name);
  const lower = name.toLowerCase();
  const head = size > 0 ? await r.bytes(Math.min(size, TEXT_SNIFF), 'file start') : Buffer.alloc(0);
  r.pos = 0;

  if (lower.endsWith('.onnx')) return inspectOnnx(r);

  const ggufMagic = head.length >= 4 && head.toString('latin1', 0, 4) === 'GGUF';
  if (lower.endsWith('.gguf')) {
    if (!ggufMagic) throw r.invalid('does not start with the GGUF magic');
    return inspectGguf(r);
  }
  // Without the extension, "GGUF" followed by a small version number is a GGUF file; a text file
  // that merely starts with the word "GGUF" is not.
  if (ggufMagic && (head.length < 8 || head.readUInt32LE(4) <= 0xffff)) return inspectGguf(r);

  if (lower.endsWith('.safetensors')) return (await inspectSafetensors(r, false))!;
  if (lower.endsWith('.safetensors.index.json')) return inspectSafetensorsIndex(r);
  if (looksLikeSafetensors(head, size)) {
    const st = await inspectSafetensors(r, true);
    if (st) return st;
  }
  if (lower.endsWith('.json')) {
    const j = await inspectJson(r, head);
    if (j) return j;
  }
  return { format: isText(head, size > head.length) ? 'text' : 'binary', details: {} };
}

