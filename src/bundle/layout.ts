/** Where each entry of a bundle lies (docs/FORMAT.md §2). Pure arithmetic over the manifest. */
import { BLOCK, END_OF_ARCHIVE, entryHeader, padLength } from '../format/tar.js';
import { entryName, MANIFEST_ENTRY, SIGNATURE_ENTRY, type Manifest } from '../format/manifest.js';

export interface EntrySpan {
  name: string;
  headerOffset: number;
  header: Buffer;
  dataOffset: number;
  size: number;
  padding: number;
}

export interface Layout {
  manifest: EntrySpan;
  signature: EntrySpan;
  files: EntrySpan[];
  endOffset: number;
  totalSize: number;
}

export function mtimeOf(createdAt: string): number {
  return Math.floor(Date.parse(createdAt) / 1000);
}

export function computeLayout(mtime: number, manifestSize: number, signatureSize: number, fileSizes: number[]): Layout {
  let off = 0;
  const span = (name: string, size: number): EntrySpan => {
    const header = entryHeader(name, size, mtime);
    const s: EntrySpan = { name, headerOffset: off, header, dataOffset: off + header.length, size, padding: padLength(size) };
    off = s.dataOffset + size + s.padding;
    return s;
  };
  const manifest = span(MANIFEST_ENTRY, manifestSize);
  const signature = span(SIGNATURE_ENTRY, signatureSize);
  const files = fileSizes.map((size, i) => span(entryName(i), size));
  return { manifest, signature, files, endOffset: off, totalSize: off + END_OF_ARCHIVE.length };
}

export function layoutOf(m: Manifest, manifestSize: number, signatureSize: number): Layout {
  return computeLayout(mtimeOf(m.createdAt), manifestSize, signatureSize, m.files.map((f) => f.ciphertextSize));
}

export { BLOCK };
