/**
 * Text watermarking for token-by-token generators, in the manner of Kirchenbauer et al., "A
 * Watermark for Large Language Models" (ICML 2023): at each step, the previous token and a secret
 * key choose a "green list" of a fraction γ of the vocabulary, and the sampling loop adds δ to the
 * green tokens' logits. Text written by the watermarked generator holds more green tokens than
 * chance allows; text the key never touched holds about γ of them. Detection needs only the token
 * ids and the key, never the model.
 *
 *   seed(prev) = first 8 bytes of HMAC-SHA-256(key, "mlic/v1/text-green" || u32 prev)
 *   green(prev, v) = mix64(seed(prev), v) / 2^64 < γ            (a keyed pseudo-random test)
 *
 * Detection scores each (prev, token) pair once (a repeated pair says nothing new: counting it
 * again would let repetitive text inflate the score), and gives each candidate key the exact
 * binomial tail P[Bin(n, γ) ≥ green]: under the null (text independent of the key) each scored
 * token is green with probability γ. A licence is named only when that probability times the
 * number of candidates is below 1e-9 (Bonferroni), so with 1,000 candidates each must be below
 * 1e-12.
 */
import { createHmac } from 'node:crypto';
import { MlicError } from '../errors.js';

export interface TextWatermarkParams {
  /** the green fraction of the vocabulary (default 0.25) */
  gamma: number;
  /** what is added to a green token's logit (default 2.0) */
  delta: number;
}

export const DEFAULT_TEXT_PARAMS: TextWatermarkParams = { gamma: 0.25, delta: 2.0 };
/** a licence is named only when the chance that unmarked text scores as high, times the candidates, is below this */
export const ACCUSATION_BOUND = 1e-9;

const MASK64 = (1n << 64n) - 1n;

/** SplitMix64's finalizer over seed + v·golden: a fast keyed 64-bit mix (the key lives in the seed). The reference definition: the 32-bit path below agrees with it bit for bit. */
function mix64(seed: bigint, v: number): bigint {
  let z = (seed + BigInt(v + 1) * 0x9e3779b97f4a7c15n) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

// The same mix without BigInt, about 25× faster: every u64 is two 32-bit halves (hi, lo), held as
// int32 (| 0) so that V8 keeps them in integer registers. A 64×64 → 64 product mod 2^64 is the
// full 32×32 → 64 product of the low halves (mulHi for its high word, Math.imul for its low) plus
// the low words of the two cross products added to the high word. The multipliers are literals
// where they are used (golden = 0x9e3779b9_7f4a7c15, M1 = 0xbf58476d_1ce4e5b9,
// M2 = 0x94d049bb_133111eb; high words as int32) so that V8 folds them even where a bundler turns
// module constants into mutable vars.

/** The high word of a·b for 32-bit a and b (read as unsigned), as int32: 16-bit limbs, each partial product taken mod 2^32. */
function mulHi(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const p01 = Math.imul(a0, b1);
  const p10 = Math.imul(a1, b0);
  const mid = (Math.imul(a0, b0) >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  return (Math.imul(a1, b1) + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16)) | 0;
}

/**
 * Whether the finalizer over x = (xHi, xLo) is below ⌊γ·2^53⌋·2^11. That cut's low 11 bits are
 * zero, so this is mix >> 11 < ⌊γ·2^53⌋: its high word below cutHi = ⌊γ·2^53⌋ >> 21, or equal
 * to it with the top 21 bits of the low word below cutLo = ⌊γ·2^53⌋ mod 2^21.
 */
function mixBelow(xHi: number, xLo: number, cutHi: number, cutLo: number): boolean {
  // z ^= z >> 30; z *= M1
  let lo = xLo ^ ((xLo >>> 30) | (xHi << 2));
  let hi = xHi ^ (xHi >>> 30);
  hi = (mulHi(lo, 0x1ce4e5b9) + Math.imul(lo, -0x40a7b893) + Math.imul(hi, 0x1ce4e5b9)) | 0;
  lo = Math.imul(lo, 0x1ce4e5b9);
  // z ^= z >> 27; z *= M2
  lo = lo ^ ((lo >>> 27) | (hi << 5));
  hi = hi ^ (hi >>> 27);
  hi = (mulHi(lo, 0x133111eb) + Math.imul(lo, -0x6b2fb645) + Math.imul(hi, 0x133111eb)) | 0;
  lo = Math.imul(lo, 0x133111eb);
  // z ^= z >> 31
  lo = lo ^ ((lo >>> 31) | (hi << 1));
  const h = (hi ^ (hi >>> 31)) >>> 0;
  return h < cutHi || (h === cutHi && lo >>> 11 < cutLo);
}

/** Writes the green v in 0 .. size − 1 to out (ascending) and returns how many: x = seed + (v + 1)·golden, advanced by one 64-bit addition per token. */
function fillGreen(out: Uint32Array, seedHi: number, seedLo: number, cutHi: number, cutLo: number, size: number): number {
  let n = 0;
  let lo = seedLo | 0;
  let hi = seedHi | 0;
  for (let v = 0; v < size; v++) {
    const next = (lo + 0x7f4a7c15) | 0;
    hi = (hi - 0x61c88647 + (next >>> 0 < lo >>> 0 ? 1 : 0)) | 0; // the carry out of the low word
    lo = next;
    if (mixBelow(hi, lo, cutHi, cutLo)) out[n++] = v;
  }
  return n;
}

function checkKey(key: Uint8Array): void {
  if (key.length < 16) throw new RangeError('a text watermark key is at least 16 bytes');
}

function checkParams(p: TextWatermarkParams): void {
  if (!(p.gamma > 0 && p.gamma < 1) || !(p.delta > 0 && Number.isFinite(p.delta))) throw new RangeError('gamma must be in (0, 1) and delta positive');
}

/** seed(prev), as a bigint and as 32-bit halves, and the cut ⌊γ·2^53⌋ (also split as mixBelow takes it). */
function greenSeed(key: Uint8Array, prev: number, gamma: number): { seed: bigint; hi: number; lo: number; cut53: number; cutHi: number; cutLo: number } {
  const h = createHmac('sha256', key).update('mlic/v1/text-green');
  const p = Buffer.alloc(4);
  p.writeUInt32BE(prev >>> 0);
  const d = h.update(p).digest();
  const cut53 = Math.floor(gamma * 2 ** 53);
  BigInt(cut53); // a gamma that gives no whole number (NaN, ±Infinity) throws a RangeError, as it always has
  // γ ≤ 0: nothing is green; γ ≥ 1: everything (the cut is then 2^64 or more)
  const cutHi = cut53 <= 0 ? 0 : cut53 >= 2 ** 53 ? 2 ** 32 : Math.floor(cut53 / 2 ** 21);
  return { seed: d.readBigUInt64BE(0), hi: d.readUInt32BE(0), lo: d.readUInt32BE(4), cut53, cutHi, cutLo: cut53 > 0 ? cut53 % 2 ** 21 : 0 };
}

/** The green-list test for the token after `prev`: (v) => v is green. */
export function greenTest(key: Uint8Array, prev: number, gamma: number): (v: number) => boolean {
  const { seed, hi: sHi, lo: sLo, cut53, cutHi, cutLo } = greenSeed(key, prev, gamma);
  const cut = BigInt(cut53) << 11n;
  return (v) => {
    // token ids 0 .. 2^32 − 2 (v + 1 fits 32 bits) take the 32-bit path; anything else the reference
    if (!(v >= 0 && v < 0xffffffff && v === Math.floor(v))) return mix64(seed, v) < cut;
    const n = v + 1;
    // x = seed + n·golden (mod 2^64)
    const lo = sLo + (Math.imul(n, 0x7f4a7c15) >>> 0);
    const hi = sHi + mulHi(n, 0x7f4a7c15) + Math.imul(n, -0x61c88647) + (lo > 0xffffffff ? 1 : 0);
    return mixBelow(hi | 0, lo | 0, cutHi, cutLo);
  };
}

/**
 * The green ids, ascending, among 0 .. vocabSize − 1 after `prev`: exactly the v for which
 * greenTest(key, prev, gamma)(v) holds, computed in 32-bit halves.
 */
export function greenIds(key: Uint8Array, prev: number, gamma: number, vocabSize: number): Uint32Array {
  if (!(Number.isInteger(vocabSize) && vocabSize >= 0 && vocabSize <= 0xffffffff)) throw new RangeError('vocabSize must be a whole number from 0 to 2^32 − 1');
  const { hi, lo, cutHi, cutLo } = greenSeed(key, prev, gamma);
  const out = new Uint32Array(vocabSize);
  return out.slice(0, fillGreen(out, hi, lo, cutHi, cutLo, vocabSize));
}

export interface LogitsProcessor {
  /** Adds δ to the green tokens' logits for the step after `inputIds` (in place; also returned). */
  (logits: Float32Array | Float64Array | number[], inputIds: readonly number[]): Float32Array | Float64Array | number[];
  readonly params: TextWatermarkParams;
}

/**
 * A logits processor for a sampling loop: call it with the next-token logits (one entry per
 * vocabulary id) and the ids so far, before sampling. The first step (no previous token) is left
 * as it is.
 */
export function textWatermarkProcessor(key: Uint8Array, params: Partial<TextWatermarkParams> = {}): LogitsProcessor {
  checkKey(key);
  const p = { ...DEFAULT_TEXT_PARAMS, ...params };
  checkParams(p);
  const k = Buffer.from(key);
  // the green vocabulary for a previous token, cached: a vocabulary's worth of mixes (greenIds) per new context token
  const cache = new Map<string, Uint32Array>();
  const cachedGreen = (prev: number, size: number): Uint32Array => {
    const id = `${prev}/${size}`;
    let g = cache.get(id);
    if (!g) {
      g = greenIds(k, prev, p.gamma, size);
      if (cache.size > 4096) cache.clear();
      cache.set(id, g);
    }
    return g;
  };
  const fn = ((logits, inputIds) => {
    if (inputIds.length === 0) return logits;
    const prev = inputIds[inputIds.length - 1]!;
    const g = cachedGreen(prev, logits.length);
    const d = p.delta;
    for (let i = 0; i < g.length; i++) {
      const v = g[i]!;
      logits[v] = logits[v]! + d;
    }
    return logits;
  }) as LogitsProcessor;
  Object.defineProperty(fn, 'params', { value: Object.freeze({ ...p }) });
  return fn;
}

/** ln Γ(x) (Lanczos, g = 7, n = 9: about 15 significant digits for x > 0). */
function lnGamma(x: number): number {
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  x -= 1;
  let a = c[0]!;
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** P[Bin(n, p) ≥ k], exactly: the terms summed in log space, scaled by the largest. */
export function binomialTail(n: number, k: number, p: number): number {
  if (k <= 0) return 1;
  if (k > n) return 0;
  const lnN = lnGamma(n + 1);
  const lp = Math.log(p);
  const lq = Math.log1p(-p);
  const terms: number[] = [];
  for (let i = k; i <= n; i++) terms.push(lnN - lnGamma(i + 1) - lnGamma(n - i + 1) + i * lp + (n - i) * lq);
  let m = -Infinity;
  for (const t of terms) if (t > m) m = t;
  let sum = 0;
  for (const t of terms) sum += Math.exp(t - m);
  return Math.min(1, Math.exp(m) * sum);
}

export interface TextScore {
  /** (prev, token) pairs scored: each distinct pair once */
  scored: number;
  green: number;
  /** (green − γn) / sqrt(n γ (1 − γ)) */
  z: number;
  /** P[Bin(scored, γ) ≥ green]: the chance that text independent of the key scores this high */
  pValue: number;
}

/** Scores token ids against one key. */
export function scoreText(tokens: readonly number[], key: Uint8Array, gamma = DEFAULT_TEXT_PARAMS.gamma): TextScore {
  checkKey(key);
  const seen = new Set<string>();
  const tests = new Map<number, (v: number) => boolean>();
  let scored = 0;
  let green = 0;
  for (let i = 1; i < tokens.length; i++) {
    const prev = tokens[i - 1]!;
    const v = tokens[i]!;
    const pair = `${prev},${v}`;
    if (seen.has(pair)) continue;
    seen.add(pair);
    let t = tests.get(prev);
    if (!t) tests.set(prev, (t = greenTest(key, prev, gamma)));
    scored++;
    if (t(v)) green++;
  }
  const z = scored ? (green - gamma * scored) / Math.sqrt(scored * gamma * (1 - gamma)) : 0;
  return { scored, green, z, pValue: binomialTail(scored, green, gamma) };
}

export interface TextCandidate {
  id: string;
  key: Uint8Array;
}

export interface TextDetection {
  /** each candidate's score, best first */
  scores: (TextScore & { id: string })[];
  /** the licence named (p-value × candidates < 1e-9), if any */
  named?: string;
  /** the bound its p-value had to pass */
  bound: number;
}

/** The fewest distinct (previous, next) pairs that can name a licence among `candidates` (with every token green). */
export function minTokensToName(candidates: number, gamma = DEFAULT_TEXT_PARAMS.gamma): number {
  return Math.ceil(Math.log(ACCUSATION_BOUND / Math.max(1, candidates)) / Math.log(gamma));
}

/**
 * Which candidate's key wrote the text, if any: every candidate scored; one is named only when its
 * p-value times the number of candidates is below 1e-9. Text too short to ever name one is
 * TEXT_TOO_SHORT (exit 2), never a silent "not found".
 */
export function detectTextWatermark(tokens: readonly number[], candidates: readonly TextCandidate[], gamma = DEFAULT_TEXT_PARAMS.gamma): TextDetection {
  if (!Array.isArray(tokens) || tokens.some((t) => !Number.isInteger(t) || t < 0 || t > 0xffffffff)) throw new MlicError('FORMAT_INVALID', 'token ids must be whole numbers from 0 to 2^32 − 1');
  if (candidates.length === 0) throw new MlicError('USAGE', 'no candidate licences to test the text against');
  const need = minTokensToName(candidates.length, gamma);
  if (tokens.length - 1 < need)
    throw new MlicError('TEXT_TOO_SHORT', `${tokens.length} tokens cannot name a licence among ${candidates.length} (at least ${need + 1} are needed even if every one were green)`, {
      hint: 'test a longer text; 200 tokens are plenty',
    });
  const bound = ACCUSATION_BOUND / candidates.length;
  const scores = candidates.map((c) => ({ id: c.id, ...scoreText(tokens, c.key, gamma) })).sort((a, b) => a.pValue - b.pValue || b.z - a.z);
  const best = scores[0]!;
  return { scores, bound, ...(best.pValue < bound ? { named: best.id } : {}) };
}
