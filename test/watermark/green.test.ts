/**
 * The green list's 32-bit fast path (greenIds, and greenTest's per-token path) against a BigInt
 * reference written here from docs/FORMAT.md §5.2 alone: seed(prev) = HMAC-SHA-256(key,
 * "mlic/v1/text-green" || u32be prev)[0..8] as a big-endian u64; v is green when SplitMix64's
 * finalizer over seed + (v + 1)·0x9e3779b97f4a7c15 (mod 2^64) is below ⌊γ·2^53⌋·2^11. Bit for bit,
 * so text marked by earlier versions (which computed this in BigInt) is still detected.
 */
import { describe, it, expect } from 'vitest';
import { createHash, createHmac } from 'node:crypto';
import { greenIds, greenTest, textWatermarkProcessor } from '../../src/watermark/text.js';

const M = 2n ** 64n;

/** the reference: seed(prev) and the finalizer, in BigInt */
function refSeed(key: Uint8Array, prev: number): bigint {
  const msg = Buffer.concat([Buffer.from('mlic/v1/text-green', 'utf8'), Buffer.from([prev >>> 24, (prev >>> 16) & 255, (prev >>> 8) & 255, prev & 255])]);
  const d = createHmac('sha256', key).update(msg).digest();
  let s = 0n;
  for (let i = 0; i < 8; i++) s = s * 256n + BigInt(d[i]!);
  return s;
}
function refMix(seed: bigint, v: number): bigint {
  let z = (seed + BigInt(v + 1) * 0x9e3779b97f4a7c15n) % M;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) % M;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) % M;
  return z ^ (z >> 31n);
}
const refCut = (gamma: number) => BigInt(Math.floor(gamma * 2 ** 53)) * 2048n;

/** a seeded stream of u32s (SHA-256 in counter mode), so every run tests the same values */
function u32s(label: string, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; out.length < n; i++) {
    const d = createHash('sha256').update(`${label} ${i}`).digest();
    for (let j = 0; j < 32 && out.length < n; j += 4) out.push(d.readUInt32BE(j));
  }
  return out;
}
const key = (i: number) => createHash('sha256').update(`mlic green test key ${i}`).digest();

const V = 60_000;
const GAMMAS = [0.1, 0.25, 0.5, 0.9];
const PREVS = [0, 1, 2 ** 32 - 1, ...u32s('prev', 2)];

describe('green list: the 32-bit path equals the BigInt reference', () => {
  it(`greenIds over ${V.toLocaleString('en')} tokens, for 3 keys × ${PREVS.length} previous tokens × γ ${GAMMAS.join(', ')}`, () => {
    let compared = 0;
    for (const k of [key(1), key(2), Buffer.alloc(16, 0xff)]) {
      for (const prev of PREVS) {
        const seed = refSeed(k, prev);
        const mixes = Array.from({ length: V }, (_, v) => refMix(seed, v));
        for (const gamma of GAMMAS) {
          const cut = refCut(gamma);
          const want: number[] = [];
          for (let v = 0; v < V; v++) if (mixes[v]! < cut) want.push(v);
          const got = greenIds(k, prev, gamma, V);
          expect(got).toBeInstanceOf(Uint32Array);
          expect(got.length).toBe(want.length);
          expect(Array.from(got)).toEqual(want);
          compared++;
        }
      }
    }
    expect(compared).toBe(3 * PREVS.length * GAMMAS.length);
  }, 60_000);

  it('greenTest on token ids across the whole u32 range, and on the ids the 32-bit path hands to the reference', () => {
    const vs = [0, 1, 2, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 2 ** 32, 2 ** 40 + 3, 2 ** 53 - 1, ...u32s('v', 3000)];
    for (const k of [key(3), key(4)]) {
      for (const prev of PREVS) {
        const seed = refSeed(k, prev);
        for (const gamma of [...GAMMAS, 1 / 3]) {
          const t = greenTest(k, prev, gamma);
          const cut = refCut(gamma);
          for (const v of vs) expect([v, t(v)]).toEqual([v, refMix(seed, v) < cut]);
        }
      }
    }
    // what was never a token id fails as it always did
    expect(() => greenTest(key(3), 0, 0.25)(1.5)).toThrow(RangeError);
  });

  it('a cut exactly at a token’s mix: the tie between high words is settled by the low word, as in the reference', () => {
    const k = key(5);
    for (const prev of [0, 77, 2 ** 32 - 1]) {
      const seed = refSeed(k, prev);
      for (const v of [0, 1, 999, 12_345, 49_999]) {
        const top = refMix(seed, v) >> 11n; // < 2^53, so top / 2^53 is an exact double
        const at = Number(top) / 2 ** 53; // cut = top·2^11 ≤ mix: not green
        const above = Number(top + 1n) / 2 ** 53; // cut = (top + 1)·2^11 > mix: green
        for (const [gamma, green] of [
          [at, false],
          [above, true],
        ] as const) {
          expect(refMix(seed, v) < refCut(gamma)).toBe(green);
          expect(greenTest(k, prev, gamma)(v)).toBe(green);
          expect(greenIds(k, prev, gamma, 50_000).includes(v)).toBe(green);
          // and the rest of the list still agrees
          const cut = refCut(gamma);
          const want: number[] = [];
          for (let u = 0; u < 5_000; u++) if (refMix(seed, u) < cut) want.push(u);
          expect(Array.from(greenIds(k, prev, gamma, 5_000))).toEqual(want);
        }
      }
    }
  });

  it('γ outside (0, 1) in the raw functions: nothing green at γ ≤ 0, everything at γ ≥ 1, as in the reference; tiny vocabularies', () => {
    const k = key(6);
    const seed = refSeed(k, 9);
    for (const gamma of [0, -0.5, 2 ** -60, 1, 1.5, 1 - 2 ** -53]) {
      const cut = refCut(gamma);
      const want: number[] = [];
      for (let v = 0; v < 2_000; v++) if (refMix(seed, v) < cut) want.push(v);
      expect(Array.from(greenIds(k, 9, gamma, 2_000))).toEqual(want);
      const t = greenTest(k, 9, gamma);
      for (const v of [0, 5, 0xfffffffe, 0xffffffff]) expect(t(v)).toBe(refMix(seed, v) < cut);
    }
    expect(greenIds(k, 9, 0, 2_000).length).toBe(0);
    expect(greenIds(k, 9, 1, 2_000).length).toBe(2_000);
    expect(greenIds(k, 9, 0.25, 0)).toEqual(new Uint32Array(0));
    expect(Array.from(greenIds(k, 9, 0.9, 1))).toEqual(refMix(seed, 0) < refCut(0.9) ? [0] : []);
    expect(() => greenIds(k, 9, 0.25, -1)).toThrow(RangeError);
    expect(() => greenIds(k, 9, 0.25, 1.5)).toThrow(RangeError);
    expect(() => greenIds(k, 9, Number.NaN, 10)).toThrow(RangeError);
  });

  it('the logits processor adds δ to exactly greenIds’ list', () => {
    const k = key(7);
    const proc = textWatermarkProcessor(k, { gamma: 0.5, delta: 1.5 });
    for (const prev of [0, 3, 2 ** 32 - 1]) {
      const logits = new Float64Array(V);
      proc(logits, [11, prev]);
      const green = new Set(greenIds(k, prev, 0.5, V));
      const seed = refSeed(k, prev);
      const cut = refCut(0.5);
      for (let v = 0; v < V; v += 7) {
        expect(logits[v]).toBe(green.has(v) ? 1.5 : 0);
        expect(green.has(v)).toBe(refMix(seed, v) < cut);
      }
    }
  });
});
