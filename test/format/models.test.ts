import { describe, it, expect } from 'vitest';
import { open, readFile, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspectModelFile, checkModelSet, type ModelFileInfo, type ModelFormat } from '../../src/format/models/index.js';
import { MlicError } from '../../src/errors.js';
import { tmp } from '../helpers.js';

const FIX = fileURLToPath(new URL('../../fixtures/models/', import.meta.url));

// ---------------------------------------------------------------------------------------------
// helpers

/** Wraps a real file handle, counting the bytes read through it. */
function counting(fh: FileHandle): { fh: FileHandle; bytesRead: () => number } {
  let total = 0;
  const proxy = new Proxy(fh, {
    get(target, prop) {
      if (prop === 'read') {
        return async (...args: unknown[]) => {
          const res = (await (target.read as (...a: unknown[]) => Promise<{ bytesRead: number }>).apply(target, args)) as { bytesRead: number };
          total += res.bytesRead;
          return res;
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { fh: proxy, bytesRead: () => total };
}

async function inspectPath(path: string, name = path.slice(path.lastIndexOf('/') + 1), size?: number): Promise<ModelFileInfo & { bytesRead: number }> {
  const raw = await open(path, 'r');
  try {
    const c = counting(raw);
    const info = await inspectModelFile(c.fh, size ?? (await raw.stat()).size, name);
    return { ...info, bytesRead: c.bytesRead() };
  } finally {
    await raw.close();
  }
}

let scratch: string | undefined;
let counter = 0;
/** Writes bytes to a fresh temp file and inspects it under `name`. */
async function inspectBytes(bytes: Uint8Array, name: string): Promise<ModelFileInfo> {
  scratch ??= await tmp('mlic-models-');
  const p = join(scratch, `f${counter++}`);
  await writeFile(p, bytes);
  return inspectPath(p, name);
}

async function expectInvalid(p: Promise<unknown>, pattern?: RegExp): Promise<MlicError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a rejection').toBeInstanceOf(MlicError);
  const m = err as MlicError;
  expect(m.code, m.message).toBe('MODEL_INVALID');
  if (pattern) expect(m.message).toMatch(pattern);
  return m;
}

function expectSetInvalid(files: [string, ModelFileInfo][], pattern?: RegExp): MlicError {
  let err: unknown;
  try {
    checkModelSet(new Map(files));
  } catch (e) {
    err = e;
  }
  expect(err, 'expected checkModelSet to throw').toBeInstanceOf(MlicError);
  const m = err as MlicError;
  expect(m.code).toBe('MODEL_INVALID');
  if (pattern) expect(m.message).toMatch(pattern);
  return m;
}

/** Deterministic PRNG (mulberry32) so fuzz failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const u64 = (n: number | bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};

// safetensors builder
function safetensors(header: unknown, dataLen: number, opts: { pad?: boolean } = {}): Buffer {
  let h = Buffer.from(JSON.stringify(header), 'utf8');
  if (opts.pad !== false) h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  return Buffer.concat([u64(h.length), h, Buffer.alloc(dataLen, 7)]);
}

/** A safetensors file from literal header text (no data). */
const rawHeader = (json: string) => Buffer.concat([u64(Buffer.byteLength(json)), Buffer.from(json, 'utf8')]);

// GGUF builder
const gstr = (s: string | Buffer) => {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  return Buffer.concat([u64(b.length), b]);
};
const kvStr = (k: string, v: string) => Buffer.concat([gstr(k), u32(8), gstr(v)]);
const kvU32 = (k: string, v: number) => Buffer.concat([gstr(k), u32(4), u32(v)]);
interface GTensor {
  name: string;
  dims: number[];
  type?: number;
  offset: number;
}
function ggufFile(kvs: Buffer[], tensors: GTensor[], dataLen: number, opts: { version?: number; align?: number } = {}): Buffer {
  const infos = tensors.map((t) => Buffer.concat([gstr(t.name), u32(t.dims.length), ...t.dims.map(u64), u32(t.type ?? 0), u64(t.offset)]));
  const head = Buffer.concat([Buffer.from('GGUF'), u32(opts.version ?? 3), u64(tensors.length), u64(kvs.length), ...kvs, ...infos]);
  const a = opts.align ?? 32;
  return Buffer.concat([head, Buffer.alloc((a - (head.length % a)) % a), Buffer.alloc(dataLen, 1)]);
}

// protobuf builder (ONNX)
function varint(n: number | bigint): Buffer {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    out.push(b);
  } while (v !== 0n);
  return Buffer.from(out);
}
const tag = (f: number, wt: number) => varint(f * 8 + wt);
const pbInt = (f: number, n: number | bigint) => Buffer.concat([tag(f, 0), varint(n)]);
const pbBytes = (f: number, d: string | Uint8Array) => {
  const b = typeof d === 'string' ? Buffer.from(d, 'utf8') : Buffer.from(d);
  return Buffer.concat([tag(f, 2), varint(b.length), b]);
};
const pbMsg = (f: number, ...parts: Buffer[]) => pbBytes(f, Buffer.concat(parts));
/** TensorProto fields for an externally stored float tensor. */
const extTensor = (name: string, location: string) =>
  Buffer.concat([pbInt(1, 1), pbInt(2, 1), pbBytes(8, name), pbMsg(13, pbBytes(1, 'location'), pbBytes(2, location)), pbMsg(13, pbBytes(1, 'length'), pbBytes(2, '4')), pbInt(14, 1)]);
const rawTensor = (name: string) => Buffer.concat([pbInt(1, 1), pbInt(2, 1), pbBytes(8, name), pbBytes(9, Buffer.alloc(4))]);
/** ModelProto { ir_version 8, graph, opset 17 } plus extra top-level fields. */
const onnxModel = (graph: Buffer[], extra: Buffer[] = []) => Buffer.concat([pbInt(1, 8), pbMsg(7, ...graph), pbMsg(8, pbInt(2, 17)), ...extra]);

const info = (format: ModelFormat, extra: Partial<ModelFileInfo> = {}): ModelFileInfo => ({ format, details: {}, ...extra });

// ---------------------------------------------------------------------------------------------

describe('inspectModelFile on the fixtures', () => {
  it('ONNX: the inline and the external-data model, with their details and locations', async () => {
    const tiny = await inspectPath(join(FIX, 'tiny-onnx/model.onnx'));
    expect(tiny).toMatchObject({
      format: 'onnx',
      details: { irVersion: 8, opset: 17, nodes: 3, initializers: 2, tensors: 2, externalTensors: 0, externalFiles: 0, producer: 'mlic-fixtures' },
      externalData: [],
    });
    const ext = await inspectPath(join(FIX, 'onnx-external/model.onnx'));
    expect(ext).toMatchObject({ format: 'onnx', details: { irVersion: 8, opset: 17, initializers: 2, externalTensors: 2, externalFiles: 1 }, externalData: ['weights.data'] });
  });

  it('safetensors, the sharded set and its index', async () => {
    expect(await inspectPath(join(FIX, 'tiny.safetensors'))).toMatchObject({
      format: 'safetensors',
      details: { tensors: 3, dtypes: 'F16,F32', metadataKeys: 2, parameters: 21, dataBytes: 48 + 12 + 12 },
    });
    expect(await inspectPath(join(FIX, 'sharded/model-00001-of-00002.safetensors'))).toMatchObject({ format: 'safetensors', details: { tensors: 1, parameters: 12 } });
    expect(await inspectPath(join(FIX, 'sharded/model-00002-of-00002.safetensors'))).toMatchObject({ format: 'safetensors', details: { tensors: 1, parameters: 3 } });
    const idx = await inspectPath(join(FIX, 'sharded/model.safetensors.index.json'));
    expect(idx).toMatchObject({ format: 'safetensors-index', details: { tensors: 2, shards: 2, totalSize: 60 } });
    expect(idx.shards).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(await inspectPath(join(FIX, 'sharded/config.json'))).toMatchObject({ format: 'json', details: { topLevel: 'object', keys: 3 } });
    expect((await inspectPath(join(FIX, 'sharded/tokenizer.json'))).format).toBe('json');
  });

  it('GGUF v3 with its key-values and tensors', async () => {
    expect(await inspectPath(join(FIX, 'tiny.gguf'))).toMatchObject({
      format: 'gguf',
      details: { ggufVersion: 3, tensors: 2, keys: 5, alignment: 32, architecture: 'tiny', name: 'mlic tiny fixture', tensorTypes: 'F32', parameters: 15 },
    });
  });

  it('detects by content when the name gives no hint; plain data, text and JSON', async () => {
    expect((await inspectPath(join(FIX, 'tiny.safetensors'), 'weights.bin')).format).toBe('safetensors');
    expect((await inspectPath(join(FIX, 'tiny.gguf'), 'model.bin')).format).toBe('gguf');
    expect((await inspectPath(join(FIX, 'onnx-external/weights.data'))).format).toBe('binary');
    expect((await inspectPath(join(FIX, 'EXPECTED.json'))).format).toBe('json');
    expect((await inspectBytes(Buffer.from('# Model card\n\nGGUF is a format. Größe: 12 MB — ok\n'), 'README.md')).format).toBe('text');
    expect((await inspectBytes(Buffer.from('GGUF is the format of this file\n'), 'NOTES')).format).toBe('text');
    expect((await inspectBytes(Buffer.alloc(0), 'empty')).format).toBe('text');
    expect((await inspectBytes(Buffer.from([0xff, 0xfe, 0x00, 0x41]), 'x.txt')).format).toBe('binary');
    // a multi-byte character cut by the 4 KiB sniff window is still text
    expect((await inspectBytes(Buffer.from('a'.repeat(4095) + 'é' + 'tail'), 'long.txt')).format).toBe('text');
    // a .json that is not JSON is not called JSON, and not refused either
    expect((await inspectBytes(Buffer.from('{ not json'), 'config.json')).format).toBe('text');
    expect(await inspectBytes(Buffer.from('\ufeff[1,2,3]'), 'list.json')).toMatchObject({ format: 'json', details: { topLevel: 'array', items: 3 } });
    // something that only looks like a safetensors length + "{" but is not JSON stays binary
    expect((await inspectBytes(Buffer.concat([u64(4), Buffer.from('{\x00\x01\x02'), Buffer.alloc(8)]), 'blob')).format).toBe('binary');
  });
});

describe('malformed fixtures are refused with MODEL_INVALID naming the file', () => {
  it.each([
    ['bad/truncated-header.safetensors', /truncated-header\.safetensors: truncated/],
    ['bad/bad-json.safetensors', /bad-json\.safetensors: safetensors header is not valid JSON/],
    ['bad/bad-magic.gguf', /bad-magic\.gguf: unsupported GGUF version 99/],
    ['bad/escape-onnx/model.onnx', /model\.onnx: tensor "W" external data location "\.\.\/outside\.data" points outside/],
  ])('%s', async (f, pattern) => {
    await expectInvalid(inspectPath(join(FIX, f)), pattern);
  });
});

describe('safetensors rules', () => {
  const t = (dtype: string, shape: number[], begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] });
  it('accepts a well-formed file: zero-size tensors, sub-byte dtypes, unpadded header', async () => {
    const ok = safetensors({ __metadata__: { a: 'b' }, a: t('F32', [2], 0, 8), e: t('I64', [0, 5], 8, 8), f4: t('F4', [4], 8, 10) }, 10, { pad: false });
    expect(await inspectBytes(ok, 'm.safetensors')).toMatchObject({ format: 'safetensors', details: { tensors: 3, metadataKeys: 1 } });
  });
  it.each<[string, Buffer, RegExp]>([
    ['header length above the 100 MB cap', Buffer.concat([u64(100_000_001), Buffer.from('{}')]), /larger than the 100000000/],
    ['header length past the end', Buffer.concat([u64(64), Buffer.from('{}      ')]), /truncated/],
    ['a file shorter than 8 bytes', Buffer.from([1, 2, 3]), /too short/],
    ['header not UTF-8', Buffer.concat([u64(8), Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x20, 0x20, 0x20, 0x20])]), /not valid JSON/],
    ['header is a JSON array', safetensors([1, 2], 0), /not a JSON object/],
    ['unknown dtype', safetensors({ a: t('F128', [1], 0, 16) }, 16), /unknown dtype "F128"/],
    ['negative dimension', safetensors({ a: t('F32', [-1], 0, 4) }, 4), /shape/],
    ['fractional dimension', safetensors({ a: t('F32', [1.5], 0, 6) }, 6), /shape/],
    ['offsets backwards', safetensors({ a: t('F32', [1], 4, 0) }, 4), /backwards/],
    ['offsets past the data', safetensors({ a: t('F32', [2], 0, 8) }, 4), /past the 4-byte data section/],
    ['length does not match shape x dtype', safetensors({ a: t('F16', [3], 0, 8) }, 8), /= 6 bytes but data_offsets span 8/],
    ['a gap between tensors', safetensors({ a: t('F32', [1], 0, 4), b: t('F32', [1], 8, 12) }, 12), /starts at data offset 8, expected 4/],
    ['overlapping tensors', safetensors({ a: t('F32', [2], 0, 8), b: t('F32', [1], 4, 8) }, 8), /expected 8/],
    ['trailing bytes after the last tensor', safetensors({ a: t('F32', [1], 0, 4) }, 9), /cover 4 bytes but the data section has 9/],
    ['sub-byte tensor not ending on a byte', safetensors({ a: t('F4', [3], 0, 2) }, 2), /whole number of bytes/],
    ['__metadata__ value not a string', safetensors({ __metadata__: { n: 1 } }, 0), /__metadata__/],
    ['data_offsets not a pair', safetensors({ a: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 4), /pair/],
    ['data_offsets beyond 2^53', rawHeader('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,9007199254740993]}}'), /pair/],
    ['a duplicate-looking __proto__ tensor with a bad dtype', rawHeader('{"__proto__":{"dtype":"X","shape":[],"data_offsets":[0,0]}}'), /unknown dtype "X"/],
  ])('refuses %s', async (_what, bytes, pattern) => {
    await expectInvalid(inspectBytes(bytes, 'm.safetensors'), pattern);
  });
  it('a sharded index without weight_map, or with a shard escaping its folder, is refused', async () => {
    await expectInvalid(inspectBytes(Buffer.from('{"metadata":{}}'), 'model.safetensors.index.json'), /weight_map/);
    await expectInvalid(inspectBytes(Buffer.from('{"weight_map":{"a":"../x.safetensors"}}'), 'model.safetensors.index.json'), /points outside/);
    await expectInvalid(inspectBytes(Buffer.from('{"weight_map":{"a":1}}'), 'x.safetensors.index.json'), /not a file name/);
    await expectInvalid(inspectBytes(Buffer.from('{"weight_map":'), 'model.safetensors.index.json'), /not valid JSON/);
  });
});

describe('GGUF rules', () => {
  const kvs = [kvStr('general.architecture', 'llama'), kvU32('general.alignment', 32)];
  it('accepts v2, nested arrays, every scalar type, big vocabularies and quantized tensors', async () => {
    const scalars = [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12].map((type) => {
      const size = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 }[type]!;
      return Buffer.concat([gstr(`k.t${type}`), u32(type), Buffer.alloc(size, type === 7 ? 1 : 0)]);
    });
    const nested = Buffer.concat([gstr('k.nested'), u32(9), u32(9), u64(2), u32(4), u64(2), u32(1), u32(2), u32(8), u64(1), gstr('x')]);
    const v2 = ggufFile([...kvs, ...scalars, nested], [{ name: 'w', dims: [64, 2], type: 2 /* Q4_0: 2 blocks x 2 rows x 18 bytes */, offset: 0 }], 72, { version: 2 });
    expect(await inspectBytes(v2, 'm.gguf')).toMatchObject({ format: 'gguf', details: { ggufVersion: 2, keys: 14, tensors: 1, tensorTypes: 'Q4_0', parameters: 128 } });

    const tokens = Array.from({ length: 200_000 }, (_, i) => gstr(`tok${i}`));
    const vocab = Buffer.concat([gstr('tokenizer.ggml.tokens'), u32(9), u32(8), u64(tokens.length), ...tokens]);
    const big = ggufFile([...kvs, vocab], [{ name: 'w', dims: [4], offset: 0 }], 16);
    expect(big.length).toBeGreaterThan(2_000_000);
    expect(await inspectBytes(big, 'big.gguf')).toMatchObject({ format: 'gguf', details: { keys: 3 } });
  });
  it.each<[string, Buffer, RegExp]>([
    ['version 1', ggufFile(kvs, [], 0, { version: 1 }), /unsupported GGUF version 1/],
    ['a big-endian file', ggufFile(kvs, [], 0, { version: 0x03000000 }), /big-endian/],
    ['a .gguf without the magic', Buffer.from('GGML\x03\x00\x00\x00'), /magic/],
    ['a key-value count larger than the file can hold', Buffer.concat([Buffer.from('GGUF'), u32(3), u64(0), u64(1000)]), /cannot fit/],
    ['a key-value count of 2^63', Buffer.concat([Buffer.from('GGUF'), u32(3), u64(0), u64(1n << 63n)]), /more than the 1000000 allowed/],
    ['a string length of 2^64-1', Buffer.concat([Buffer.from('GGUF'), u32(3), u64(0), u64(1), u64((1n << 64n) - 1n), Buffer.alloc(16)]), /truncated/],
    ['an unknown value type', ggufFile([Buffer.concat([gstr('k'), u32(13), u32(0)])], [], 0), /unknown value type 13/],
    ['a bool that is 2', ggufFile([Buffer.concat([gstr('k'), u32(7), Buffer.from([2])])], [], 0), /not 0 or 1/],
    ['arrays nested 9 deep', ggufFile([Buffer.concat([gstr('k'), u32(9), ...Array.from({ length: 9 }, () => Buffer.concat([u32(9), u64(1)])), u32(4), u64(0)])], [], 0), /nested more than 8/],
    ['an array longer than the file', ggufFile([Buffer.concat([gstr('k'), u32(9), u32(12), u64(1n << 40n)])], [], 0), /truncated/],
    ['a duplicate key', ggufFile([kvU32('a', 1), kvU32('a', 2)], [], 0), /duplicate key "a"/],
    ['alignment not a power of two', ggufFile([kvU32('general.alignment', 48)], [], 0), /not a power of two/],
    ['alignment of the wrong type', ggufFile([Buffer.concat([gstr('general.alignment'), u32(10), u64(32)])], [], 0), /expected u32/],
    ['a misaligned tensor offset', ggufFile(kvs, [{ name: 'w', dims: [4], offset: 16 }], 64), /not a multiple of the alignment 32/],
    ['a tensor past the end of the file', ggufFile(kvs, [{ name: 'w', dims: [64], offset: 0 }], 100), /runs past the end/],
    ['9 dimensions', ggufFile(kvs, [{ name: 'w', dims: [1, 1, 1, 1, 1, 1, 1, 1, 1], offset: 0 }], 4), /9 dimensions/],
    ['2^64 elements', ggufFile(kvs, [{ name: 'w', dims: [2 ** 32, 2 ** 32], offset: 0 }], 4), /2\^63/],
    ['a duplicate tensor name', ggufFile(kvs, [{ name: 'w', dims: [1], offset: 0 }, { name: 'w', dims: [1], offset: 32 }], 64), /duplicate tensor name "w"/],
    ['a quantized row not a multiple of its block', ggufFile(kvs, [{ name: 'q', dims: [33], type: 8, offset: 0 }], 64), /multiple of its block size 32/],
    ['overlapping tensors', ggufFile(kvs, [{ name: 'a', dims: [16], offset: 0 }, { name: 'b', dims: [4], offset: 32 }], 64), /overlap/],
  ])('refuses %s', async (_what, bytes, pattern) => {
    await expectInvalid(inspectBytes(bytes, 'm.gguf'), pattern);
  });
  it('a text file that merely starts with "GGUF" is text unless it is named .gguf', async () => {
    expect((await inspectBytes(Buffer.from('GGUF notes\n'), 'notes.txt')).format).toBe('text');
    await expectInvalid(inspectBytes(Buffer.from('GGUF notes\n'), 'notes.gguf'), /version/);
  });
});

describe('ONNX walk', () => {
  it('finds external data wherever a tensor sits: subgraphs, attributes, sparse initializers, functions, training info', async () => {
    const ifNode = pbMsg(1, pbBytes(4, 'If'), pbMsg(5, pbBytes(1, 'then_branch'), pbInt(20, 5), pbMsg(6, pbMsg(5, ...[extTensor('C', 'sub/then.data')]))));
    const loopNode = pbMsg(1, pbBytes(4, 'Scan'), pbMsg(5, pbBytes(1, 'bodies'), pbMsg(11, pbMsg(1, pbMsg(5, pbMsg(6, pbMsg(5, extTensor('D', 'deep.data'))))))));
    const constNode = pbMsg(1, pbBytes(4, 'Constant'), pbMsg(5, pbBytes(1, 'value'), pbMsg(5, extTensor('K', 'const.data'))), pbMsg(5, pbBytes(1, 'values'), pbMsg(10, extTensor('K2', 'const.data'))));
    // AttributeProto.strings (9) is not a tensor: its bytes must not be parsed as one
    const stringsNode = pbMsg(1, pbBytes(4, 'X'), pbMsg(5, pbBytes(1, 's'), pbBytes(9, Buffer.from([0xff, 0xff, 0xff]))));
    const sparse = pbMsg(15, pbMsg(1, extTensor('SV', 'sparse.data')), pbMsg(2, rawTensor('SI')));
    const fn = pbMsg(25, pbBytes(1, 'f'), pbMsg(7, pbMsg(5, pbMsg(5, extTensor('FK', 'fn.data')))));
    const training = pbMsg(20, pbMsg(1, pbMsg(5, extTensor('TI', 'train.data'))));
    const model = onnxModel([ifNode, loopNode, constNode, stringsNode, pbMsg(5, rawTensor('W')), sparse], [fn, training]);
    const got = await inspectBytes(model, 'm.onnx');
    expect(got.format).toBe('onnx');
    expect(got.externalData).toEqual(['sub/then.data', 'deep.data', 'const.data', 'sparse.data', 'fn.data', 'train.data']);
    // initializers: graph initializers and sparse initializers at every depth (W, sparse, C, D, TI)
    expect(got.details).toMatchObject({ nodes: 4, initializers: 5, externalTensors: 7, externalFiles: 6, subgraphs: 3 });
  });
  it('skips big payloads by offset: a 1 GiB raw_data initializer is not read', async () => {
    const d = await tmp();
    const L = 1 << 30;
    const tensorHead = Buffer.concat([pbBytes(8, 'big'), tag(9, 2), varint(L)]);
    const tensorLen = tensorHead.length + L;
    const graphHead = Buffer.concat([tag(5, 2), varint(tensorLen), tensorHead]);
    const graphLen = graphHead.length + L;
    const prefix = Buffer.concat([pbInt(1, 8), tag(7, 2), varint(graphLen), graphHead]);
    const suffix = pbMsg(8, pbInt(2, 17));
    const p = join(d, 'big.onnx');
    const fh = await open(p, 'w');
    await fh.write(prefix, 0, prefix.length, 0);
    await fh.write(suffix, 0, suffix.length, prefix.length + L);
    await fh.close();
    const got = await inspectPath(p);
    expect(got).toMatchObject({ format: 'onnx', details: { initializers: 1, opset: 17 } });
    expect(got.bytesRead).toBeLessThan(256 * 1024);
  });
  it.each<[string, Buffer, RegExp]>([
    ['an empty file (no graph)', Buffer.alloc(0), /no graph/],
    ['no ir_version', pbMsg(7, pbBytes(2, 'g')), /no ir_version/],
    ['a deprecated group wire type', Buffer.concat([pbInt(1, 8), tag(7, 3)]), /wire type 3/],
    ['field number 0', Buffer.from([0x02, 0x00]), /field number 0/],
    ['a 10-byte varint above 2^64', Buffer.concat([tag(1, 0), Buffer.alloc(9, 0xff), Buffer.from([0x02])]), /overflows 64 bits/],
    ['an 11-byte varint', Buffer.concat([tag(1, 0), Buffer.alloc(10, 0xff), Buffer.from([1])]), /longer than 10 bytes|overflows/],
    ['a length past the end', Buffer.concat([pbInt(1, 8), tag(7, 2), varint(1000), Buffer.alloc(10)]), /truncated/],
    ['a sub-message overrunning its parent', onnxModel([Buffer.concat([tag(5, 2), varint(2), tag(8, 2), varint(5)])]), /truncated/],
    ['a graph field that is a varint', Buffer.concat([pbInt(1, 8), pbInt(7, 1)]), /wire type 0/],
    ['EXTERNAL without a location', onnxModel([pbMsg(5, pbBytes(8, 'W'), pbInt(14, 1))]), /no "location"/],
    ['an absolute location', onnxModel([pbMsg(5, extTensor('W', '/etc/passwd'))]), /absolute/],
    ['a backslash location', onnxModel([pbMsg(5, extTensor('W', '..\\x.data'))]), /backslash/],
    ['a drive-letter location', onnxModel([pbMsg(5, extTensor('W', 'C:/x.data'))]), /drive letter/],
    ['an escaping location in a subgraph', onnxModel([pbMsg(1, pbMsg(5, pbMsg(6, pbMsg(5, extTensor('W', 'a/../../x')))))]), /points outside/],
    ['graphs nested past the depth limit', onnxModel([Array.from({ length: 40 }).reduce<Buffer>((g) => pbMsg(1, pbMsg(5, pbMsg(6, g))), rawTensor('x'))]), /nested more than 100/],
  ])('refuses %s', async (_what, bytes, pattern) => {
    await expectInvalid(inspectBytes(bytes, 'model.onnx'), pattern);
  });
  it('ignores external_data entries on tensors that are not EXTERNAL', async () => {
    const t = Buffer.concat([pbBytes(8, 'W'), pbMsg(13, pbBytes(1, 'location'), pbBytes(2, '../nope')), pbBytes(9, Buffer.alloc(4))]);
    expect((await inspectBytes(onnxModel([pbMsg(5, t)]), 'm.onnx')).externalData).toEqual([]);
  });
});

describe('bounded reads of big files', () => {
  it('a 2 GiB safetensors and a 1 GiB GGUF are validated from their headers', async () => {
    const d = await tmp();
    const n = 1 << 29; // F32 elements: 2 GiB of data
    const st = safetensors({ w: { dtype: 'F32', shape: [n], data_offsets: [0, n * 4] } }, 0);
    const sp = join(d, 'big.safetensors');
    await writeFile(sp, st);
    const fh = await open(sp, 'r+');
    await fh.truncate(st.length + n * 4);
    await fh.close();
    const a = await inspectPath(sp);
    expect(a).toMatchObject({ format: 'safetensors', details: { parameters: n } });
    expect(a.bytesRead).toBeLessThan(128 * 1024);

    const g = ggufFile([kvStr('general.architecture', 'llama')], [{ name: 'w', dims: [1 << 28], offset: 0 }], 0);
    const gp = join(d, 'big.gguf');
    await writeFile(gp, g);
    const gh = await open(gp, 'r+');
    await gh.truncate(g.length + (1 << 30));
    await gh.close();
    const b = await inspectPath(gp);
    expect(b).toMatchObject({ format: 'gguf', details: { parameters: 1 << 28 } });
    expect(b.bytesRead).toBeLessThan(128 * 1024);
    // one byte short: the tensor runs past the end
    await expectInvalid(inspectPath(gp, 'big.gguf', g.length + (1 << 30) - 1), /runs past the end/);
  });

  it('read failures are IO_ERROR, not MODEL_INVALID', async () => {
    const p = join(FIX, 'tiny.gguf');
    const real = (await readFile(p)).length;
    // the caller's size is larger than the file: it changed while being read
    const e1 = await inspectPath(p, 'tiny.gguf', real + 100).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(MlicError);
    expect((e1 as MlicError).code).toBe('IO_ERROR');
    // a closed handle
    const fh = await open(p, 'r');
    await fh.close();
    const e2 = await inspectModelFile(fh, real, 'tiny.gguf').catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(MlicError);
    expect((e2 as MlicError).code).toBe('IO_ERROR');
  });
});

describe('fuzz: mutations of every good file never throw anything but MlicError(MODEL_INVALID)', () => {
  const sources: [string, string][] = [
    ['tiny-onnx/model.onnx', 'model.onnx'],
    ['onnx-external/model.onnx', 'model.onnx'],
    ['tiny.safetensors', 'm.safetensors'],
    ['sharded/model-00001-of-00002.safetensors', 'weights.bin'],
    ['sharded/model.safetensors.index.json', 'model.safetensors.index.json'],
    ['tiny.gguf', 'm.gguf'],
    ['tiny.gguf', 'm.bin'],
    ['sharded/config.json', 'config.json'],
  ];
  it('600 seeded mutations (truncate, flip, overwrite, insert, extreme u64s, garbage)', async () => {
    const rand = rng(0xc0ffee);
    const int = (n: number) => Math.floor(rand() * n);
    let rejected = 0;
    let accepted = 0;
    for (let i = 0; i < 600; i++) {
      const [src, name] = sources[i % sources.length]!;
      const orig = await readFile(join(FIX, src));
      let b = Buffer.from(orig);
      const mode = int(6);
      if (mode === 0) b = b.subarray(0, int(b.length));
      else if (mode === 1)
        for (let k = 0, n = 1 + int(4); k < n; k++) {
          const at = int(b.length);
          b[at] = (b[at] ?? 0) ^ (1 << int(8));
        }
      else if (mode === 2) for (let k = 0, n = 1 + int(8); k < n; k++) b[int(b.length)] = int(256);
      else if (mode === 3) {
        const at = int(b.length);
        b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + int(32) }, () => int(256))), b.subarray(at)]);
      } else if (mode === 4) {
        const at = int(Math.max(1, b.length - 8));
        const extremes = [0n, 1n, 0x7fffffffn, 0xffffffffn, 1n << 32n, 1n << 62n, (1n << 64n) - 1n, BigInt(b.length), BigInt(b.length + 1)];
        b.writeBigUInt64LE(extremes[int(extremes.length)]!, Math.min(at, b.length - 8));
      } else b = Buffer.from(Array.from({ length: int(600) }, () => int(256)));
      let outcome: ModelFileInfo | MlicError;
      try {
        outcome = await inspectBytes(b, name);
      } catch (e) {
        expect(e, `${src} as ${name}, mutation ${i} (mode ${mode})`).toBeInstanceOf(MlicError);
        expect((e as MlicError).code, (e as Error).message).toBe('MODEL_INVALID');
        expect((e as MlicError).message.startsWith(`${name}: `)).toBe(true);
        outcome = e as MlicError;
      }
      if (outcome instanceof MlicError) rejected++;
      else {
        accepted++;
        expect(typeof outcome.format).toBe('string');
        for (const v of Object.values(outcome.details)) expect(['string', 'number', 'boolean']).toContain(typeof v);
      }
    }
    expect(rejected).toBeGreaterThan(250);
    expect(accepted).toBeGreaterThan(20);
  });

  it('every truncation of a safetensors or GGUF file is refused', async () => {
    for (const src of ['tiny.safetensors', 'tiny.gguf', 'sharded/model-00002-of-00002.safetensors']) {
      const orig = await readFile(join(FIX, src));
      const ext = src.endsWith('.gguf') ? 'gguf' : 'safetensors';
      for (let len = 0; len < orig.length; len += 3) await expectInvalid(inspectBytes(orig.subarray(0, len), `m.${ext}`));
    }
  });
});

describe('checkModelSet', () => {
  it('marks ONNX external data and accepts shards that are present', async () => {
    const ext = await inspectPath(join(FIX, 'onnx-external/model.onnx'));
    const files = new Map<string, ModelFileInfo>([
      ['model.onnx', ext],
      ['weights.data', info('binary')],
    ]);
    const before = JSON.stringify([...files]);
    expect([...checkModelSet(files)]).toEqual([['weights.data', 'onnx-external-data']]);
    expect(JSON.stringify([...files])).toBe(before); // pure
    // relative to the ONNX file's own folder, "./" allowed
    expect(checkModelSet(new Map([['a/b/model.onnx', ext], ['a/b/weights.data', info('binary')]])).get('a/b/weights.data')).toBe('onnx-external-data');
    expect(checkModelSet(new Map([['m.onnx', info('onnx', { externalData: ['./d/w.data'] })], ['d/w.data', info('text')]])).get('d/w.data')).toBe('onnx-external-data');
    // a data file that is itself a structured model keeps its format
    expect(checkModelSet(new Map([['m.onnx', info('onnx', { externalData: ['w.safetensors'] })], ['w.safetensors', info('safetensors')]])).size).toBe(0);

    const idx = await inspectPath(join(FIX, 'sharded/model.safetensors.index.json'));
    const shardSet = new Map<string, ModelFileInfo>([
      ['m/model.safetensors.index.json', idx],
      ['m/model-00001-of-00002.safetensors', info('safetensors')],
      ['m/model-00002-of-00002.safetensors', info('safetensors')],
      ['m/config.json', info('json')],
    ]);
    expect(checkModelSet(shardSet).size).toBe(0);
  });

  it('the real fixture folders pass as a whole', async () => {
    for (const [dir, files] of [
      ['sharded', ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'tokenizer.json']],
      ['onnx-external', ['model.onnx', 'weights.data']],
      ['tiny-onnx', ['config.json', 'model.onnx']],
    ] as const) {
      const m = new Map<string, ModelFileInfo>();
      for (const f of files) m.set(f, await inspectPath(join(FIX, dir, f)));
      const o = checkModelSet(m);
      expect(o.size, dir).toBe(dir === 'onnx-external' ? 1 : 0);
    }
  });

  it('refuses missing external data, even when the file exists elsewhere in the set', async () => {
    const ext = await inspectPath(join(FIX, 'onnx-external/model.onnx'));
    expectSetInvalid([['model.onnx', ext]], /model\.onnx: external data file "weights\.data" is missing/);
    expectSetInvalid([['sub/model.onnx', ext], ['weights.data', info('binary')]], /missing \(expected "sub\/weights\.data"/);
  });

  it.each(['../outside.data', '/etc/passwd', 'C:\\x.data', 'c:x.data', 'a\\..\\b', 'a/../../x', '..', '', 'dir/', '.', 'x\u0000y', 'x\ny'])(
    'refuses the external data location %j even when its target is in the set',
    (loc) => {
      expectSetInvalid([
        ['m/model.onnx', info('onnx', { externalData: [loc] })],
        ['outside.data', info('binary')],
        ['m/x', info('binary')],
        ['m/dir/x', info('binary')],
      ]);
    },
  );

  it('refuses an ONNX model named as external data, and escaping locations from a real file', async () => {
    expectSetInvalid([['model.onnx', info('onnx', { externalData: ['model.onnx'] })]], /names an ONNX model/);
    expectSetInvalid([['a.onnx', info('onnx', { externalData: ['b.onnx'] })], ['b.onnx', info('onnx')]], /names an ONNX model/);
    // the escape fixture's tensor, re-encoded so inspect accepts it, is still caught by the set check
    expectSetInvalid([['escape-onnx/model.onnx', info('onnx', { externalData: ['../outside.data'] })], ['outside.data', info('binary')]], /points outside/);
  });

  it('refuses a sharded index with a missing shard or a shard that is not safetensors', async () => {
    const idx = await inspectPath(join(FIX, 'sharded/model.safetensors.index.json'));
    expectSetInvalid([['model.safetensors.index.json', idx], ['model-00001-of-00002.safetensors', info('safetensors')]], /shard "model-00002-of-00002\.safetensors" is missing/);
    expectSetInvalid(
      [
        ['model.safetensors.index.json', idx],
        ['model-00001-of-00002.safetensors', info('safetensors')],
        ['model-00002-of-00002.safetensors', info('binary')],
      ],
      /not a safetensors file \(detected binary\)/,
    );
    expectSetInvalid([['model.safetensors.index.json', info('safetensors-index', { shards: ['../x.safetensors'] })], ['x.safetensors', info('safetensors')]], /points outside/);
  });

  it('lists every problem at once', () => {
    const e = expectSetInvalid([
      ['a.onnx', info('onnx', { externalData: ['x.data', '../y.data'] })],
      ['i.safetensors.index.json', info('safetensors-index', { shards: ['s1.safetensors'] })],
    ]);
    expect(e.message).toMatch(/and 2 more problems/);
    expect((e.details as { problems: string[] }).problems).toHaveLength(3);
  });
});
