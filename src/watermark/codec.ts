/**
 * Decoding and encoding images for the watermark, through sharp (libvips, whose binaries ship in
 * the npm package): mlic writes no codec. sharp is loaded on first use, so nothing else pays for it.
 */
import { MlicError } from '../errors.js';
import type { RawImage } from './image.js';

/** the formats an encoded image may be given in; the marked image is written in the same one unless told otherwise */
export const IMAGE_FORMATS = ['png', 'jpeg', 'webp', 'tiff'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];
/** the most pixels an image may have (sharp's limitInputPixels): larger ones are refused before decoding */
export const MAX_PIXELS = 100_000_000;

// sharp's ESM type declarations (0.35) omit the default export its ESM entry has: its call signature, as used here
type SharpFn = (input: Uint8Array, options?: import('sharp').SharpOptions) => import('sharp').Sharp;
let loaded: Promise<SharpFn> | undefined;
async function sharp(): Promise<SharpFn> {
  loaded ??= import('sharp').then((m) => (m as unknown as { default: SharpFn }).default);
  return loaded;
}

function invalid(e: unknown): MlicError {
  if (e instanceof MlicError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  if (/exceeds pixel limit/i.test(msg)) return new MlicError('IMAGE_INVALID', `the image has more than ${MAX_PIXELS.toLocaleString('en-US')} pixels`, { cause: e });
  return new MlicError('IMAGE_INVALID', `not an image mlic can read (${IMAGE_FORMATS.join(', ')}): ${msg.split('\n')[0]}`, { cause: e });
}

export interface DecodedImage {
  image: RawImage;
  format: ImageFormat;
}

/**
 * Decodes PNG, JPEG, WebP or TIFF into 8-bit sRGB pixels (3 or 4 channels),
 * turned upright by its EXIF orientation. Anything else, a truncated or corrupt file, or more than
 * 100 million pixels is IMAGE_INVALID.
 */
export async function decodeImage(buf: Uint8Array): Promise<DecodedImage> {
  const s = await sharp();
  try {
    const meta = await s(buf, { limitInputPixels: MAX_PIXELS, failOn: 'error' }).metadata();
    const format = meta.format as string;
    if (!(IMAGE_FORMATS as readonly string[]).includes(format)) throw new MlicError('IMAGE_INVALID', `${format ?? 'this'} images are not supported (${IMAGE_FORMATS.join(', ')})`);
    const { data, info } = await s(buf, { limitInputPixels: MAX_PIXELS, failOn: 'error' })
      .rotate()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const channels = info.channels === 4 ? 4 : 3;
    if (info.channels !== channels) throw new MlicError('IMAGE_INVALID', `unexpected ${info.channels}-channel pixels`);
    return { image: { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height, channels }, format: format as ImageFormat };
  } catch (e) {
    throw invalid(e);
  }
}

export interface EncodeOptions {
  /** lossy formats' quality (default 95; JPEG without chroma subsampling) */
  quality?: number;
  /** for encoded input: the format to write (default: the input's) */
  format?: ImageFormat;
}

/** The format a file name's extension asks for, if it names one. */
export function formatOfName(name: string): ImageFormat | undefined {
  const ext = /\.([A-Za-z]+)$/.exec(name)?.[1]?.toLowerCase();
  return ext === 'png' ? 'png' : ext === 'jpg' || ext === 'jpeg' ? 'jpeg' : ext === 'webp' ? 'webp' : ext === 'tif' || ext === 'tiff' ? 'tiff' : undefined;
}

/** Encodes raw pixels in `format`. */
export async function encodeImage(img: RawImage, format: ImageFormat, opts: EncodeOptions = {}): Promise<Buffer> {
  const s = await sharp();
  const quality = opts.quality ?? 95;
  const p = s(img.data, { raw: { width: img.width, height: img.height, channels: img.channels } });
  try {
    switch (format) {
      case 'png':
        return await p.png({ compressionLevel: 6 }).toBuffer();
      case 'jpeg':
        return await p.jpeg({ quality, chromaSubsampling: '4:4:4' }).toBuffer();
      case 'webp':
        return await p.webp({ quality }).toBuffer();
      case 'tiff':
        return await p.tiff({ compression: 'lzw' }).toBuffer();
    }
  } catch (e) {
    throw invalid(e);
  }
}
