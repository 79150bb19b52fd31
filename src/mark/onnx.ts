/**
 * The initializers (and Constant nodes' values) of an ONNX model's main graph as byte ranges: raw_data inside the .onnx file,
 * float_data (packed little-endian floats, the same bytes), or external data (a byte range of
 * another file named by a relative location, already checked by the model-format checks).
 * Element types: FLOAT (1) → F32, FLOAT16 (10) → F16, BFLOAT16 (16) → BF16 when in raw_data or
 * external data; the others are listed under their ONNX names and never marked.
 */
import { posix } from 'node:path';
import type { ReadAt } from '../util/read-at.js';
import { Reader, SHORT_STRING, ONNX_MAX_LOCATION } from '../format/models/reader.js';
import { WT_LEN, WT_VARINT, pbNext, pbSkip, pbString, type PbField } from '../format/models/onnx.js';
import type { TensorRef } from './ref.js';

const ONNX_TYPES: Record<number, string> = { 1: 'F32', 2: 'U8', 3: 'I8', 4: 'U16', 5: 'I16', 6: 'I32', 7: 'I64', 8: 'STRING', 9: 'BOOL', 10: 'F16', 11: 'F64', 12: 'U32', 13: 'U64', 16: 'BF16' };
const WIDTH: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

async function sub<T>(r: Reader, f: PbField, fn: (end: number) => Promise<T>): Promise<T> {
  if (f.wt !== WT_LEN) throw r.invalid(`field ${f.field} has wire type ${f.wt}, expected a length-delimited message`);
  const end = f.start + f.value;
  const out = await fn(end);
  r.pos = end;
  return out;
}

async function tensor(r: Reader, end: number, rel: string): Promise<TensorRef | undefined> {
  let name = '';
  let type = 0;
  const dims: number[] = [];
  let raw: { offset: number; length: number } | undefined;
  let floatData: { offset: number; length: number } | undefined;
  let external = false;
  const ext: Record<string, string> = {};
  while (r.pos < end) {
    const f = await pbNext(r, end, 'TensorProto');
    if (f.field === 1 && f.wt === WT_VARINT) dims.push(f.value);
    else if (f.field === 1 && f.wt === WT_LEN) {
      const e = f.start + f.value;
      while (r.pos < e) dims.push(await r.varint(e, 'TensorProto dims'));
    } else if (f.field === 2 && f.wt === WT_VARINT) type = f.value;
    else if (f.field === 8) name = (await pbString(r, f, 'TensorProto', SHORT_STRING)) ?? name;
    else if (f.field === 9 && f.wt === WT_LEN) {
      raw = { offset: f.start, length: f.value };
      pbSkip(r, f);
    } else if (f.field === 4 && f.wt === WT_LEN) {
      floatData = { offset: f.start, length: f.value };
      pbSkip(r, f);
    } else if (f.field === 14 && f.wt === WT_VARINT) external = f.value === 1;
    else if (f.field === 13) {
      await sub(r, f, async (e) => {
        let key: string | null = null;
        let value: string | null = null;
        while (r.pos < e) {
          const g = await pbNext(r, e, 'StringStringEntryProto');
          if (g.field === 1) key = await pbString(r, g, 'StringStringEntryProto', SHORT_STRING);
          else if (g.field === 2) value = await pbString(r, g, 'StringStringEntryProto', ONNX_MAX_LOCATION);
          else pbSkip(r, g);
        }
        if (key !== null && value !== null) ext[key] = value;
      });
    } else pbSkip(r, f);
  }
  const dtype = ONNX_TYPES[type] ?? `ONNX_${type}`;
  const elements = dims.reduce((a, d) => a * d, 1);
  const width = WIDTH[dtype];
  if (external) {
    if (!ext.location || !width) return undefined;
    const offset = Number(ext.offset ?? '0');
    const length = ext.length !== undefined ? Number(ext.length) : elements * width;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) return undefined;
    const file = posix.join(posix.dirname(rel), ext.location);
    return { file, name, dtype, shape: dims, offset, length, elements };
  }
  const data = raw ?? (dtype === 'F32' ? floatData : undefined);
  if (!data) return undefined;
  return { file: rel, name, dtype, shape: dims, offset: data.offset, length: data.length, elements };
}

/** A Constant node's `value` tensor (exporters such as paddle2onnx store weights so), named by the node's output when the tensor has no name. */
async function constantNode(r: Reader, end: number, rel: string): Promise<TensorRef | undefined> {
  let output = '';
  let op = '';
  let t: TensorRef | undefined;
  while (r.pos < end) {
    const f = await pbNext(r, end, 'NodeProto');
    if (f.field === 2 && !output) output = (await pbString(r, f, 'NodeProto', SHORT_STRING)) ?? '';
    else if (f.field === 4) op = (await pbString(r, f, 'NodeProto', SHORT_STRING)) ?? '';
    else if (f.field === 5 && f.wt === WT_LEN) {
      const found = await sub(r, f, async (e) => {
        let name = '';
        let value: TensorRef | undefined;
        while (r.pos < e) {
          const g = await pbNext(r, e, 'AttributeProto');
          if (g.field === 1) name = (await pbString(r, g, 'AttributeProto', SHORT_STRING)) ?? '';
          else if (g.field === 5 && g.wt === WT_LEN) value = await sub(r, g, (e2) => tensor(r, e2, rel));
          else pbSkip(r, g);
        }
        return name === 'value' ? value : undefined;
      });
      t = found ?? t;
    } else pbSkip(r, f);
  }
  if (op !== 'Constant' || !t) return undefined;
  return t.name ? t : { ...t, name: output };
}

/** The main graph's initializers and Constant nodes' tensors (sparse ones and those of subgraphs are left out). */
export async function onnxTensors(fh: ReadAt, size: number, rel: string): Promise<TensorRef[]> {
  const r = new Reader(fh, size, rel);
  const out: TensorRef[] = [];
  r.pos = 0;
  while (r.pos < r.size) {
    const f = await pbNext(r, r.size, 'ModelProto');
    if (f.field !== 7 || f.wt !== WT_LEN) {
      pbSkip(r, f);
      continue;
    }
    await sub(r, f, async (end) => {
      while (r.pos < end) {
        const g = await pbNext(r, end, 'GraphProto');
        if (g.field === 5 && g.wt === WT_LEN) {
          const t = await sub(r, g, (e) => tensor(r, e, rel));
          if (t) out.push(t);
        } else if (g.field === 1 && g.wt === WT_LEN) {
          const t = await sub(r, g, (e) => constantNode(r, e, rel));
          if (t) out.push(t);
        } else pbSkip(r, g);
      }
    });
  }
  return out;
}
