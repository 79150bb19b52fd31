/**
 * Decryption of one file of a verified bundle. No plaintext of a chunk is released before its
 * tag verifies; the plaintext SHA-256 is checked at the end. Callers (unpack, run, openBundle)
 * decide where plaintext goes; this module never writes it anywhere itself.
 */
import type { FileHandle } from 'node:fs/promises';
import { MlicError, fromFsError } from '../errors.js';
import { createHasher } from '../crypto/hash.js';
import { constantTimeEqual, wipe } from '../crypto/random.js';
import { chunkCount, chunkNonce, chunkSpan, openChunk, TAG_LEN } from '../crypto/stream.js';
import { CryptoEngine, engineOptions, FILE_WINDOW } from '../crypto/engine.js';
import type { Manifest, ManifestFile } from '../format/manifest.js';
import { fileKey, keyCommitment } from '../keys/derive.js';
import { SyncBehind } from '../util/sync-behind.js';
import type { BundleFile } from './reader.js';
import type { EntrySpan } from './layout.js';
import { forEachChunk, readExactly, writeAll } from './pipeline.js';

/** Checks that a bundle key is the one this bundle was encrypted with (key commitment). */
export function checkBundleKey(manifest: Manifest, bundleKey: Uint8Array): void {
  const c = keyCommitment(bundleKey, manifest.bundleId);
  if (!constantTimeEqual(c, Buffer.from(manifest.encryption.keyCommitment, 'hex')))
    throw new MlicError('KEY_MISMATCH', `the key does not open bundle ${manifest.bundleId} (${manifest.model.name}@${manifest.model.version})`);
}

/** Yields authenticated plaintext chunks of one file. Throws CHUNK_AUTH_FAILED on any damaged chunk. */
export async function* decryptChunks(bundle: BundleFile, span: EntrySpan, f: ManifestFile, bundleKey: Uint8Array): AsyncGenerator<Buffer> {
  const key = fileKey(bundleKey, f.index, f.path);
  const n = chunkCount(f.size, f.chunkSize);
  if (span.size !== f.ciphertextSize) throw new MlicError('BUNDLE_CORRUPT', `entry size of ${f.path} does not match the manifest`);
  const h = createHasher('sha256');
  let next: Promise<Buffer> | undefined;
  const readSealed = (i: number) => {
    const c = chunkSpan(i, f.size, f.chunkSize);
    return bundle.read(span.dataOffset + c.sealedOffset, c.sealedLen);
  };
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

export interface DecryptOptions {
  /** the engine to run on (shared by the files of one unpack or open); default: a private one on this thread */
  engine?: CryptoEngine;
  /** called with the plaintext bytes of each chunk as it is delivered */
  onBytes?: (n: number) => void;
  /** the output's name in errors (decryptFileToHandle); default: the file's path in the bundle */
  outName?: string;
}

/** An engine for decrypting these files `concurrency` at a time (workers by size and cores unless given). The caller closes it. */
export function decryptEngine(files: readonly ManifestFile[], concurrency: number, workers?: number): CryptoEngine {
  const total = files.reduce((a, f) => a + f.size, 0);
  const maxChunk = files.reduce((a, f) => Math.max(a, f.chunkSize), 1);
  return new CryptoEngine(engineOptions(total, maxChunk, concurrency, workers));
}

/**
 * Decrypts one file of an opened, verified bundle into fh (from offset 0), at full speed: several
 * chunks in flight, crypto on the engine's workers, the plaintext SHA-256 in order on a worker.
 * Only chunks whose tag verified are written; the whole file's SHA-256 is compared at the end
 * (DIGEST_MISMATCH), so on any error the caller must discard what was written. fh is flushed to
 * disk as it grows (fdatasync every 64 MiB); the final fsync is the caller's.
 */
export async function decryptFileToHandle(bundle: BundleFile, span: EntrySpan, f: ManifestFile, bundleKey: Uint8Array, fh: FileHandle, opts: DecryptOptions = {}): Promise<void> {
  const sync = new SyncBehind(fh);
  try {
    await decryptFileWith(bundle, span, f, bundleKey, opts, async (plain, pos) => {
      await writeAll(fh, plain, plain.length, pos).catch((e: unknown) => {
        throw fromFsError(e, opts.outName ?? f.path);
      });
      sync.wrote(plain.length);
    });
  } catch (e) {
    await sync.settle().catch(() => undefined);
    throw e;
  }
  await sync.settle().catch((e: unknown) => {
    throw fromFsError(e, opts.outName ?? f.path);
  });
}

/** Decrypts one file of an opened, verified bundle into a new Buffer; on any error the buffer is wiped and nothing is returned. */
export async function decryptFileToBuffer(bundle: BundleFile, span: EntrySpan, f: ManifestFile, bundleKey: Uint8Array, opts: DecryptOptions = {}): Promise<Buffer> {
  const out = Buffer.allocUnsafe(f.size);
  try {
    await decryptFileWith(bundle, span, f, bundleKey, opts, async (plain, pos) => {
      plain.copy(out, pos);
    });
  } catch (e) {
    wipe(out);
    throw e;
  }
  return out;
}

/** The shared loop: deliver(plain, position) gets each authenticated chunk (a view valid until it returns). */
async function decryptFileWith(bundle: BundleFile, span: EntrySpan, f: ManifestFile, bundleKey: Uint8Array, opts: DecryptOptions, deliver: (plain: Buffer, pos: number) => Promise<void>): Promise<void> {
  if (span.size !== f.ciphertextSize) throw new MlicError('BUNDLE_CORRUPT', `entry size of ${f.path} does not match the manifest`);
  const engine = opts.engine ?? new CryptoEngine({ workers: 0, slots: FILE_WINDOW, regionSize: f.chunkSize + TAG_LEN });
  let key: Buffer | undefined;
  try {
    if (engine.regionSize < f.chunkSize + TAG_LEN) throw new MlicError('INTERNAL', 'engine slots are smaller than the chunk size');
    const fk = (key = fileKey(bundleKey, f.index, f.path));
    const n = chunkCount(f.size, f.chunkSize);
    const plainHash = engine.streamHasher();
    const truncated = () => new MlicError('BUNDLE_TRUNCATED', `${bundle.path}: bundle is truncated (in ${f.path})`);
    await forEachChunk(engine, n, async (i, slot, inOrder) => {
      const c = chunkSpan(i, f.size, f.chunkSize);
      await readExactly(bundle.fh, slot.a, c.sealedLen, span.dataOffset + c.sealedOffset, truncated).catch((e: unknown) => {
        throw fromFsError(e, bundle.path);
      });
      if (!(await engine.open(fk, chunkNonce(i, c.last), slot, c.sealedLen)))
        throw new MlicError('CHUNK_AUTH_FAILED', `chunk ${i} of ${f.path} failed authentication: the bundle is damaged or was tampered with`);
      const plain = slot.b.subarray(0, c.plainLen);
      const { done: hashed } = await inOrder(() => ({ done: plainHash.update(slot, 'b', plain.length) }));
      // Handled from now on: the engine may reject it (a worker failed) while this chunk is delivered.
      hashed.catch(() => undefined);
      try {
        await deliver(plain, c.plainOffset);
      } finally {
        await hashed.catch(() => undefined);
      }
      await hashed;
      opts.onBytes?.(plain.length);
    });
    if ((await plainHash.digest()).toString('hex') !== f.sha256) throw new MlicError('DIGEST_MISMATCH', `decrypted ${f.path} does not match its signed SHA-256`);
  } finally {
    if (key) wipe(key);
    if (!opts.engine) await engine.close();
  }
}
