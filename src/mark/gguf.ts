/**
 * The tensors of a GGUF file (llama.cpp's format, versions 2 and 3, little-endian) as byte ranges.
 * The file has been validated by inspectGguf (src/format/models/gguf.ts) first, which this walk
 * reads with the same helpers: header, key-values (skipped, but `general.alignment`, default 32),
 * tensor infos (name, ne[0..n_dims), ggml type, offset relative to the data section). The data
 * section starts at the end of the tensor infos rounded up to the alignment.
 *
 * Element types are listed under their ggml names (F32, F16, BF16, Q8_0, Q4_K, ...; GGML_<n> for
 * a type ggml does not define); a known type's byte length is its blocks times the bytes per
 * block. An unknown type's runs to the next tensor's data or the end of the file. Shapes are
 * outermost first (ne reversed), as safetensors writes them: a [rows, cols] matrix has ne = [cols, rows].
 */
import type { ReadAt } from '../util/read-at.js';
import { Reader, GGUF_DEFAULT_ALIGNMENT, utf8Lenient } from '../format/models/reader.js';
import { GGML_TYPES, GGUF_U32, ggufStringLength, ggufValue } from '../format/models/gguf.js';
import type { TensorRef } from './ref.js';

interface Info {
  name: string;
  ne: bigint[];
  type: number;
  offset: bigint;
}

/** Every tensor of a GGUF file that inspectModelFile has accepted, in the order of its tensor infos. */
export async function ggufTensors(fh: ReadAt, size: number, rel: string): Promise<TensorRef[]> {
  const r = new Reader(fh, size, rel);
  r.pos = 4;
  const version = await r.u32('GGUF version');
  if (version !== 2 && version !== 3) throw r.invalid(`unsupported GGUF version ${version}; versions 2 and 3 are supported`);
  const tensorCount = Number(await r.u64('tensor count'));
  const kvCount = Number(await r.u64('key-value count'));

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  for (let i = 0; i < kvCount; i++) {
    const klen = await ggufStringLength(r, `key #${i}`);
    const key = utf8Lenient.decode(await r.bytes(klen, `key #${i}`));
    const type = await r.u32(`type of ${key}`);
    const isAlignment = key === 'general.alignment' && type === GGUF_U32;
    const value = await ggufValue(r, type, key, 0, isAlignment);
    if (isAlignment && typeof value === 'number' && value > 0) alignment = value;
  }

  const infos: Info[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const nlen = await ggufStringLength(r, `tensor #${i} name`);
    const name = utf8Lenient.decode(await r.bytes(nlen, `tensor #${i} name`));
    const nDims = await r.u32(`tensor #${i} dimension count`);
    const ne: bigint[] = [];
    for (let d = 0; d < nDims; d++) ne.push(await r.u64(`tensor #${i} dimension ${d}`));
    const type = await r.u32(`tensor #${i} type`);
    const offset = await r.u64(`tensor #${i} offset`);
    infos.push({ name, ne, type, offset });
  }
  const dataStart = BigInt(Math.ceil(r.pos / alignment) * alignment);
  const starts = [...new Set(infos.map((t) => t.offset))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

  return infos.map((t) => {
    const elements = t.ne.reduce((a, d) => a * d, 1n);
    const gt = GGML_TYPES[t.type];
    let length: bigint;
    if (gt) {
      const [, block, blockBytes] = gt;
      length = (elements / BigInt(block)) * BigInt(blockBytes);
    } else {
      const next = starts.find((o) => o > t.offset);
      length = (next !== undefined ? dataStart + next : BigInt(size)) - (dataStart + t.offset);
    }
    return {
      file: rel,
      name: t.name,
      dtype: gt ? gt[0] : `GGML_${t.type}`,
      shape: t.ne.map(Number).reverse(),
      offset: Number(dataStart + t.offset),
      length: Number(length),
      elements: Number(elements),
    };
  });
}
