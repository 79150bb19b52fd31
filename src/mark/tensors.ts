/**
 * The tensors of a model, as byte ranges of its files: what `mark` rewrites and `trace` samples.
 * Each file is validated first by the model-format checks pack uses (src/format/models), so the
 * ranges here are inside the file and tile its data as its format says.
 *
 * safetensors: every tensor. ONNX: the main graph's initializers (onnx.ts). F32, F16 and BF16
 * are markable; the others are listed, never marked.
 * GGUF: every tensor (gguf.ts); quantized ones are listed under their ggml type names and never marked.
 */
import type { ReadAt } from '../util/read-at.js';
import { inspectModelFile } from '../format/models/index.js';
import { readFully } from '../format/models/reader.js';
import { isFloatDtype, DTYPE_BYTES, type FloatDtype } from './dtype.js';
import { onnxTensors } from './onnx.js';
import { ggufTensors } from './gguf.js';
import type { TensorRef } from './ref.js';

export type { TensorRef };

export interface FloatTensor extends TensorRef {
  dtype: FloatDtype;
}

export function isFloat(t: TensorRef): t is FloatTensor {
  return isFloatDtype(t.dtype) && t.length === t.elements * DTYPE_BYTES[t.dtype];
}

/** The tensors of one model file (none for a file that holds no tensors, such as a config). Throws MODEL_INVALID for a malformed one. */
export async function listTensors(fh: ReadAt, size: number, rel: string): Promise<TensorRef[]> {
  const info = await inspectModelFile(fh, size, rel);
  if (info.format === 'safetensors') return safetensorsTensors(fh, rel);
  if (info.format === 'onnx') return onnxTensors(fh, size, rel);
  if (info.format === 'gguf') return ggufTensors(fh, size, rel);
  return [];
}

async function safetensorsTensors(fh: ReadAt, rel: string): Promise<TensorRef[]> {
  const head = Buffer.alloc(8);
  await readFully(fh, head, 8, 0, rel);
  const n = Number(head.readBigUInt64LE(0));
  const text = Buffer.alloc(n);
  await readFully(fh, text, n, 8, rel);
  const header = JSON.parse(text.toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out: TensorRef[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const elements = v.shape.reduce((a, d) => a * d, 1);
    out.push({ file: rel, name, dtype: v.dtype, shape: v.shape, offset: 8 + n + v.data_offsets[0], length: v.data_offsets[1] - v.data_offsets[0], elements });
  }
  return out.sort((a, b) => a.offset - b.offset);
}

/** Tensors too small to matter, or that a fingerprint must leave alone (biases, norms, embeddings, positions). */
export const MIN_MARK_ELEMENTS = 4096;
const LEAVE_ALONE = /(^|[._/-])(bias|b|norm|ln(_?\d+)?|layernorm|layer_norm|rmsnorm|bn|batchnorm|embed|embeddings|embed_tokens|wte|wpe|tok_embeddings|token_embd|pos_embed|position_embeddings|position_ids|gamma|beta|running_mean|running_var|scale)([._/-]|$)|norm/i;

/** Does the fingerprint go into this tensor? Matrices and convolution kernels of a float type, of at least 4096 elements, not named as a bias, norm or embedding. */
export function markable(t: TensorRef): t is FloatTensor {
  return isFloat(t) && t.shape.length >= 2 && t.elements >= MIN_MARK_ELEMENTS && !LEAVE_ALONE.test(t.name);
}
