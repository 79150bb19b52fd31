/** mlic verify (bundle): signature, layout and every ciphertext digest, with the public key alone. */
import { MlicError, fromFsError } from '../errors.js';
import { chunkCount, chunkSpan, TAG_LEN } from '../crypto/stream.js';
import { CryptoEngine, defaultConcurrency, engineOptions, FILE_WINDOW } from '../crypto/engine.js';
import { mapLimit } from '../util/limit.js';
import type { MinisignPublicKey } from '../format/minisign.js';
import type { Manifest, ManifestFile } from '../format/manifest.js';
import { BundleFile, parseManifest } from './reader.js';
import { checkTrustedComment, verifyManifestSignature } from './signature.js';
import { ciphertextDigestInit } from './digest.js';
import type { EntrySpan } from './layout.js';
import { forEachChunk, InOrderFold, readExactly } from './pipeline.js';

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
    const onBytes = (n: number) => {
      done += n;
      onProgress?.(done, total);
    };
    const concurrency = defaultConcurrency(manifest.files.length);
    const maxChunk = manifest.files.reduce((a, f) => Math.max(a, f.chunkSize), 1);
    const engine = new CryptoEngine(engineOptions(total, maxChunk, concurrency));
    let results: { path: string; ok: boolean }[];
    try {
      results = await mapLimit(manifest.files, concurrency, async (f) => {
        const digest = await ciphertextDigestOf(bundle, spans[f.index]!, f, onBytes, engine);
        return { path: f.path, ok: digest === f.ciphertextDigest };
      });
    } finally {
      await engine.close();
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

/** Recomputes a file's ciphertext digest (docs/FORMAT.md §3.3), hashing several chunks at once on the engine. */
export async function ciphertextDigestOf(bundle: BundleFile, span: EntrySpan, f: ManifestFile, onBytes?: (n: number) => void, engine?: CryptoEngine): Promise<string> {
  if (span.size !== f.ciphertextSize) throw new MlicError('BUNDLE_CORRUPT', `entry size of ${f.path} does not match the manifest`);
  const eng = engine ?? new CryptoEngine({ workers: 0, slots: FILE_WINDOW, regionSize: f.chunkSize + TAG_LEN });
  try {
    const n = chunkCount(f.size, f.chunkSize);
    const d = ciphertextDigestInit();
    const fold = new InOrderFold<{ h: Buffer; tag: Buffer }>((x) => d.update(x.h, x.tag));
    const truncated = () => new MlicError('BUNDLE_TRUNCATED', `${bundle.path}: bundle is truncated`);
    await forEachChunk(eng, n, async (i, slot) => {
      const c = chunkSpan(i, f.size, f.chunkSize);
      await readExactly(bundle.fh, slot.a, c.sealedLen, span.dataOffset + c.sealedOffset, truncated).catch((e: unknown) => {
        throw fromFsError(e, bundle.path);
      });
      const tag = Buffer.from(slot.a.subarray(c.plainLen, c.sealedLen));
      fold.add(i, { h: await eng.sha256(slot, 'a', c.plainLen), tag });
      onBytes?.(c.sealedLen);
    });
    return d.digest();
  } finally {
    if (!engine) await eng.close();
  }
}
