import { describe, it, expect } from 'vitest';
import { bf16ToFloat, floatToBf16, floatToHalf, halfToFloat, stepUlp } from '../../src/mark/dtype.js';

describe('float16 and bfloat16', () => {
  it('every one of the 65,536 bit patterns decodes and encodes back to itself (NaNs stay NaN)', () => {
    let bad = 0;
    for (let h = 0; h < 0x10000; h++) {
      const f = halfToFloat(h);
      if (Number.isNaN(f)) bad += Number.isNaN(halfToFloat(floatToHalf(f))) ? 0 : 1;
      else if (floatToHalf(f) !== h) bad++;
      const g = bf16ToFloat(h);
      if (Number.isNaN(g)) bad += Number.isNaN(bf16ToFloat(floatToBf16(g))) ? 0 : 1;
      else if (floatToBf16(g) !== h) bad++;
    }
    expect(bad).toBe(0);
  });

  it('rounds to nearest, ties to even, as a cast does (checked against Math.fround arithmetic on the neighbours)', () => {
    // between two neighbouring halves a and b: below the midpoint → a, above → b, at it → the even one
    let bad = 0;
    for (let h = 0x0001; h < 0x7bff; h += 7) {
      const a = halfToFloat(h);
      const b = halfToFloat(h + 1);
      const mid = (a + b) / 2;
      if (floatToHalf(mid - (b - a) / 8) !== h || floatToHalf(mid + (b - a) / 8) !== h + 1) bad++;
      if (floatToHalf(mid) !== (h % 2 === 0 ? h : h + 1)) bad++;
    }
    expect(bad).toBe(0);
    expect(floatToHalf(65520)).toBe(0x7c00); // overflow to infinity, as PyTorch's cast
    expect(floatToHalf(2 ** -25)).toBe(0); // a tie at the smallest subnormal rounds to even (0)
    expect(floatToHalf(2 ** -25 * 1.5)).toBe(1);
    expect(floatToBf16(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(floatToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82);
  });

  it('steps one unit in the last place up or down in value, across zero too', () => {
    expect(halfToFloat(stepUlp('F16', floatToHalf(1), 1))).toBe(1 + 2 ** -10);
    expect(halfToFloat(stepUlp('F16', floatToHalf(1), -1))).toBe(1 - 2 ** -11);
    expect(halfToFloat(stepUlp('F16', floatToHalf(-1), 1))).toBe(-1 + 2 ** -11);
    expect(halfToFloat(stepUlp('F16', floatToHalf(-1), -1))).toBe(-1 - 2 ** -10);
    expect(bf16ToFloat(stepUlp('BF16', floatToBf16(2), 1))).toBe(2 + 2 ** -6);
    expect(halfToFloat(stepUlp('F16', 0, -1))).toBe(-(2 ** -24));
    const f = new Float32Array([1.5]);
    const u = new Uint32Array(f.buffer);
    u[0] = stepUlp('F32', u[0]!, -1);
    expect(f[0]).toBe(1.5 - 2 ** -23);
  });
});
