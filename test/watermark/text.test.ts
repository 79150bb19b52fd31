/**
 * The text watermark (src/watermark/text.ts) on a seeded stand-in for a language model: a
 * 2,000-token vocabulary whose next-token logits depend on the previous token (a Zipf-shaped base
 * plus a pseudo-random context term), sampled at temperature 1. Keys and sampling are seeded, so
 * every figure is the same on every run. (The measured tables with a real language model are for
 * docs/WATERMARK.md.) What is checked: the green list is a γ share of the vocabulary; the
 * processor adds δ to exactly those logits; marked text names its licence among 1,000
 * candidates, also after tokens are substituted; unmarked text and another licence's text name
 * nobody; the exact binomial tail against direct sums.
 */
import { describe, it, expect } from 'vitest';
import { createHash } from 'node:crypto';
import { binomialTail, detectTextWatermark, greenTest, minTokensToName, scoreText, textWatermarkProcessor } from '../../src/watermark/text.js';
import { codeOf } from '../helpers.js';

const key = (i: number | string) => createHash('sha256').update(`mlic test text key ${i}`).digest();
import { lm, V } from './lm.js';

describe('text watermark', () => {
  it('the green list is a γ share of the vocabulary, different for each previous token and key; the processor adds δ to exactly it', () => {
    for (const [k, prev] of [
      [key(1), 7],
      [key(1), 8],
      [key(2), 7],
    ] as const) {
      const g = greenTest(k, prev, 0.25);
      let n = 0;
      for (let v = 0; v < 20_000; v++) if (g(v)) n++;
      expect(n / 20_000).toBeGreaterThan(0.235);
      expect(n / 20_000).toBeLessThan(0.265);
    }
    const a = greenTest(key(1), 7, 0.25);
    const b = greenTest(key(1), 8, 0.25);
    const c = greenTest(key(2), 7, 0.25);
    let sameB = 0;
    let sameC = 0;
    for (let v = 0; v < 20_000; v++) {
      if (a(v) === b(v)) sameB++;
      if (a(v) === c(v)) sameC++;
    }
    // independent lists agree on about γ² + (1 − γ)² = 62.5% of tokens
    expect(sameB / 20_000).toBeLessThan(0.66);
    expect(sameC / 20_000).toBeLessThan(0.66);

    const proc = textWatermarkProcessor(key(1), { delta: 3 });
    const logits = new Float32Array(V).fill(1);
    expect(proc(logits, [])).toEqual(new Float32Array(V).fill(1)); // the first step: unchanged
    proc(logits, [5, 7]);
    for (let v = 0; v < V; v++) expect(logits[v]).toBe(a(v) ? 4 : 1);
    expect(proc.params).toEqual({ gamma: 0.25, delta: 3 });
  });

  it('the exact binomial tail matches direct sums', () => {
    expect(binomialTail(10, 8, 0.5)).toBeCloseTo(56 / 1024, 12);
    const direct = (n: number, k: number, p: number) => {
      let c = 1;
      let s = 0;
      for (let i = 0; i <= n; i++) {
        if (i > 0) c = (c * (n - i + 1)) / i;
        if (i >= k) s += c * p ** i * (1 - p) ** (n - i);
      }
      return s;
    };
    for (const [n, k, p] of [
      [50, 20, 0.25],
      [100, 40, 0.25],
      [200, 50, 0.25],
      [200, 120, 0.25],
      [30, 0, 0.3],
      [30, 31, 0.3],
    ] as const) {
      const want = direct(n, k, p);
      expect(Math.abs(binomialTail(n, k, p) - want)).toBeLessThanOrEqual(Math.max(1e-15, want * 1e-9));
    }
    // far in the tail, where a normal approximation is off by orders of magnitude
    expect(binomialTail(200, 150, 0.25)).toBeLessThan(1e-40);
    expect(binomialTail(200, 150, 0.25)).toBeGreaterThan(0);
    expect(binomialTail(100_000, 25_500, 0.25)).toBeLessThan(1e-3);
  });

  it('200 marked tokens name their licence among 1,000 candidates, also with 10% and 25% of the tokens substituted; unmarked text and another licence’s text name nobody', () => {
    const cands = Array.from({ length: 1000 }, (_, i) => ({ id: `lic${i}`, key: key(i) }));
    const model = lm(42);
    const rows: string[] = [];
    const rate = (texts: number[][], want: string | undefined) => texts.filter((t) => detectTextWatermark(t, cands).named === want).length;
    const substitute = (t: number[], share: number) => t.map((v) => (model.rnd() < share ? Math.floor(model.rnd() * V) : v));
    const marked = Array.from({ length: 10 }, () => model.generate(key(17)));
    const n0 = rate(marked, 'lic17');
    const n10 = rate(marked.map((t) => substitute(t, 0.1)), 'lic17');
    const n25 = rate(marked.map((t) => substitute(t, 0.25)), 'lic17');
    rows.push(`marked: named ${n0}/10, after 10% substituted ${n10}/10, after 25% ${n25}/10`);
    expect(n0).toBe(10);
    expect(n10).toBeGreaterThanOrEqual(9);
    expect(n25).toBeGreaterThanOrEqual(5);
    // never a false accusation: text the watermark never touched, and text marked for a licence outside the candidates
    const plain = Array.from({ length: 10 }, () => model.generate(undefined));
    const outsider = Array.from({ length: 10 }, () => model.generate(key('outside')));
    expect(rate(plain, undefined)).toBe(10);
    expect(rate(outsider, undefined)).toBe(10);
    const zs = marked.map((t) => scoreText(t, key(17)).z);
    rows.push(`z of marked text: ${Math.min(...zs).toFixed(1)} to ${Math.max(...zs).toFixed(1)}; best unmarked p-value ${Math.min(...plain.map((t) => detectTextWatermark(t, cands).scores[0]!.pValue)).toExponential(1)}`);
    console.log(`[text watermark] ${rows.join('; ')}`);
  }, 120_000);

  it('bad input: too short to ever name a licence, ids that are not token ids, no candidates', async () => {
    const cands = [{ id: 'a', key: key('a') }];
    expect(minTokensToName(1000)).toBe(20); // 0.25^20 < 1e-12 < 0.25^19
    expect(await codeOf(Promise.resolve().then(() => detectTextWatermark([1, 2, 3], cands)))).toBe('TEXT_TOO_SHORT');
    expect(await codeOf(Promise.resolve().then(() => detectTextWatermark([], cands)))).toBe('TEXT_TOO_SHORT');
    expect(await codeOf(Promise.resolve().then(() => detectTextWatermark([1, -2, ...Array(40).fill(3)], cands)))).toBe('FORMAT_INVALID');
    expect(await codeOf(Promise.resolve().then(() => detectTextWatermark([1.5, ...Array(40).fill(3)], cands)))).toBe('FORMAT_INVALID');
    expect(await codeOf(Promise.resolve().then(() => detectTextWatermark(Array(40).fill(3), [])))).toBe('USAGE');
    // one token repeated: one distinct pair, nothing to go on, nobody named
    expect(detectTextWatermark(Array(400).fill(3), cands).named).toBeUndefined();
  });
});
