/**
 * Decryption of one file of a verified bundle. No plaintext of a chunk is released before its
 * tag verifies; the plaintext SHA-256 is checked at the end. Callers (unpack, run, openBundle)
 * decide where plaintext goes; this module never writes it anywhere itself.
 */
import { MlicError } from '../errors.js';
import { createHasher } from '../crypto/hash.js';
import { constantTimeEqual } from '../crypto/random.js';
import { openChunk, TAG_LEN } from '../crypto/stream.js';
import type { Manifest, ManifestFile } from '../format/manifest.js';
import { fileKey, keyCommitment } from '../keys/derive.js';
import type { BundleFile } from './reader.js';
import type { EntrySpan } from './layout.js';

/** Checks that a bundle key is the one this bundle was encrypted with (key commitment). */
export function checkBundleKey(manifest: Manifest, bundleKey: Uint8Array): void {
  const c = keyCommitment(bundleKey, manifest.bundleId);
  if (!constantTimeEqual(c, Buffer.from(manifest.encryption.keyCommitment, 'hex')))
    throw new MlicError('KEY_MISMATCH', `the key does not open bundle ${manifest.bundleId} (${manifest.model.name}@${manifest.model.version})`);
}

/** Yields authenticated plaintext chunks of one file. Throws CHUNK_AUTH_FAILED on any damaged chunk. */
export async function* decryptChunks(bundle: BundleFile, span: EntrySpan, f: ManifestFile, bundleKey: Uint8Array): AsyncGenerator<Buffer> {
  const key = fileKey(bundleKey, f.index, f.path);
  const sealedLen = f.chunkSize + TAG_LEN;
  const n = f.size === 0 ? 1 : Math.ceil(f.size / f.chunkSize);
  if (span.size !== f.ciphertextSize) throw new MlicError('BUNDLE_CORRUPT', `entry size of ${f.path} does not match the manifest`);
  const h = createHasher('sha256');
  let next: Promise<Buffer> | undefined;
  const readSealed = (i: number) => bundle.read(span.dataOffset + i * sealedLen, Math.min(sealedLen, span.size - i * sealedLen));
  next = readSealed(0);
  for (let i = 0; i < n; i++) {
    const sealed = await next!;
    next = i + 1 < n ? readSealed(i + 1) : undefined;
    const plain = openChunk(key, i, i === n - 1, sealed);
    if (!plain) {
      await next?.catch(() => undefined);
      throw new MlicError('CHUNK_AUTH_FAILED', `chunk ${i} of ${f.path} failed authentication: the bundle is damaged or was tampered with`);
    }
    h.update(plain);
    yield plain;
  }
  if (h.digest('hex') !== f.sha256) throw new MlicError('DIGEST_MISMATCH', `decrypted ${f.path} does not match its signed SHA-256`);
}
