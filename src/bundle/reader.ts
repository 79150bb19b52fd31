/**
 * Reads a bundle file as hostile input: finds and bounds the manifest and its signature, then,
 * once the manifest is trusted, checks every tar header, padding and the archive's exact size
 * against the layout the manifest implies. Bounded memory; positional reads only.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { MlicError, fromFsError } from '../errors.js';
import { BLOCK, END_OF_ARCHIVE, parseHeader } from '../format/tar.js';
import { MANIFEST_ENTRY, MAX_MANIFEST_BYTES, SIGNATURE_ENTRY, type Manifest } from '../format/manifest.js';
import { constantTimeEqual } from '../crypto/random.js';
import { layoutOf, type Layout } from './layout.js';

export interface RawBundleHead {
  manifestBytes: Buffer;
  signatureBytes: Buffer;
}

export class BundleFile {
  private constructor(
    readonly path: string,
    readonly fh: FileHandle,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<BundleFile> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      throw fromFsError(e, path);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new MlicError('IO_NOT_REGULAR', `${path}: not a regular file`);
      return new BundleFile(path, fh, st.size);
    } catch (e) {
      await fh.close();
      throw fromFsError(e, path);
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    if (done < length) throw new MlicError('BUNDLE_TRUNCATED', `${this.path}: bundle is truncated (wanted ${length} bytes at offset ${offset})`);
    return buf;
  }

  /** Reads the manifest and signature entries without trusting them. */
  async readHead(): Promise<RawBundleHead> {
    const head = Buffer.alloc(Math.min(this.size, 2 * BLOCK));
    await this.fh.read(head, 0, head.length, 0);
    if (!looksLikeBundle(head)) throw new MlicError('NOT_A_BUNDLE', `${this.path}: not an mlic bundle`, { hint: 'bundles are made by `mlic pack`' });
    if (this.size < 3 * BLOCK + END_OF_ARCHIVE.length) throw new MlicError('BUNDLE_TRUNCATED', `${this.path}: bundle is truncated (${this.size} bytes)`);
    const h1 = parseHeader(head.subarray(0, BLOCK));
    if (!h1 || h1.name !== MANIFEST_ENTRY || h1.type !== '0')
      throw new MlicError('BUNDLE_CORRUPT', `${this.path}: the manifest's tar header is damaged`);
    if (h1.size === 0 || h1.size > MAX_MANIFEST_BYTES) throw new MlicError('BUNDLE_CORRUPT', `${this.path}: manifest size ${h1.size} is out of bounds`);
    const manifestBytes = await this.read(BLOCK, h1.size);
    const sigHeaderAt = BLOCK + h1.size + ((BLOCK - (h1.size % BLOCK)) % BLOCK);
    const h2 = parseHeader(await this.read(sigHeaderAt, BLOCK));
    if (!h2 || h2.name !== SIGNATURE_ENTRY || h2.type !== '0')
      throw new MlicError('BUNDLE_CORRUPT', `${this.path}: the signature's tar header is damaged`);
    if (h2.size === 0 || h2.size > 64 * 1024) throw new MlicError('BUNDLE_CORRUPT', `${this.path}: signature size ${h2.size} is out of bounds`);
    const signatureBytes = await this.read(sigHeaderAt + BLOCK, h2.size);
    return { manifestBytes, signatureBytes };
  }

  /**
   * Once the manifest is trusted: every header byte, every padding byte, the end-of-archive
   * blocks and the exact size must be what the manifest implies.
   */
  async checkLayout(m: Manifest, head: RawBundleHead): Promise<Layout> {
    const layout = layoutOf(m, head.manifestBytes.length, head.signatureBytes.length);
    if (this.size < layout.totalSize)
      throw new MlicError('BUNDLE_TRUNCATED', `${this.path}: bundle is truncated (${this.size} of ${layout.totalSize} bytes)`);
    if (this.size > layout.totalSize)
      throw new MlicError('BUNDLE_TRAILING_DATA', `${this.path}: ${this.size - layout.totalSize} unexpected bytes after the end of the bundle`);
    const spans = [layout.manifest, layout.signature, ...layout.files];
    for (const s of spans) {
      const got = await this.read(s.headerOffset, s.header.length);
      if (!constantTimeEqual(got, s.header)) throw new MlicError('BUNDLE_CORRUPT', `${this.path}: tar header of ${s.name} is damaged`);
      if (s.padding > 0) {
        const pad = await this.read(s.dataOffset + s.size, s.padding);
        if (pad.some((b) => b !== 0)) throw new MlicError('BUNDLE_CORRUPT', `${this.path}: padding after ${s.name} is not zero`);
      }
    }
    const end = await this.read(layout.endOffset, END_OF_ARCHIVE.length);
    if (end.some((b) => b !== 0)) throw new MlicError('BUNDLE_CORRUPT', `${this.path}: end-of-archive blocks are damaged`);
    return layout;
  }
}

/** A file is treated as a (possibly damaged) bundle when any of three independent markers is present. */
export function looksLikeBundle(head: Buffer): boolean {
  if (head.length >= 12 && head.toString('latin1', 0, 12) === 'mlic-bundle/') return true;
  if (head.length >= 263 && head.toString('latin1', 257, 263) === 'ustar\0' && head.includes('mlic-bundle/')) return true;
  return head.length >= BLOCK + 13 && head.toString('latin1', BLOCK, BLOCK + 13) === '{"bundleId":"';
}

/** What is at `path`: a regular file or not, and whether it looks like a bundle (its first 1 KiB). */
export async function sniffBundle(path: string): Promise<{ regular: boolean; bundle: boolean }> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw fromFsError(e, path);
  }
  try {
    if (!(await fh.stat()).isFile()) return { regular: false, bundle: false };
    const head = Buffer.alloc(1024);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return { regular: true, bundle: looksLikeBundle(head.subarray(0, bytesRead)) };
  } catch (e) {
    throw fromFsError(e, path);
  } finally {
    await fh.close();
  }
}

export { parseManifest } from '../format/manifest.js';
