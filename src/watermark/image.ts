/**
 * The image watermark: a keyed, band-limited pattern added to the luma of an image, tiled so that
 * a crop keeps whole periods of it, carrying a 64-bit payload (the licence id's first 8 bytes)
 * under a rate-1/2 convolutional code. docs/WATERMARK.md explains the choices; in short:
 *
 * - The pattern is one 128×128 tile, defined in its discrete Fourier domain: every frequency bin
 *   whose radius lies between 3 and 34 cycles per tile (0.023 to 0.27 cycles per pixel: measured
 *   best against JPEG at quality 50 and a resize to half, docs/WATERMARK.md) is one carrier with a keyed phase and a sign
 *   b = code bit XOR keyed mask bit. The tile is repeated over the image and added to R, G and B
 *   alike (so to luma only), scaled to a given RMS in grey levels.
 * - Detection high-passes the luma, folds it onto one tile (the mean of each position modulo 128),
 *   takes the tile's spectrum and keeps only each bin's phase (so brightness and contrast changes,
 *   which scale the spectrum, do not matter). For a candidate key it finds the cyclic shift that
 *   best matches the key's pattern (one inverse FFT: a crop moves the pattern by an unknown shift),
 *   then computes Z = Σ b_f c_f / √(Σ c_f²) over the carriers f, where c_f is the bin's phase
 *   agreement at that shift.
 * - The bound: for an image the key never touched, the signs b_f are independent fair coins (the
 *   keyed mask) whatever the image, so Σ b_f c_f is a Rademacher sum and
 *   P[Z ≥ τ] ≤ exp(−τ²/2) for each shift (Hoeffding). Over the 128² shifts the detector tries,
 *   p ≤ 128²·exp(−Z²/2). A licence is named only when p times the number of candidates is below
 *   1e-9. This holds for any image, photograph or not: it assumes nothing about image statistics.
 */
import { createCipheriv, createHmac } from 'node:crypto';
import { MlicError } from '../errors.js';
import { convEncode, viterbiDecode, codedLength } from './conv.js';
import { fft2 } from './fft.js';
import { ACCUSATION_BOUND } from './text.js';

/** The tile's side in pixels. */
export const TILE = 128;
const R_MIN = 3;
const R_MAX = 34;
/** payload bits: the licence id's first 8 bytes */
export const PAYLOAD_BITS = 64;
const CODED = codedLength(PAYLOAD_BITS);
/** the smallest side an image needs to carry the payload (one whole tile) */
export const MIN_EMBED_SIDE = TILE;
/** the smallest side the detector looks at */
export const MIN_DETECT_SIDE = 64;
/** default strength: the pattern's RMS in grey levels (PSNR ≈ 20·log10(255 / strength) ≈ 40.5 dB) */
export const DEFAULT_STRENGTH = 2.4;
/** how many cyclic shifts the detector tries: the p-value's Bonferroni factor */
export const SHIFTS = TILE * TILE;

/** Raw pixels: `channels` interleaved 8-bit samples per pixel, row by row (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA). */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

/** The carriers, in a fixed order: the half-plane bins (kx, ky) of the band. */
const BINS: { kx: number; ky: number; at: number; mirror: number }[] = (() => {
  const out: { kx: number; ky: number; at: number; mirror: number }[] = [];
  const idx = (kx: number, ky: number) => ((ky + TILE) % TILE) * TILE + ((kx + TILE) % TILE);
  for (let ky = 0; ky <= R_MAX; ky++)
    for (let kx = -R_MAX; kx <= R_MAX; kx++) {
      if (ky === 0 && kx <= 0) continue;
      const r = Math.hypot(kx, ky);
      if (r < R_MIN || r > R_MAX) continue;
      out.push({ kx, ky, at: idx(kx, ky), mirror: idx(-kx, -ky) });
    }
  return out;
})();
/** the number of carriers (frequency bins) */
export const CARRIERS = BINS.length;

interface Schedule {
  /** per carrier: cos and sin of its keyed phase */
  cos: Float64Array;
  sin: Float64Array;
  /** per carrier: the coded bit it carries */
  bit: Uint16Array;
  /** per carrier: the keyed mask bit */
  mask: Uint8Array;
}

const schedules = new Map<string, Schedule>();

/** The key's carriers: phases, mask bits and which coded bit each carries, from AES-256-CTR keyed by HMAC(key, label). */
function schedule(key: Uint8Array): Schedule {
  const id = Buffer.from(key).toString('base64');
  let s = schedules.get(id);
  if (s) return s;
  if (key.length < 16) throw new RangeError('an image watermark key is at least 16 bytes');
  const k = createHmac('sha256', key).update('mlic/v1/image-watermark').digest();
  const n = CARRIERS;
  const stream = createCipheriv('aes-256-ctr', k, Buffer.alloc(16)).update(Buffer.alloc(n * 9));
  const cos = new Float64Array(n);
  const sin = new Float64Array(n);
  const mask = new Uint8Array(n);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < n; i++) {
    const phi = (stream.readUInt32BE(i * 9) / 2 ** 32) * 2 * Math.PI;
    cos[i] = Math.cos(phi);
    sin[i] = Math.sin(phi);
    mask[i] = stream[i * 9 + 4]! & 1;
  }
  // a keyed shuffle spreads each coded bit over carriers all across the band
  for (let i = n - 1; i > 0; i--) {
    const j = stream.readUInt32BE(i * 9 + 5) % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const bit = new Uint16Array(n);
  order.forEach((carrier, pos) => (bit[carrier] = pos % CODED));
  s = { cos, sin, bit, mask };
  if (schedules.size > 2048) schedules.clear();
  schedules.set(id, s);
  return s;
}

function payloadBits(payload: Uint8Array): number[] {
  if (payload.length !== PAYLOAD_BITS / 8) throw new RangeError(`the image payload is ${PAYLOAD_BITS / 8} bytes`);
  const bits: number[] = [];
  for (const byte of payload) for (let i = 7; i >= 0; i--) bits.push((byte >> i) & 1);
  return bits;
}

function bitsToHex(bits: readonly number[]): string {
  let hex = '';
  for (let i = 0; i < bits.length; i += 4) hex += ((bits[i]! << 3) | (bits[i + 1]! << 2) | (bits[i + 2]! << 1) | bits[i + 3]!).toString(16);
  return hex;
}

/** The signs ±1 the key's carriers take for a payload. */
function signs(s: Schedule, payload: Uint8Array): Int8Array {
  const code = convEncode(payloadBits(payload));
  const b = new Int8Array(CARRIERS);
  for (let f = 0; f < CARRIERS; f++) b[f] = code[s.bit[f]!]! ^ s.mask[f]! ? 1 : -1;
  return b;
}

/** The key's tile for a payload: TILE × TILE values with RMS 1. */
export function watermarkTile(key: Uint8Array, payload: Uint8Array): Float64Array {
  const s = schedule(key);
  const b = signs(s, payload);
  const re = new Float64Array(TILE * TILE);
  const im = new Float64Array(TILE * TILE);
  BINS.forEach((bin, f) => {
    re[bin.at] = b[f]! * s.cos[f]!;
    im[bin.at] = b[f]! * s.sin[f]!;
    re[bin.mirror] = b[f]! * s.cos[f]!;
    im[bin.mirror] = -b[f]! * s.sin[f]!;
  });
  fft2(re, im, TILE, true);
  let ss = 0;
  for (const v of re) ss += v * v;
  const scale = 1 / Math.sqrt(ss / re.length);
  for (let i = 0; i < re.length; i++) re[i] = re[i]! * scale;
  return re;
}

function checkImage(img: RawImage): void {
  const { width: w, height: h, channels: c, data } = img;
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < 1 || h < 1 || ![1, 2, 3, 4].includes(c) || !(data instanceof Uint8Array) || data.length !== w * h * c)
    throw new MlicError('IMAGE_INVALID', 'raw pixels must be width × height × channels (1 to 4) bytes');
}

export interface EmbedOptions {
  /** the pattern's RMS in grey levels (default 2.4: about 40.5 dB PSNR) */
  strength?: number;
}

/**
 * Marks raw pixels: the key's tile for the payload, scaled to `strength`, added to every colour
 * channel (alpha is left alone). Returns new pixels; the input is not changed. An image with a
 * side under 128 pixels cannot carry the payload (IMAGE_TOO_SMALL).
 */
export function embedImageWatermark(img: RawImage, key: Uint8Array, payload: Uint8Array, opts: EmbedOptions = {}): RawImage {
  checkImage(img);
  const strength = opts.strength ?? DEFAULT_STRENGTH;
  if (!(strength > 0 && strength <= 32)) throw new RangeError('strength must be in (0, 32] grey levels');
  if (img.width < MIN_EMBED_SIDE || img.height < MIN_EMBED_SIDE)
    throw new MlicError('IMAGE_TOO_SMALL', `a ${img.width}×${img.height} image is too small to carry the watermark (each side needs at least ${MIN_EMBED_SIDE} pixels)`);
  const tile = watermarkTile(key, payload);
  const { width: w, height: h, channels: c } = img;
  const colour = c >= 3 ? 3 : 1;
  const out = new Uint8Array(img.data);
  const src = img.data;
  const W = [0.299, 0.587, 0.114];
  const v = [0, 0, 0];
  for (let y = 0; y < h; y++) {
    const row = (y % TILE) * TILE;
    for (let x = 0; x < w; x++) {
      const d = strength * tile[row + (x % TILE)]!;
      const p = (y * w + x) * c;
      if (colour === 1) {
        const g = Math.round(src[p]! + d);
        out[p] = g < 0 ? 0 : g > 255 ? 255 : g;
        continue;
      }
      // the same change to R, G and B moves luma by d and leaves chroma alone; where a channel
      // clips (saturated colours, black, white), the luma it could not take goes to the others,
      // each channel moving at most 2|d| (so such pixels cost PSNR at most 4× as much)
      const cap = 2 * Math.abs(d);
      for (let k = 0; k < 3; k++) v[k] = Math.min(255, Math.max(0, src[p + k]! + d));
      for (let pass = 0; pass < 2; pass++) {
        const got = W[0]! * (v[0]! - src[p]!) + W[1]! * (v[1]! - src[p + 1]!) + W[2]! * (v[2]! - src[p + 2]!);
        const rest = d - got;
        if (Math.abs(rest) < 0.05) break;
        const room = (k: number) => (rest > 0 ? Math.min(255, src[p + k]! + cap) - v[k]! : v[k]! - Math.max(0, src[p + k]! - cap));
        let free = 0;
        for (let k = 0; k < 3; k++) if (room(k) > 1e-9) free += W[k]!;
        if (free === 0) break;
        for (let k = 0; k < 3; k++) {
          const r = room(k);
          if (r > 1e-9) v[k] = v[k]! + Math.sign(rest) * Math.min(r, Math.abs(rest) / free);
        }
      }
      for (let k = 0; k < 3; k++) out[p + k] = Math.round(v[k]!);
    }
  }
  return { data: out, width: w, height: h, channels: c };
}

const BLUR = 31;

/** Row j's luma (BT.601), into `out`. */
function lumaRow(img: RawImage, j: number, out: Float32Array): void {
  const { width: w, channels: c, data } = img;
  let p = j * w * c;
  if (c >= 3) for (let i = 0; i < w; i++, p += c) out[i] = 0.299 * data[p]! + 0.587 * data[p + 1]! + 0.114 * data[p + 2]!;
  else for (let i = 0; i < w; i++, p += c) out[i] = data[p]!;
}

/** A box blur of odd width BLUR along a row (edges clamped), by a running sum. */
function blurRow(src: Float32Array, out: Float32Array): void {
  const n = src.length;
  const r = BLUR >> 1;
  const at = (i: number) => src[i < 0 ? 0 : i >= n ? n - 1 : i]!;
  let sum = 0;
  for (let i = -r; i <= r; i++) sum += at(i);
  for (let i = 0; i < n; i++) {
    out[i] = sum / BLUR;
    sum += at(i + r + 1) - at(i - r);
  }
}

/** What the detector keeps of an image: its folded, phase-only spectrum over the band. */
export interface ImageAnalysis {
  width: number;
  height: number;
  /** per carrier: the phase (unit vector) of the folded residual's bin, 0 where the bin is empty */
  re: Float64Array;
  im: Float64Array;
}

/** Folds the image's high-passed luma onto one tile and keeps the phases of its band. */
export function analyzeImage(img: RawImage): ImageAnalysis {
  checkImage(img);
  const { width: w, height: h } = img;
  if (w < MIN_DETECT_SIDE || h < MIN_DETECT_SIDE)
    throw new MlicError('IMAGE_TOO_SMALL', `a ${w}×${h} image is too small to hold a readable watermark (each side needs at least ${MIN_DETECT_SIDE} pixels)`);
  // The residual is luma minus its BLUR×BLUR box blur (rows, then columns; edges clamped),
  // streamed a row at a time: a ring of BLUR + 1 horizontally blurred rows and their column sums,
  // so memory stays O(BLUR · width) whatever the image's height.
  const r = BLUR >> 1;
  const ring = Array.from({ length: BLUR + 1 }, () => new Float32Array(w));
  const lumaRing = Array.from({ length: r + 1 }, () => new Float32Array(w));
  const scratch = new Float32Array(w);
  const clampRow = (k: number) => (k < 0 ? 0 : k >= h ? h - 1 : k);
  const hrow = (k: number) => ring[k % (BLUR + 1)]!;
  let made = -1;
  const make = (upTo: number) => {
    for (; made < upTo; ) {
      made++;
      lumaRow(img, made, scratch);
      blurRow(scratch, hrow(made));
      lumaRing[made % (r + 1)]!.set(scratch);
    }
  };
  const col = new Float64Array(w);
  make(Math.min(h - 1, r));
  for (let k = -r; k <= r; k++) {
    const row = hrow(clampRow(k));
    for (let i = 0; i < w; i++) col[i] = col[i]! + row[i]!;
  }
  const sum = new Float64Array(TILE * TILE);
  const count = new Float64Array(TILE * TILE);
  for (let j = 0; j < h; j++) {
    const y = lumaRing[j % (r + 1)]!;
    const base = (j % TILE) * TILE;
    for (let i = 0; i < w; i++) {
      const t = base + (i % TILE);
      sum[t] = sum[t]! + y[i]! - col[i]! / BLUR;
      count[t] = count[t]! + 1;
    }
    // slide the window: row j + r + 1 comes in, row j − r goes out
    make(Math.min(h - 1, j + r + 1));
    const inRow = hrow(clampRow(j + r + 1));
    const outRow = hrow(clampRow(j - r));
    for (let i = 0; i < w; i++) col[i] = col[i]! + inRow[i]! - outRow[i]!;
  }
  const re = new Float64Array(TILE * TILE);
  const im = new Float64Array(TILE * TILE);
  for (let t = 0; t < re.length; t++) re[t] = count[t]! ? sum[t]! / count[t]! : 0;
  fft2(re, im, TILE, false);
  const pr = new Float64Array(CARRIERS);
  const pi = new Float64Array(CARRIERS);
  BINS.forEach((bin, f) => {
    const m = Math.hypot(re[bin.at]!, im[bin.at]!);
    if (m > 1e-9) {
      pr[f] = re[bin.at]! / m;
      pi[f] = im[bin.at]! / m;
    }
  });
  return { width: w, height: h, re: pr, im: pi };
}

export interface ImageScore {
  /** Σ b c / √(Σ c²) at the best shift */
  z: number;
  /** min(1, 128² · exp(−z²/2)): the chance that an image this key never touched scores as high */
  pValue: number;
  /** the cyclic shift (pixels) at which the key's pattern was found */
  shift: { x: number; y: number };
  /** the payload read with this key (16 hex digits): noise unless this key marked the image */
  payload: string;
  /** the share of coded bits (before error correction) read as this key's payload has them: about 0.5 when the key never touched the image */
  bitAccuracy: number;
  /** the payload read, after error correction, is this key's */
  payloadMatch: boolean;
}

/** Scores an analysed image against one key and the payload that key would have embedded. */
export function scoreImage(a: ImageAnalysis, key: Uint8Array, expected: Uint8Array): ImageScore {
  const s = schedule(key);
  const b = signs(s, expected);
  const sh = shiftFor(a, s, b);
  const c = carrierAgreement(a, s, sh);
  // the payload, read with soft decisions
  const soft = new Float64Array(CODED);
  for (let f = 0; f < CARRIERS; f++) soft[s.bit[f]!] = soft[s.bit[f]!]! + (s.mask[f] ? -c[f]! : c[f]!);
  const decoded = viterbiDecode(soft);
  let num = 0;
  let den = 0;
  for (let f = 0; f < CARRIERS; f++) {
    num += b[f]! * c[f]!;
    den += c[f]! * c[f]!;
  }
  const z = den > 0 ? num / Math.sqrt(den) : 0;
  const code = convEncode(payloadBits(expected));
  let agree = 0;
  for (let j = 0; j < CODED; j++) if ((soft[j]! > 0 ? 1 : 0) === code[j]) agree++;
  const payload = bitsToHex(decoded);
  return { z, pValue: z > 0 ? Math.min(1, SHIFTS * Math.exp((-z * z) / 2)) : 1, shift: sh, payload, bitAccuracy: agree / CODED, payloadMatch: payload === Buffer.from(expected).toString('hex') };
}

/** c_f at shift s: Re(Rn_f · e^{−iφ_f} · e^{2πi k·s/128}). */
function carrierAgreement(a: ImageAnalysis, s: Schedule, sh: { x: number; y: number }): Float64Array {
  const c = new Float64Array(CARRIERS);
  BINS.forEach((bin, f) => {
    const ang = (2 * Math.PI * (bin.kx * sh.x + bin.ky * sh.y)) / TILE;
    // Rn · e^{−iφ}
    const xr = a.re[f]! * s.cos[f]! + a.im[f]! * s.sin[f]!;
    const xi = a.im[f]! * s.cos[f]! - a.re[f]! * s.sin[f]!;
    c[f] = xr * Math.cos(ang) - xi * Math.sin(ang);
  });
  return c;
}

function argmax(re: Float64Array): { x: number; y: number } {
  let best = -Infinity;
  let at = 0;
  for (let i = 0; i < re.length; i++)
    if (re[i]! > best) {
      best = re[i]!;
      at = i;
    }
  return { x: at % TILE, y: Math.floor(at / TILE) };
}

/** The shift that best matches the key's pattern for known signs: one inverse FFT of Rn · conj(P). */
function shiftFor(a: ImageAnalysis, s: Schedule, b: Int8Array): { x: number; y: number } {
  const re = new Float64Array(TILE * TILE);
  const im = new Float64Array(TILE * TILE);
  BINS.forEach((bin, f) => {
    const xr = a.re[f]! * s.cos[f]! + a.im[f]! * s.sin[f]!;
    const xi = a.im[f]! * s.cos[f]! - a.re[f]! * s.sin[f]!;
    re[bin.at] = b[f]! * xr;
    im[bin.at] = b[f]! * xi;
  });
  // the carriers lie in rows 0..R_MAX (the half plane ky ≥ 0): the other rows' transforms are zeros
  fft2(re, im, TILE, true, R_MAX + 1);
  return argmax(re);
}

export interface ImageCandidate {
  id: string;
  key: Uint8Array;
  /** the payload this candidate's marks carry */
  payload: Uint8Array;
}

export interface ImageDetection {
  /** each candidate's score, best first */
  scores: (ImageScore & { id: string })[];
  /** the licence named (p-value × candidates < 1e-9), if any */
  named?: string;
  bound: number;
}

/** Which candidate marked the image, if any: named only when its p-value times the number of candidates is below 1e-9. */
export function detectImageWatermark(img: RawImage | ImageAnalysis, candidates: readonly ImageCandidate[]): ImageDetection {
  if (candidates.length === 0) throw new MlicError('USAGE', 'no candidate licences to test the image against');
  const a = 'data' in img ? analyzeImage(img) : img;
  const bound = ACCUSATION_BOUND / candidates.length;
  const scores = candidates.map((c) => ({ id: c.id, ...scoreImage(a, c.key, c.payload) })).sort((x, y) => x.pValue - y.pValue || y.z - x.z);
  const best = scores[0]!;
  return { scores, bound, ...(best.pValue < bound ? { named: best.id } : {}) };
}

/** PSNR in dB between two images of the same size (colour channels only). */
export function psnr(a: RawImage, b: RawImage): number {
  if (a.width !== b.width || a.height !== b.height || a.channels !== b.channels) throw new RangeError('images differ in size');
  const colour = a.channels >= 3 ? 3 : 1;
  let se = 0;
  let n = 0;
  for (let p = 0; p < a.data.length; p += a.channels)
    for (let k = 0; k < colour; k++) {
      const d = a.data[p + k]! - b.data[p + k]!;
      se += d * d;
      n++;
    }
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255) / (se / n));
}
