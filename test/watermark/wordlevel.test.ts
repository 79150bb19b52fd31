/**
 * src/watermark/wordlevel.ts: Hugging Face WordLevel tokenizer.json files. Encoding as the
 * `tokenizers` library does (Lowercase; the Whitespace and WhitespaceSplit pre-tokenizers; added
 * tokens found before splitting), decode → encode round trips, hostile files refused with
 * FORMAT_INVALID or TOKENIZER_UNSUPPORTED, and ids or text that another tokenizer produced told apart.
 */
import { describe, it, expect } from 'vitest';
import { loadTokenizer, tokenizerMismatch } from '../../src/watermark/wordlevel.js';
import { codeOf } from '../helpers.js';

const tj = (over: Record<string, unknown> = {}, model: Record<string, unknown> = {}) => ({
  version: '1.0',
  added_tokens: [{ id: 0, content: '[UNK]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
  normalizer: { type: 'Lowercase' },
  pre_tokenizer: { type: 'Whitespace' },
  post_processor: null,
  decoder: null,
  model: { type: 'WordLevel', vocab: { '[UNK]': 0, the: 1, whale: 2, ',': 3, '.': 4, 'call': 5, me: 6, ishmael: 7, '—': 8, "'": 9, s: 10, 'café': 11, ['__proto__']: 12 }, unk_token: '[UNK]', ...model },
  ...over,
});
const code = (f: () => unknown) => codeOf(Promise.resolve().then(f));

describe('WordLevel tokenizer.json', () => {
  it('encodes as the tokenizers library does, and decode → encode gives the same ids', () => {
    const t = loadTokenizer(tj());
    expect(t.vocabSize).toBe(13);
    expect(t.unkId).toBe(0);
    // Whitespace: \w+ | [^\w\s]+ (Unicode), after lowercasing; unknown words → [UNK]
    expect(t.encode('Call me Ishmael. The whale’s—CAFÉ, __proto__ toString')).toEqual([5, 6, 7, 4, 1, 2, 0, 10, 8, 11, 3, 12, 0]); // ’ is not in the vocabulary
    expect(t.encode("whale's")).toEqual([2, 9, 10]);
    expect(t.encode('')).toEqual([]);
    // an added token is found before the text is split: [UNK] is one token, not "[", "unk", "]"
    expect(t.encode('the [UNK] whale')).toEqual([1, 0, 2]);
    const ids = [5, 6, 7, 4, 0, 1, 2, 3, 8, 9, 10, 11, 12, 0, 0];
    expect(t.encode(t.decode(ids))).toEqual(ids);
    expect(t.decode([1, 2, 4])).toBe('the whale .');
    expect(t.token(2)).toBe('whale');
    expect(t.token(99)).toBeUndefined();
    // from text or bytes too
    expect(loadTokenizer(JSON.stringify(tj())).encode('the whale')).toEqual([1, 2]);
    expect(loadTokenizer(Buffer.from(JSON.stringify(tj()))).encode('the whale')).toEqual([1, 2]);
    // WhitespaceSplit, no normalizer: split at white space only, case kept
    const ws = loadTokenizer(tj({ normalizer: null, pre_tokenizer: { type: 'WhitespaceSplit' } }));
    expect(ws.encode('the whale,  The\twhale')).toEqual([1, 0, 0, 2]);
    // sequences of supported steps
    const seq = loadTokenizer(tj({ normalizer: { type: 'Sequence', normalizers: [{ type: 'Lowercase' }] }, pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, { type: 'Whitespace' }] } }));
    expect(seq.encode('THE whale,')).toEqual([1, 2, 3]);
  });

  it('hostile files: malformed is FORMAT_INVALID, another kind of tokenizer is TOKENIZER_UNSUPPORTED, never a crash', async () => {
    // over 1,000,000 tokens, as the text of a file
    const huge = `{"model":{"type":"WordLevel","unk_token":"w0","vocab":{${Array.from({ length: 1_000_001 }, (_, i) => `"w${i}":${i}`).join(',')}}}}`;
    const cases: [unknown, string][] = [
      [null, 'FORMAT_INVALID'],
      ['{not json', 'FORMAT_INVALID'],
      [[], 'FORMAT_INVALID'],
      [42, 'FORMAT_INVALID'],
      [{}, 'FORMAT_INVALID'],
      [tj({ model: 'WordLevel' }), 'FORMAT_INVALID'],
      [tj({}, { type: 7 }), 'FORMAT_INVALID'],
      [tj({}, { vocab: [['the', 0]] }), 'FORMAT_INVALID'],
      [tj({}, { vocab: { the: '0', '[UNK]': 1 } }), 'FORMAT_INVALID'],
      [tj({}, { vocab: { the: 0.5, '[UNK]': 1 } }), 'FORMAT_INVALID'],
      [tj({}, { vocab: { the: -1, '[UNK]': 0 } }), 'FORMAT_INVALID'],
      [tj({}, { vocab: { the: 5, '[UNK]': 0 } }), 'FORMAT_INVALID'], // ids must be 0..n−1
      [tj({}, { vocab: { the: 0, whale: 0, '[UNK]': 1 } }), 'FORMAT_INVALID'], // a duplicate id
      [tj({}, { vocab: {} }), 'FORMAT_INVALID'],
      [tj({}, { vocab: { '': 0, '[UNK]': 1 } }), 'FORMAT_INVALID'],
      [tj({}, { vocab: { ['x'.repeat(5000)]: 0, '[UNK]': 1 } }), 'FORMAT_INVALID'],
      [huge, 'FORMAT_INVALID'],
      [tj({}, { unk_token: null }), 'FORMAT_INVALID'],
      [tj({}, { unk_token: '<unk>' }), 'FORMAT_INVALID'], // not in the vocabulary
      [tj({ added_tokens: { id: 0 } }), 'FORMAT_INVALID'],
      [tj({ added_tokens: [{ id: 0, content: '[UNK]', normalized: 'no' }] }), 'FORMAT_INVALID'],
      [tj({ pre_tokenizer: { type: ['Whitespace'] } }), 'FORMAT_INVALID'],
      [tj({ pre_tokenizer: { type: 'Sequence', pretokenizers: 'Whitespace' } }), 'FORMAT_INVALID'],
      [tj({}, { type: 'BPE', merges: [] }), 'TOKENIZER_UNSUPPORTED'],
      [tj({}, { type: 'WordPiece' }), 'TOKENIZER_UNSUPPORTED'],
      [tj({}, { type: 'Unigram' }), 'TOKENIZER_UNSUPPORTED'],
      [tj({ pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false } }), 'TOKENIZER_UNSUPPORTED'],
      [tj({ pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Whitespace' }, { type: 'Digits' }] } }), 'TOKENIZER_UNSUPPORTED'],
      [tj({ normalizer: { type: 'NFKC' } }), 'TOKENIZER_UNSUPPORTED'],
      [tj({ added_tokens: [{ id: 20, content: '<pad>' }] }), 'TOKENIZER_UNSUPPORTED'], // outside the vocabulary
      [tj({ added_tokens: [{ id: 0, content: '[UNK]', single_word: true }] }), 'TOKENIZER_UNSUPPORTED'],
    ];
    for (const [i, [json, want]] of cases.entries()) expect([i, await code(() => loadTokenizer(json))]).toEqual([i, want]);
    // a prototype-named token is just a token
    expect(loadTokenizer(JSON.parse('{"model":{"type":"WordLevel","vocab":{"__proto__":0,"constructor":1},"unk_token":"__proto__"},"pre_tokenizer":{"type":"Whitespace"}}')).encode('constructor x')).toEqual([1, 0]);
  });

  it('ids or text from another tokenizer: a reason, not a silent score', async () => {
    const t = loadTokenizer(tj());
    expect(tokenizerMismatch([1, 2, 12], t)).toBeUndefined();
    expect(tokenizerMismatch([1, 2, 13], t)).toMatch(/past the tokenizer's vocabulary of 13/);
    expect(tokenizerMismatch([1, -1], t)).toMatch(/not a whole number/);
    expect(tokenizerMismatch([1, 1.5], t)).toMatch(/not a whole number/);
    expect(tokenizerMismatch('Call me Ishmael. The whale, the whale.', t)).toBeUndefined();
    expect(tokenizerMismatch('Le café est fermé aujourd’hui, monsieur.', t)).toMatch(/not in the tokenizer's vocabulary/);
    expect(tokenizerMismatch('', t)).toBeUndefined();
    // exactly 20% unknown passes; more does not
    expect(tokenizerMismatch('the whale the whale zzz', t)).toBeUndefined();
    expect(tokenizerMismatch('the whale the zzz zzz', t)).toBeDefined();
    expect(await code(() => t.decode([1, 99]))).toBe('TOKENIZER_MISMATCH');
  });
});
