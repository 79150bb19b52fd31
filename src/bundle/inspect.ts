/** mlic inspect: the manifest, read without any secret and without trusting it. */
import { MlicError } from '../errors.js';
import { parseSignature } from '../format/minisign.js';
import { keyIdHex } from '../format/minisign.js';
import type { Manifest } from '../format/manifest.js';
import { BundleFile, parseManifest } from './reader.js';
import { layoutOf } from './layout.js';

export interface InspectResult {
  manifest: Manifest;
  signatureKeyId: string;
  size: number;
  /** the size the (unverified) manifest implies; a different size means a truncated or extended file */
  expectedSize: number;
  /** inspect does not verify; `mlic verify --pub` does */
  verified: false;
}

export async function inspectBundle(path: string): Promise<InspectResult> {
  const bundle = await BundleFile.open(path);
  try {
    const head = await bundle.readHead();
    const manifest = parseManifest(head.manifestBytes);
    let signatureKeyId: string;
    try {
      signatureKeyId = keyIdHex(parseSignature(head.signatureBytes.toString('utf8')).keyId);
    } catch {
      throw new MlicError('SIGNATURE_INVALID', `${path}: the manifest signature is malformed`);
    }
    const expectedSize = layoutOf(manifest, head.manifestBytes.length, head.signatureBytes.length).totalSize;
    return { manifest, signatureKeyId, size: bundle.size, expectedSize, verified: false };
  } finally {
    await bundle.close();
  }
}
