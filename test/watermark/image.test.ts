/**
 * The image watermark on real images (test/watermark/corpus.ts: photographs, clip art and rendered
 * flags from packages): marks stay invisible by PSNR, survive each change the issue names, and
 * never name a licence on images the key never touched. The full table for docs/WATERMARK.md
 * (117 images, 1,000 unmarked) is test/slow/watermark-image-eval.test.ts; here a spread subset.
 * Also the parts on their own: the FFT against a plain DFT, the convolutional code, the tile.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { createHash } from 'node:crypto';
import { fft2 } from '../../src/watermark/fft.js';
import { convEncode, viterbiDecode } from '../../src/watermark/conv.js';
import { ACCUSATION_BOUND } from '../../src/watermark/text.js';
import {
  analyzeImage,
  CARRIERS,
  detectImageWatermark,
  embedImageWatermark,
  MIN_DETECT_SIDE,
  MIN_EMBED_SIDE,
  psnr,
  scoreImage,
  SHIFTS,
  TILE,
  watermarkTile,
  type RawImage,
} from '../../src/watermark/image.js';
import { decodeImage, encodeImage } from '../../src/watermark/codec.js';
import { imagePayload, markImage, watermarkCandidates } from '../../src/watermark/licence.js';
import { ATTACKS, markedSet, rng, unmarkedSet, type CorpusImage } from './corpus.js';

const seeded = (seed: number, n: number) => {
  const r = rng(seed);
  return Buffer.from(Array.from({ length: n }, () => Math.floor(r() * 256)));
};
const keyOf = (i: number) => createHash('sha256').update(`licence key ${i}`).digest();
const idOf = (i: number) => createHash('sha256').update(`licence id ${i}`).digest('hex').slice(0, 32);
/** the bound one licence's p-value must pass to be named among 1,000 candidates */
const BOUND_1000 = ACCUSATION_BOUND / 1000;

describe('the parts', () => {
  it('fft2 agrees with a plain DFT, and its inverse (scaled) gives the input back', () => {
    const n = 16;
    const r = rng(3);
    const re = Float64Array.from({ length: n * n }, () => r() - 0.5);
    const im = Float64Array.from({ length: n * n }, () => r() - 0.5);
    const [re0, im0] = [Float64Array.from(re), Float64Array.from(im)];
    fft2(re, im, n, false);
    for (const [ky, kx] of [
      [0, 0],
      [1, 3],
      [7, 15],
      [15, 2],
    ] as const) {
      let sr = 0;
      let si = 0;
      for (let y = 0; y < n; y++)
        for (let x = 0; x < n; x++) {
          const a = (-2 * Math.PI * (kx * x + ky * y)) / n;
          sr += re0[y * n + x]! * Math.cos(a) - im0[y * n + x]! * Math.sin(a);
          si += re0[y * n + x]! * Math.sin(a) + im0[y * n + x]! * Math.cos(a);
        }
      expect(re[ky * n + kx]).toBeCloseTo(sr, 9);
      expect(im[ky * n + kx]).toBeCloseTo(si, 9);
    }
    fft2(re, im, n, true);
    for (let i = 0; i < n * n; i++) expect(re[i]! / (n * n)).toBeCloseTo(re0[i]!, 12);
  });

  it('the convolutional code corrects errors: 64 bits through noisy soft values', () => {
    const r = rng(5);
    let frames = 0;
    for (let t = 0; t < 50; t++) {
      const bits = Array.from({ length: 64 }, () => (r() < 0.5 ? 1 : 0));
      const code = convEncode(bits);
      expect(code.length).toBe(140);
      expect(viterbiDecode(Array.from(code, (b) => (b ? 1 : -1)))).toEqual(bits);
      // about 8% of the coded bits flipped, with soft confidences: Gaussian noise, σ = 0.7
      const soft = Array.from(code, (b) => {
        const g = Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
        return (b ? 1 : -1) + 0.7 * g;
      });
      if (viterbiDecode(soft).every((b, i) => b === bits[i])) frames++;
    }
    expect(frames).toBeGreaterThanOrEqual(48);
  });

  it('the tile has RMS 1 and no energy outside its band; another payload or key gives another tile', () => {
    const k = keyOf(1);
    const t = watermarkTile(k, imagePayload(idOf(1)));
    expect(t.length).toBe(TILE * TILE);
    expect(Math.sqrt(t.reduce((a, v) => a + v * v, 0) / t.length)).toBeCloseTo(1, 9);
    const im = new Float64Array(t.length);
    const re = Float64Array.from(t);
    fft2(re, im, TILE, false);
    let inBand = 0;
    let out = 0;
    for (let ky = 0; ky < TILE; ky++)
      for (let kx = 0; kx < TILE; kx++) {
        const fy = ky > TILE / 2 ? ky - TILE : ky;
        const fx = kx > TILE / 2 ? kx - TILE : kx;
        const e = re[ky * TILE + kx]! ** 2 + im[ky * TILE + kx]! ** 2;
        const rr = Math.hypot(fx, fy);
        if (rr >= 3 && rr <= 34) inBand += e;
        else out += e;
      }
    expect(out / inBand).toBeLessThan(1e-20);
    expect(CARRIERS).toBeGreaterThan(1700);
    const t2 = watermarkTile(k, imagePayload(idOf(2)));
    const t3 = watermarkTile(keyOf(2), imagePayload(idOf(1)));
    const corr = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i]!, 0) / a.length;
    expect(Math.abs(corr(t, t2))).toBeLessThan(0.2);
    expect(Math.abs(corr(t, t3))).toBeLessThan(0.1);
  });

  it('raw pixels of any size and channel count: alpha untouched, odd sizes, grey; wrong sizes and small images refused', () => {
    const r = rng(9);
    const mk = (w: number, h: number, c: 1 | 2 | 3 | 4): RawImage => ({ width: w, height: h, channels: c, data: Uint8Array.from({ length: w * h * c }, () => 90 + Math.floor(r() * 40)) });
    const k = keyOf(3);
    const p = imagePayload(idOf(3));
    const rgba = mk(131, 257, 4);
    const m = embedImageWatermark(rgba, k, p);
    expect(m.data).not.toBe(rgba.data);
    for (let i = 3; i < m.data.length; i += 4) expect(m.data[i]).toBe(rgba.data[i]);
    expect(psnr(rgba, m)).toBeGreaterThan(38);
    expect(scoreImage(analyzeImage(m), k, p).pValue).toBeLessThan(BOUND_1000);
    const grey = mk(200, 150, 1);
    const g = embedImageWatermark(grey, k, p);
    expect(scoreImage(analyzeImage(g), k, p).pValue).toBeLessThan(BOUND_1000);
    const ga = embedImageWatermark(mk(160, 140, 2), k, p);
    expect(ga.channels).toBe(2);
    expect(() => embedImageWatermark({ ...mk(200, 200, 3), width: 199 }, k, p)).toThrow(expect.objectContaining({ code: 'IMAGE_INVALID' }));
    expect(() => embedImageWatermark(mk(MIN_EMBED_SIDE - 1, 400, 3), k, p)).toThrow(expect.objectContaining({ code: 'IMAGE_TOO_SMALL' }));
    expect(() => analyzeImage(mk(400, MIN_DETECT_SIDE - 1, 3))).toThrow(expect.objectContaining({ code: 'IMAGE_TOO_SMALL' }));
    expect(() => embedImageWatermark(mk(200, 200, 3), k, p, { strength: 0 })).toThrow(RangeError);
    expect(() => detectImageWatermark(mk(200, 200, 3), [])).toThrow(expect.objectContaining({ code: 'USAGE' }));
  });

  it('encoded images: PNG, JPEG, WebP and TIFF come back in their own format, marked; corrupt ones are IMAGE_INVALID', async () => {
    const [photo] = await markedSet(1);
    const k = keyOf(4);
    const id = idOf(4);
    for (const format of ['png', 'jpeg', 'webp', 'tiff'] as const) {
      const input = await encodeImage(photo!.image, format);
      const m = await markImage(input, k, id);
      expect(m.psnr).toBeGreaterThan(38);
      const back = await decodeImage(m.image as Buffer);
      expect([back.format, back.image.width, back.image.height]).toEqual([format, photo!.image.width, photo!.image.height]);
      const s = scoreImage(analyzeImage(back.image), k, imagePayload(id));
      expect(s.pValue, format).toBeLessThan(BOUND_1000);
      expect(s.payloadMatch).toBe(true);
    }
    const png = await encodeImage(photo!.image, 'png');
    await expect(decodeImage(png.subarray(0, 5000))).rejects.toMatchObject({ code: 'IMAGE_INVALID' });
    await expect(decodeImage(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'))).rejects.toMatchObject({ code: 'IMAGE_INVALID' });
    await expect(decodeImage(Buffer.alloc(100))).rejects.toMatchObject({ code: 'IMAGE_INVALID' });
  });
});

describe('on real images', () => {
  let set: CorpusImage[];
  beforeAll(async () => {
    set = await markedSet(12);
  }, 60_000);

  it('PSNR ≥ 38 dB, and every change the issue names leaves the licence named among 1,000 (its p-value below 1e-12)', async () => {
    const fails: string[] = [];
    for (const [i, item] of set.entries()) {
      const k = keyOf(100 + i);
      const p = imagePayload(idOf(100 + i));
      const m = embedImageWatermark(item.image, k, p);
      expect(psnr(item.image, m), item.name).toBeGreaterThanOrEqual(38);
      for (const [name, attack] of Object.entries(ATTACKS)) {
        const s = scoreImage(analyzeImage(await attack(m)), k, p);
        if (!(s.pValue < BOUND_1000)) fails.push(`${item.name} ${item.image.width}×${item.image.height}, ${name}: z ${s.z.toFixed(1)}`);
      }
    }
    expect(fails).toEqual([]);
  }, 120_000);

  it('the detector among 1,000 candidates names the licence, with its payload, from a cropped JPEG', async () => {
    const ids = Array.from({ length: 1000 }, (_, i) => idOf(i));
    const master = seeded(11, 32);
    const cands = watermarkCandidates(ids, master);
    const item = set.find((s) => s.image.width >= 512)!;
    const m = embedImageWatermark(item.image, cands[417]!.key, cands[417]!.payload);
    const leaked = await ATTACKS['crop 10% off the edges']!(await ATTACKS['JPEG quality 50']!(m));
    const d = detectImageWatermark(leaked, cands);
    expect(d.named).toBe(ids[417]);
    expect(d.scores[0]).toMatchObject({ id: ids[417], payloadMatch: true, payload: ids[417]!.slice(0, 16) });
    expect(d.scores[1]!.pValue).toBeGreaterThan(1e-4);
    // the original: nobody
    expect(detectImageWatermark(item.image, cands).named).toBeUndefined();
  }, 120_000);

  it('never names a licence on 200 unmarked images (10 candidate keys each, against the 1,000-candidate bound), nor on an image marked for a licence outside the candidates', async () => {
    const cands = Array.from({ length: 10 }, (_, i) => ({ id: idOf(i), key: keyOf(i), payload: imagePayload(idOf(i)) }));
    let max = -Infinity;
    for await (const u of unmarkedSet(200)) {
      const a = analyzeImage(u.image);
      for (const c of cands) {
        const s = scoreImage(a, c.key, c.payload);
        expect(s.pValue, u.name).toBeGreaterThan(BOUND_1000);
        max = Math.max(max, s.z);
      }
    }
    // the largest z over 2,000 image–key pairs: far from the 8.6 that naming needs, and the
    // bound itself (128² · exp(−z²/2)) is above 1 for z below about 4.4
    expect(max).toBeLessThan(7);
    expect(SHIFTS * Math.exp((-8.6 * 8.6) / 2) * 1000).toBeLessThan(1e-9 * 1.5);
    const outsider = embedImageWatermark(set[0]!.image, keyOf(999), imagePayload(idOf(999)));
    expect(detectImageWatermark(outsider, cands).named).toBeUndefined();
  }, 180_000);
});
