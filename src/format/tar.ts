/**
 * The strict tar subset used by bundles (POSIX ustar, docs/FORMAT.md §2): regular files only,
 * names under 100 bytes without a prefix, mode 0644, uid/gid 0, empty user and group names,
 * sizes in octal; a pax extended header ('x') carrying `size` precedes an entry of 8 GiB or more.
 * Writer output is deterministic, so a reader can recompute and compare every header byte.
 */
export const BLOCK = 512;
const MAX_OCTAL_SIZE = 8 ** 11 - 1; // 8 GiB - 1
/** The latest mtime an 11-digit octal field holds (2242-03-16T12:56:31Z); the earliest is 0 (1970). */
export const MAX_TAR_MTIME = 8 ** 11 - 1;

export function padLength(n: number): number {
  return (BLOCK - (n % BLOCK)) % BLOCK;
}

function writeString(buf: Buffer, off: number, len: number, s: string): void {
  const b = Buffer.from(s, 'utf8');
  if (b.length > len) throw new RangeError(`tar field too long: ${s}`);
  b.copy(buf, off);
}

function writeOctal(buf: Buffer, off: number, len: number, n: number): void {
  const s = n.toString(8).padStart(len - 1, '0');
  if (s.length > len - 1) throw new RangeError('tar octal field overflow');
  buf.write(s + '\0', off, len, 'ascii');
}

function header(name: string, size: number, type: '0' | 'x', mtime: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  writeString(h, 0, 100, name);
  writeOctal(h, 100, 8, 0o644);
  writeOctal(h, 108, 8, 0);
  writeOctal(h, 116, 8, 0);
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, mtime);
  h.write('        ', 148, 8, 'ascii');
  h.write(type, 156, 1, 'ascii');
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

/** The header block(s) for one regular file entry (a pax header first when size >= 8 GiB). */
export function entryHeader(name: string, size: number, mtime: number): Buffer {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError('tar entry size');
  if (Buffer.byteLength(name) >= 100) throw new RangeError('tar entry name too long');
  if (size <= MAX_OCTAL_SIZE) return header(name, size, '0', mtime);
  let rec = ` size=${size}\n`;
  let len = rec.length + 1;
  while (String(len).length + rec.length !== len) len = String(len).length + rec.length;
  rec = `${len}${rec}`;
  const data = Buffer.alloc(BLOCK);
  data.write(rec, 0, 'ascii');
  const paxName = `PaxHeaders/${name}`.slice(0, 99);
  return Buffer.concat([header(paxName, rec.length, 'x', mtime), data, header(name, 0, '0', mtime)]);
}

/** Two zero blocks end the archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

export interface ParsedHeader {
  name: string;
  size: number;
  type: string;
}

/** Parses one header block loosely (to find sizes); returns undefined when it is not a valid ustar header. */
export function parseHeader(h: Uint8Array): ParsedHeader | undefined {
  if (h.length !== BLOCK) return undefined;
  const b = Buffer.from(h.buffer, h.byteOffset, h.length);
  if (b.toString('latin1', 257, 263) !== 'ustar\0') return undefined;
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : b[i]!;
  const stored = parseOctal(b.subarray(148, 156));
  if (stored === undefined || stored !== sum) return undefined;
  const nameEnd = b.indexOf(0, 0);
  const name = b.toString('utf8', 0, nameEnd < 0 || nameEnd > 100 ? 100 : nameEnd);
  const size = parseOctal(b.subarray(124, 136));
  if (size === undefined) return undefined;
  return { name, size, type: String.fromCharCode(b[156]!) };
}

function parseOctal(field: Uint8Array): number | undefined {
  const s = Buffer.from(field).toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (!/^[0-7]{1,12}$/.test(s)) return undefined;
  const n = parseInt(s, 8);
  return Number.isSafeInteger(n) ? n : undefined;
}
