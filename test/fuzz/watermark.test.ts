/**
 * Fuzz: what `mlic watermark embed` and `detect` read. Damaged PNG, JPEG, WebP and TIFF files
 * (bit flips, truncation, spliced bytes, changed lengths: test/fuzz/lib.ts mutateBytes) through
 * decodeImage and, when one still decodes, embedding and detection; damaged tokenizer.json files
 * through loadTokenizer. Every case ends in a result or an MlicError with its code, within the
 * time bound; a damaged copy of a marked image names no licence but its own, and an unmarked one
 * none.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { createHash } from 'node:crypto';
import { decodeImage, encodeImage } from '../../src/watermark/codec.js';
import { analyzeImage, detectImageWatermark, embedImageWatermark, type RawImage } from '../../src/watermark/image.js';
import { imagePayload } from '../../src/watermark/licence.js';
import { loadTokenizer } from '../../src/watermark/wordlevel.js';
import { markedSet } from '../watermark/corpus.js';
import { cases, fuzz, mutateBytes, mutateText } from './lib.js';

const idOf = (i: number) => createHash('sha256').update(`fuzz id ${i}`).digest('hex').slice(0, 32);
const cands = Array.from({ length: 5 }, (_, i) => ({ id: idOf(i), key: createHash('sha256').update(`fuzz key ${i}`).digest(), payload: imagePayload(idOf(i)) }));

describe('fuzz: images and tokenizers for the watermark', () => {
  const files: { format: string; bytes: Buffer; marked: boolean }[] = [];
  beforeAll(async () => {
    const [photo] = await markedSet(1);
    // a 300×200 crop keeps each case quick
    const crop: RawImage = { width: 300, height: 200, channels: 3, data: new Uint8Array(300 * 200 * 3) };
    for (let y = 0; y < 200; y++) crop.data.set(photo!.image.data.subarray(y * photo!.image.width * 3, y * photo!.image.width * 3 + 900), y * 900);
    const marked = embedImageWatermark(crop, cands[2]!.key, cands[2]!.payload);
    for (const format of ['png', 'jpeg', 'webp', 'tiff'] as const) {
      files.push({ format, bytes: await encodeImage(marked, format), marked: true });
      files.push({ format, bytes: await encodeImage(crop, format), marked: false });
    }
  }, 60_000);

  it('damaged images: decoded, marked and detected, or IMAGE_INVALID / IMAGE_TOO_SMALL; never another licence named', async () => {
    const t = await fuzz('image', 0x1a6e, cases(240), 10_000, (r, i) => {
      const f = files[i % files.length]!;
      const m = mutateBytes(r, f.bytes);
      return {
        desc: `${f.format}${f.marked ? ' (marked)' : ''}: ${m.desc}`,
        run: async () => {
          const { image } = await decodeImage(m.bytes);
          const d = detectImageWatermark(analyzeImage(image), cands);
          if (d.named !== undefined && !(f.marked && d.named === cands[2]!.id)) throw new Error(`named ${d.named}`);
          embedImageWatermark(image, cands[0]!.key, cands[0]!.payload);
        },
      };
    });
    t.report();
    expect(t.counts.get('ok') ?? 0).toBeGreaterThan(0);
    expect(t.counts.get('IMAGE_INVALID') ?? 0).toBeGreaterThan(0);
  }, 300_000);

  it('damaged tokenizer.json: a tokenizer or FORMAT_INVALID / TOKENIZER_UNSUPPORTED', async () => {
    const vocab: Record<string, number> = { '[UNK]': 0 };
    for (let i = 1; i < 300; i++) vocab[`w${i}`] = i;
    const text = JSON.stringify({ version: '1.0', normalizer: { type: 'Lowercase' }, pre_tokenizer: { type: 'Whitespace' }, model: { type: 'WordLevel', vocab, unk_token: '[UNK]' } });
    const t = await fuzz('tokenizer', 0x70c, cases(300), 2_000, (r) => {
      const m = mutateText(r, text);
      return {
        desc: m.desc,
        run: () => {
          let json: unknown;
          try {
            json = JSON.parse(m.text);
          } catch {
            return; // the CLI refuses invalid JSON before loadTokenizer (FORMAT_INVALID)
          }
          const tok = loadTokenizer(json);
          tok.decode(tok.encode('w1 w2 W3 unknown , w299'));
        },
      };
    });
    t.report();
  }, 120_000);
});
