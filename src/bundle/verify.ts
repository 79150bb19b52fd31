/** mlic verify (bundle): signature, layout and every ciphertext digest, with the public key alone. */
import { MlicError } from '../errors.js';
import { sha256Async } from '../crypto/stream.js';
import { TAG_LEN } from '../crypto/stream.js';
import type { MinisignPublicKey } from '../format/minisign.js';
import type { Manifest } from '../format/manifest.js';
import { BundleFile, parseManifest } from './reader.js';
import { checkTrustedComment, verifyManifestSignature } from './signature.js';
import { ciphertextDigestInit } from './digest.js';
import type { EntrySpan } from './layout.js';

export interface VerifyResult {
  manifest: Manifest;
  files: { path: string; ok: boolean }[];
  bytesChecked: number;
}

/** Opens, checks the signature and layout, and returns the trusted manifest. Caller closes. */
export async function openVerified(path: string, pub: MinisignPublicKey): Promise<{ bundle: BundleFile; manifest: Manifest; spans: EntrySpan[] }> {
  const bundle = await BundleFile.open(path);
  try {
    const head = await bundle.readHead();
    const { trustedComment } = verifyManifestSignature(pub, head.manifestBytes, head.signatureBytes);
    const manifest = parseManifest(head.manifestBytes);
    checkTrustedComment(trustedComment, manifest.bundleId, manifest.createdAt);
    const layout = await bundle.checkLayout(manifest, head);
    return { bundle, manifest, spans: layout.files };
  } catch (e) {
    await bundle.close();
    throw e;
  }
}

export async function verifyBundle(path: string, pub: MinisignPublicKey, onProgress?: (done: number, total: number) => void): Promise<VerifyResult> {
  const { bundle, manifest, spans } = await openVerified(path, pub);
  try {
    const total = manifest.files.reduce((a, f) => a + f.ciphertextSize, 0);
    let done = 0;
    const results: { path: string; ok: boolean }[] = [];
    for (const f of manifest.files) {
      const digest = await ciphertextDigestOf(bundle, spans[f.index]!, f.chunkSize, (n) => {
        done += n;
        onProgress?.(done, total);
      });
      results.push({ path: f.path, ok: digest === f.ciphertextDigest });
    }
    const bad = results.filter((r) => !r.ok).map((r) => r.path);
    if (bad.length > 0)
      throw new MlicError('DIGEST_MISMATCH', `ciphertext of ${bad.length === 1 ? bad[0] : `${bad.length} files (${bad.join(', ')})`} does not match the signed manifest`, {
        details: { files: bad },
        hint: 'the bundle was modified or damaged in transit; get a fresh copy from the vendor',
      });
    return { manifest, files: results, bytesChecked: total };
  } finally {
    await bundle.close();
  }
}

/** Recomputes a file's ciphertext digest, hashing several chunks at once on the thread pool. */
async function ciphertextDigestOf(bundle: BundleFile, span: EntrySpan, chunkSize: number, onBytes: (n: number) => void): Promise<string> {
  const sealedLen = chunkSize + TAG_LEN;
  const n = span.size <= TAG_LEN ? 1 : Math.ceil(span.size / sealedLen);
  const d = ciphertextDigestInit();
  const window: { hash: Promise<Buffer>; tag: Buffer }[] = [];
  for (let i = 0; i < n; i++) {
    const off = i * sealedLen;
    const len = Math.min(sealedLen, span.size - off);
    const sealed = await bundle.read(span.dataOffset + off, len);
    window.push({ hash: sha256Async(sealed.subarray(0, len - TAG_LEN)), tag: sealed.subarray(len - TAG_LEN) });
    if (window.length >= 4) {
      const w = window.shift()!;
      d.update(await w.hash, w.tag);
    }
    onBytes(len);
  }
  for (const w of window) d.update(await w.hash, w.tag);
  return d.digest();
}
