/**
 * Ordinary tar archives as pack inputs (`mlic pack model.tar`, `.tar.gz`, `.tgz`): a strict,
 * forward-only walk over an archive's headers. This is not the bundle container (src/format/tar.ts
 * writes that, deterministically); it reads what other tools wrote: POSIX ustar, pax (`x`, `g`)
 * and GNU (`L`, `K`, base-256 sizes) archives.
 *
 * Each 512-byte header block is decoded by node-tar's Header (octal and base-256 numbers, the
 * ustar prefix, the checksum, type names). The walk itself, pax records and GNU long names are
 * handled here, because pack needs what node-tar's Parser does not give: pull-based reading (the
 * caller reads or skips each member's data at its own pace, with bounded memory), offsets (so that
 * a plain .tar is read in place, by position) and strictness (node-tar's Parser skips damaged
 * headers and unknown members with a warning; here every defect is an error).
 *
 * Every input is hostile. A defect is MlicError('FORMAT_INVALID') naming the archive, the offset
 * and what is wrong: a bad checksum or magic, a truncated header or member, a member type mlic
 * does not read (sparse, multi-volume, ...), malformed pax records, data after the end-of-archive
 * marker, or no end-of-archive marker at all (a truncated archive). Names are returned as written:
 * path safety is the caller's (src/bundle/archive.ts).
 */
import { Header } from 'tar/header';
import { MlicError } from '../errors.js';

export const TAR_BLOCK = 512;
/** The largest pax extended header or GNU long name read (node-tar's own default limit). */
export const MAX_META = 1 << 20;

/** A forward-only byte stream: a plain archive read by position, or a decompressed one. */
export interface ForwardStream {
  /** bytes consumed so far (read or skipped) */
  readonly position: number;
  /** reads up to `len` bytes into `buf` at `off`; returns how many, 0 only at the end */
  read(buf: Buffer, off: number, len: number): Promise<number>;
  /** discards up to `n` bytes; returns how many (fewer only at the end) */
  skip(n: number): Promise<number>;
  close(): Promise<void>;
}

export type TarEntryType = 'file' | 'directory' | 'hardlink' | 'symlink' | 'special';

export interface TarEntry {
  /** the member's name as written (after pax `path` or a GNU long name); not normalised */
  name: string;
  type: TarEntryType;
  /** node-tar's name of the header type, for messages (e.g. 'CharacterDevice') */
  typeName: string;
  /** bytes of data that follow the header (for a file: its size) */
  size: number;
  /** the target of a link, as written */
  linkName?: string;
  /** where the member's first header block (pax or GNU long name, if any) starts */
  headerOffset: number;
  /** where its data starts in the (decompressed) archive */
  dataOffset: number;
}

const MAGIC_POSIX = 'ustar\u000000';
const MAGIC_GNU = 'ustar  \u0000';

/** Why these member types are refused, for the message. */
const UNSUPPORTED: Record<string, string> = {
  S: 'a GNU sparse file (re-create the archive without --sparse)',
  D: 'a GNU incremental-dump directory',
  M: 'a multi-volume continuation',
  V: 'a volume label',
  N: 'an old GNU long name',
  A: 'a Solaris ACL',
  I: 'an inode-only member',
};

function padLength(n: number): number {
  return (TAR_BLOCK - (n % TAR_BLOCK)) % TAR_BLOCK;
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** True when a raw size field (124..136) holds zero (octal or base-256), whatever node-tar made of it. */
function rawSizeIsZero(block: Buffer): boolean {
  const f = block.subarray(124, 136);
  if ((f[0]! & 0x80) !== 0) return f.subarray(1).every((b) => b === 0);
  return /^[0 ]*$/.test(f.toString('latin1').replace(/\0.*$/s, ''));
}

/**
 * Walks an archive's members in order. Each nextEntry() first skips whatever the caller left
 * unread of the previous member's data (the caller may read part of it from the same stream,
 * never beyond it), then reads the next member's headers.
 */
export class TarWalker {
  private nextHeader = 0;
  private ended = false;
  private readonly block = Buffer.alloc(TAR_BLOCK);

  constructor(
    private readonly s: ForwardStream,
    /** the archive, for messages */
    private readonly what: string,
  ) {}

  private bad(msg: string, hint?: string): MlicError {
    return new MlicError('FORMAT_INVALID', `${this.what}: ${msg}`, { hint: hint ?? 'the archive is damaged or incomplete; download or create it again' });
  }

  /** Skips forward to `to`; the archive ending first means a member's data is cut off. */
  private async seek(to: number): Promise<void> {
    const n = to - this.s.position;
    if (n < 0) throw new MlicError('INTERNAL', `${this.what}: read past a member's data (at ${this.s.position}, next header at ${to})`);
    if (n > 0 && (await this.s.skip(n)) < n) throw this.bad(`truncated: the archive ends at ${this.s.position} bytes, inside a member's data (which runs to ${to})`);
  }

  /** Reads exactly n bytes; returns how many it got (fewer only at the end). */
  private async readFull(buf: Buffer, n: number): Promise<number> {
    let got = 0;
    while (got < n) {
      const k = await this.s.read(buf, got, n - got);
      if (k === 0) break;
      got += k;
    }
    return got;
  }

  /** The data of a pax header or GNU long name (at most MAX_META bytes), then its padding. */
  private async meta(size: number, at: number, what: string): Promise<Buffer> {
    if (size > MAX_META) throw this.bad(`${what} at offset ${at} is ${size} bytes, more than the ${MAX_META} allowed`);
    const data = Buffer.alloc(size);
    if ((await this.readFull(data, size)) < size) throw this.bad(`truncated: the archive ends inside the ${what} at offset ${at}`);
    await this.seek(this.s.position + padLength(size));
    return data;
  }

  /**
   * Parses pax records ("<len> <key>=<value>\n", the length counting the whole record) into `into`;
   * an empty value removes the key (POSIX).
   */
  private pax(data: Buffer, at: number, into: Map<string, string>): void {
    let off = 0;
    while (off < data.length) {
      if (data[off] === 0 && isZero(data.subarray(off))) break; // NUL padding after the last record
      const sp = data.indexOf(0x20, off);
      const lenText = sp < 0 ? '' : data.toString('latin1', off, sp);
      const len = /^[1-9][0-9]{0,7}$/.test(lenText) ? Number(lenText) : NaN;
      if (!(len > sp - off + 2) || off + len > data.length || data[off + len - 1] !== 0x0a) throw this.bad(`malformed pax record at offset ${off} of the extended header at ${at}`);
      const rec = data.subarray(sp + 1, off + len - 1);
      const eq = rec.indexOf(0x3d);
      if (eq <= 0) throw this.bad(`malformed pax record at offset ${off} of the extended header at ${at} (no key)`);
      const key = rec.toString('utf8', 0, eq);
      const value = rec.toString('utf8', eq + 1);
      if (key.startsWith('GNU.sparse.')) throw this.bad(`the member at offset ${at} is a GNU sparse file, which mlic does not read`, 're-create the archive without --sparse');
      if (value === '') into.delete(key);
      else into.set(key, value);
      off += len;
    }
  }

  private header(at: number): Header {
    const b = this.block;
    const magic = b.toString('latin1', 257, 265);
    if (magic !== MAGIC_POSIX && magic !== MAGIC_GNU) {
      if (at === 0) throw this.bad('not a tar archive (no ustar, pax or GNU tar header at its start)', 'mlic reads POSIX (ustar, pax) and GNU tar archives, plain or gzip-compressed');
      throw this.bad(`no tar header at offset ${at} (bad magic)`);
    }
    let h: Header;
    try {
      h = new Header(b);
    } catch (e) {
      throw this.bad(`invalid tar header at offset ${at} (${(e as Error).message})`);
    }
    if (!h.cksumValid) throw this.bad(`tar header checksum mismatch at offset ${at}`);
    return h;
  }

  /** After the first zero block at `at`: the second one, then nothing but zeros to the end. */
  private async finish(at: number): Promise<void> {
    if ((await this.readFull(this.block, TAR_BLOCK)) < TAR_BLOCK) throw this.bad(`truncated: the archive ends at ${this.s.position} bytes, inside its end-of-archive marker (two zero blocks at ${at})`);
    if (!isZero(this.block)) throw this.bad(`a zero block at offset ${at} is followed by more data (two archives joined, or a damaged one)`);
    const buf = Buffer.alloc(64 << 10);
    for (;;) {
      const n = await this.s.read(buf, 0, buf.length);
      if (n === 0) break;
      if (!isZero(buf.subarray(0, n))) throw this.bad(`data after the end-of-archive marker (at offset ${this.s.position - n} or later)`, 'the archive is damaged, or is several archives joined together; create it again');
    }
    this.ended = true;
  }

  /** The next member, or null after the end-of-archive marker (and only zeros after it). */
  async nextEntry(): Promise<TarEntry | null> {
    if (this.ended) return null;
    await this.seek(this.nextHeader);
    const ex = new Map<string, string>();
    let longName: string | undefined;
    let longLink: string | undefined;
    let first = -1;
    for (;;) {
      const at = this.s.position;
      const got = await this.readFull(this.block, TAR_BLOCK);
      if (got === 0 && at > 0) throw this.bad(`truncated: the archive ends at ${at} bytes without its end-of-archive marker`);
      if (got < TAR_BLOCK) {
        if (at === 0) throw this.bad(`not a tar archive (${got} bytes, shorter than one tar header)`);
        throw this.bad(`truncated: the archive ends inside the header at offset ${at}`);
      }
      if (isZero(this.block)) {
        if (first >= 0) throw this.bad(`the extended header at offset ${first} is followed by the end of the archive, not by a member`);
        await this.finish(at);
        return null;
      }
      if (first < 0) first = at;
      const h = this.header(at);
      const t = h.typeKey;
      const rawType = String.fromCharCode(this.block[156]!);
      const ownSize = h.size;
      if (ownSize === undefined || !Number.isSafeInteger(ownSize)) throw this.bad(`invalid size in the tar header at offset ${at}`);
      if (t === 'x' || t === 'X') {
        this.pax(await this.meta(ownSize, at, 'pax extended header'), at, ex);
        continue;
      }
      if (t === 'g') {
        const g = new Map<string, string>();
        this.pax(await this.meta(ownSize, at, 'pax global header'), at, g);
        // Global comments, times and owners (git archive writes a commit id) mean nothing to pack;
        // a global path, link or size would change how every member is read.
        for (const k of ['path', 'linkpath', 'size']) if (g.has(k)) throw this.bad(`the pax global header at offset ${at} sets "${k}" for every member, which mlic does not support`);
        continue;
      }
      if (t === 'L' || t === 'K') {
        const data = await this.meta(ownSize, at, 'GNU long name');
        const z = data.indexOf(0);
        const v = data.toString('utf8', 0, z < 0 ? data.length : z);
        if (t === 'L') longName = v;
        else longLink = v;
        continue;
      }
      let type: TarEntryType;
      if (t === '0' || t === '' || t === '7') type = 'file';
      else if (t === '5') type = 'directory';
      else if (t === '1') type = 'hardlink';
      else if (t === '2') type = 'symlink';
      else if (t === '3' || t === '4' || t === '6') type = 'special';
      else {
        const why = UNSUPPORTED[rawType] ?? `of unknown type ${JSON.stringify(rawType)}`;
        throw this.bad(`the member at offset ${at} is ${why}, which mlic does not read`, 'create the archive with GNU tar, bsdtar or any POSIX tar from ordinary files and directories');
      }
      let size = ownSize;
      const paxSize = ex.get('size');
      if (paxSize !== undefined) {
        if (!/^[0-9]{1,16}$/.test(paxSize) || !Number.isSafeInteger(Number(paxSize))) throw this.bad(`invalid pax size ${JSON.stringify(paxSize.slice(0, 40))} for the member at offset ${at}`);
        size = Number(paxSize);
      }
      if (type === 'directory' && (!rawSizeIsZero(this.block) || size !== 0)) throw this.bad(`the directory member at offset ${at} has data (${size} bytes)`);
      const name = ex.get('path') ?? longName ?? h.path ?? '';
      if (name === '') throw this.bad(`the member at offset ${at} has an empty name`);
      // Old archives mark a directory as a file whose name ends with "/" (node-tar does the same).
      if (type === 'file' && name.endsWith('/')) {
        if (size !== 0) throw this.bad(`the member at offset ${at} is named like a directory (${JSON.stringify(name.slice(0, 80))}) but has data`);
        type = 'directory';
      }
      const entry: TarEntry = { name, type, typeName: h.type, size, headerOffset: first, dataOffset: this.s.position };
      if (type === 'hardlink' || type === 'symlink') {
        const link = ex.get('linkpath') ?? longLink ?? h.linkpath ?? '';
        if (link === '') throw this.bad(`the link member at offset ${at} has no target`);
        entry.linkName = link;
      }
      this.nextHeader = entry.dataOffset + size + padLength(size);
      return entry;
    }
  }
}
