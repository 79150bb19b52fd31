/** GGUF (llama.cpp's format): key-values, tensor infos, alignment. */
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAX_ARRAY_DEPTH, GGUF_MAX_DIMS, GGUF_MAX_KEY, GGUF_MAX_KV, GGUF_MAX_TENSORS, type ModelFileInfo, Reader, SHORT_STRING, decodeUtf8, q, utf8Lenient } from './reader.js';
// ---------------------------------------------------------------------------------------------
// GGUF

/** ggml types: [name, block size (elements), bytes per block], from ggml / gguf-py GGML_QUANT_SIZES. */
export const GGML_TYPES: Record<number, readonly [string, number, number]> = {
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
export const GGUF_FIXED: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
export const GGUF_STRING = 8;
export const GGUF_ARRAY = 9;
export const GGUF_U32 = 4;
/** Keys whose values are reported in details. */
export const GGUF_KEPT: Record<string, string> = {
  'general.architecture': 'architecture',
  'general.name': 'name',
  'general.file_type': 'fileType',
  'general.alignment': 'alignment',
};

export async function ggufStringLength(r: Reader, what: string): Promise<number> {
  const len = await r.u64(`${what} length`);
  if (len > BigInt(r.size - r.pos)) throw r.invalid(`truncated: ${what} at offset ${r.pos - 8} claims ${len} bytes but only ${r.size - r.pos} remain`);
  return Number(len);
}

/** Reads a value of `type`; returns it when `keep` and it is a scalar number or short string, else skips it. */
export async function ggufValue(r: Reader, type: number, key: string, depth: number, keep: boolean): Promise<string | number | boolean | undefined> {
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
export async function inspectGguf(r: Reader): Promise<ModelFileInfo> {
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

