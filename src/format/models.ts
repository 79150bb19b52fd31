/**
 * Detecting and validating model files before they are packed (FACTS.md §2). Every reader treats
 * its input as hostile: lengths are bounded against the file size and sane caps, reads are
 * positional and bounded, big tensor payloads are skipped, never read.
 */
import type { FileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import { MlicError } from '../errors.js';
import { unsafePathReason } from './manifest.js';

export type ModelFormat = 'onnx' | 'onnx-external-data' | 'safetensors' | 'safetensors-index' | 'gguf' | 'json' | 'text' | 'binary';

export interface ModelFileInfo {
  format: ModelFormat;
  details: Record<string, string | number | boolean>;
  /** ONNX: the external-data locations its tensors name (as written in the file) */
  externalData?: string[];
  /** safetensors index: the shard files its weight_map names */
  shards?: string[];
}

const invalid = (name: string, why: string) => new MlicError('MODEL_INVALID', `${name}: ${why}`, { hint: 'the file is damaged or not what its name says; mlic does not pack malformed model files' });

/** Positional reads through a small window. */
class Reader {
  private buf = Buffer.alloc(0);
  private bufAt = 0;
  pos = 0;
  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
    private readonly name: string,
  ) {}

  async need(n: number, what: string): Promise<Buffer> {
    if (n < 0 || this.pos + n > this.size) throw invalid(this.name, `truncated: ${what} runs past the end of the file`);
    if (this.pos >= this.bufAt && this.pos + n <= this.bufAt + this.buf.length) {
      const out = this.buf.subarray(this.pos - this.bufAt, this.pos - this.bufAt + n);
      this.pos += n;
      return out;
    }
    const len = Math.min(Math.max(n, 64 * 1024), this.size - this.pos);
    const b = Buffer.alloc(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await this.fh.read(b, got, len - got, this.pos + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got < n) throw invalid(this.name, `truncated: ${what}`);
    this.buf = b.subarray(0, got);
    this.bufAt = this.pos;
    this.pos += n;
    return this.buf.subarray(0, n);
  }

  skip(n: number, what: string): void {
    if (n < 0 || this.pos + n > this.size) throw invalid(this.name, `truncated: ${what} runs past the end of the file`);
    this.pos += n;
  }
}

async function head(fh: FileHandle, size: number, n: number): Promise<Buffer> {
  const b = Buffer.alloc(Math.min(size, n));
  if (b.length) await fh.read(b, 0, b.length, 0);
  return b;
}

// ---------------- safetensors ----------------
const ST_DTYPES: Record<string, number> = { BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8 };
const MAX_ST_HEADER = 100 << 20;

async function safetensors(fh: FileHandle, size: number, name: string): Promise<ModelFileInfo> {
  if (size < 8) throw invalid(name, 'too short for a safetensors header');
  const r = new Reader(fh, size, name);
  const n = (await r.need(8, 'header length')).readBigUInt64LE(0);
  if (n > BigInt(MAX_ST_HEADER) || n > BigInt(size - 8)) throw invalid(name, `safetensors header length ${n} is out of bounds`);
  const text = (await r.need(Number(n), 'header')).toString('utf8');
  let h: Record<string, unknown>;
  try {
    h = JSON.parse(text);
  } catch {
    throw invalid(name, 'safetensors header is not valid JSON');
  }
  if (typeof h !== 'object' || h === null || Array.isArray(h)) throw invalid(name, 'safetensors header is not a JSON object');
  const dataLen = size - 8 - Number(n);
  let tensors = 0;
  const spans: [number, number][] = [];
  for (const [k, v] of Object.entries(h)) {
    if (k === '__metadata__') {
      if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'string')) throw invalid(name, '__metadata__ must map strings to strings');
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof t !== 'object' || t === null) throw invalid(name, `tensor ${k}: not an object`);
    const width = typeof t.dtype === 'string' ? ST_DTYPES[t.dtype] : undefined;
    if (!width) throw invalid(name, `tensor ${k}: unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw invalid(name, `tensor ${k}: bad shape`);
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0) || off[0] > off[1] || off[1] > dataLen)
      throw invalid(name, `tensor ${k}: data_offsets out of bounds`);
    const count = (t.shape as number[]).reduce((a, d) => a * d, 1);
    if (count * width !== off[1] - off[0]) throw invalid(name, `tensor ${k}: ${off[1] - off[0]} bytes do not fit shape ${JSON.stringify(t.shape)} of ${t.dtype}`);
    spans.push([off[0], off[1]]);
    tensors++;
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) if (spans[i]![0] < spans[i - 1]![1]) throw invalid(name, 'tensors overlap');
  return { format: 'safetensors', details: { tensors, headerBytes: Number(n) } };
}

// ---------------- GGUF ----------------
const GGUF_MAX_STRING = 16 << 20;
const GGUF_MAX_ITEMS = 1 << 26;
const GGML_TYPES = 64;

async function gguf(fh: FileHandle, size: number, name: string): Promise<ModelFileInfo> {
  const r = new Reader(fh, size, name);
  await r.need(4, 'magic');
  const version = (await r.need(4, 'version')).readUInt32LE(0);
  if (version !== 2 && version !== 3) throw invalid(name, `GGUF version ${version} is not supported (2 or 3)`);
  const u64 = async (what: string) => {
    const v = (await r.need(8, what)).readBigUInt64LE(0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(name, `${what} is too large`);
    return Number(v);
  };
  const nTensors = await u64('tensor count');
  const nKv = await u64('key-value count');
  if (nTensors > size / 24 || nKv > size / 12) throw invalid(name, 'GGUF counts do not fit the file');
  const str = async (what: string) => {
    const len = await u64(`${what} length`);
    if (len > GGUF_MAX_STRING) throw invalid(name, `${what} is too long (${len} bytes)`);
    return (await r.need(len, what)).toString('utf8');
  };
  const SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  let alignment = 32;
  const value = async (type: number, keyName: string, depth: number): Promise<void> => {
    if (type === 8) {
      await str(`value of ${keyName}`);
      return;
    }
    if (type === 9) {
      if (depth > 4) throw invalid(name, `${keyName}: arrays nested too deep`);
      const itemType = (await r.need(4, 'array type')).readUInt32LE(0);
      const count = await u64('array length');
      if (count > GGUF_MAX_ITEMS) throw invalid(name, `${keyName}: array too long`);
      const fixed = SIZES[itemType];
      if (fixed !== undefined) r.skip(fixed * count, `${keyName} array`);
      else for (let i = 0; i < count; i++) await value(itemType, keyName, depth + 1);
      return;
    }
    const width = SIZES[type];
    if (width === undefined) throw invalid(name, `${keyName}: unknown GGUF value type ${type}`);
    const b = await r.need(width, `value of ${keyName}`);
    if (keyName === 'general.alignment') {
      if (type !== 4) throw invalid(name, 'general.alignment must be a uint32');
      alignment = b.readUInt32LE(0);
      if (alignment === 0 || alignment % 8 !== 0 || alignment > 1 << 20) throw invalid(name, `general.alignment ${alignment} is invalid`);
    }
  };
  let arch: string | undefined;
  for (let i = 0; i < nKv; i++) {
    const k = await str('key');
    const type = (await r.need(4, 'value type')).readUInt32LE(0);
    if (k === 'general.architecture' && type === 8) {
      const save = r.pos;
      arch = await str('general.architecture');
      r.pos = save;
    }
    await value(type, k, 0);
  }
  const infos: { name: string; bytes: number; offset: number }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const tname = await str('tensor name');
    const nDims = (await r.need(4, 'tensor dims')).readUInt32LE(0);
    if (nDims > 8) throw invalid(name, `tensor ${tname}: ${nDims} dimensions`);
    let count = 1;
    for (let d = 0; d < nDims; d++) {
      count *= await u64('tensor dim');
      if (!Number.isSafeInteger(count)) throw invalid(name, `tensor ${tname}: too many elements`);
    }
    const type = (await r.need(4, 'tensor type')).readUInt32LE(0);
    if (type >= GGML_TYPES) throw invalid(name, `tensor ${tname}: unknown type ${type}`);
    const offset = await u64('tensor offset');
    const width = type === 0 ? 4 : type === 1 ? 2 : 0; // exact sizes for F32/F16; quantized types are only bounds-checked by offset
    infos.push({ name: tname, bytes: count * width, offset });
  }
  const dataStart = Math.ceil(r.pos / alignment) * alignment;
  for (const t of infos) {
    if (t.offset % alignment !== 0) throw invalid(name, `tensor ${t.name}: offset ${t.offset} is not aligned to ${alignment}`);
    if (dataStart + t.offset + t.bytes > size) throw invalid(name, `tensor ${t.name}: data runs past the end of the file`);
  }
  return { format: 'gguf', details: { ggufVersion: version, tensors: nTensors, keys: nKv, alignment, ...(arch ? { architecture: arch } : {}) } };
}

// ---------------- ONNX (protobuf) ----------------
async function readVarint(r: Reader, what: string): Promise<number> {
  let result = 0n;
  for (let i = 0; i < 10; i++) {
    const b = (await r.need(1, what))[0]!;
    result |= BigInt(b & 0x7f) << BigInt(7 * i);
    if ((b & 0x80) === 0) {
      if (result > BigInt(Number.MAX_SAFE_INTEGER)) return Number.MAX_SAFE_INTEGER; // an int64 we only skip past
      return Number(result);
    }
  }
  throw new MlicError('MODEL_INVALID', `malformed varint in ${what}`);
}

interface OnnxScan {
  ir?: number;
  opset?: number;
  external: string[];
  initializers: number;
  nodes: number;
}

/** Walks the fields of one message spanning [r.pos, end), calling onField for the length-delimited ones it wants. */
async function walk(r: Reader, end: number, name: string, onField: (field: number, wire: number, len: number, start: number) => Promise<boolean>, onVarint?: (field: number, v: number) => void): Promise<void> {
  while (r.pos < end) {
    const tag = await readVarint(r, 'field tag');
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 0) throw invalid(name, 'protobuf field number 0');
    switch (wire) {
      case 0:
        onVarint?.(field, await readVarint(r, 'varint'));
        break;
      case 1:
        r.skip(8, 'fixed64');
        break;
      case 5:
        r.skip(4, 'fixed32');
        break;
      case 2: {
        const len = await readVarint(r, 'length');
        if (r.pos + len > end) throw invalid(name, 'a protobuf field runs past its message');
        const start = r.pos;
        const handled = await onField(field, wire, len, start);
        if (!handled) r.skip(len, 'field');
        if (r.pos !== start + len) throw invalid(name, 'protobuf message length mismatch');
        break;
      }
      default:
        throw invalid(name, `protobuf wire type ${wire} is not valid here`);
    }
  }
  if (r.pos !== end) throw invalid(name, 'protobuf message runs past its end');
}

async function onnxTensor(r: Reader, end: number, name: string, scan: OnnxScan): Promise<void> {
  let external = false;
  const entries: Record<string, string> = {};
  await walk(
    r,
    end,
    name,
    async (field, _w, len) => {
      if (field !== 13) return false;
      let k = '';
      let v = '';
      await walk(r, r.pos + len, name, async (f, _w2, l) => {
        if (f !== 1 && f !== 2) return false;
        if (l > 4096) throw invalid(name, 'external_data entry too long');
        const s = (await r.need(l, 'external_data entry')).toString('utf8');
        if (f === 1) k = s;
        else v = s;
        return true;
      });
      entries[k] = v;
      return true;
    },
    (field, v) => {
      if (field === 14 && v === 1) external = true;
    },
  );
  if (external) {
    const loc = entries.location;
    if (!loc) throw invalid(name, 'a tensor with external data names no location');
    scan.external.push(loc);
  }
}

async function onnxGraph(r: Reader, end: number, name: string, scan: OnnxScan, depth: number): Promise<void> {
  if (depth > 16) throw invalid(name, 'subgraphs nested too deep');
  await walk(r, end, name, async (field, _w, len) => {
    const stop = r.pos + len;
    if (field === 5) {
      scan.initializers++;
      await onnxTensor(r, stop, name, scan);
      return true;
    }
    if (field === 15) {
      // SparseTensorProto: values = 1, indices = 2 (TensorProtos)
      await walk(r, stop, name, async (f, _w2, l) => {
        if (f !== 1 && f !== 2) return false;
        await onnxTensor(r, r.pos + l, name, scan);
        return true;
      });
      return true;
    }
    if (field === 1) {
      scan.nodes++;
      // NodeProto.attribute = 5 -> AttributeProto.g = 6, graphs = 11, t = 5 (a tensor), tensors = 9
      await walk(r, stop, name, async (f, _w2, l) => {
        if (f !== 5) return false;
        await walk(r, r.pos + l, name, async (af, _w3, al) => {
          if (af === 6 || af === 11) {
            await onnxGraph(r, r.pos + al, name, scan, depth + 1);
            return true;
          }
          if (af === 5 || af === 9) {
            await onnxTensor(r, r.pos + al, name, scan);
            return true;
          }
          return false;
        });
        return true;
      });
      return true;
    }
    return false;
  });
}

async function onnx(fh: FileHandle, size: number, name: string): Promise<ModelFileInfo> {
  const r = new Reader(fh, size, name);
  const scan: OnnxScan = { external: [], initializers: 0, nodes: 0 };
  let sawGraph = false;
  await walk(
    r,
    size,
    name,
    async (field, _w, len) => {
      if (field === 7) {
        sawGraph = true;
        await onnxGraph(r, r.pos + len, name, scan, 0);
        return true;
      }
      if (field === 8) {
        await walk(
          r,
          r.pos + len,
          name,
          async () => false,
          (f, v) => {
            if (f === 2) scan.opset = Math.max(scan.opset ?? 0, v);
          },
        );
        return true;
      }
      return false;
    },
    (field, v) => {
      if (field === 1) scan.ir = v;
    },
  );
  if (!sawGraph || scan.ir === undefined) throw invalid(name, 'not an ONNX model (no ir_version or graph)');
  return {
    format: 'onnx',
    details: { irVersion: scan.ir, ...(scan.opset !== undefined ? { opset: scan.opset } : {}), nodes: scan.nodes, initializers: scan.initializers, externalTensors: scan.external.length },
    externalData: [...new Set(scan.external)],
  };
}

// ---------------- dispatch ----------------
function isText(b: Buffer): boolean {
  if (b.includes(0)) return false;
  const s = b.toString('utf8');
  // A multi-byte character cut at the window's end is fine.
  return !s.slice(0, -3).includes('\uFFFD');
}

export async function inspectModelFile(fh: FileHandle, size: number, name: string): Promise<ModelFileInfo> {
  const base = posix.basename(name).toLowerCase();
  const h = await head(fh, size, 4096);
  if (h.length >= 4 && h.toString('latin1', 0, 4) === 'GGUF') return gguf(fh, size, name);
  if (base.endsWith('.gguf')) throw invalid(name, 'a .gguf file must start with the magic GGUF');
  if (base.endsWith('.safetensors')) return safetensors(fh, size, name);
  if (base.endsWith('.onnx')) return onnx(fh, size, name);
  if (base.endsWith('.json')) {
    if (size > 64 << 20) return { format: 'json', details: { parsed: false } };
    const text = (await head(fh, size, size)).toString('utf8');
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      if (base.endsWith('.safetensors.index.json')) throw invalid(name, 'the safetensors index is not valid JSON');
      return { format: 'json', details: { valid: false } };
    }
    if (base.endsWith('.safetensors.index.json')) {
      const map = (v as { weight_map?: unknown })?.weight_map;
      if (typeof map !== 'object' || map === null || Array.isArray(map) || !Object.values(map).every((x) => typeof x === 'string'))
        throw invalid(name, 'the safetensors index has no weight_map of tensor -> shard file');
      const shards = [...new Set(Object.values(map as Record<string, string>))].sort();
      return { format: 'safetensors-index', details: { tensors: Object.keys(map).length, shards: shards.length }, shards };
    }
    return { format: 'json', details: { valid: true } };
  }
  // safetensors without the extension: a plausible header length followed by '{'.
  if (h.length >= 9 && h[8] === 0x7b) {
    const n = h.readBigUInt64LE(0);
    if (n > 1n && n <= BigInt(Math.min(size - 8, MAX_ST_HEADER))) {
      try {
        return await safetensors(fh, size, name);
      } catch {
        /* not safetensors after all */
      }
    }
  }
  return { format: isText(h) ? 'text' : 'binary', details: {} };
}

/**
 * Cross-file rules for a directory: ONNX external data must resolve inside the directory to a
 * packed file (relative to the ONNX file's folder); an index's shards must all be there.
 * Returns format overrides (files that are ONNX external data).
 */
export function checkModelSet(files: Map<string, ModelFileInfo>): Map<string, ModelFormat> {
  const overrides = new Map<string, ModelFormat>();
  for (const [path, info] of files) {
    const dir = posix.dirname(path);
    for (const loc of info.externalData ?? []) {
      if (loc.includes('\\') || loc.startsWith('/') || /^[A-Za-z]:/.test(loc)) throw invalid(path, `external data location ${JSON.stringify(loc)} must be a relative path`);
      const target = posix.normalize(posix.join(dir, loc));
      if (unsafePathReason(target) || target.startsWith('../') || target === '..' || loc.split('/').includes('..'))
        throw invalid(path, `external data location ${JSON.stringify(loc)} points outside the model directory`);
      if (!files.has(target)) throw invalid(path, `external data file ${JSON.stringify(loc)} is missing`);
      overrides.set(target, 'onnx-external-data');
    }
    for (const shard of info.shards ?? []) {
      const target = posix.normalize(posix.join(dir, shard));
      if (shard.split('/').includes('..') || unsafePathReason(target)) throw invalid(path, `shard ${JSON.stringify(shard)} points outside the model directory`);
      if (!files.has(target)) throw invalid(path, `shard ${JSON.stringify(shard)} is missing`);
    }
  }
  return overrides;
}
