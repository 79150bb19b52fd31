/**
 * The reader the model-format detectors share: a 64 KiB window over positional reads (bounded
 * memory whatever the file's size), the limits, and the error helpers. Every format module reads
 * hostile input through it (see index.ts for the invariants).
 */
import type { ReadAt } from '../../util/read-at.js';
import { MlicError, fromFsError } from '../../errors.js';

export { isPlainObject } from '../fields.js';

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

export const WINDOW = 64 * 1024;
/** safetensors' MAX_HEADER_SIZE (the library rejects anything larger). */
export const SAFETENSORS_MAX_HEADER = 100_000_000;
/** JSON files are parsed whole only up to this size. */
export const JSON_MAX = 64 * 1024 * 1024;
export const TEXT_SNIFF = 4096;
export const GGUF_MAX_KV = 1_000_000;
export const GGUF_MAX_TENSORS = 10_000_000;
export const GGUF_MAX_KEY = 65_535;
export const GGUF_MAX_DIMS = 8;
export const GGUF_MAX_ARRAY_DEPTH = 8;
export const GGUF_DEFAULT_ALIGNMENT = 32;
export const PB_MAX_DEPTH = 100;
export const ONNX_MAX_LOCATION = 4096;
/** Strings kept for details (names, producers) are read only up to this length. */
export const SHORT_STRING = 256;

// ---------------------------------------------------------------------------------------------
// Helpers

/** Quotes a value from the file for an error message: JSON-escaped, shortened. */
export function q(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}

export const HINT_DAMAGED = 'the file is damaged or not the model format its name says; re-export it';
export const HINT_LOCATION = "a model's external data and shards must be named by relative paths inside the model's folder; re-export it so";

export function invalid(name: string, msg: string, hint = HINT_DAMAGED): MlicError {
  return new MlicError('MODEL_INVALID', `${name}: ${msg}`, { hint });
}

export const utf8Fatal = new TextDecoder('utf-8', { fatal: true });
export const utf8Lenient = new TextDecoder('utf-8');

export function decodeUtf8(b: Uint8Array): string | null {
  try {
    return utf8Fatal.decode(b);
  } catch {
    return null;
  }
}


export async function readFully(fh: ReadAt, buf: Buffer, len: number, pos: number, name: string): Promise<void> {
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
export class Reader {
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

