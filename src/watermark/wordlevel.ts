/**
 * A reader for Hugging Face `tokenizer.json` files whose model is `WordLevel`: a vocabulary of
 * whole words (and punctuation runs), each one id, with an unknown-word token. This is what the
 * text watermark's detector needs to turn text back into the ids a generator sampled, for models
 * whose tokenizer is a word list; other models (BPE, WordPiece, Unigram) are TOKENIZER_UNSUPPORTED,
 * and their callers pass token ids instead.
 *
 * Supported, as the `tokenizers` library defines them:
 *   model          {"type": "WordLevel", "vocab": {token: id}, "unk_token": string}
 *   normalizer     null, {"type": "Lowercase"}, or a "Sequence" of those
 *   pre_tokenizer  null (the whole text one word), {"type": "Whitespace"} (the regex \w+|[^\w\s]+),
 *                  {"type": "WhitespaceSplit"} (split at white space), or a "Sequence" of those
 *   decoder        ignored: ids decode to their tokens joined by single spaces (the library's
 *                  behaviour with no decoder)
 *   added_tokens   allowed only where each is already in the vocabulary with the same id; found in
 *                  the text before it is split (as the library does), except single_word ones
 *
 * The file is treated as hostile: every field's type is checked, ids must be the whole numbers
 * 0..n−1 each used once, n at most 1,000,000 and tokens at most 1,024 characters; anything else is
 * FORMAT_INVALID, never a crash.
 */
import { MlicError } from '../errors.js';

export const MAX_VOCAB = 1_000_000;
const MAX_TOKEN_CHARS = 1024;
const MAX_ADDED = 10_000;
/** more than this share of unknown words says the text was not written with this tokenizer */
export const MAX_UNKNOWN_SHARE = 0.2;

export interface Tokenizer {
  /** text → ids (unknown words → unkId) */
  encode(text: string): number[];
  /** ids → text: the tokens joined by single spaces; an id outside the vocabulary is TOKENIZER_MISMATCH */
  decode(ids: readonly number[]): string;
  readonly vocabSize: number;
  readonly unkId: number;
  /** the token for an id, if any */
  token(id: number): string | undefined;
}

type PreTokenizer = 'Whitespace' | 'WhitespaceSplit';

// The `tokenizers` library's \w, \s (Rust regex, Unicode): \w = Alphabetic, marks, decimal digits,
// connector punctuation, Join_Control; \s = White_Space.
const W = String.raw`\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}`;
const S = String.raw`\p{White_Space}`;
const WHITESPACE_RE = new RegExp(`[${W}]+|[^${W}${S}]+`, 'gu');
const WHITESPACE_SPLIT_RE = new RegExp(`[^${S}]+`, 'gu');

function bad(msg: string): MlicError {
  return new MlicError('FORMAT_INVALID', `tokenizer.json: ${msg}`, { hint: "pass the model's own tokenizer.json, unedited" });
}

function unsupported(msg: string): MlicError {
  return new MlicError('TOKENIZER_UNSUPPORTED', `tokenizer.json: ${msg}`, {
    hint: 'only WordLevel tokenizers with a Whitespace or WhitespaceSplit pre-tokenizer can be read; for other models pass token ids',
  });
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function typeOf(x: unknown, where: string): string {
  if (!isObject(x)) throw bad(`${where} is not an object`);
  const t = x['type'];
  if (typeof t !== 'string') throw bad(`${where}.type is not a string`);
  return t;
}

/** The normalizer: whether it lowercases. */
function readNormalizer(n: unknown, depth = 0): boolean {
  if (n === null || n === undefined) return false;
  const t = typeOf(n, 'normalizer');
  if (t === 'Lowercase') return true;
  if (t === 'Sequence' && depth === 0) {
    const list = (n as Record<string, unknown>)['normalizers'];
    if (!Array.isArray(list) || list.length > 16) throw bad('normalizer.normalizers is not a short list');
    return list.map((x) => readNormalizer(x, 1)).some(Boolean);
  }
  throw unsupported(`normalizer type ${JSON.stringify(t.slice(0, 64))} is not supported (only Lowercase)`);
}

/** The pre-tokenizers, in order (an empty list: the whole text is one word). */
function readPreTokenizer(p: unknown, depth = 0): PreTokenizer[] {
  if (p === null || p === undefined) return [];
  const t = typeOf(p, 'pre_tokenizer');
  if (t === 'Whitespace' || t === 'WhitespaceSplit') return [t];
  if (t === 'Sequence' && depth === 0) {
    const list = (p as Record<string, unknown>)['pretokenizers'];
    if (!Array.isArray(list) || list.length > 16) throw bad('pre_tokenizer.pretokenizers is not a short list');
    return list.flatMap((x) => readPreTokenizer(x, 1));
  }
  throw unsupported(`pre_tokenizer type ${JSON.stringify(t.slice(0, 64))} is not supported (only Whitespace and WhitespaceSplit)`);
}

/**
 * Reads a tokenizer.json (the parsed object, or its text or bytes). Malformed: FORMAT_INVALID;
 * well-formed but not a kind mlic reads: TOKENIZER_UNSUPPORTED.
 */
export function loadTokenizer(json: unknown): Tokenizer {
  if (typeof json === 'string' || json instanceof Uint8Array) {
    const text = typeof json === 'string' ? json : Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8');
    try {
      json = JSON.parse(text) as unknown;
    } catch {
      throw bad('not JSON');
    }
  }
  if (!isObject(json)) throw bad('not a JSON object');
  const model = json['model'];
  const mt = typeOf(model, 'model');
  if (mt !== 'WordLevel') throw unsupported(`model type ${JSON.stringify(mt.slice(0, 64))} is not supported (only WordLevel)`);
  const m = model as Record<string, unknown>;
  const vocabIn = m['vocab'];
  if (!isObject(vocabIn)) throw bad('model.vocab is not an object of token → id');
  const unk = m['unk_token'];
  if (typeof unk !== 'string') throw bad('model.unk_token is not a string');

  // count before looking at anything else: a vocabulary past the limit is refused unread
  let n = 0;
  for (const k in vocabIn) if (Object.prototype.hasOwnProperty.call(vocabIn, k) && ++n > MAX_VOCAB) throw bad(`the vocabulary has more than ${MAX_VOCAB.toLocaleString('en-US')} tokens`);
  if (n === 0) throw bad('the vocabulary is empty');
  const byId: (string | undefined)[] = new Array<string | undefined>(n).fill(undefined);
  const vocab = new Map<string, number>();
  for (const [tok, id] of Object.entries(vocabIn)) {
    if (tok.length === 0 || tok.length > MAX_TOKEN_CHARS) throw bad(`a token is empty or longer than ${MAX_TOKEN_CHARS} characters`);
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= n) throw bad(`the id of token ${JSON.stringify(tok.slice(0, 64))} is not a whole number from 0 to ${n - 1}`);
    if (byId[id] !== undefined) throw bad(`id ${id} is given to two tokens`);
    byId[id] = tok;
    vocab.set(tok, id);
  }
  const unkId = vocab.get(unk);
  if (unkId === undefined) throw bad(`the unknown token ${JSON.stringify(unk.slice(0, 64))} is not in the vocabulary`);

  const added = json['added_tokens'];
  const addedRaw: string[] = []; // matched in the text as it is
  const addedNorm: string[] = []; // matched after normalization
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added) || added.length > MAX_ADDED) throw bad(`added_tokens is not a list of at most ${MAX_ADDED}`);
    for (const a of added) {
      if (!isObject(a) || typeof a['content'] !== 'string' || typeof a['id'] !== 'number') throw bad('an added token is not {id, content, ...}');
      if (a['content'].length === 0) throw bad('an added token is empty');
      for (const f of ['single_word', 'lstrip', 'rstrip', 'normalized', 'special']) if (a[f] !== undefined && typeof a[f] !== 'boolean') throw bad(`added token field ${f} is not true or false`);
      if (vocab.get(a['content']) !== a['id']) throw unsupported(`added token ${JSON.stringify(a['content'].slice(0, 64))} is not in the vocabulary with id ${a['id']}`);
      if (a['single_word'] === true) throw unsupported('added tokens with single_word are not supported');
      (a['normalized'] === true ? addedNorm : addedRaw).push(a['content']);
    }
  }
  const lower = readNormalizer(json['normalizer']);
  const pre = readPreTokenizer(json['pre_tokenizer']);

  const words = (text: string): string[] => {
    let parts = [text];
    for (const p of pre) parts = parts.flatMap((s) => s.match(p === 'Whitespace' ? WHITESPACE_RE : WHITESPACE_SPLIT_RE) ?? []);
    return parts.filter((s) => s.length > 0);
  };
  // added tokens are found before the pre-tokenizer splits the text (the `tokenizers` library's order:
  // those matched on the text as it is, then normalization, then those matched on normalized text)
  const splitter = (list: string[]): RegExp | undefined =>
    list.length ? new RegExp(`(${[...new Set(list)].sort((a, b) => b.length - a.length).map((t) => t.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&')).join('|')})`, 'u') : undefined;
  const rawRe = splitter(addedRaw);
  const normRe = splitter(addedNorm);
  const encodeParts = (text: string, re: RegExp | undefined, rest: (s: string) => number[]): number[] => {
    if (!re) return rest(text);
    // with one capture group, split puts the matches at the odd places
    return text.split(re).flatMap((s, i) => (i % 2 === 1 ? [vocab.get(s)!] : rest(s)));
  };
  const encodeNormalized = (s: string): number[] => encodeParts(s, normRe, (t) => words(t).map((w) => vocab.get(w) ?? unkId));
  return {
    vocabSize: n,
    unkId,
    token: (id) => (Number.isInteger(id) && id >= 0 && id < n ? byId[id] : undefined),
    encode(text) {
      if (typeof text !== 'string') throw new MlicError('USAGE', 'the text to encode is not a string');
      return encodeParts(text, rawRe, (s) => encodeNormalized(lower ? s.toLowerCase() : s));
    },
    decode(ids) {
      const why = tokenizerMismatch(ids, { vocabSize: n });
      if (why) throw new MlicError('TOKENIZER_MISMATCH', why, { hint: 'pass the tokenizer of the model that generated these ids' });
      return ids.map((id) => byId[id]!).join(' ');
    },
  };
}

/**
 * Why token ids (or text) cannot have come from this tokenizer, or undefined when they can:
 * ids that are not whole numbers below its vocabulary size; for text, more than 20% of its words
 * unknown to the vocabulary.
 */
export function tokenizerMismatch(input: readonly number[] | string, tok: Pick<Tokenizer, 'vocabSize'> & Partial<Pick<Tokenizer, 'encode' | 'unkId'>>): string | undefined {
  if (typeof input === 'string') {
    if (!tok.encode || tok.unkId === undefined) return 'text needs a tokenizer that can encode it';
    const ids = tok.encode(input);
    if (ids.length === 0) return undefined;
    const unknown = ids.filter((id) => id === tok.unkId).length;
    return unknown > MAX_UNKNOWN_SHARE * ids.length
      ? `${unknown} of the text's ${ids.length} words (${((100 * unknown) / ids.length).toFixed(0)}%) are not in the tokenizer's vocabulary: it is not the tokenizer the text was written with`
      : undefined;
  }
  if (!Array.isArray(input)) return 'token ids are not a list';
  for (let i = 0; i < input.length; i++) {
    const id: unknown = input[i];
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) return `token id ${String(id).slice(0, 32)} at position ${i} is not a whole number`;
    if (id >= tok.vocabSize) return `token id ${id} at position ${i} is past the tokenizer's vocabulary of ${tok.vocabSize}: it is not the tokenizer the ids came from`;
  }
  return undefined;
}
