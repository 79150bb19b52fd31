/**
 * Tracing a suspect model to the licence whose fingerprint it carries (docs/TRACING.md).
 *
 * 1. Match: each markable tensor of the original is paired with the suspect tensor of the same
 *    number of elements whose values are closest (names, order, files and element types may all
 *    differ), judged on 64 evenly spaced elements; a pair further apart than half the original's
 *    norm is no match.
 * 2. Sample: at most SAMPLE_BUDGET elements in all, spread over the tensors in proportion to their
 *    size, in windows of WINDOW elements at fixed places (a function of the original's shapes only).
 * 3. Residual: r = suspect − original per sampled element; an element at exactly 0 in either
 *    (pruned, or never marked) gives r = 0; each tensor's r is clipped to ±4 times its root mean
 *    square and weighted by a = |w| / mean(r_t²) (the mark is proportional to the weight w; more
 *    weight where the residual is quieter). None of this depends on any licence's pattern.
 * 4. Score each candidate licence: Z = Σ a r s / sqrt(Σ (a r)²), s = its pattern's ±1. If the
 *    suspect does not carry that licence's mark, s is independent of the fixed coefficients a·r,
 *    so Z is a Rademacher sum and Hoeffding's inequality bounds P(Z ≥ z) ≤ exp(−z²/2) whatever
 *    the residual's distribution: the p-value reported. A licence is named only when p times the
 *    number of candidates is below 1e-9 (Bonferroni).
 */
import { MlicError } from '../errors.js';
import { readFully } from '../format/models/reader.js';
import { DTYPE_BYTES, decode } from './dtype.js';
import { patternBits, tensorNonce } from './pattern.js';
import { isFloat, markable, type FloatTensor, type TensorRef } from './tensors.js';
import { OpenFiles, type ModelTensors } from './model.js';

export const SAMPLE_BUDGET = 1 << 22;
export const WINDOW = 1 << 14;
export const SIGNATURE = 64;
/** A licence is named when its p-value times the number of candidates is below this. */
export const ALPHA = 1e-9;
const MATCH_DISTANCE = 0.5;

export interface Candidate {
  licenseId: string;
  /** licenceMarkKey(master, licenseId) */
  markKey: Uint8Array;
}

export interface CandidateScore {
  licenseId: string;
  /** the test statistic Z (about N(0,1) for a licence whose mark the suspect does not carry) */
  score: number;
  /** log10 of the bound on the p-value, exp(−Z²/2) (0 for Z ≤ 0) */
  log10p: number;
  /** log10 of the p-value times the number of candidates (at most 0) */
  log10pAdjusted: number;
  implicated: boolean;
}

export interface TraceResult {
  /** original markable tensors, and how many the suspect holds */
  tensors: number;
  matched: { original: string; suspect: string; file: string; distance: number }[];
  /** elements compared */
  sampled: number;
  /** of those, elements that differ from the original's (0: the suspect holds the original's weights, unmarked) */
  differing: number;
  candidates: CandidateScore[];
  implicated: string[];
}

interface Window {
  start: number;
  count: number;
}

/** The windows sampled in a tensor of n elements, when `share` of it is to be sampled. */
export function windowsOf(n: number, share: number): Window[] {
  const want = Math.min(n, Math.max(Math.min(n, 4096), Math.ceil(n * share)));
  if (want >= n) {
    const out: Window[] = [];
    for (let s = 0; s < n; s += WINDOW) out.push({ start: s, count: Math.min(WINDOW, n - s) });
    return out;
  }
  const k = Math.ceil(want / WINDOW);
  const count = Math.min(WINDOW, Math.floor(n / k / 128) * 128 || 128);
  const out: Window[] = [];
  let prevEnd = 0;
  for (let i = 0; i < k; i++) {
    let start = Math.floor((i * (n - count)) / Math.max(1, k - 1) / 128) * 128;
    if (start < prevEnd) start = prevEnd;
    if (start + count > n) break;
    out.push({ start, count });
    prevEnd = start + count;
  }
  return out;
}

async function readElements(files: OpenFiles, t: TensorRef & { dtype: 'F32' | 'F16' | 'BF16' }, start: number, count: number): Promise<Float32Array> {
  const w = DTYPE_BYTES[t.dtype];
  const bytes = Buffer.alloc(count * w);
  await readFully(await files.get(t.file), bytes, bytes.length, t.offset + start * w, t.file);
  const out = new Float32Array(count);
  decode(t.dtype, bytes, out);
  return out;
}

async function signature(files: OpenFiles, t: FloatTensor): Promise<Float32Array> {
  const out = new Float32Array(Math.min(SIGNATURE, t.elements));
  const w = DTYPE_BYTES[t.dtype];
  const one = Buffer.alloc(w);
  const tmp = new Float32Array(1);
  for (let k = 0; k < out.length; k++) {
    const i = Math.floor((k * t.elements) / out.length);
    await readFully(await files.get(t.file), one, w, t.offset + i * w, t.file);
    decode(t.dtype, one, tmp);
    out[k] = tmp[0]!;
  }
  return out;
}

function distance(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    d += (x - y) ** 2;
    n += x * x;
  }
  return n > 0 ? Math.sqrt(d / n) : Infinity;
}

/** One sampled stretch of the residual: the original tensor's nonce (from its name), where it starts, and the weighted residual. */
interface Stretch {
  nonce: Buffer;
  start: number;
  q: Float32Array;
}

export async function trace(original: ModelTensors, suspect: ModelTensors, candidates: readonly Candidate[], o: { onProgress?: (what: string) => void } = {}): Promise<TraceResult> {
  const origMarkable = original.tensors.filter(markable);
  const suspFloat = suspect.tensors.filter(isFloat);
  if (origMarkable.length === 0) throw new MlicError('TRACE_NO_MATCH', 'the original model has no tensor that a fingerprint goes into (matrices and convolution kernels of F32, F16 or BF16 with at least 4,096 elements)');
  const of = new OpenFiles(original.files);
  const sf = new OpenFiles(suspect.files);
  try {
    // 1. match
    const bySize = new Map<number, { t: FloatTensor; sig: Float32Array }[]>();
    for (const t of suspFloat) {
      const list = bySize.get(t.elements) ?? [];
      list.push({ t, sig: await signature(sf, t) });
      bySize.set(t.elements, list);
    }
    const pairs: { o: FloatTensor; s: FloatTensor; distance: number }[] = [];
    for (const t of origMarkable) {
      const list = bySize.get(t.elements);
      if (!list) continue;
      const sig = await signature(of, t);
      let best: { s: FloatTensor; d: number } | undefined;
      for (const c of list) {
        const d = distance(sig, c.sig);
        if (d < MATCH_DISTANCE && (!best || d < best.d)) best = { s: c.t, d };
      }
      if (best) pairs.push({ o: t, s: best.s, distance: best.d });
    }
    // a suspect tensor pairs with one original at most: the closest
    const taken = new Map<FloatTensor, (typeof pairs)[number]>();
    for (const p of pairs) {
      const prev = taken.get(p.s);
      if (!prev || p.distance < prev.distance) taken.set(p.s, p);
    }
    const matched = [...taken.values()];
    if (matched.length === 0) {
      throw new MlicError('TRACE_NO_MATCH', `none of the suspect's ${suspFloat.length} floating-point tensors matches a tensor of the original that carries a fingerprint`, {
        hint: 'the suspect is another model (or another architecture), or was changed beyond recognition; nothing can be said about it',
      });
    }
    o.onProgress?.(`matched ${matched.length} of ${origMarkable.length} tensors`);
    // 2 and 3. sample and weigh the residual
    const total = origMarkable.reduce((n, t) => n + t.elements, 0);
    const share = Math.min(1, SAMPLE_BUDGET / total);
    const stretches: Stretch[] = [];
    let compared = 0;
    let differing = 0;
    for (const p of matched) {
      const ws = windowsOf(p.o.elements, share);
      const parts: { w: Window; r: Float32Array; a: Float32Array }[] = [];
      let sq = 0;
      let n = 0;
      for (const w of ws) {
        const a = await readElements(of, p.o, w.start, w.count);
        const b = await readElements(sf, p.s, w.start, w.count);
        const r = new Float32Array(w.count);
        for (let i = 0; i < w.count; i++) {
          const x = a[i]!;
          const y = b[i]!;
          if (!Number.isFinite(x) || !Number.isFinite(y) || x === 0 || y === 0) continue;
          r[i] = y - x;
          sq += r[i]! * r[i]!;
          n++;
          if (r[i] !== 0) differing++;
        }
        parts.push({ w, r, a });
      }
      compared += parts.reduce((k, x) => k + x.r.length, 0);
      if (sq === 0) continue;
      const ms = sq / n;
      const clip = 4 * Math.sqrt(ms);
      const nonce = tensorNonce(p.o.name);
      // windows that follow each other make one stretch (one pattern call per candidate)
      for (let i = 0; i < parts.length; ) {
        let j = i + 1;
        while (j < parts.length && parts[j]!.w.start === parts[j - 1]!.w.start + parts[j - 1]!.w.count) j++;
        const run = parts.slice(i, j);
        const q = new Float32Array(run.reduce((n, x) => n + x.r.length, 0));
        let at = 0;
        for (const { r, a } of run) {
          for (let k = 0; k < r.length; k++) q[at + k] = (Math.abs(a[k]!) * Math.max(-clip, Math.min(clip, r[k]!))) / ms;
          at += r.length;
        }
        stretches.push({ nonce, start: run[0]!.w.start, q });
        i = j;
      }
    }
    // 4. score
    let s2 = 0;
    let s1 = 0;
    for (const st of stretches) for (const v of st.q) {
      s2 += v * v;
      s1 += v;
    }
    const norm = Math.sqrt(s2);
    const scores: CandidateScore[] = [];
    const log10C = Math.log10(Math.max(1, candidates.length));
    for (const c of candidates) {
      let dot = 0;
      for (const st of stretches) dot += setBitSum(patternBits(c.markKey, st.nonce, st.start, st.q.length), st.q);
      // Σ q s = 2 Σ_{bit set} q − Σ q
      const z = norm > 0 ? (2 * dot - s1) / norm : 0;
      const log10p = z > 0 ? -(z * z) / (2 * Math.LN10) : 0;
      const log10pAdjusted = Math.min(0, log10p + log10C);
      scores.push({ licenseId: c.licenseId, score: z, log10p, log10pAdjusted, implicated: log10pAdjusted < Math.log10(ALPHA) });
    }
    scores.sort((x, y) => y.score - x.score);
    return {
      tensors: origMarkable.length,
      matched: matched.map((p) => ({ original: p.o.name, suspect: p.s.name, file: p.s.file, distance: p.distance })),
      sampled: compared,
      differing,
      candidates: scores,
      implicated: scores.filter((s) => s.implicated).map((s) => s.licenseId),
    };
  } finally {
    await of.close();
    await sf.close();
  }
}

/** Σ q[j] over the j whose bit is set (branch-free: the bits are random, so branches would mispredict half the time). */
function setBitSum(bits: Uint8Array, q: Float32Array): number {
  let acc = 0;
  const full = q.length >> 3;
  for (let b = 0; b < full; b++) {
    const x = bits[b]!;
    const o = b << 3;
    acc +=
      q[o]! * (x & 1) +
      q[o + 1]! * ((x >> 1) & 1) +
      q[o + 2]! * ((x >> 2) & 1) +
      q[o + 3]! * ((x >> 3) & 1) +
      q[o + 4]! * ((x >> 4) & 1) +
      q[o + 5]! * ((x >> 5) & 1) +
      q[o + 6]! * ((x >> 6) & 1) +
      q[o + 7]! * (x >> 7);
  }
  for (let j = full << 3; j < q.length; j++) acc += q[j]! * ((bits[j >> 3]! >> (j & 7)) & 1);
  return acc;
}
