/**
 * A small GGUF v3 writer for the tests (ggml docs/gguf.md): key-values, tensor infos, aligned
 * data. `ggufModel` writes a synthetic model (synth.ts) as a GGUF file, its tensors as F32 or
 * F16, optionally with a quantized (Q8_0) tensor beside them.
 */
import { floatToHalf } from '../../src/mark/dtype.js';
import { prng } from '../helpers.js';
import type { Model } from './synth.js';

export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
export const u64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
export const gstr = (s: string): Buffer => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s, 'utf8')]);
/** GGUF metadata value types */
export const V = { U32: 4, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9 };
export const kv = (key: string, type: number, value: Buffer): Buffer => Buffer.concat([gstr(key), u32(type), value]);
/** ggml tensor types */
export const GGML = { F32: 0, F16: 1, Q8_0: 8 };

export interface GTensor {
  name: string;
  /** ne, innermost first */
  ne: number[];
  type: number;
  data: Buffer;
}

/** A GGUF v3 file; returns its bytes, where the tensor infos start, and each tensor's data offset in the file. */
export function writeGguf(kvs: Buffer[], tensors: GTensor[], align: number): { bytes: Buffer; infosStart: number; offsets: number[] } {
  const infos: Buffer[] = [];
  const data: Buffer[] = [];
  const rel: number[] = [];
  let off = 0;
  for (const t of tensors) {
    const aligned = Math.ceil(off / align) * align;
    if (aligned > off) data.push(Buffer.alloc(aligned - off));
    off = aligned;
    rel.push(off);
    infos.push(Buffer.concat([gstr(t.name), u32(t.ne.length), ...t.ne.map(u64), u32(t.type), u64(off)]));
    data.push(t.data);
    off += t.data.length;
  }
  const pre = Buffer.concat([Buffer.from('GGUF', 'latin1'), u32(3), u64(tensors.length), u64(kvs.length), ...kvs]);
  const head = Buffer.concat([pre, ...infos]);
  const pad = Buffer.alloc((align - (head.length % align)) % align);
  const dataStart = head.length + pad.length;
  return { bytes: Buffer.concat([head, pad, ...data]), infosStart: pre.length, offsets: rel.map((o) => dataStart + o) };
}

export function f32s(a: Float32Array): Buffer {
  const b = Buffer.alloc(a.length * 4);
  a.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
}
export function f16s(a: Float32Array): Buffer {
  const b = Buffer.alloc(a.length * 2);
  a.forEach((v, i) => b.writeUInt16LE(floatToHalf(v), i * 2));
  return b;
}

/**
 * The model's tensors in a GGUF file (shape [rows, cols] written as ne = [cols, rows]), each as
 * `dtype`; with `quantized`, a 32 × 64 Q8_0 tensor (seeded bytes) is added at the end.
 */
export function ggufModel(m: Model, o: { dtype?: 'F32' | 'F16'; quantized?: boolean; align?: number } = {}): ReturnType<typeof writeGguf> {
  const kvs = [kv('general.architecture', V.STRING, gstr('llama')), kv('general.name', V.STRING, gstr('mlic synthetic')), kv('general.alignment', V.U32, u32(o.align ?? 32))];
  const tensors: GTensor[] = [...m].map(([name, t]) => ({
    name,
    ne: [...t.shape].reverse(),
    type: o.dtype === 'F16' ? GGML.F16 : GGML.F32,
    data: o.dtype === 'F16' ? f16s(t.data) : f32s(t.data),
  }));
  if (o.quantized) tensors.push({ name: 'output.q8.weight', ne: [64, 32], type: GGML.Q8_0, data: prng(64 * 34, 5) });
  return writeGguf(kvs, tensors, o.align ?? 32);
}
