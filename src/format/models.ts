/**
 * Model file detection and validation: safetensors (+ sharded index), GGUF, ONNX (+ external
 * data), JSON, text, binary.
 *
 * Every input is hostile. Invariants:
 * - memory stays bounded: reads go through a 64 KiB window at explicit offsets; tensor payloads
 *   (safetensors data, GGUF tensor data, ONNX raw_data and other length-delimited fields) are
 *   skipped by offset, never read. The only larger reads are a safetensors header (at most
 *   100,000,000 bytes, the safetensors library's own limit) and a JSON file (at most 64 MiB).
 * - every length and count is checked against the bytes left in its enclosing structure before
 *   it is used, and against a sane cap;
 * - a malformed model file throws MlicError('MODEL_INVALID') naming the file and what is wrong;
 *   a failed read throws MlicError('IO_ERROR'). Nothing else escapes.
 *
 * The rules follow what the real loaders enforce (safetensors' Metadata::validate, llama.cpp's
 * gguf reader, onnxruntime's external-data handling), so a file accepted here is one they load.
 */
import type { ReadAt } from '../util/read-at.js';
import { MlicError, fromFsError } from '../errors.js';

export type ModelFormat = 'onnx' | 'onnx-external-data' | 'safetensors' | 'safetensors-index' | 'gguf' | 'json' | 'text' | 'binary';

export interface ModelFileInfo {
  format: ModelFormat;
  /** short facts worth showing, e.g. { tensors: 3, ggufVersion: 3 } — no huge arrays */
  details: Record<string, string | number | boolean>;
  /** ONNX only (always set for ONNX, possibly empty): the distinct external-data `location` values named by its tensors (relative paths, as written in the file) */
  externalData?: string[];
  /** safetensors index only: the shard file names listed in weight_map */
  shards?: string[];
}

// ---------------------------------------------------------------------------------------------
// Limits

const WINDOW = 64 * 1024;
/** safetensors' MAX_HEADER_SIZE (the library rejects anything larger). */
const SAFETENSORS_MAX_HEADER = 100_000_000;
/** JSON files are parsed whole only up to this size. */
const JSON_MAX = 64 * 1024 * 1024;
const TEXT_SNIFF = 4096;
const GGUF_MAX_KV = 1_000_000;
const GGUF_MAX_TENSORS = 10_000_000;
const GGUF_MAX_KEY = 65_535;
const GGUF_MAX_DIMS = 8;
const GGUF_MAX_ARRAY_DEPTH = 8;
const GGUF_DEFAULT_ALIGNMENT = 32;
const PB_MAX_DEPTH = 100;
const ONNX_MAX_LOCATION = 4096;
/** Strings kept for details (names, producers) are read only up to this length. */
const SHORT_STRING = 256;

// ---------------------------------------------------------------------------------------------
// Helpers

/** Quotes a value from the file for an error message: JSON-escaped, shortened. */
function q(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}

const HINT_DAMAGED = 'the file is damaged or not the model format its name says; re-export it';
const HINT_LOCATION = "a model's external data and shards must be named by relative paths inside the model's folder; re-export it so";

function invalid(name: string, msg: string, hint = HINT_DAMAGED): MlicError {
  return new MlicError('MODEL_INVALID', `${name}: ${msg}`, { hint });
}

const utf8Fatal = new TextDecoder('utf-8', { fatal: true });
const utf8Lenient = new TextDecoder('utf-8');

function decodeUtf8(b: Uint8Array): string | null {
  try {
    return utf8Fatal.decode(b);
  } catch {
    return null;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

async function readFully(fh: ReadAt, buf: Buffer, len: number, pos: number, name: string): Promise<void> {
  let done = 0;
  while (done < len) {
    let n: number;
    try {
      ({ bytesRead: n } = await fh.read(buf, done, len - done, pos + done));
    } catch (e) {
      const m = fromFsError(e, name);
      throw m instanceof MlicError ? m : new MlicError('IO_ERROR', `${name}: read failed`, { cause: e });
    }
    if (n === 0) throw new MlicError('IO_ERROR', `${name}: file ended at ${pos + done} bytes while reading (it changed while being read?)`);
    done += n;
  }
}

/** Buffered positional reader over a file (or archive member) with a 64 KiB window. */
class Reader {
  pos = 0;
  private readonly buf = Buffer.alloc(WINDOW);
  private bufStart = 0;
  private bufLen = 0;

  constructor(
    private readonly fh: ReadAt,
    readonly size: number,
    readonly name: string,
  ) {}

  invalid(msg: string, hint?: string): MlicError {
    return invalid(this.name, msg, hint);
  }

  /** Makes bytes [pos, pos+n) available in the window (n <= WINDOW), or throws when the file (or `end`) is shorter. */
  async need(n: number, what: string, end = this.size): Promise<void> {
    if (n > end - this.pos) {
      throw this.invalid(`truncated: ${what} needs ${n} bytes at offset ${this.pos} but only ${Math.max(0, end - this.pos)} remain`);
    }
    if (this.pos >= this.bufStart && this.pos + n <= this.bufStart + this.bufLen) return;
    const len = Math.min(WINDOW, this.size - this.pos);
    await readFully(this.fh, this.buf, len, this.pos, this.name);
    this.bufStart = this.pos;
    this.bufLen = len;
  }

  private at(): number {
    return this.pos - this.bufStart;
  }

  async u8(what: string): Promise<number> {
    await this.need(1, what);
    const v = this.buf[this.at()]!;
    this.pos += 1;
    return v;
  }

  async u32(what: string): Promise<number> {
    await this.need(4, what);
    const v = this.buf.readUInt32LE(this.at());
    this.pos += 4;
    return v;
  }

  async u64(what: string): Promise<bigint> {
    await this.need(8, what);
    const v = this.buf.readBigUInt64LE(this.at());
    this.pos += 8;
    return v;
  }

  /** Copies n bytes at pos; the caller has bounded n. */
  async bytes(n: number, what: string): Promise<Buffer> {
    if (n <= WINDOW) {
      await this.need(n, what);
      const out = Buffer.from(this.buf.subarray(this.at(), this.at() + n));
      this.pos += n;
      return out;
    }
    if (n > this.size - this.pos) await this.need(n, what); // throws "truncated"
    const out = Buffer.alloc(n);
    await readFully(this.fh, out, n, this.pos, this.name);
    this.pos += n;
    return out;
  }

  skip(n: number | bigint, what: string, end = this.size): void {
    if (BigInt(n) > BigInt(end - this.pos)) {
      throw this.invalid(`truncated: ${what} of ${n} bytes at offset ${this.pos} runs past the end (${Math.max(0, end - this.pos)} bytes remain)`);
    }
    this.pos += Number(n);
  }

  /**
   * Protobuf base-128 varint, at most 10 bytes, not past `end`. Values above 2^53 come back
   * approximate, which is harmless: they only ever fail bounds checks or equality with small enums.
   */
  async varint(end: number, what: string): Promise<number> {
    const avail = Math.min(10, end - this.pos);
    if (avail <= 0) throw this.invalid(`truncated: ${what} at offset ${this.pos}`);
    await this.need(avail, what, end);
    let result = 0;
    let mul = 1;
    const base = this.at();
    for (let i = 0; i < avail; i++) {
      const b = this.buf[base + i]!;
      if (i === 9 && b > 1) throw this.invalid(`${what} at offset ${this.pos} overflows 64 bits`);
      result += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) {
        this.pos += i + 1;
        return result;
      }
    }
    if (avail < 10) throw this.invalid(`truncated: ${what} at offset ${this.pos} runs past the end of its message`);
    throw this.invalid(`${what} at offset ${this.pos} is longer than 10 bytes`);
  }
}

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Reads through an open file handle (or any ReadAt, e.g. an archive member) with bounded memory (never reads a whole multi-GB file into
 * memory; positional reads, big tensor payloads skipped by offset). `name` is the relative path
 * (used for extension hints such as .json/.onnx/.gguf/.safetensors). Throws
 * MlicError('MODEL_INVALID', message naming the file and what is wrong) for malformed
 * safetensors/GGUF/ONNX/safetensors-index files, MlicError('IO_ERROR') when reading fails.
 */
export async function inspectModelFile(fh: ReadAt, size: number, name: string): Promise<ModelFileInfo> {
  if (!Number.isSafeInteger(size) || size < 0) throw new MlicError('IO_ERROR', `${name}: invalid file size ${size}`);
  const r = new Reader(fh, size, name);
  const lower = name.toLowerCase();
  const head = size > 0 ? await r.bytes(Math.min(size, TEXT_SNIFF), 'file start') : Buffer.alloc(0);
  r.pos = 0;

  if (lower.endsWith('.onnx')) return inspectOnnx(r);

  const ggufMagic = head.length >= 4 && head.toString('latin1', 0, 4) === 'GGUF';
  if (lower.endsWith('.gguf')) {
    if (!ggufMagic) throw r.invalid('does not start with the GGUF magic');
    return inspectGguf(r);
  }
  // Without the extension, "GGUF" followed by a small version number is a GGUF file; a text file
  // that merely starts with the word "GGUF" is not.
  if (ggufMagic && (head.length < 8 || head.readUInt32LE(4) <= 0xffff)) return inspectGguf(r);

  if (lower.endsWith('.safetensors')) return (await inspectSafetensors(r, false))!;
  if (lower.endsWith('.safetensors.index.json')) return inspectSafetensorsIndex(r);
  if (looksLikeSafetensors(head, size)) {
    const st = await inspectSafetensors(r, true);
    if (st) return st;
  }
  if (lower.endsWith('.json')) {
    const j = await inspectJson(r, head);
    if (j) return j;
  }
  return { format: isText(head, size > head.length) ? 'text' : 'binary', details: {} };
}

/**
 * Pure: given all relative (POSIX) paths in a packed directory and each file's info, checks the
 * cross-file rules: every ONNX external-data location is a relative path without `..`, absolute
 * paths, drive letters, backslashes or control characters, and resolves (relative to the ONNX
 * file's own folder) to a file present in the set that is not itself an ONNX model; every shard
 * of a safetensors index is present (relative to the index's folder) and is a safetensors file.
 * Throws MlicError('MODEL_INVALID') listing every problem. Returns path -> format overrides:
 * files named as ONNX external data that were detected as plain binary/text/json become
 * 'onnx-external-data'.
 */
export function checkModelSet(files: Map<string, ModelFileInfo>): Map<string, ModelFormat> {
  const overrides = new Map<string, ModelFormat>();
  const problems: string[] = [];
  for (const [path, info] of files) {
    const dir = posixDirname(path);
    for (const loc of info.externalData ?? []) {
      const why = relativeLocationProblem(loc);
      if (why) {
        problems.push(`${path}: external data location ${q(loc)} ${why}`);
        continue;
      }
      const target = joinRel(dir, loc);
      const t = files.get(target);
      if (!t) problems.push(`${path}: external data file ${q(loc)} is missing (expected ${q(target)} among the packed files)`);
      else if (target === path || t.format === 'onnx') problems.push(`${path}: external data location ${q(loc)} names an ONNX model, not a data file`);
      else if (t.format === 'binary' || t.format === 'text' || t.format === 'json' || t.format === 'onnx-external-data') overrides.set(target, 'onnx-external-data');
    }
    for (const shard of info.shards ?? []) {
      const why = relativeLocationProblem(shard);
      if (why) {
        problems.push(`${path}: shard ${q(shard)} ${why}`);
        continue;
      }
      const target = joinRel(dir, shard);
      const t = files.get(target);
      if (!t) problems.push(`${path}: shard ${q(shard)} is missing (expected ${q(target)} among the packed files)`);
      else if (t.format !== 'safetensors') problems.push(`${path}: shard ${q(shard)} is not a safetensors file (detected ${t.format})`);
    }
  }
  if (problems.length > 0) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
    throw new MlicError('MODEL_INVALID', `${problems[0]}${more}`, {
      details: { problems: problems.slice(0, 100) },
      hint: "pack a model together with the files it names (external data, shards), at the same relative paths inside the model's folder",
    });
  }
  return overrides;
}

/** Why a relative location (ONNX external data, safetensors shard) is unsafe, or null when it is fine. */
function relativeLocationProblem(loc: string): string | null {
  if (loc.length === 0) return 'is empty';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(loc)) return 'contains control characters';
  if (loc.includes('\\')) return 'contains a backslash';
  if (loc.startsWith('/')) return 'is an absolute path';
  if (/^[A-Za-z]:/.test(loc)) return 'starts with a drive letter';
  const segs = loc.split('/');
  if (segs.includes('..')) return "points outside the model's folder (contains '..')";
  if (segs.every((s) => s === '' || s === '.')) return 'does not name a file';
  if (segs[segs.length - 1] === '' || segs[segs.length - 1] === '.') return 'names a folder, not a file';
  return null;
}

function posixDirname(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

function joinRel(dir: string, loc: string): string {
  const parts = dir.split('/').filter((s) => s !== '');
  for (const s of loc.split('/')) if (s !== '' && s !== '.') parts.push(s);
  return parts.join('/');
}

// ---------------------------------------------------------------------------------------------
// Text, JSON

function isText(head: Buffer, truncated: boolean): boolean {
  for (const b of head) {
    // NUL and C0 controls other than \t \n \v \f \r and ESC mark binary data.
    if (b < 0x20 && !(b >= 0x09 && b <= 0x0d) && b !== 0x1b) return false;
    if (b === 0x7f) return false;
  }
  try {
    // stream: a multi-byte character cut off at the end of the sniffed window is fine.
    new TextDecoder('utf-8', { fatal: true }).decode(head, { stream: truncated });
    return true;
  } catch {
    return false;
  }
}

function stripBom(s: string): string {
  return s.charCodeAt(0) === 0xfeff ? s.slice(1) : s;
}

async function readJson(r: Reader): Promise<{ ok: true; value: unknown } | { ok: false; why: string }> {
  r.pos = 0;
  const text = decodeUtf8(await r.bytes(r.size, 'JSON text'));
  if (text === null) return { ok: false, why: 'is not valid UTF-8' };
  try {
    return { ok: true, value: JSON.parse(stripBom(text)) };
  } catch (e) {
    return { ok: false, why: `is not valid JSON (${(e as Error).message.slice(0, 120)})` };
  }
}

async function inspectJson(r: Reader, head: Buffer): Promise<ModelFileInfo | null> {
  if (r.size > JSON_MAX) {
    // Too big to parse here: call it JSON when it starts like JSON and its start is UTF-8 text.
    const start = stripBom(utf8Lenient.decode(head)).trimStart();
    if ((start.startsWith('{') || start.startsWith('[')) && isText(head, true)) return { format: 'json', details: { validated: false } };
    return null;
  }
  const j = await readJson(r);
  if (!j.ok) return null;
  const v = j.value;
  const details: Record<string, string | number | boolean> = {
    topLevel: Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v,
  };
  if (isPlainObject(v)) details.keys = Object.keys(v).length;
  else if (Array.isArray(v)) details.items = v.length;
  return { format: 'json', details };
}

async function inspectSafetensorsIndex(r: Reader): Promise<ModelFileInfo> {
  if (r.size > JSON_MAX) throw r.invalid(`safetensors index is ${r.size} bytes, more than the ${JSON_MAX} allowed`);
  const j = await readJson(r);
  if (!j.ok) throw r.invalid(`safetensors index ${j.why}`);
  const v = j.value;
  if (!isPlainObject(v)) throw r.invalid('safetensors index is not a JSON object');
  const wm = v.weight_map;
  if (!isPlainObject(wm)) throw r.invalid('safetensors index has no "weight_map" object');
  const shards = new Set<string>();
  let tensors = 0;
  for (const [tensor, file] of Object.entries(wm)) {
    if (typeof file !== 'string') throw r.invalid(`weight_map entry ${q(tensor)} is not a file name`);
    const why = relativeLocationProblem(file);
    if (why) throw r.invalid(`weight_map entry ${q(tensor)}: shard ${q(file)} ${why}`, HINT_LOCATION);
    shards.add(file);
    tensors++;
  }
  const details: Record<string, string | number | boolean> = { tensors, shards: shards.size };
  const meta = v.metadata;
  if (meta !== undefined && meta !== null && !isPlainObject(meta)) throw r.invalid('safetensors index "metadata" is not an object');
  if (isPlainObject(meta) && typeof meta.total_size === 'number' && Number.isFinite(meta.total_size)) details.totalSize = meta.total_size;
  return { format: 'safetensors-index', details, shards: [...shards].sort() };
}

// ---------------------------------------------------------------------------------------------
// safetensors

/** Bits per element, from the safetensors library's Dtype::bitsize. */
const SAFETENSORS_DTYPE_BITS: Record<string, number> = {
  BOOL: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8,
  I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, C64: 64, F64: 64, I64: 64, U64: 64,
};

function looksLikeSafetensors(head: Buffer, size: number): boolean {
  if (head.length < 9 || size < 10) return false;
  const n = head.readBigUInt64LE(0);
  return n >= 2n && n <= BigInt(Math.min(SAFETENSORS_MAX_HEADER, size - 8)) && head[8] === 0x7b; // '{'
}

/**
 * Validates a safetensors file the way safetensors' read_metadata + Metadata::validate do: a
 * UTF-8 JSON object header; tensors sorted by offset must tile the data section exactly (no gaps,
 * no overlaps, ending at the end of the file); each tensor's byte length equals
 * product(shape) * dtype size. `sniffed`: detected by content, not name — a header that is not
 * JSON then means "not safetensors" (null), not an error.
 */
async function inspectSafetensors(r: Reader, sniffed: boolean): Promise<ModelFileInfo | null> {
  if (r.size < 8) throw r.invalid(`${r.size} bytes is too short for a safetensors file (needs an 8-byte header length)`);
  r.pos = 0;
  const n64 = await r.u64('header length');
  if (n64 > BigInt(SAFETENSORS_MAX_HEADER)) throw r.invalid(`safetensors header length ${n64} is larger than the ${SAFETENSORS_MAX_HEADER} bytes allowed`);
  const n = Number(n64);
  if (n > r.size - 8) throw r.invalid(`truncated: safetensors header length ${n} is larger than the ${r.size - 8} bytes after it`);
  const text = decodeUtf8(await r.bytes(n, 'safetensors header'));
  let header: unknown;
  try {
    if (text === null) throw new Error('header is not valid UTF-8');
    header = JSON.parse(text);
  } catch (e) {
    if (sniffed) return null;
    throw r.invalid(`safetensors header is not valid JSON (${(e as Error).message.slice(0, 120)})`);
  }
  if (!isPlainObject(header)) {
    if (sniffed) return null;
    throw r.invalid('safetensors header is not a JSON object');
  }
  const dataSize = r.size - 8 - n;
  const entries: { name: string; begin: number; end: number }[] = [];
  const dtypes = new Set<string>();
  let metadataKeys = 0;
  let parameters = 0n;
  for (const [key, v] of Object.entries(header)) {
    if (key === '__metadata__') {
      if (!isPlainObject(v)) throw r.invalid('safetensors "__metadata__" is not an object');
      for (const [mk, mv] of Object.entries(v)) {
        if (typeof mv !== 'string') throw r.invalid(`safetensors "__metadata__" value ${q(mk)} is not a string`);
        metadataKeys++;
      }
      continue;
    }
    const t = `tensor ${q(key)}`;
    if (!isPlainObject(v)) throw r.invalid(`${t} is not an object`);
    const { dtype, shape, data_offsets: offs } = v;
    if (typeof dtype !== 'string' || !(Object.hasOwn(SAFETENSORS_DTYPE_BITS, dtype))) {
      throw r.invalid(`${t} has unknown dtype ${typeof dtype === 'string' ? q(dtype) : typeof dtype}`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw r.invalid(`${t} shape is not a list of non-negative integers`);
    }
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)) {
      throw r.invalid(`${t} data_offsets is not a pair of non-negative integers`);
    }
    const [begin, end] = offs as [number, number];
    if (begin > end) throw r.invalid(`${t} data_offsets [${begin}, ${end}] run backwards`);
    if (end > dataSize) throw r.invalid(`${t} data_offsets end ${end} is past the ${dataSize}-byte data section`);
    const elements = (shape as number[]).reduce((a, d) => a * BigInt(d), 1n);
    const bits = elements * BigInt(SAFETENSORS_DTYPE_BITS[dtype]!);
    if (bits % 8n !== 0n) throw r.invalid(`${t} (${dtype} ${JSON.stringify(shape)}) does not fill a whole number of bytes`);
    if (bits / 8n !== BigInt(end - begin)) {
      throw r.invalid(`${t} is ${dtype} ${JSON.stringify(shape)} = ${bits / 8n} bytes but data_offsets span ${end - begin}`);
    }
    entries.push({ name: key, begin, end });
    dtypes.add(dtype);
    parameters += elements;
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const e of entries) {
    if (e.begin !== expected) {
      throw r.invalid(`tensor ${q(e.name)} starts at data offset ${e.begin}, expected ${expected} (tensors must cover the data without gaps or overlaps)`);
    }
    expected = e.end;
  }
  if (expected !== dataSize) throw r.invalid(`tensors cover ${expected} bytes but the data section has ${dataSize} (incomplete or trailing data)`);
  const details: Record<string, string | number | boolean> = {
    tensors: entries.length,
    dtypes: [...dtypes].sort().join(','),
    headerBytes: n,
    dataBytes: dataSize,
    metadataKeys,
  };
  if (parameters <= BigInt(Number.MAX_SAFE_INTEGER)) details.parameters = Number(parameters);
  return { format: 'safetensors', details };
}

// ---------------------------------------------------------------------------------------------
// GGUF

/** ggml types: [name, block size (elements), bytes per block], from ggml / gguf-py GGML_QUANT_SIZES. */
const GGML_TYPES: Record<number, readonly [string, number, number]> = {
  0: ['F32', 1, 4], 1: ['F16', 1, 2], 2: ['Q4_0', 32, 18], 3: ['Q4_1', 32, 20],
  6: ['Q5_0', 32, 22], 7: ['Q5_1', 32, 24], 8: ['Q8_0', 32, 34], 9: ['Q8_1', 32, 40],
  10: ['Q2_K', 256, 84], 11: ['Q3_K', 256, 110], 12: ['Q4_K', 256, 144], 13: ['Q5_K', 256, 176],
  14: ['Q6_K', 256, 210], 15: ['Q8_K', 256, 292], 16: ['IQ2_XXS', 256, 66], 17: ['IQ2_XS', 256, 74],
  18: ['IQ3_XXS', 256, 98], 19: ['IQ1_S', 256, 50], 20: ['IQ4_NL', 32, 18], 21: ['IQ3_S', 256, 110],
  22: ['IQ2_S', 256, 82], 23: ['IQ4_XS', 256, 136], 24: ['I8', 1, 1], 25: ['I16', 1, 2],
  26: ['I32', 1, 4], 27: ['I64', 1, 8], 28: ['F64', 1, 8], 29: ['IQ1_M', 256, 56], 30: ['BF16', 1, 2],
  // 31-33: Q4_0_4_4, Q4_0_4_8, Q4_0_8_8 (Q4_0 blocks, repacked); written by llama.cpp in late 2024.
  31: ['Q4_0_4_4', 32, 18], 32: ['Q4_0_4_8', 32, 18], 33: ['Q4_0_8_8', 32, 18],
  34: ['TQ1_0', 256, 54], 35: ['TQ2_0', 256, 66], 39: ['MXFP4', 32, 17],
};

/** GGUF metadata value types -> fixed byte size (strings 8 and arrays 9 are variable). */
const GGUF_FIXED: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const GGUF_STRING = 8;
const GGUF_ARRAY = 9;
const GGUF_U32 = 4;
/** Keys whose values are reported in details. */
const GGUF_KEPT: Record<string, string> = {
  'general.architecture': 'architecture',
  'general.name': 'name',
  'general.file_type': 'fileType',
  'general.alignment': 'alignment',
};

async function ggufStringLength(r: Reader, what: string): Promise<number> {
  const len = await r.u64(`${what} length`);
  if (len > BigInt(r.size - r.pos)) throw r.invalid(`truncated: ${what} at offset ${r.pos - 8} claims ${len} bytes but only ${r.size - r.pos} remain`);
  return Number(len);
}

/** Reads a value of `type`; returns it when `keep` and it is a scalar number or short string, else skips it. */
async function ggufValue(r: Reader, type: number, key: string, depth: number, keep: boolean): Promise<string | number | boolean | undefined> {
  const fixed = GGUF_FIXED[type];
  if (fixed !== undefined) {
    if (!keep && type !== 7) {
      r.skip(fixed, `value of ${q(key)}`);
      return undefined;
    }
    const b = await r.bytes(fixed, `value of ${q(key)}`);
    switch (type) {
      case 0: return b.readUInt8(0);
      case 1: return b.readInt8(0);
      case 2: return b.readUInt16LE(0);
      case 3: return b.readInt16LE(0);
      case 4: return b.readUInt32LE(0);
      case 5: return b.readInt32LE(0);
      case 6: return b.readFloatLE(0);
      case 7:
        if (b[0]! > 1) throw r.invalid(`bool value of ${q(key)} is ${b[0]}, not 0 or 1`);
        return b[0] === 1;
      case 10: return Number(b.readBigUInt64LE(0));
      case 11: return Number(b.readBigInt64LE(0));
      default: return b.readDoubleLE(0);
    }
  }
  if (type === GGUF_STRING) {
    const len = await ggufStringLength(r, `string value of ${q(key)}`);
    if (keep && len <= SHORT_STRING) return utf8Lenient.decode(await r.bytes(len, `string value of ${q(key)}`));
    r.skip(len, `string value of ${q(key)}`);
    return undefined;
  }
  if (type === GGUF_ARRAY) {
    if (depth >= GGUF_MAX_ARRAY_DEPTH) throw r.invalid(`array value of ${q(key)} is nested more than ${GGUF_MAX_ARRAY_DEPTH} deep`);
    const itemType = await r.u32(`array type of ${q(key)}`);
    const count = await r.u64(`array length of ${q(key)}`);
    const left = BigInt(r.size - r.pos);
    const itemFixed = GGUF_FIXED[itemType];
    if (itemFixed !== undefined) {
      if (count * BigInt(itemFixed) > left) throw r.invalid(`truncated: array ${q(key)} of ${count} items runs past the end of the file`);
      if (itemType === 7) {
        for (let i = 0; i < Number(count); i++) await ggufValue(r, 7, key, depth + 1, false);
      } else {
        r.skip(count * BigInt(itemFixed), `array ${q(key)}`);
      }
      return undefined;
    }
    // Strings take at least 8 bytes, nested arrays at least 12.
    const minItem = itemType === GGUF_STRING ? 8n : itemType === GGUF_ARRAY ? 12n : 0n;
    if (minItem === 0n) throw r.invalid(`array ${q(key)} has unknown item type ${itemType}`);
    if (count * minItem > left) throw r.invalid(`truncated: array ${q(key)} of ${count} items runs past the end of the file`);
    for (let i = 0; i < Number(count); i++) await ggufValue(r, itemType, key, depth + 1, false);
    return undefined;
  }
  throw r.invalid(`metadata ${q(key)} has unknown value type ${type}`);
}

/**
 * Validates a GGUF v2/v3 file the way llama.cpp's reader does: header, every key-value (all
 * value types, nested arrays, strings), every tensor info, `general.alignment` (a u32 power of
 * two, default 32), and each tensor's data offset: aligned, and (for known ggml types) its bytes
 * inside the file without overlapping another tensor.
 */
async function inspectGguf(r: Reader): Promise<ModelFileInfo> {
  r.pos = 4;
  const version = await r.u32('GGUF version');
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 0xff) << 24 | (version & 0xff00) << 8 | (version >>> 8) & 0xff00 | version >>> 24) >>> 0;
    const be = swapped === 2 || swapped === 3 ? ' (a big-endian GGUF, which is not supported)' : '';
    throw r.invalid(`unsupported GGUF version ${version}${be}; versions 2 and 3 are supported`);
  }
  const tensorCount = await r.u64('tensor count');
  const kvCount = await r.u64('key-value count');
  if (kvCount > BigInt(GGUF_MAX_KV)) throw r.invalid(`GGUF key-value count ${kvCount} is more than the ${GGUF_MAX_KV} allowed`);
  if (tensorCount > BigInt(GGUF_MAX_TENSORS)) throw r.invalid(`GGUF tensor count ${tensorCount} is more than the ${GGUF_MAX_TENSORS} allowed`);
  // A key-value takes at least 13 bytes (key length, key, type, 1-byte value); a tensor info 20.
  if (kvCount * 13n + tensorCount * 20n > BigInt(r.size - r.pos)) {
    throw r.invalid(`truncated: ${kvCount} key-values and ${tensorCount} tensor infos cannot fit in the ${r.size} bytes of the file`);
  }

  const details: Record<string, string | number | boolean> = { ggufVersion: version, tensors: Number(tensorCount), keys: Number(kvCount) };
  const keys = new Set<string>();
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  for (let i = 0; i < Number(kvCount); i++) {
    const klen = await ggufStringLength(r, `key #${i}`);
    if (klen > GGUF_MAX_KEY) throw r.invalid(`key #${i} is ${klen} bytes long, more than ${GGUF_MAX_KEY}`);
    const key = decodeUtf8(await r.bytes(klen, `key #${i}`));
    if (key === null) throw r.invalid(`key #${i} is not valid UTF-8`);
    if (keys.has(key)) throw r.invalid(`duplicate key ${q(key)}`);
    keys.add(key);
    const type = await r.u32(`type of ${q(key)}`);
    const kept = GGUF_KEPT[key];
    const value = await ggufValue(r, type, key, 0, kept !== undefined);
    if (key === 'general.alignment') {
      if (type !== GGUF_U32) throw r.invalid(`general.alignment has value type ${type}, expected u32 (4)`);
      const a = value as number;
      if (a === 0 || (a & (a - 1)) !== 0) throw r.invalid(`general.alignment ${a} is not a power of two`);
      alignment = a;
    }
    if (kept !== undefined && value !== undefined) details[kept] = value;
  }
  details.alignment = alignment;

  interface TensorInfo { name: string; type: number; offset: bigint; bytes: bigint | null }
  const names = new Set<string>();
  const infos: TensorInfo[] = [];
  const typeNames = new Set<string>();
  let unknownTypes = 0;
  let parameters = 0n;
  for (let i = 0; i < Number(tensorCount); i++) {
    const nlen = await ggufStringLength(r, `tensor #${i} name`);
    if (nlen > GGUF_MAX_KEY) throw r.invalid(`tensor #${i} name is ${nlen} bytes long, more than ${GGUF_MAX_KEY}`);
    const raw = await r.bytes(nlen, `tensor #${i} name`);
    const shown = utf8Lenient.decode(raw);
    const id = raw.toString('latin1');
    if (names.has(id)) throw r.invalid(`duplicate tensor name ${q(shown)}`);
    names.add(id);
    const t = `tensor ${q(shown)}`;
    const nDims = await r.u32(`${t} dimension count`);
    if (nDims > GGUF_MAX_DIMS) throw r.invalid(`${t} has ${nDims} dimensions, more than ${GGUF_MAX_DIMS}`);
    let elements = 1n;
    let ne0 = 1n;
    for (let d = 0; d < nDims; d++) {
      const dim = await r.u64(`${t} dimension ${d}`);
      if (d === 0) ne0 = dim;
      elements *= dim;
      if (elements > 0x7fffffffffffffffn) throw r.invalid(`${t} has more than 2^63 elements`);
    }
    const type = await r.u32(`${t} type`);
    const offset = await r.u64(`${t} offset`);
    const gt = GGML_TYPES[type];
    let bytes: bigint | null = null;
    if (gt) {
      const [tname, block, blockBytes] = gt;
      if (ne0 % BigInt(block) !== 0n) throw r.invalid(`${t} of type ${tname} has a first dimension ${ne0} that is not a multiple of its block size ${block}`);
      bytes = (elements / BigInt(block)) * BigInt(blockBytes);
      typeNames.add(tname);
    } else {
      unknownTypes++;
    }
    parameters += elements;
    infos.push({ name: shown, type, offset, bytes });
  }
  const dataStart = BigInt(Math.ceil(r.pos / alignment) * alignment);
  const fileSize = BigInt(r.size);
  if (infos.length > 0 && dataStart > fileSize) throw r.invalid(`truncated: the tensor data should start at offset ${dataStart} but the file has ${r.size} bytes`);
  const A = BigInt(alignment);
  for (const ti of infos) {
    if (ti.offset % A !== 0n) throw r.invalid(`tensor ${q(ti.name)} data offset ${ti.offset} is not a multiple of the alignment ${alignment}`);
    const start = dataStart + ti.offset;
    const end = start + (ti.bytes ?? 0n);
    if (end > fileSize) {
      throw r.invalid(`truncated: tensor ${q(ti.name)} data (${ti.bytes ?? '?'} bytes at offset ${start}) runs past the end of the ${r.size}-byte file`);
    }
  }
  const sized = infos.filter((ti) => ti.bytes !== null && ti.bytes > 0n).sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
  for (let i = 1; i < sized.length; i++) {
    const prev = sized[i - 1]!;
    const cur = sized[i]!;
    if (cur.offset < prev.offset + prev.bytes!) throw r.invalid(`tensors ${q(prev.name)} and ${q(cur.name)} overlap`);
  }
  details.dataOffset = Number(dataStart);
  if (typeNames.size > 0) details.tensorTypes = [...typeNames].sort().join(',');
  if (unknownTypes > 0) details.unknownTensorTypes = unknownTypes;
  if (parameters <= BigInt(Number.MAX_SAFE_INTEGER)) details.parameters = Number(parameters);
  return { format: 'gguf', details };
}

// ---------------------------------------------------------------------------------------------
// ONNX (protobuf wire format, walked in place)

const WT_VARINT = 0;
const WT_I64 = 1;
const WT_LEN = 2;
const WT_I32 = 5;

interface PbField {
  field: number;
  wt: number;
  /** varint value (wt 0) or payload length (wt 2) */
  value: number;
  /** where the payload starts (wt 2) */
  start: number;
}

interface OnnxState {
  r: Reader;
  locations: string[];
  seen: Set<string>;
  tensors: number;
  initializers: number;
  externalTensors: number;
  subgraphs: number;
}

async function pbNext(r: Reader, end: number, msg: string): Promise<PbField> {
  const at = r.pos;
  const tag = await r.varint(end, `${msg} field tag`);
  const field = Math.floor(tag / 8);
  const wt = tag % 8;
  if (field === 0 || field > 0x1fffffff) throw r.invalid(`${msg}: invalid protobuf field number ${field} at offset ${at}`);
  switch (wt) {
    case WT_VARINT:
      return { field, wt, value: await r.varint(end, `${msg} field ${field}`), start: r.pos };
    case WT_I64:
      r.skip(8, `${msg} field ${field}`, end);
      return { field, wt, value: 0, start: r.pos };
    case WT_I32:
      r.skip(4, `${msg} field ${field}`, end);
      return { field, wt, value: 0, start: r.pos };
    case WT_LEN: {
      const len = await r.varint(end, `${msg} field ${field} length`);
      if (len > end - r.pos) throw r.invalid(`truncated: ${msg} field ${field} at offset ${at} claims ${len} bytes but its message has ${end - r.pos} left`);
      return { field, wt, value: len, start: r.pos };
    }
    default:
      throw r.invalid(`${msg}: unsupported protobuf wire type ${wt} (field ${field}) at offset ${at}`);
  }
}

/** Skips the payload of a length-delimited field by offset (varints and fixed fields are already consumed). */
function pbSkip(r: Reader, f: PbField): void {
  if (f.wt === WT_LEN) r.pos = f.start + f.value;
}

function pbExpectLen(r: Reader, f: PbField, msg: string): void {
  if (f.wt !== WT_LEN) throw r.invalid(`${msg} field ${f.field} has wire type ${f.wt}, expected a length-delimited message`);
}

async function pbSub<T>(st: OnnxState, f: PbField, msg: string, depth: number, parse: (end: number, depth: number) => Promise<T>): Promise<T> {
  pbExpectLen(st.r, f, msg);
  if (depth >= PB_MAX_DEPTH) throw st.r.invalid(`ONNX messages are nested more than ${PB_MAX_DEPTH} deep`);
  const end = f.start + f.value;
  const out = await parse(end, depth + 1);
  if (st.r.pos !== end) throw st.r.invalid(`${msg} field ${f.field} ends at ${st.r.pos}, not at its declared end ${end}`);
  return out;
}

/** A string field: its text when at most `cap` bytes (else null, skipped). */
async function pbString(r: Reader, f: PbField, msg: string, cap: number): Promise<string | null> {
  pbExpectLen(r, f, msg);
  if (f.value > cap) {
    pbSkip(r, f);
    return null;
  }
  return utf8Lenient.decode(await r.bytes(f.value, `${msg} field ${f.field}`));
}

async function onnxTensor(st: OnnxState, end: number, depth: number): Promise<void> {
  const { r } = st;
  let name = '';
  let dataLocation = 0;
  let location: string | null = null;
  st.tensors++;
  while (r.pos < end) {
    const f = await pbNext(r, end, 'TensorProto');
    if (f.field === 8) name = (await pbString(r, f, 'TensorProto', SHORT_STRING)) ?? name;
    else if (f.field === 14) {
      if (f.wt !== WT_VARINT) throw r.invalid(`TensorProto data_location has wire type ${f.wt}, expected a varint`);
      dataLocation = f.value;
    } else if (f.field === 13) {
      const entry = await pbSub(st, f, 'TensorProto', depth, async (e) => {
        let key: string | null = null;
        let value: string | null = '';
        while (r.pos < e) {
          const g = await pbNext(r, e, 'StringStringEntryProto');
          if (g.field === 1) key = await pbString(r, g, 'StringStringEntryProto', SHORT_STRING);
          else if (g.field === 2) value = await pbString(r, g, 'StringStringEntryProto', ONNX_MAX_LOCATION);
          else pbSkip(r, g);
        }
        return { key, value };
      });
      if (entry.key === 'location') {
        if (entry.value === null) throw r.invalid(`tensor ${q(name)} external data location is longer than ${ONNX_MAX_LOCATION} bytes`);
        location = entry.value;
      }
    } else pbSkip(r, f);
  }
  if (dataLocation === 1) {
    if (location === null) throw r.invalid(`tensor ${q(name)} has data_location EXTERNAL but no "location" entry`);
    const why = relativeLocationProblem(location);
    if (why) throw r.invalid(`tensor ${q(name)} external data location ${q(location)} ${why}`, HINT_LOCATION);
    st.externalTensors++;
    if (!st.seen.has(location)) {
      st.seen.add(location);
      st.locations.push(location);
    }
  }
}

async function onnxSparseTensor(st: OnnxState, end: number, depth: number): Promise<void> {
  while (st.r.pos < end) {
    const f = await pbNext(st.r, end, 'SparseTensorProto');
    if (f.field === 1 || f.field === 2) await pbSub(st, f, 'SparseTensorProto', depth, (e, d) => onnxTensor(st, e, d));
    else pbSkip(st.r, f);
  }
}

async function onnxAttribute(st: OnnxState, end: number, depth: number): Promise<void> {
  while (st.r.pos < end) {
    const f = await pbNext(st.r, end, 'AttributeProto');
    if (f.field === 5 || f.field === 10) await pbSub(st, f, 'AttributeProto', depth, (e, d) => onnxTensor(st, e, d));
    else if (f.field === 6 || f.field === 11) {
      st.subgraphs++;
      await pbSub(st, f, 'AttributeProto', depth, (e, d) => onnxGraph(st, e, d));
    } else if (f.field === 22 || f.field === 23) await pbSub(st, f, 'AttributeProto', depth, (e, d) => onnxSparseTensor(st, e, d));
    else pbSkip(st.r, f);
  }
}

async function onnxNode(st: OnnxState, end: number, depth: number): Promise<void> {
  while (st.r.pos < end) {
    const f = await pbNext(st.r, end, 'NodeProto');
    if (f.field === 5) await pbSub(st, f, 'NodeProto', depth, (e, d) => onnxAttribute(st, e, d));
    else pbSkip(st.r, f);
  }
}

/** GraphProto: node=1, initializer=5, sparse_initializer=15. Returns its node count. */
async function onnxGraph(st: OnnxState, end: number, depth: number): Promise<number> {
  let nodes = 0;
  while (st.r.pos < end) {
    const f = await pbNext(st.r, end, 'GraphProto');
    if (f.field === 1) {
      nodes++;
      await pbSub(st, f, 'GraphProto', depth, (e, d) => onnxNode(st, e, d));
    } else if (f.field === 5) {
      st.initializers++;
      await pbSub(st, f, 'GraphProto', depth, (e, d) => onnxTensor(st, e, d));
    } else if (f.field === 15) {
      st.initializers++;
      await pbSub(st, f, 'GraphProto', depth, (e, d) => onnxSparseTensor(st, e, d));
    }
    else pbSkip(st.r, f);
  }
  return nodes;
}

/**
 * ONNX ModelProto: ir_version=1, producer_name=2, graph=7, opset_import=8, training_info=20
 * (TrainingInfoProto: initialization=1, algorithm=2, both graphs), functions=25 (FunctionProto:
 * node=7). Collects the `location` of every tensor stored externally, wherever it sits: graph
 * initializers, sparse initializers, node attribute tensors and subgraphs at any depth.
 */
async function inspectOnnx(r: Reader): Promise<ModelFileInfo> {
  const st: OnnxState = { r, locations: [], seen: new Set(), tensors: 0, initializers: 0, externalTensors: 0, subgraphs: 0 };
  let irVersion: number | undefined;
  let opset: number | undefined;
  let producer: string | null = null;
  let graphs = 0;
  let nodes = 0;
  r.pos = 0;
  while (r.pos < r.size) {
    const f = await pbNext(r, r.size, 'ModelProto');
    if (f.field === 1) {
      if (f.wt !== WT_VARINT) throw r.invalid(`ModelProto ir_version has wire type ${f.wt}, expected a varint`);
      irVersion = f.value;
    } else if (f.field === 2) producer = await pbString(r, f, 'ModelProto', SHORT_STRING);
    else if (f.field === 7) {
      graphs++;
      nodes += await pbSub(st, f, 'ModelProto', 0, (e, d) => onnxGraph(st, e, d));
    } else if (f.field === 8) {
      const id = await pbSub(st, f, 'ModelProto', 0, async (e) => {
        let domain = '';
        let version: number | undefined;
        while (r.pos < e) {
          const g = await pbNext(r, e, 'OperatorSetIdProto');
          if (g.field === 1) domain = (await pbString(r, g, 'OperatorSetIdProto', SHORT_STRING)) ?? '?';
          else if (g.field === 2 && g.wt === WT_VARINT) version = g.value;
          else pbSkip(r, g);
        }
        return { domain, version };
      });
      if ((id.domain === '' || id.domain === 'ai.onnx') && id.version !== undefined) opset = id.version;
    } else if (f.field === 20) {
      await pbSub(st, f, 'ModelProto', 0, async (e, d) => {
        while (r.pos < e) {
          const g = await pbNext(r, e, 'TrainingInfoProto');
          if (g.field === 1 || g.field === 2) await pbSub(st, g, 'TrainingInfoProto', d, (e2, d2) => onnxGraph(st, e2, d2));
          else pbSkip(r, g);
        }
      });
    } else if (f.field === 25) {
      await pbSub(st, f, 'ModelProto', 0, async (e, d) => {
        while (r.pos < e) {
          const g = await pbNext(r, e, 'FunctionProto');
          if (g.field === 7) await pbSub(st, g, 'FunctionProto', d, (e2, d2) => onnxNode(st, e2, d2));
          else pbSkip(r, g);
        }
      });
    } else pbSkip(r, f);
  }
  if (graphs === 0) throw r.invalid('ONNX model has no graph (not an ONNX ModelProto?)');
  if (irVersion === undefined || irVersion < 1) throw r.invalid('ONNX model has no ir_version');
  const details: Record<string, string | number | boolean> = {
    irVersion,
    nodes,
    initializers: st.initializers,
    tensors: st.tensors,
    externalTensors: st.externalTensors,
    externalFiles: st.locations.length,
  };
  if (opset !== undefined) details.opset = opset;
  if (producer) details.producer = producer;
  if (st.subgraphs > 0) details.subgraphs = st.subgraphs;
  return { format: 'onnx', details, externalData: st.locations };
}
