/**
 * openBundle: the licensed files of a bundle, decrypted in memory, never written to disk.
 *
 *   const model = await openBundle('resnet-2.1.0.mlb');
 *   const session = await ort.InferenceSession.create(model.file('model.onnx'));
 *   model.close();   // wipes the buffers
 */
import { constants as bufferConstants } from 'node:buffer';
import { Readable } from 'node:stream';
import { MlicError } from '../errors.js';
import { wipe } from '../crypto/random.js';
import type { Manifest, ManifestFile } from '../format/manifest.js';
import { authorizeBundle, type AuthorizeOptions } from './licences.js';
import { HostContext } from './context.js';
import { ensureLease, keepLease, type KeptLease } from './leases.js';
import type { LicensePayload } from '../format/license.js';
import { mapLimit } from '../util/limit.js';
import { defaultConcurrency, type CryptoEngine } from '../crypto/engine.js';
import { decryptChunks, decryptEngine, decryptFileToBuffer } from '../bundle/decrypt.js';

export interface OpenBundleOptions extends AuthorizeOptions {
  /** decrypt every released file into memory at open (default true); else use readFile/createReadStream */
  preload?: boolean;
  /**
   * the largest file, in bytes, that file()/readFile() hold in one Buffer (default 4 GiB,
   * at most buffer.constants.MAX_LENGTH); a larger file is refused with USAGE and read
   * with createReadStream(), which holds one chunk at a time
   */
  maxInMemory?: number;
}

/** the default bound on one file decrypted into memory */
export const MAX_IN_MEMORY = 2 ** 32;

export interface OpenedBundle {
  manifest: Manifest;
  license: LicensePayload;
  /** the released files (all, or those of the licensed components) */
  files: Pick<ManifestFile, 'path' | 'size' | 'format' | 'component' | 'sha256'>[];
  /** the decrypted bytes of a released file (preload mode) */
  file(path: string): Buffer;
  /** decrypts a released file into memory now */
  readFile(path: string): Promise<Buffer>;
  /** a stream of a released file's plaintext, decrypted chunk by chunk as it is read */
  createReadStream(path: string): Readable;
  /**
   * floating seats: when the lease this bundle is open under ends (ms, the host's clock), unless a
   * renewal reaches the server first; renewed in the background while open. Past it, file(),
   * readFile() and createReadStream() are refused with LEASE_EXPIRED. Undefined without seats.
   */
  leaseEndsAt(): number | undefined;
  /** wipes preloaded plaintext, closes the bundle and gives a process seat back */
  close(): Promise<void>;
}

export async function openBundle(path: string, options: OpenBundleOptions = {}): Promise<OpenedBundle> {
  const maxInMemory = Math.min(options.maxInMemory ?? MAX_IN_MEMORY, bufferConstants.MAX_LENGTH);
  if (!Number.isSafeInteger(maxInMemory) || maxInMemory < 0) throw new MlicError('USAGE', 'maxInMemory must be a whole number of bytes');
  const a = await authorizeBundle(path, { action: 'openBundle', ...options });
  // floating seats: the decision checked out (or found) the lease; keep it renewed while the bundle is open
  let kept: KeptLease | undefined;
  if (a.license.lease) {
    try {
      const state = new HostContext(options).state;
      const host = (await state.hostIdentity({ create: false }))!;
      kept = await keepLease(state, host, a.license, await ensureLease(state, host, a.license, new Date()));
    } catch (e) {
      wipe(a.bundleKey);
      await a.bundle.close();
      throw e;
    }
  }
  const released = a.files.map((i) => a.manifest.files[i]!);
  const byPath = new Map(released.map((f) => [f.path, f]));
  const cache = new Map<string, Buffer>();
  let closed = false;
  const find = (p: string): ManifestFile => {
    if (closed) throw new MlicError('USAGE', 'the bundle is closed');
    if (kept && Date.now() >= kept.endsAt())
      throw new MlicError('LEASE_EXPIRED', `the lease of licence ${a.license.licenseId} ended at ${new Date(kept.endsAt()).toISOString()} without a renewal (the licence server is unreachable, or the seat was taken)`, {
        hint: 'it resumes once a renewal succeeds; open the bundle again',
      });
    const f = byPath.get(p);
    if (!f) {
      const exists = a.manifest.files.some((x) => x.path === p);
      throw exists
        ? new MlicError('COMPONENT_NOT_LICENSED', `${p} belongs to a component this licence does not grant`)
        : new MlicError('USAGE', `the bundle has no file ${p}`, { details: { files: released.map((x) => x.path) } });
    }
    return f;
  };
  const decrypt = async (f: ManifestFile, engine?: CryptoEngine): Promise<Buffer> => {
    if (f.size > maxInMemory)
      throw new MlicError('USAGE', `${f.path} is ${f.size} bytes, more than one in-memory buffer may hold (${maxInMemory})`, {
        hint: `read it with createReadStream('${f.path}') (open with preload: false), or raise maxInMemory`,
        details: { path: f.path, size: f.size, maxInMemory },
      });
    if (engine) return decryptFileToBuffer(a.bundle, a.spans[f.index]!, f, a.bundleKey, { engine });
    const own = decryptEngine([f], 1);
    try {
      return await decryptFileToBuffer(a.bundle, a.spans[f.index]!, f, a.bundleKey, { engine: own });
    } finally {
      await own.close();
    }
  };
  const readFile = async (p: string): Promise<Buffer> => decrypt(find(p));
  try {
    if (options.preload !== false) {
      // Several files at a time; each buffer is cached as soon as it is complete, so a failure wipes it below.
      const concurrency = defaultConcurrency(released.length);
      const engine = decryptEngine(released, concurrency);
      try {
        await mapLimit(released, concurrency, async (f) => {
          cache.set(f.path, await decrypt(f, engine));
        });
      } finally {
        await engine.close();
      }
    }
  } catch (e) {
    for (const b of cache.values()) wipe(b);
    await kept?.stop();
    await a.bundle.close();
    throw e;
  }
  return {
    manifest: a.manifest,
    license: a.license,
    files: released.map((f) => ({ path: f.path, size: f.size, format: f.format, sha256: f.sha256, ...(f.component ? { component: f.component } : {}) })),
    file(p) {
      find(p);
      const b = cache.get(p);
      if (!b) throw new MlicError('USAGE', `${p} was not preloaded; use readFile() or createReadStream()`);
      return b;
    },
    readFile,
    createReadStream(p) {
      const f = find(p);
      return Readable.from(decryptChunks(a.bundle, a.spans[f.index]!, f, a.bundleKey), { objectMode: false });
    },
    leaseEndsAt: () => kept?.endsAt(),
    async close() {
      if (closed) return;
      closed = true;
      await kept?.stop();
      for (const b of cache.values()) wipe(b);
      cache.clear();
      wipe(a.bundleKey);
      await a.bundle.close();
    },
  };
}
