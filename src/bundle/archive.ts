/**
 * Tar archives as pack inputs: `mlic pack model.tar` (or .tar.gz, .tgz) packs the archive's
 * files exactly as packing the extracted directory would (same paths, formats, checks, bytes),
 * without extracting anything to disk and with bounded memory whatever the members' sizes.
 *
 * - A plain .tar is read in place: one walk over its headers (src/format/archive.ts; member
 *   data is skipped by offset, never read), then each member is a slice of the archive, read
 *   by position for format detection and encryption (any order, several at once, no copies).
 * - A .tar.gz / .tgz is read in two streaming passes. The first walks the decompressed stream
 *   and detects each member's format as it passes (the detector reads through a forward-only
 *   reader that keeps each member's first 64 KiB, so that it may look back at the start; a
 *   read further back decompresses the archive again up to that point, which only contrived
 *   files need). The second pass, while pack encrypts, decompresses the archive once more and
 *   hands each member's bytes to the encryptor in archive order (SourceFile.order).
 *
 * Names are refused exactly where a directory pack refuses them (IO_UNSAFE_PATH: absolute,
 * `..`, backslashes, control characters, drive letters; also two members with one path after
 * normalisation, or a path that is both a file and a directory), and so are devices and FIFOs
 * (USAGE) and an archive without regular files (USAGE). Links: in a plain .tar, a hard link or a
 * symbolic link to a regular file inside the archive is packed with its target's content, as a
 * directory pack follows a symbolic link inside the directory; one pointing outside, nowhere,
 * or to a directory is refused as a directory pack refuses it. A compressed archive cannot give
 * a member's bytes twice in one pass, so any link in it is refused, with a hint.
 */
import { createReadStream, type ReadStream, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { createGunzip, type Gunzip } from 'node:zlib';
import { MlicError, fromFsError } from '../errors.js';
import { TarWalker, type ForwardStream, type TarEntry } from '../format/archive.js';
import { MAX_FILES, unsafePathReason } from '../format/manifest.js';
import { inspectModelFile, type ModelFileInfo } from '../format/models/index.js';
import type { ReadSource } from '../util/read-at.js';
import { withSource, type SourceFile } from './sources.js';

/** What a pack root must be named to be read as an archive (then its content must agree). */
export function isArchiveName(path: string): boolean {
  return /\.(tar|tar\.gz|tgz)$/i.test(path);
}

/** A member's first bytes kept while a compressed archive is listed (format detection looks back at them). */
export const RETAIN = 64 << 10;
/** Decompressed bytes buffered ahead of the reader. */
const GZ_AHEAD = 4 << 20;
const GZ_CHUNK = 256 << 10;
const MAX_LINK_HOPS = 40;
/** path components walked while resolving one symbolic link, at most */
const MAX_LINK_STEPS = 16_384;

const HINT_LINKS_GZ = 'store the files themselves (tar --dereference --hard-dereference), or pack an uncompressed .tar (where links are resolved), or extract the archive and pack the directory';

function shownName(archive: string, name: string): string {
  return `${archive}: ${JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name)}`;
}

function unsafe(shown: string, msg: string, hint?: string): MlicError {
  return new MlicError('IO_UNSAFE_PATH', `${shown}: ${msg}`, hint ? { hint } : {});
}

function damaged(msg: string, cause?: unknown): MlicError {
  return new MlicError('FORMAT_INVALID', msg, { hint: 'the archive is damaged or incomplete; download or create it again', ...(cause === undefined ? {} : { cause }) });
}

// ---------------------------------------------------------------------------------------------
// The archive file and its kind

type Kind = 'tar' | 'gzip';

/** Decides by content what a file named like an archive is; anything else is FORMAT_INVALID. */
async function sniff(path: string): Promise<Kind> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw fromFsError(e, path);
  }
  const b = Buffer.alloc(512);
  let n = 0;
  try {
    while (n < b.length) {
      const { bytesRead } = await fh.read(b, n, b.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
  } catch (e) {
    throw fromFsError(e, path);
  } finally {
    await fh.close();
  }
  if (n >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
  const magic = b.toString('latin1', 257, 265);
  if (n === 512 && (magic === 'ustar\u000000' || magic === 'ustar  \u0000' || b.every((x) => x === 0))) return 'tar';
  const other = b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) ? 'xz'
    : b.toString('latin1', 0, 3) === 'BZh' ? 'bzip2'
      : b.readUInt32LE(0) === 0xfd2fb528 ? 'zstd'
        : undefined;
  if (other) throw new MlicError('FORMAT_INVALID', `${path}: ${other}-compressed; mlic reads tar archives plain or gzip-compressed`, { hint: `decompress it first (the .tar inside packs as it is), or recompress it with gzip` });
  throw new MlicError('FORMAT_INVALID', `${path}: not a tar archive (no ustar, pax or GNU tar header, and no gzip magic)`, {
    hint: 'a file named .tar, .tar.gz or .tgz is read as an archive; to pack such a file as it is, put it in a directory and pack the directory',
  });
}

/** The archive on disk, as listed; later opens check it is still that file. */
class ArchiveFile {
  constructor(
    readonly path: string,
    private readonly st: Stats,
  ) {}

  changed(): MlicError {
    return new MlicError('IO_ERROR', `${this.path}: the archive changed while it was being packed`);
  }

  private same(s: Stats): boolean {
    return s.size === this.st.size && s.mtimeMs === this.st.mtimeMs && s.ino === this.st.ino && s.dev === this.st.dev;
  }

  async check(): Promise<void> {
    let s: Stats;
    try {
      s = await stat(this.path);
    } catch (e) {
      throw fromFsError(e, this.path);
    }
    if (!this.same(s)) throw this.changed();
  }

  async open(): Promise<FileHandle> {
    let fh: FileHandle;
    try {
      fh = await open(this.path, 'r');
    } catch (e) {
      throw fromFsError(e, this.path);
    }
    try {
      if (!this.same(await fh.stat())) throw this.changed();
    } catch (e) {
      await fh.close();
      throw fromFsError(e, this.path);
    }
    return fh;
  }
}

// ---------------------------------------------------------------------------------------------
// Byte streams

/** A plain archive as a forward stream: reads by position; skips cost nothing. */
class FileForward implements ForwardStream {
  position = 0;

  constructor(
    private readonly fh: FileHandle,
    private readonly size: number,
    private readonly what: string,
  ) {}

  async read(buf: Buffer, off: number, len: number): Promise<number> {
    const n = Math.min(len, this.size - this.position);
    let got = 0;
    while (got < n) {
      let r: number;
      try {
        ({ bytesRead: r } = await this.fh.read(buf, off + got, n - got, this.position + got));
      } catch (e) {
        throw fromFsError(e, this.what);
      }
      if (r === 0) break;
      got += r;
    }
    this.position += got;
    return got;
  }

  async skip(n: number): Promise<number> {
    const k = Math.max(0, Math.min(n, this.size - this.position));
    this.position += k;
    return k;
  }

  async close(): Promise<void> {}
}

function gzipError(e: unknown, path: string): MlicError {
  if (e instanceof MlicError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.startsWith('Z_')) {
    const what = code === 'Z_BUF_ERROR' ? 'truncated' : 'corrupt';
    return damaged(`${path}: ${what} gzip data (${(e as Error).message})`, e);
  }
  const m = fromFsError(e, path);
  return m instanceof MlicError ? m : new MlicError('IO_ERROR', `${path}: reading failed (${(e as Error | null)?.message ?? String(e)})`, { cause: e });
}

/**
 * A gzip-compressed file, decompressed on the thread pool a little ahead of the reader (at most
 * GZ_AHEAD bytes buffered). Corrupt or truncated gzip data is FORMAT_INVALID; the CRC is checked
 * when the stream is read to its end.
 */
export class GunzipForward implements ForwardStream {
  position = 0;
  private readonly q: Buffer[] = [];
  private qBytes = 0;
  private head = 0;
  private ended = false;
  private error: MlicError | undefined;
  private closing = false;
  private wake: (() => void) | undefined;
  private readonly src: ReadStream;
  private readonly z: Gunzip;

  constructor(private readonly path: string) {
    this.src = createReadStream(path, { highWaterMark: 1 << 20 });
    this.z = createGunzip({ chunkSize: GZ_CHUNK });
    // Our own 'error' listeners, for the streams' whole life: stream.pipeline() reports success
    // once the writable side finishes and detaches its listeners, so an error found while
    // flushing (a truncated file: "unexpected end of file") would be unhandled.
    const onError = (err: unknown) => {
      if (!this.closing) this.error ??= gzipError(err, path);
      this.notify();
    };
    this.src.on('error', (err) => {
      onError(err);
      this.z.destroy();
    });
    this.z.on('error', onError);
    this.src.pipe(this.z);
    this.z.on('data', (c: Buffer) => {
      this.q.push(c);
      this.qBytes += c.length;
      if (this.qBytes >= GZ_AHEAD) this.z.pause();
      this.notify();
    });
    this.z.on('end', () => {
      this.ended = true;
      this.notify();
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Waits for buffered data; false at the end of the stream. */
  private async avail(): Promise<boolean> {
    while (this.qBytes === 0) {
      if (this.error) throw this.error;
      if (this.ended) return false;
      if (this.closing) throw new MlicError('INTERNAL', `${this.path}: read after close`);
      if (this.z.isPaused()) this.z.resume();
      await new Promise<void>((r) => (this.wake = r));
    }
    return true;
  }

  private take(n: number, buf?: Buffer, off = 0): number {
    const c = this.q[0]!;
    const k = Math.min(n, c.length - this.head);
    if (buf) c.copy(buf, off, this.head, this.head + k);
    this.head += k;
    this.qBytes -= k;
    this.position += k;
    if (this.head === c.length) {
      this.q.shift();
      this.head = 0;
    }
    if (this.qBytes < GZ_AHEAD / 2 && this.z.isPaused()) this.z.resume();
    return k;
  }

  async read(buf: Buffer, off: number, len: number): Promise<number> {
    let got = 0;
    while (got < len && (await this.avail())) got += this.take(len - got, buf, off + got);
    return got;
  }

  async skip(n: number): Promise<number> {
    let got = 0;
    while (got < n && (await this.avail())) got += this.take(n - got);
    return got;
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.q.length = 0;
    this.qBytes = 0;
    this.z.destroy();
    this.src.destroy();
    if (!this.src.closed) await new Promise<void>((r) => this.src.once('close', () => r()));
    this.notify();
  }
}

/**
 * One member of an archive, read from a forward-only stream positioned at the member's data.
 * Reads are served in the order they were issued. The first `retain` bytes are kept as they go
 * by, so that a read may go back into them; a read further back opens a new stream (`reopen`)
 * and skips to it, which is correct but decompresses the archive again. `failure` records an
 * error of the archive itself (corrupt, truncated), as opposed to one of the caller's.
 */
export class StreamedMember implements ReadSource {
  failure: unknown;
  /** how many times a read went back beyond the kept start (each one a new stream) */
  restreams = 0;
  private cursor = 0;
  private readonly prefix: Buffer;
  private prefixLen = 0;
  private own: ForwardStream | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private stream: ForwardStream,
    readonly size: number,
    /** where the member's data starts in the stream (reopen() starts at 0) */
    private readonly dataOffset: number,
    private readonly reopen: () => ForwardStream,
    retain: number,
    /** the member, for messages */
    private readonly what: string,
  ) {
    this.prefix = Buffer.alloc(Math.min(retain, size));
  }

  /** Whether every byte has been read (or skipped) through. */
  get complete(): boolean {
    return this.cursor === this.size;
  }

  read(buf: Buffer, off: number, len: number, pos: number): Promise<{ bytesRead: number }> {
    const p = this.queue.then(() => this.readNow(buf, off, len, pos));
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async readNow(buf: Buffer, off: number, len: number, pos: number): Promise<{ bytesRead: number }> {
    if (this.failure) throw this.failure;
    if (len <= 0 || pos >= this.size) return { bytesRead: 0 };
    const n = Math.min(len, this.size - pos);
    let done = 0;
    if (pos < this.prefixLen) {
      done = Math.min(n, this.prefixLen - pos);
      this.prefix.copy(buf, off, pos, pos + done);
    }
    if (done < n) {
      const at = pos + done;
      if (at < this.cursor) await this.restream(at);
      else if (at > this.cursor) await this.pull(undefined, 0, at - this.cursor);
      await this.pull(buf, off + done, n - done);
    }
    return { bytesRead: n };
  }

  private fail(e: unknown): never {
    this.failure ??= e;
    throw this.failure;
  }

  private truncated(): never {
    this.fail(damaged(`${this.what}: truncated: the archive ends inside this member (after ${this.cursor} of its ${this.size} bytes)`));
  }

  /** Reads (buf) or skips (no buf) n bytes at the cursor, keeping the start as it goes by. */
  private async pull(buf: Buffer | undefined, off: number, n: number): Promise<void> {
    while (n > 0) {
      let got: number;
      try {
        if (this.cursor === this.prefixLen && this.prefixLen < this.prefix.length) {
          got = await this.stream.read(this.prefix, this.prefixLen, Math.min(n, this.prefix.length - this.prefixLen));
          if (buf) this.prefix.copy(buf, off, this.prefixLen, this.prefixLen + got);
          this.prefixLen += got;
        } else if (buf) got = await this.stream.read(buf, off, n);
        else got = await this.stream.skip(n);
      } catch (e) {
        this.fail(e);
      }
      if (got === 0) this.truncated();
      this.cursor += got;
      off += got;
      n -= got;
    }
  }

  private async restream(at: number): Promise<void> {
    this.restreams++;
    const s = this.reopen();
    try {
      const want = this.dataOffset + at;
      if ((await s.skip(want)) < want) this.truncated();
    } catch (e) {
      await s.close();
      this.fail(e);
    }
    await this.own?.close();
    this.own = s;
    this.stream = s;
    this.cursor = at;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.own?.close();
    this.own = undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The index of an archive's members: path rules and links

interface Node {
  type: 'file' | 'hardlink' | 'symlink';
  entry: TarEntry;
  /** normalised path inside the archive */
  path: string;
  shown: string;
  /** a hard link's target (an earlier member) */
  target?: Node;
}

/**
 * A member's name as a directory pack would see it after extraction: "./" and empty segments
 * dropped (tar -C dir . writes "./x"; "a//b" and "a/./b" are a/b), then the same rules as a
 * directory's file names. '' is the archive's root.
 */
function normalise(raw: string, shown: string, what = 'unsafe file name'): string {
  if (raw.startsWith('/')) throw unsafe(shown, `${what} (absolute path)`);
  const segs = raw.split('/').filter((s) => s !== '' && s !== '.');
  if (segs.includes('..')) throw unsafe(shown, `${what} ('..' in path)`);
  const p = segs.join('/');
  if (p === '') return '';
  const why = unsafePathReason(p);
  if (why) throw unsafe(shown, `${what} (${why})`);
  return p;
}

class ArchiveIndex {
  readonly nodes = new Map<string, Node>();
  /** directories: members, and the parents of every member */
  readonly dirs = new Set<string>();
  readonly order: Node[] = [];
  private count = 0;

  constructor(private readonly archive: string) {}

  private conflict(shown: string, p: string): MlicError {
    return unsafe(shown, `${JSON.stringify(p)} is both a file and a directory in the archive`);
  }

  add(e: TarEntry): Node | undefined {
    const shown = shownName(this.archive, e.name);
    if (e.type === 'special') throw new MlicError('IO_NOT_REGULAR', `${shown}: not a regular file (${e.typeName}: a device or pipe)`);
    const p = normalise(e.name, shown);
    if (e.type === 'directory') {
      if (p === '') return undefined;
      if (this.nodes.has(p)) throw this.conflict(shown, p);
      this.addDirs(p, shown);
      return undefined;
    }
    if (p === '') throw unsafe(shown, 'unsafe file name (empty path)');
    if (this.nodes.has(p)) throw unsafe(shown, `two members have the path ${JSON.stringify(p)} (after normalisation)`, 'an archive must name each file once; re-create it');
    if (this.dirs.has(p)) throw this.conflict(shown, p);
    const slash = p.lastIndexOf('/');
    if (slash > 0) this.addDirs(p.slice(0, slash), shown);
    if (++this.count > MAX_FILES) throw new MlicError('USAGE', `${this.archive}: too many files (more than ${MAX_FILES})`);
    const node: Node = { type: e.type, entry: e, path: p, shown };
    if (e.type === 'hardlink') {
      const t = normalise(e.linkName!, shown, 'hard link target');
      const target = this.nodes.get(t);
      if (!target) throw unsafe(shown, `hard link to ${JSON.stringify(t)}, which is not a file earlier in the archive`);
      node.target = target;
    }
    this.nodes.set(p, node);
    this.order.push(node);
    return node;
  }

  /** Records p and its parents as directories; none of them may be a file. */
  private addDirs(p: string, shown: string): void {
    for (let q = p; q !== '' && !this.dirs.has(q); q = q.slice(0, Math.max(0, q.lastIndexOf('/')))) {
      if (this.nodes.has(q)) throw this.conflict(shown, q);
      this.dirs.add(q);
    }
  }

  /** The regular file a member finally names: itself, a hard link's target, or where a symbolic link leads inside the archive. */
  resolve(n: Node): Node {
    let node = n;
    while (node.type === 'hardlink') node = node.target!;
    return node.type === 'symlink' ? this.follow(node, n) : node;
  }

  /** Resolves a symbolic link's target component by component, as realpath would in the extracted directory. */
  private follow(link: Node, from: Node): Node {
    let hops = 0;
    const target = link.entry.linkName!;
    const outside = () => unsafe(from.shown, `symbolic link points outside the archive (${JSON.stringify(target)})`, 'store the file itself in the archive (tar --dereference), or add what the link points to');
    const nowhere = () => unsafe(from.shown, `symbolic link points nowhere (${JSON.stringify(target)} is not in the archive)`);
    if (target.startsWith('/')) throw outside();
    const cur = link.path.split('/').slice(0, -1);
    let todo = target.split('/');
    for (let steps = 0; todo.length > 0; steps++) {
      if (steps > MAX_LINK_STEPS) throw unsafe(from.shown, 'too many symbolic links');
      const s = todo.shift()!;
      if (s === '' || s === '.') continue;
      if (s === '..') {
        if (cur.length === 0) throw outside();
        cur.pop();
        continue;
      }
      cur.push(s);
      const p = cur.join('/');
      let node = this.nodes.get(p);
      while (node?.type === 'hardlink') node = node.target!;
      if (!node) {
        if (!this.dirs.has(p)) throw nowhere();
        continue;
      }
      if (node.type === 'symlink') {
        if (++hops > MAX_LINK_HOPS) throw unsafe(from.shown, 'too many symbolic links');
        const t = node.entry.linkName!;
        if (t.startsWith('/')) throw outside();
        cur.pop();
        todo = [...t.split('/'), ...todo];
        continue;
      }
      // A regular file: it must be the last component.
      if (todo.some((x) => x !== '')) throw nowhere();
      return node;
    }
    throw unsafe(from.shown, 'symbolic link to a directory or special file is not supported');
  }
}

// ---------------------------------------------------------------------------------------------
// Second pass over a compressed archive

/**
 * Gives the members of a compressed archive to the encryptor, one at a time, from one
 * decompression of the archive when they are opened in archive order. Each open re-reads the
 * headers up to its member and checks they are what the first pass saw; after the last member
 * the rest of the archive is read and checked (end-of-archive marker, gzip CRC).
 */
class GzipReplay {
  private stream: GunzipForward | undefined;
  private walker: TarWalker | undefined;
  private lock: Promise<void> = Promise.resolve();

  constructor(
    private readonly arch: ArchiveFile,
    private readonly last: TarEntry,
  ) {}

  readonly release = async (): Promise<void> => {
    const s = this.stream;
    this.stream = undefined;
    this.walker = undefined;
    await s?.close();
  };

  async open(e: TarEntry, shown: string): Promise<ReadSource> {
    let unlock!: () => void;
    const prev = this.lock;
    this.lock = new Promise<void>((r) => (unlock = r));
    await prev;
    try {
      // Past this member's header already (it was read, or a later one was): start again.
      if (!this.stream || this.stream.position > e.headerOffset) {
        await this.release();
        await this.arch.check();
        this.stream = new GunzipForward(this.arch.path);
        this.walker = new TarWalker(this.stream, this.arch.path);
      }
      for (;;) {
        const x = await this.walker!.nextEntry();
        if (!x || x.headerOffset > e.headerOffset) throw this.arch.changed();
        if (x.headerOffset < e.headerOffset) continue;
        if (x.name !== e.name || x.type !== e.type || x.size !== e.size || x.dataOffset !== e.dataOffset) throw this.arch.changed();
        break;
      }
    } catch (err) {
      await this.release().catch(() => undefined);
      unlock();
      throw err;
    }
    const m = new StreamedMember(this.stream, e.size, e.dataOffset, () => new GunzipForward(this.arch.path), 0, shown);
    return {
      read: (buf, off, len, pos) => m.read(buf, off, len, pos),
      close: async () => {
        try {
          await m.close();
          if (!m.complete) await this.release();
          else if (e === this.last) {
            try {
              while (await this.walker!.nextEntry());
            } finally {
              await this.release();
            }
          }
        } finally {
          unlock();
        }
      },
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Listing

export interface ArchiveRoot {
  path: string;
  /** prefix for the relative paths (component bundles), '' for none */
  prefix: string;
  component?: string;
}

/**
 * Lists an archive's files as SourceFiles (in archive order; the caller sorts). `order` numbers
 * the members of compressed archives across all roots.
 */
export async function collectArchive(root: ArchiveRoot, st: Stats, order: { next: number }): Promise<SourceFile[]> {
  const kind = await sniff(root.path);
  const arch = new ArchiveFile(root.path, st);
  const index = new ArchiveIndex(root.path);
  const withPrefix = (rel: string) => (root.prefix ? `${root.prefix}/${rel}` : rel);
  const inspected = new Map<Node, { info: ModelFileInfo } | { error: unknown }>();

  let fh: FileHandle | undefined;
  let stream: ForwardStream;
  if (kind === 'tar') {
    fh = await arch.open();
    stream = new FileForward(fh, st.size, root.path);
  } else stream = new GunzipForward(root.path);
  try {
    const walker = new TarWalker(stream, root.path);
    for (let e = await walker.nextEntry(); e; e = await walker.nextEntry()) {
      const node = index.add(e);
      if (kind === 'gzip' && node?.type === 'file') {
        const m = new StreamedMember(stream, e.size, e.dataOffset, () => new GunzipForward(root.path), RETAIN, node.shown);
        try {
          inspected.set(node, { info: await inspectModelFile(m, e.size, withPrefix(node.path)) });
        } catch (err) {
          // The archive's own defects stop the listing; a member's (MODEL_INVALID) is reported
          // when pack asks, in the same order as a directory pack would report it.
          if (m.failure) throw m.failure;
          if (!(err instanceof MlicError)) throw err;
          inspected.set(node, { error: err });
        } finally {
          await m.close();
        }
      }
    }
  } finally {
    await stream.close();
    await fh?.close();
  }

  const comp = root.component !== undefined ? { component: root.component } : {};
  const out: SourceFile[] = [];
  const files = index.order.filter((n) => n.type === 'file');
  const replay = kind === 'gzip' && files.length > 0 ? new GzipReplay(arch, files[files.length - 1]!.entry) : undefined;
  for (const n of index.order) {
    const target = index.resolve(n); // throws for a link that a directory pack would refuse too
    if (n !== target && kind === 'gzip')
      throw unsafe(n.shown, `${n.type === 'hardlink' ? 'hard' : 'symbolic'} link (to ${JSON.stringify(n.entry.linkName)}) in a compressed archive, which mlic reads in one pass and so cannot resolve`, HINT_LINKS_GZ);
    const rel = withPrefix(n.path);
    const e = target.entry;
    if (replay) {
      const r = inspected.get(target)!;
      out.push({
        rel,
        size: e.size,
        ...comp,
        order: order.next++,
        inspect: async () => {
          if ('error' in r) throw r.error;
          return r.info;
        },
        open: () => replay.open(e, n.shown),
        release: replay.release,
      });
    } else {
      const f: SourceFile = {
        rel,
        size: e.size,
        ...comp,
        inspect: () => withSource(f, (src) => inspectModelFile(src, e.size, rel)),
        open: async () => new Slice(await arch.open(), e.dataOffset, e.size),
      };
      out.push(f);
    }
  }
  if (out.length === 0) throw new MlicError('USAGE', `${root.path}: the archive has no regular files, nothing to pack`);
  return out;
}

/** A member of a plain archive: a window onto the archive file, read by position. */
class Slice implements ReadSource {
  constructor(
    private readonly fh: FileHandle,
    private readonly base: number,
    private readonly size: number,
  ) {}

  async read(buf: Buffer, off: number, len: number, pos: number): Promise<{ bytesRead: number }> {
    const n = Math.max(0, Math.min(len, this.size - pos));
    if (n === 0) return { bytesRead: 0 };
    const { bytesRead } = await this.fh.read(buf, off, n, this.base + pos);
    return { bytesRead };
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}
