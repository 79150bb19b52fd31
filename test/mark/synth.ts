/**
 * Synthetic models for the fingerprint tests, and what a leaker might do to one. A model is a map
 * of named float tensors; it is written as safetensors (any element type, any sharding) or as an
 * ONNX model holding the same tensors as initializers, and read back from either.
 */
import { writeFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { floatToBf16, floatToHalf, decode, type FloatDtype } from '../../src/mark/dtype.js';
import { indexModel } from '../../src/mark/model.js';
import { OpenFiles } from '../../src/mark/model.js';
import { readFully } from '../../src/format/models/reader.js';
import { isFloat } from '../../src/mark/tensors.js';

export interface T {
  shape: number[];
  data: Float32Array;
}
export type Model = Map<string, T>;

/** A seeded PRNG (mulberry32) and standard normals from it (Box–Muller). */
export function rng(seed: number) {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
  return { u, normal };
}

/**
 * A transformer-like model: `layers` blocks of four d×d attention matrices and two MLP matrices
 * (d×4d, 4d×d), with biases and norms, an embedding; each matrix with its own scale, a few
 * heavy-tailed outliers as in real checkpoints.
 */
export function synthModel(seed: number, d = 128, layers = 4): Model {
  const r = rng(seed);
  const m: Model = new Map();
  const mat = (name: string, rows: number, cols: number) => {
    const scale = 0.02 * (0.5 + r.u());
    const data = new Float32Array(rows * cols);
    for (let i = 0; i < data.length; i++) data[i] = r.normal() * scale * (r.u() < 0.001 ? 8 : 1);
    m.set(name, { shape: [rows, cols], data });
  };
  const vec = (name: string, n: number, base: number) => m.set(name, { shape: [n], data: Float32Array.from({ length: n }, () => base + 0.01 * r.normal()) });
  mat('model.embed_tokens.weight', 512, d);
  for (let l = 0; l < layers; l++) {
    for (const p of ['q', 'k', 'v', 'o']) mat(`model.layers.${l}.self_attn.${p}_proj.weight`, d, d);
    mat(`model.layers.${l}.mlp.up_proj.weight`, 4 * d, d);
    mat(`model.layers.${l}.mlp.down_proj.weight`, d, 4 * d);
    vec(`model.layers.${l}.input_layernorm.weight`, d, 1);
    vec(`model.layers.${l}.mlp.up_proj.bias`, 4 * d, 0);
  }
  vec('model.norm.weight', d, 1);
  return m;
}

// --- files ----------------------------------------------------------------------------------

function encode(dtype: FloatDtype, data: Float32Array): Buffer {
  const w = dtype === 'F32' ? 4 : 2;
  const b = Buffer.alloc(data.length * w);
  for (let i = 0; i < data.length; i++) {
    if (dtype === 'F32') b.writeFloatLE(data[i]!, i * 4);
    else b.writeUInt16LE(dtype === 'F16' ? floatToHalf(data[i]!) : floatToBf16(data[i]!), i * 2);
  }
  return b;
}

export function safetensorsBytes(entries: [string, T][], dtype: FloatDtype = 'F32'): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const datas: Buffer[] = [];
  let off = 0;
  for (const [name, t] of entries) {
    const b = encode(dtype, t.data);
    header[name] = { dtype, shape: t.shape, data_offsets: [off, off + b.length] };
    datas.push(b);
    off += b.length;
  }
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...datas]);
}

/**
 * Writes the model as safetensors: one file, or `shards` files named model-0000k-of-0000n.safetensors
 * in `path` (a directory); with `index`, also model.safetensors.index.json (weight_map: tensor ->
 * shard, metadata.total_size), as Hugging Face writes a sharded checkpoint.
 */
export async function writeSafetensors(path: string, m: Model, o: { dtype?: FloatDtype; shards?: number; index?: boolean } = {}): Promise<string> {
  const entries = [...m.entries()];
  if (!o.shards) {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, safetensorsBytes(entries, o.dtype));
    return path;
  }
  await mkdir(path, { recursive: true });
  const per = Math.ceil(entries.length / o.shards);
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (let k = 0; k < o.shards; k++) {
    const name = `model-${String(k + 1).padStart(5, '0')}-of-${String(o.shards).padStart(5, '0')}.safetensors`;
    const part = entries.slice(k * per, (k + 1) * per);
    for (const [n, t] of part) {
      weightMap[n] = name;
      totalSize += t.data.length * (o.dtype === undefined || o.dtype === 'F32' ? 4 : 2);
    }
    await writeFile(join(path, name), safetensorsBytes(part, o.dtype));
  }
  if (o.index) await writeFile(join(path, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + '\n');
  return path;
}

// protobuf wire format, enough for an ONNX model of initializers
const varint = (n: number): Buffer => {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
};
export const pbInt = (field: number, v: number) => Buffer.concat([varint(field * 8), varint(v)]);
export const pbBytes = (field: number, b: Buffer | string) => {
  const buf = typeof b === 'string' ? Buffer.from(b) : b;
  return Buffer.concat([varint(field * 8 + 2), varint(buf.length), buf]);
};

/** An ONNX model whose graph holds the tensors as initializers (F32 raw_data). */
export function onnxBytes(m: Model): Buffer {
  return onnxModel(m).onnx;
}

/**
 * An ONNX model of the tensors as initializers: raw_data of FLOAT (1) or FLOAT16 (10), or, with
 * `external`, all of them in one external data file (data_location EXTERNAL, location, offset, length).
 */
export function onnxModel(m: Model, o: { dtype?: 'F32' | 'F16'; external?: string } = {}): { onnx: Buffer; data?: Buffer } {
  const dtype = o.dtype ?? 'F32';
  const parts: Buffer[] = [];
  const datas: Buffer[] = [];
  let off = 0;
  for (const [name, t] of m) {
    const bytes = encode(dtype, t.data);
    const head = [...t.shape.map((d) => pbInt(1, d)), pbInt(2, dtype === 'F32' ? 1 : 10), pbBytes(8, name)];
    if (o.external) {
      const entry = (k: string, v: string) => pbBytes(13, Buffer.concat([pbBytes(1, k), pbBytes(2, v)]));
      parts.push(pbBytes(5, Buffer.concat([...head, entry('location', o.external), entry('offset', String(off)), entry('length', String(bytes.length)), pbInt(14, 1)])));
      datas.push(bytes);
      off += bytes.length;
    } else parts.push(pbBytes(5, Buffer.concat([...head, pbBytes(9, bytes)])));
  }
  const graph = Buffer.concat([pbBytes(2, 'synthetic'), ...parts]);
  const onnx = Buffer.concat([pbInt(1, 8), pbBytes(2, 'mlic-tests'), pbBytes(7, graph), pbBytes(8, Buffer.concat([pbBytes(1, ''), pbInt(2, 17)]))]);
  return o.external ? { onnx, data: Buffer.concat(datas) } : { onnx };
}

/** Reads every float tensor of a model file or directory (any supported format) back. */
export async function readModel(path: string): Promise<Model> {
  const idx = await indexModel(path);
  const files = new OpenFiles(idx.files);
  const m: Model = new Map();
  try {
    for (const t of idx.tensors.filter(isFloat)) {
      const b = Buffer.alloc(t.length);
      await readFully(await files.get(t.file), b, t.length, t.offset, t.file);
      const data = new Float32Array(t.elements);
      decode(t.dtype, b, data);
      m.set(t.name, { shape: t.shape, data });
    }
  } finally {
    await files.close();
  }
  return m;
}

// --- attacks --------------------------------------------------------------------------------

const map = (m: Model, f: (name: string, t: T) => T | undefined): Model => {
  const out: Model = new Map();
  for (const [n, t] of m) {
    const x = f(n, t);
    if (x) out.set(n, x);
  }
  return out;
};
const isMatrix = (t: T) => t.shape.length >= 2;
const std = (a: Float32Array) => {
  let s = 0;
  let q = 0;
  for (const v of a) {
    s += v;
    q += v * v;
  }
  const mean = s / a.length;
  return Math.sqrt(q / a.length - mean * mean);
};

export const attacks = {
  castF16: (m: Model) => map(m, (_, t) => ({ ...t, data: roundTrip('F16', t.data) })),
  castBf16: (m: Model) => map(m, (_, t) => ({ ...t, data: roundTrip('BF16', t.data) })),
  /** symmetric int8 per output channel (row), then back to float */
  int8: (m: Model) =>
    map(m, (_, t) => {
      if (!isMatrix(t)) return t;
      const cols = t.data.length / t.shape[0]!;
      const out = new Float32Array(t.data.length);
      for (let r = 0; r < t.shape[0]!; r++) {
        let mx = 0;
        for (let c = 0; c < cols; c++) mx = Math.max(mx, Math.abs(t.data[r * cols + c]!));
        const s = mx / 127 || 1;
        for (let c = 0; c < cols; c++) out[r * cols + c] = Math.round(t.data[r * cols + c]! / s) * s;
      }
      return { ...t, data: out };
    }),
  noise: (m: Model, frac = 0.01, seed = 9) => {
    const r = rng(seed);
    return map(m, (_, t) => {
      const s = std(t.data) * frac;
      return { ...t, data: t.data.map((v) => v + s * r.normal()) };
    });
  },
  /** zeroes the smallest 30% of each matrix's weights by magnitude */
  prune: (m: Model, frac = 0.3) =>
    map(m, (_, t) => {
      if (!isMatrix(t)) return t;
      const sorted = Float32Array.from(t.data, Math.abs).sort();
      const cut = sorted[Math.floor(sorted.length * frac)]!;
      return { ...t, data: t.data.map((v) => (Math.abs(v) < cut ? 0 : v)) };
    }),
  /** adds a random rank-`rank` update U·Vᵀ with ‖UVᵀ‖_F = frac·‖W‖_F to every matrix (a fine-tune such as LoRA) */
  lowRank: (m: Model, frac = 0.05, rank = 8, seed = 11) => {
    const r = rng(seed);
    return map(m, (_, t) => {
      if (!isMatrix(t)) return t;
      const rows = t.shape[0]!;
      const cols = t.data.length / rows;
      const u = Float32Array.from({ length: rows * rank }, () => r.normal());
      const v = Float32Array.from({ length: cols * rank }, () => r.normal());
      const delta = new Float32Array(t.data.length);
      for (let i = 0; i < rows; i++)
        for (let j = 0; j < cols; j++) {
          let s = 0;
          for (let k = 0; k < rank; k++) s += u[i * rank + k]! * v[j * rank + k]!;
          delta[i * cols + j] = s;
        }
      let nd = 0;
      let nw = 0;
      for (let i = 0; i < delta.length; i++) {
        nd += delta[i]! ** 2;
        nw += t.data[i]! ** 2;
      }
      const k = (frac * Math.sqrt(nw)) / Math.sqrt(nd);
      return { ...t, data: t.data.map((x, i) => x + k * delta[i]!) };
    });
  },
  /** new names, and the tensors in another order */
  rename: (m: Model) => new Map([...m.entries()].reverse().map(([, t], i) => [`leaked.${i}`, t] as [string, T])),
  /** every other tensor only */
  half: (m: Model) => new Map([...m.entries()].filter((_, i) => i % 2 === 0)),
  average: (...ms: Model[]) => map(ms[0]!, (n, t) => ({ ...t, data: t.data.map((_, i) => ms.reduce((s, x) => s + x.get(n)!.data[i]!, 0) / ms.length) })),
};

function roundTrip(dtype: FloatDtype, a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  decode(dtype, encode(dtype, a), out);
  return out;
}
