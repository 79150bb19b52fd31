/** mlic pack: model file, directory or tar archive -> one encrypted, signed bundle (docs/FORMAT.md). */
import { stat, type FileHandle } from 'node:fs/promises';
import { MlicError, fromFsError } from '../errors.js';
import { randomBytes, wipe } from '../crypto/random.js';
import { DEFAULT_CHUNK, MAX_CHUNK, MIN_CHUNK, ciphertextSize } from '../crypto/stream.js';
import { AEAD_ID, BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, KDF_ID, MAX_LINE, MAX_MANIFEST_BYTES, NAME_RE, assertManifest, serializeManifest, type Manifest, type ManifestFile } from '../format/manifest.js';
import { parseSemver, versionLine } from '../format/semver.js';
import { END_OF_ARCHIVE } from '../format/tar.js';
import { checkModelSet, type ModelFileInfo } from '../format/models/index.js';
import { bundleKeyFromMaster, fileKey, keyCommitment } from '../keys/derive.js';
import type { VendorKey } from '../keys/vendor.js';
import { keyIdHex } from '../format/minisign.js';
import { writeFileAtomic } from '../util/atomic.js';
import { mapLimit } from '../util/limit.js';
import { SyncBehind } from '../util/sync-behind.js';
import { CryptoEngine, defaultConcurrency, engineOptions } from '../crypto/engine.js';
import { collectInputs, type InputRoot } from './collect.js';
import { readOrder, releaseSources, withSource, type SourceFile } from './sources.js';
import { computeLayout, type EntrySpan } from './layout.js';
import { signManifest } from './signature.js';
import { encryptFileInto, type EncryptResult } from './encrypt.js';

export interface PackOptions {
  /** a model file or directory; may be omitted when components are given */
  input?: string;
  /** named components: each a file or directory, stored under "<name>/" */
  components?: { name: string; path: string }[];
  name: string;
  version: string;
  key: VendorKey;
  out: string;
  force?: boolean;
  chunkSize?: number;
  releaseDate?: Date;
  now?: Date;
  onProgress?: (done: number, total: number) => void;
  /** a fixed bundle id (32 hex), for reproducible bundles such as test vectors; default random */
  bundleId?: string;
  /** files encrypted at once (default: os.availableParallelism()); the bundle's bytes do not depend on it */
  concurrency?: number;
  /** crypto worker threads (default: by size and cores, or MLIC_WORKERS; 0: all on this thread) */
  workers?: number;
  /** the licence id a marked bundle is for (mlic mark): keyed from that licence's own tree */
  markedFor?: string;
}

export interface PackResult {
  out: string;
  manifest: Manifest;
  bytesIn: number;
  bytesOut: number;
}

function iso(d: Date): string {
  return new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

export async function pack(opts: PackOptions): Promise<PackResult> {
  if (!NAME_RE.test(opts.name)) throw new MlicError('USAGE', `invalid model name '${opts.name}'`, { hint: 'use letters, digits, ".", "_" and "-" (at most 128)' });
  const sv = parseSemver(opts.version);
  if (!sv) throw new MlicError('USAGE', `'${opts.version}' is not a semantic version`, { hint: 'for example 2.1.0 (see semver.org)' });
  if ((sv.major === 0 ? sv.minor : sv.major) > MAX_LINE) throw new MlicError('USAGE', `version ${opts.version}: mlic keys version lines up to ${MAX_LINE}`);
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK;
  if (!Number.isInteger(chunkSize) || chunkSize < MIN_CHUNK || chunkSize > MAX_CHUNK)
    throw new MlicError('USAGE', `chunk size must be between ${MIN_CHUNK} and ${MAX_CHUNK} bytes`);
  const now = opts.now ?? new Date();
  const releaseDate = opts.releaseDate ?? now;
  if (Number.isNaN(releaseDate.getTime())) throw new MlicError('USAGE', 'invalid release date');
  if (!opts.force) {
    try {
      await stat(opts.out);
      throw new MlicError('IO_EXISTS', `${opts.out}: already exists`, { hint: 'use --force to overwrite' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromFsError(e, opts.out);
    }
  }

  const roots: InputRoot[] = [];
  if (opts.input !== undefined) roots.push({ path: opts.input, prefix: '' });
  for (const c of opts.components ?? []) {
    if (!NAME_RE.test(c.name)) throw new MlicError('USAGE', `invalid component name '${c.name}'`);
    roots.push({ path: c.path, prefix: c.name, component: c.name });
  }
  if (roots.length === 0) throw new MlicError('USAGE', 'nothing to pack: give a model path or --component NAME=PATH');
  const sources = await collectInputs(roots);

  // Detect and validate every file's format before writing anything.
  const infos = new Map<string, ModelFileInfo>();
  for (const f of sources) infos.set(f.rel, await f.inspect());
  const overrides = checkModelSet(infos);

  if (opts.bundleId !== undefined && !/^[0-9a-f]{32}$/.test(opts.bundleId)) throw new MlicError('USAGE', 'bundleId must be 32 lowercase hex digits');
  const bundleId = opts.bundleId ?? randomBytes(16).toString('hex');
  const line = versionLine(sv);
  if (opts.markedFor !== undefined && !/^[0-9a-f]{32}$/.test(opts.markedFor)) throw new MlicError('USAGE', 'markedFor must be a licence id (32 lowercase hex digits)');
  const bKey = bundleKeyFromMaster(opts.key.master, opts.name, line, bundleId, opts.markedFor);
  const files: ManifestFile[] = sources.map((f, index) => ({
    index,
    path: f.rel,
    size: f.size,
    format: overrides.get(f.rel) ?? infos.get(f.rel)!.format,
    ...(f.component !== undefined ? { component: f.component } : {}),
    sha256: '0'.repeat(64),
    chunkSize,
    ciphertextSize: ciphertextSize(f.size, chunkSize),
    ciphertextDigest: '0'.repeat(64),
  }));
  const components = opts.components?.length
    ? opts.components.map((c) => ({ name: c.name, files: files.filter((f) => f.component === c.name).map((f) => f.index) }))
    : undefined;
  const manifest: Manifest = {
    format: BUNDLE_FORMAT,
    formatVersion: BUNDLE_FORMAT_VERSION,
    bundleId,
    createdAt: iso(now),
    model: { name: opts.name, version: opts.version, releaseDate: iso(releaseDate) },
    vendor: { keyId: keyIdHex(opts.key.keyId), ...(opts.key.name ? { name: opts.key.name } : {}) },
    encryption: { aead: AEAD_ID, kdf: KDF_ID, line, keyCommitment: keyCommitment(bKey, bundleId).toString('hex') },
    files,
    ...(components ? { components } : {}),
    ...(opts.markedFor !== undefined ? { marked: { license: opts.markedFor } } : {}),
  };
  assertManifest(manifest);
  const signer = { seed: opts.key.seed, keyId: opts.key.keyId };
  // Digests are fixed-length hex, so the placeholder has exactly the final length.
  const placeholder = serializeManifest(manifest);
  // Refuse before writing what every reader would refuse (docs/FORMAT.md §2 rule 2).
  if (placeholder.length > MAX_MANIFEST_BYTES)
    throw new MlicError('USAGE', `the manifest for ${files.length} files would be ${placeholder.length} bytes, more than the ${MAX_MANIFEST_BYTES} a bundle may carry`, {
      hint: 'pack fewer files per bundle (e.g. one component or shard set per bundle), or pack an archive of the small files as one file',
    });
  const placeholderSig = signManifest(signer, placeholder, bundleId, manifest.createdAt);
  const layout = computeLayout(Math.floor(Date.parse(manifest.createdAt) / 1000), placeholder.length, placeholderSig.length, files.map((f) => f.ciphertextSize));
  const total = sources.reduce((a, f) => a + f.size, 0);
  let done = 0;
  const onBytes = (nb: number) => {
    done += nb;
    opts.onProgress?.(done, total);
  };

  // Files are encrypted several at a time, each into its precomputed place in the bundle, so the
  // bytes are the same whatever the concurrency and whichever file finishes first.
  const concurrency = defaultConcurrency(sources.length, opts.concurrency);
  const engine = new CryptoEngine(engineOptions(total, chunkSize, concurrency, opts.workers));
  try {
    await writeFileAtomic(opts.out, { mode: 0o644, force: opts.force ?? false }, async (out) => {
      await out.write(layout.manifest.header, 0, layout.manifest.header.length, layout.manifest.headerOffset);
      await out.write(layout.signature.header, 0, layout.signature.header.length, layout.signature.headerOffset);
      const sync = new SyncBehind(out);
      // After the first failure no file starts (and the chain of archive members stops).
      let failed = false;
      const one = async (i: number): Promise<void> => {
        if (failed) return;
        const f = sources[i]!;
        const key = fileKey(bKey, i, f.rel);
        try {
          const r = await encryptSourceInto(f, key, chunkSize, out, layout.files[i]!, { engine, sync, onBytes, outName: opts.out });
          files[i]!.sha256 = r.sha256;
          files[i]!.ciphertextDigest = r.ciphertextDigest;
        } catch (e) {
          failed = true;
          throw e;
        } finally {
          wipe(key);
        }
      };
      // Files on disk (and members of a plain .tar, read in place) several at a time; the members
      // of a compressed archive share one forward-only stream, so they go one after another, in
      // archive order, beside them (and within the limit: one at a time means one at a time).
      const order = readOrder(sources);
      const streamed = order.filter((i) => sources[i]!.order !== undefined);
      const direct = order.filter((i) => sources[i]!.order === undefined);
      if (streamed.length === 0) await mapLimit(direct, concurrency, one);
      else if (concurrency === 1) await mapLimit(order, 1, one);
      else {
        const chain = async (): Promise<void> => {
          for (const i of streamed) await one(i);
        };
        const results = await Promise.allSettled([mapLimit(direct, concurrency - 1, one), chain()]);
        for (const r of results) if (r.status === 'rejected') throw r.reason;
      }
      await sync.settle().catch((e: unknown) => {
        throw fromFsError(e, opts.out);
      });
      await out.write(END_OF_ARCHIVE, 0, END_OF_ARCHIVE.length, layout.endOffset);
      const manifestBytes = serializeManifest(manifest);
      const sig = signManifest(signer, manifestBytes, bundleId, manifest.createdAt);
      if (manifestBytes.length !== placeholder.length || sig.length !== placeholderSig.length) throw new MlicError('INTERNAL', 'manifest length changed while packing');
      await out.write(manifestBytes, 0, manifestBytes.length, layout.manifest.dataOffset);
      await out.write(sig, 0, sig.length, layout.signature.dataOffset);
      for (const s of [layout.manifest, layout.signature]) if (s.padding) await out.write(Buffer.alloc(s.padding), 0, s.padding, s.dataOffset + s.size);
    });
  } finally {
    wipe(bKey);
    // Closing an archive's stream cannot change the result; its failure never hides the one that ended the pack.
    await releaseSources(sources).catch(() => undefined);
    await engine.close();
  }
  return { out: opts.out, manifest, bytesIn: total, bytesOut: layout.totalSize };
}

/**
 * One source file into its entry of the bundle: the tar header, the sealed chunks and the
 * padding, all at offsets fixed by the layout. Opens the source itself; safe to run for several
 * files at once.
 */
async function encryptSourceInto(
  f: SourceFile,
  key: Uint8Array,
  chunkSize: number,
  out: FileHandle,
  span: EntrySpan,
  ctx: { engine: CryptoEngine; sync: SyncBehind; onBytes: (n: number) => void; outName: string },
): Promise<EncryptResult> {
  await out.write(span.header, 0, span.header.length, span.headerOffset);
  const r = await withSource(f, (src) => encryptFileInto(src, f.size, key, chunkSize, out, span.dataOffset, ctx.onBytes, f.rel, { engine: ctx.engine, sync: ctx.sync, outName: ctx.outName }));
  if (r.bytesWritten !== span.size) throw new MlicError('INTERNAL', `ciphertext size mismatch for ${f.rel}`);
  if (span.padding) await out.write(Buffer.alloc(span.padding), 0, span.padding, span.dataOffset + span.size);
  return r;
}
