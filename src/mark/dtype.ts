/**
 * The floating-point element types a weight fingerprint is written into: IEEE binary32 (F32),
 * binary16 (F16) and bfloat16 (BF16), little-endian as safetensors, ONNX and GGUF store them.
 * Decoding widens to float32; encoding rounds to nearest, ties to even (as PyTorch's casts do).
 */
export type FloatDtype = 'F32' | 'F16' | 'BF16';

export const DTYPE_BYTES: Record<FloatDtype, number> = { F32: 4, F16: 2, BF16: 2 };

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** binary16 bits -> number (exact). */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** number -> binary16 bits, rounding to nearest even (overflow to ±Infinity, as a cast does). */
export function floatToHalf(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && r & 1)) r++;
    return sign | r;
  }
  let r = mant >> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && r & 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}

/** bfloat16 bits -> number (exact). */
export function bf16ToFloat(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}

/** number -> bfloat16 bits, rounding to nearest even. */
export function floatToBf16(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  if ((b & 0x7f800000) === 0x7f800000 && b & 0x7fffff) return (b >>> 16) | 0x40;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Decodes `count` elements from `bytes` (little-endian) into `out` (float32). */
export function decode(dtype: FloatDtype, bytes: Uint8Array, out: Float32Array, count = out.length): void {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'F32') for (let i = 0; i < count; i++) out[i] = dv.getFloat32(i * 4, true);
  else if (dtype === 'F16') for (let i = 0; i < count; i++) out[i] = halfToFloat(dv.getUint16(i * 2, true));
  else for (let i = 0; i < count; i++) out[i] = bf16ToFloat(dv.getUint16(i * 2, true));
}

/** One element's bits, and the element after stepping `dir` (+1/-1) units in the last place (away from or towards zero as the sign says). */
export function stepUlp(dtype: FloatDtype, bits: number, dir: number): number {
  const width = dtype === 'F32' ? 32 : 16;
  const signBit = width === 32 ? 0x80000000 : 0x8000;
  const neg = (bits & signBit) !== 0;
  const mag = width === 32 ? (bits & 0x7fffffff) >>> 0 : bits & 0x7fff;
  // moving up in value: larger magnitude if positive, smaller if negative
  const up = dir > 0;
  if (mag === 0) return up ? 1 : (signBit | 1) >>> 0;
  const grow = up !== neg;
  return ((neg ? signBit : 0) | (grow ? mag + 1 : mag - 1)) >>> 0;
}

export function isFloatDtype(s: string): s is FloatDtype {
  return s === 'F32' || s === 'F16' || s === 'BF16';
}
