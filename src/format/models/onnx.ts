/** ONNX: the protobuf wire format walked in place (external data locations, subgraphs). */
import { relativeLocationProblem } from './set.js';
import { HINT_LOCATION, type ModelFileInfo, ONNX_MAX_LOCATION, PB_MAX_DEPTH, Reader, SHORT_STRING, q, utf8Lenient } from './reader.js';
// ---------------------------------------------------------------------------------------------
// ONNX (protobuf wire format, walked in place)

export const WT_VARINT = 0;
export const WT_I64 = 1;
export const WT_LEN = 2;
export const WT_I32 = 5;

export interface PbField {
  field: number;
  wt: number;
  /** varint value (wt 0) or payload length (wt 2) */
  value: number;
  /** where the payload starts (wt 2) */
  start: number;
}

export interface OnnxState {
  r: Reader;
  locations: string[];
  seen: Set<string>;
  tensors: number;
  initializers: number;
  externalTensors: number;
  subgraphs: number;
}

export async function pbNext(r: Reader, end: number, msg: string): Promise<PbField> {
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
export function pbSkip(r: Reader, f: PbField): void {
  if (f.wt === WT_LEN) r.pos = f.start + f.value;
}

export function pbExpectLen(r: Reader, f: PbField, msg: string): void {
  if (f.wt !== WT_LEN) throw r.invalid(`${msg} field ${f.field} has wire type ${f.wt}, expected a length-delimited message`);
}

export async function pbSub<T>(st: OnnxState, f: PbField, msg: string, depth: number, parse: (end: number, depth: number) => Promise<T>): Promise<T> {
  pbExpectLen(st.r, f, msg);
  if (depth >= PB_MAX_DEPTH) throw st.r.invalid(`ONNX messages are nested more than ${PB_MAX_DEPTH} deep`);
  const end = f.start + f.value;
  const out = await parse(end, depth + 1);
  if (st.r.pos !== end) throw st.r.invalid(`${msg} field ${f.field} ends at ${st.r.pos}, not at its declared end ${end}`);
  return out;
}

/** A string field: its text when at most `cap` bytes (else null, skipped). */
export async function pbString(r: Reader, f: PbField, msg: string, cap: number): Promise<string | null> {
  pbExpectLen(r, f, msg);
  if (f.value > cap) {
    pbSkip(r, f);
    return null;
  }
  return utf8Lenient.decode(await r.bytes(f.value, `${msg} field ${f.field}`));
}

export async function onnxTensor(st: OnnxState, end: number, depth: number): Promise<void> {
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

export async function onnxSparseTensor(st: OnnxState, end: number, depth: number): Promise<void> {
  while (st.r.pos < end) {
    const f = await pbNext(st.r, end, 'SparseTensorProto');
    if (f.field === 1 || f.field === 2) await pbSub(st, f, 'SparseTensorProto', depth, (e, d) => onnxTensor(st, e, d));
    else pbSkip(st.r, f);
  }
}

export async function onnxAttribute(st: OnnxState, end: number, depth: number): Promise<void> {
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

export async function onnxNode(st: OnnxState, end: number, depth: number): Promise<void> {
  while (st.r.pos < end) {
    const f = await pbNext(st.r, end, 'NodeProto');
    if (f.field === 5) await pbSub(st, f, 'NodeProto', depth, (e, d) => onnxAttribute(st, e, d));
    else pbSkip(st.r, f);
  }
}

/** GraphProto: node=1, initializer=5, sparse_initializer=15. Returns its node count. */
export async function onnxGraph(st: OnnxState, end: number, depth: number): Promise<number> {
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
export async function inspectOnnx(r: Reader): Promise<ModelFileInfo> {
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

