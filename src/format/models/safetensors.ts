/** safetensors, validated the way the safetensors library does. */
import { type ModelFileInfo, Reader, SAFETENSORS_MAX_HEADER, decodeUtf8, isPlainObject, q } from './reader.js';
// ---------------------------------------------------------------------------------------------
// safetensors

/** Bits per element, from the safetensors library's Dtype::bitsize. */
export const SAFETENSORS_DTYPE_BITS: Record<string, number> = {
  BOOL: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8,
  I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, C64: 64, F64: 64, I64: 64, U64: 64,
};

export function looksLikeSafetensors(head: Buffer, size: number): boolean {
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
export async function inspectSafetensors(r: Reader, sniffed: boolean): Promise<ModelFileInfo | null> {
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

