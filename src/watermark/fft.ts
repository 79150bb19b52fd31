/**
 * A small radix-2 complex FFT over Float64Arrays (split real and imaginary parts), and its 2-D form
 * for the square tiles of the image watermark. Sizes are powers of two.
 */

const tables = new Map<number, { cos: Float64Array; sin: Float64Array; rev: Uint32Array }>();

function table(n: number) {
  let t = tables.get(n);
  if (!t) {
    if (n < 2 || (n & (n - 1)) !== 0) throw new RangeError('FFT size must be a power of two');
    const cos = new Float64Array(n / 2);
    const sin = new Float64Array(n / 2);
    for (let i = 0; i < n / 2; i++) {
      cos[i] = Math.cos((2 * Math.PI * i) / n);
      sin[i] = Math.sin((2 * Math.PI * i) / n);
    }
    const bits = Math.log2(n);
    const rev = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      let r = 0;
      for (let b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b);
      rev[i] = r;
    }
    tables.set(n, (t = { cos, sin, rev }));
  }
  return t;
}

/**
 * In place: X[k] = Σ x[j] e^{∓2πi jk/n} over n values read at offset + j·stride (forward: −;
 * inverse: +, unscaled).
 */
export function fft1(re: Float64Array, im: Float64Array, n: number, offset: number, stride: number, inverse: boolean): void {
  const { cos, sin, rev } = table(n);
  for (let i = 0; i < n; i++) {
    const j = rev[i]!;
    if (j > i) {
      const a = offset + i * stride;
      const b = offset + j * stride;
      let t = re[a]!;
      re[a] = re[b]!;
      re[b] = t;
      t = im[a]!;
      im[a] = im[b]!;
      im[b] = t;
    }
  }
  const sign = inverse ? 1 : -1;
  for (let size = 2; size <= n; size <<= 1) {
    const half = size >> 1;
    const step = n / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < half; k++) {
        const wr = cos[k * step]!;
        const wi = sign * sin[k * step]!;
        const a = offset + (start + k) * stride;
        const b = offset + (start + k + half) * stride;
        const xr = re[b]! * wr - im[b]! * wi;
        const xi = re[b]! * wi + im[b]! * wr;
        re[b] = re[a]! - xr;
        im[b] = im[a]! - xi;
        re[a] = re[a]! + xr;
        im[a] = im[a]! + xi;
      }
    }
  }
}

/**
 * In place, an n×n array in row-major order (index y·n + x); the inverse is unscaled. `rows`, if
 * given, is how many leading rows may hold anything but zeros (the others are left as zeros).
 */
export function fft2(re: Float64Array, im: Float64Array, n: number, inverse: boolean, rows = n): void {
  for (let y = 0; y < rows; y++) fft1(re, im, n, y * n, 1, inverse);
  for (let x = 0; x < n; x++) fft1(re, im, n, x, n, inverse);
}
