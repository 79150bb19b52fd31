/**
 * The watermark as a licence uses it: the payload is the licence id's first 8 bytes, the key the
 * licence's watermark key (docs/FORMAT.md §5.2), which the vendor derives again from its master
 * secret to detect.
 */
import { createHash } from 'node:crypto';
import { MlicError } from '../errors.js';
import { watermarkKey } from '../keys/derive.js';
import { decodeImage, encodeImage, type EncodeOptions } from './codec.js';
import { embedImageWatermark, psnr, type EmbedOptions, type RawImage } from './image.js';

/** The 8 payload bytes a licence's image marks carry: the first 16 hex digits of its id. */
export function imagePayload(licenseId: string): Uint8Array {
  if (!/^[0-9a-f]{16}/.test(licenseId)) throw new MlicError('FORMAT_INVALID', `licence id '${licenseId}' does not start with 16 hex digits`);
  return Buffer.from(licenseId.slice(0, 16), 'hex');
}

function isRaw(x: RawImage | Uint8Array): x is RawImage {
  return !(x instanceof Uint8Array);
}

/** Marks raw pixels or an encoded image (returned encoded in its own format) for a licence. */
export async function markImage(
  input: RawImage | Uint8Array,
  key: Uint8Array,
  licenseId: string,
  opts: EmbedOptions & EncodeOptions = {},
): Promise<{ image: RawImage | Buffer; payload: string; outputHash: string; psnr: number }> {
  const payload = imagePayload(licenseId);
  const hex = Buffer.from(payload).toString('hex');
  const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  if (isRaw(input)) {
    const marked = embedImageWatermark(input, key, payload, opts);
    return { image: marked, payload: hex, outputHash: sha(marked.data), psnr: psnr(input, marked) };
  }
  const { image, format } = await decodeImage(input);
  const marked = embedImageWatermark(image, key, payload, opts);
  const out = await encodeImage(marked, opts.format ?? format, opts);
  return { image: out, payload: hex, outputHash: sha(out), psnr: psnr(image, marked) };
}

/** The candidates a vendor tests outputs against: each licence's watermark key, derived again from the master secret, and payload. */
export function watermarkCandidates(licenseIds: readonly string[], master: Uint8Array): { id: string; key: Buffer; payload: Uint8Array }[] {
  return licenseIds.map((id) => ({ id, key: watermarkKey(master, id), payload: imagePayload(id) }));
}
