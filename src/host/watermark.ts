/** The library's entry points for marking outputs on a licensed host. */
import type { LicenceWatermark, MarkedImage } from './handle.js';
import type { EmbedOptions, RawImage } from '../watermark/image.js';
import type { EncodeOptions } from '../watermark/codec.js';
import { MlicError } from '../errors.js';

/**
 * Marks an image for the licence whose watermark `validate()` returned (`result.watermark`): raw
 * pixels, or an encoded PNG, JPEG, WebP or TIFF returned in the same format. The marked output's
 * hash and the payload go to the audit log.
 */
export async function watermarkImage<T extends RawImage | Uint8Array>(image: T, watermark: LicenceWatermark | undefined, opts?: EmbedOptions & EncodeOptions): Promise<MarkedImage<T>> {
  if (!watermark) throw new MlicError('USAGE', 'this licence carries no watermark key (issue it with --require-watermark)');
  return watermark.image(image, opts);
}

/** A text watermark's logits processor for the licence whose watermark `validate()` returned. */
export function createTextWatermark(watermark: LicenceWatermark | undefined, params?: Parameters<LicenceWatermark['text']>[0]): ReturnType<LicenceWatermark['text']> {
  if (!watermark) throw new MlicError('USAGE', 'this licence carries no watermark key (issue it with --require-watermark)');
  return watermark.text(params);
}
