/**
 * Writing a fingerprint into a model file (docs/TRACING.md), in place: only the elements of its
 * markable tensors change. Element w becomes w + s·α·|w|, s = ±1 from the licence's pattern
 * (pattern.ts), α the strength (default 0.0005), rounded to the tensor's element type: a relative
 * change of each weight about twice the size of a cast to float16's rounding. Where the rounding
 * would give w back (F16 and BF16, whose precision is coarser than α), the element moves one unit
 * in the last place in the direction of s instead, so every element carries its sign. Zeros and
 * non-finite elements are left as they are.
 *
 * Streaming: one pass over each markable tensor; memory is bounded by the chunk size whatever the
 * model's size.
 */
import type { FileHandle } from 'node:fs/promises';
import type { ReadAt } from '../util/read-at.js';
import { readFully } from '../format/models/reader.js';
import { floatToBf16, floatToHalf, halfToFloat, bf16ToFloat, stepUlp, DTYPE_BYTES, type FloatDtype } from './dtype.js';
import { patternBits, tensorNonce } from './pattern.js';
import type { FloatTensor } from './tensors.js';

/** Elements per chunk: a multiple of 128, so that each chunk's pattern is one CTR call. */
export const CHUNK_ELEMENTS = 1 << 18;
/** The default strength α: the mark's amplitude as a fraction of each weight. */
export const DEFAULT_STRENGTH = 0.0005;

export interface MarkedTensor {
  name: string;
  elements: number;
  /** the strength α it was marked with */
  strength: number;
}

async function* chunks(src: ReadAt, t: FloatTensor, label: string): AsyncGenerator<{ start: number; count: number; bytes: Buffer }> {
  const width = DTYPE_BYTES[t.dtype];
  const buf = Buffer.alloc(Math.min(t.elements, CHUNK_ELEMENTS) * width);
  for (let start = 0; start < t.elements; start += CHUNK_ELEMENTS) {
    const count = Math.min(CHUNK_ELEMENTS, t.elements - start);
    const bytes = buf.subarray(0, count * width);
    await readFully(src, bytes, bytes.length, t.offset + start * width, label);
    yield { start, count, bytes };
  }
}

/** Moves `count` elements w in `bytes` (in place) by ±`delta`·|w|; bit j of `bits` gives element j's direction (1: up). */
export function addPattern(dtype: FloatDtype, bytes: Buffer, count: number, bits: Uint8Array, delta: number): void {
  if (dtype === 'F32' && LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) return addPatternF32(new Float32Array(bytes.buffer, bytes.byteOffset, count), new Uint32Array(bytes.buffer, bytes.byteOffset, count), bits, delta);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let j = 0; j < count; j++) {
    const s = (bits[j >> 3]! >> (j & 7)) & 1 ? 1 : -1;
    if (dtype === 'F32') {
      const v = dv.getFloat32(j * 4, true);
      if (!Number.isFinite(v) || v === 0) continue;
      const b = dv.getUint32(j * 4, true);
      dv.setFloat32(j * 4, v + s * delta * Math.abs(v), true);
      if (dv.getUint32(j * 4, true) === b) dv.setUint32(j * 4, stepUlp('F32', b, s), true);
      continue;
    }
    const b = dv.getUint16(j * 2, true);
    const v = dtype === 'F16' ? halfToFloat(b) : bf16ToFloat(b);
    if (!Number.isFinite(v) || v === 0) continue;
    const x = v + s * delta * Math.abs(v);
    let nb = dtype === 'F16' ? floatToHalf(x) : floatToBf16(x);
    if (nb === b) nb = stepUlp(dtype, b, s);
    dv.setUint16(j * 2, nb, true);
  }
}

/**
 * Adds the fingerprint of `markKey` to `tensors` (byte ranges of the file open in `fh`, read and
 * written in place). Returns what was marked.
 */
export async function markInPlace(fh: FileHandle, tensors: readonly FloatTensor[], markKey: Uint8Array, o: { strength?: number; label: string; onBytes?: (n: number) => void }): Promise<MarkedTensor[]> {
  const strength = o.strength ?? DEFAULT_STRENGTH;
  const out: MarkedTensor[] = [];
  for (const t of [...tensors].sort((a, b) => a.offset - b.offset)) {
    const nonce = tensorNonce(t.name);
    for await (const c of chunks(fh, t, o.label)) {
      if (strength > 0) {
        addPattern(t.dtype, c.bytes, c.count, patternBits(markKey, nonce, c.start, c.count), strength);
        await writeAll(fh, c.bytes, t.offset + c.start * DTYPE_BYTES[t.dtype]);
      }
      o.onBytes?.(c.bytes.length);
    }
    out.push({ name: t.name, elements: t.elements, strength });
  }
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** addPattern for float32 through typed arrays (the common case; several times faster than a DataView). */
function addPatternF32(f: Float32Array, u: Uint32Array, bits: Uint8Array, delta: number): void {
  for (let j = 0; j < f.length; j++) {
    const v = f[j]!;
    if (v === 0 || v - v !== 0) continue;
    const b = u[j]!;
    const s = ((bits[j >> 3]! >> (j & 7)) & 1) * 2 - 1;
    f[j] = v + s * delta * Math.abs(v);
    if (u[j] === b) u[j] = stepUlp('F32', b, s);
  }
}

async function writeAll(fh: FileHandle, b: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < b.length) {
    const { bytesWritten } = await fh.write(b, done, b.length - done, position + done);
    done += bytesWritten;
  }
}
