/**
 * GGUF in the weight fingerprint: listing the tensors of a GGUF file (the fixture, and a v3 file
 * written here with 64-byte alignment and a quantized tensor), marking it (only the float tensors
 * change), tracing the marked copy (the licence named, nobody else), a transformer-shaped GGUF
 * model against 1,000 candidates, and refusing a truncated file.
 */
import { describe, it, expect } from 'vitest';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { listTensors, markable, type TensorRef } from '../../src/mark/tensors.js';
import { markModel } from '../../src/mark/mark.js';
import { indexModel } from '../../src/mark/model.js';
import { licenceMarkKey } from '../../src/mark/pattern.js';
import { trace } from '../../src/mark/trace.js';
import { prng, tmp } from '../helpers.js';
import { rng, synthModel } from './synth.js';
import { GGML, V, f16s, f32s, ggufModel, gstr, kv, u32, u64, writeGguf, type GTensor } from './gguf-file.js';

const FIX = fileURLToPath(new URL('../../fixtures/models/', import.meta.url));

async function list(path: string, rel: string): Promise<TensorRef[]> {
  const fh = await open(path, 'r');
  try {
    return await listTensors(fh, (await fh.stat()).size, rel);
  } finally {
    await fh.close();
  }
}

function normals(n: number, seed: number, scale: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r.normal() * scale);
}

function sample(): ReturnType<typeof writeGguf> {
  const kvs = [
    kv('general.architecture', V.STRING, gstr('llama')),
    kv('general.name', V.STRING, gstr('mlic gguf test')),
    kv('tokenizer.ggml.tokens', V.ARRAY, Buffer.concat([u32(V.STRING), u64(4), gstr('<unk>'), gstr('<s>'), gstr('hello'), gstr('world')])),
    kv('llama.rope.freq_base', V.F32, Buffer.from(new Float32Array([10000]).buffer)),
    kv('general.alignment', V.U32, u32(64)),
    kv('llama.use_parallel_residual', V.BOOL, Buffer.from([1])),
  ];
  const tensors: GTensor[] = [
    // [256, 64] as the model sees it: ne = [64, 256]
    { name: 'blk.0.attn_q.weight', ne: [64, 256], type: GGML.F32, data: f32s(normals(256 * 64, 1, 0.02)) },
    { name: 'blk.0.ffn_up.weight', ne: [64, 128], type: GGML.F16, data: f16s(normals(128 * 64, 2, 0.05)) },
    // 64 × 32 elements in Q8_0: 64 blocks of 32 elements, 34 bytes each
    { name: 'blk.0.ffn_down.weight', ne: [64, 32], type: GGML.Q8_0, data: prng(64 * 34, 7) },
  ];
  return writeGguf(kvs, tensors, 64);
}

describe('GGUF tensors', () => {
  it('lists the tensors of fixtures/models/tiny.gguf with their names, types, shapes and bytes', async () => {
    const p = join(FIX, 'tiny.gguf');
    const ts = await list(p, 'tiny.gguf');
    const bytes = await readFile(p);
    expect(ts.map((t) => [t.name, t.dtype, t.shape, t.elements, t.length])).toEqual([
      ['blk.0.weight', 'F32', [4, 3], 12, 48],
      ['blk.0.bias', 'F32', [3], 3, 12],
    ]);
    for (const t of ts) {
      expect(t.file).toBe('tiny.gguf');
      expect(t.offset % 32).toBe(0);
    }
    // the values fixtures/gen/gguf.mjs wrote (W and B of fixtures/gen/onnx.mjs)
    const W = Array.from({ length: 12 }, (_, k) => (((k * 5) % 7) - 3) * 0.25);
    const B = [4.5, 3, -0.75];
    const read = (t: TensorRef) => Array.from({ length: t.elements }, (_, i) => bytes.readFloatLE(t.offset + 4 * i));
    expect(read(ts[0]!)).toEqual(W);
    expect(read(ts[1]!)).toEqual(B);
    expect(ts[1]!.offset).toBe(ts[0]!.offset + 64);
    expect(ts[1]!.offset + ts[1]!.length).toBe(bytes.length);
  });

  it('lists a v3 file with 64-byte alignment and a Q8_0 tensor; mark changes only the float tensors; trace finds them', async () => {
    const dir = await tmp();
    const { bytes, offsets } = sample();
    const src = join(dir, 'model.gguf');
    await writeFile(src, bytes);

    const ts = await list(src, 'model.gguf');
    expect(ts.map((t) => [t.name, t.dtype, t.shape, t.elements, t.length])).toEqual([
      ['blk.0.attn_q.weight', 'F32', [256, 64], 16384, 65536],
      ['blk.0.ffn_up.weight', 'F16', [128, 64], 8192, 16384],
      ['blk.0.ffn_down.weight', 'Q8_0', [32, 64], 2048, 2176],
    ]);
    expect(ts.map((t) => t.offset)).toEqual(offsets);
    for (const t of ts) expect(t.offset % 64).toBe(0);
    expect(ts[2]!.offset + ts[2]!.length).toBe(bytes.length);
    expect(ts.map((t) => markable(t))).toEqual([true, true, false]);

    const key = licenceMarkKey(Buffer.alloc(32, 1), 'lic');
    const out = join(dir, 'marked.gguf');
    const rep = await markModel(src, out, { markKey: key });
    expect(rep.tensors).toEqual({ total: 3, marked: 2 });
    expect(rep.otherTypes).toEqual({ Q8_0: 1 });

    const after = await readFile(out);
    expect(after.length).toBe(bytes.length);
    expect(await list(out, 'marked.gguf')).toEqual(ts.map((t) => ({ ...t, file: 'marked.gguf' })));
    // every byte outside the two float tensors (header, metadata, tensor infos, padding, Q8_0 data) is the original's
    const inFloat = (i: number) => ts.slice(0, 2).some((t) => i >= t.offset && i < t.offset + t.length);
    let outside = 0;
    for (let i = 0; i < bytes.length; i++) {
      if (inFloat(i)) continue;
      outside++;
      if (after[i] !== bytes[i]) throw new Error(`byte ${i} changed outside the float tensors`);
    }
    expect(outside).toBe(bytes.length - 65536 - 16384);
    // and the float tensors did change
    for (const t of ts.slice(0, 2)) expect(after.subarray(t.offset, t.offset + t.length).equals(bytes.subarray(t.offset, t.offset + t.length))).toBe(false);

    const r = await trace(await indexModel(src), await indexModel(out), [
      { licenseId: 'lic', markKey: key },
      { licenseId: 'other', markKey: licenceMarkKey(Buffer.alloc(32, 1), 'other') },
    ]);
    expect(r.matched.length).toBe(2);
    expect(r.candidates[0]!.licenseId).toBe('lic');
    const score = (id: string) => r.candidates.find((c) => c.licenseId === id)!.score;
    expect(score('lic')).toBeGreaterThan(score('other'));
    // named, not only ranked first: past the threshold for its candidates, and nobody else
    expect(r.implicated).toEqual(['lic']);
    expect(r.candidates.find((c) => c.licenseId === 'other')!.implicated).toBe(false);
    console.log(`[gguf] marked: lic z=${score('lic').toFixed(1)}, other z=${score('other').toFixed(1)}`);
  }, 60_000);

  it('a transformer-shaped GGUF model (F32 and F16 copies, a Q8_0 tensor beside) marked for one of 1,000 candidates: that licence is named, nobody else; the unmarked file names nobody', async () => {
    const dir = await tmp();
    const master = Buffer.alloc(32, 3);
    const ids = Array.from({ length: 1000 }, (_, i) => `lic_${i}`);
    const candidates = ids.map((licenseId) => ({ licenseId, markKey: licenceMarkKey(master, licenseId) }));
    for (const dtype of ['F32', 'F16'] as const) {
      const src = join(dir, `model-${dtype}.gguf`);
      await writeFile(src, ggufModel(synthModel(5, 128, 3), { dtype, quantized: true }).bytes);
      const out = join(dir, `marked-${dtype}.gguf`);
      const rep = await markModel(src, out, { markKey: licenceMarkKey(master, 'lic_321') });
      expect(rep.tensors.marked).toBe(18);
      expect(rep.otherTypes).toEqual({ Q8_0: 1 });
      const r = await trace(await indexModel(src), await indexModel(out), candidates);
      const top = r.candidates.slice(0, 2).map((c) => `${c.licenseId} z=${c.score.toFixed(1)}`).join(', ');
      console.log(`[gguf] ${dtype}, 1,000 candidates: ${top}`);
      expect(r.matched).toHaveLength(18);
      expect(r.implicated, top).toEqual(['lic_321']);
      const plain = await trace(await indexModel(src), await indexModel(src), candidates);
      expect(plain.implicated).toEqual([]);
      expect(plain.differing).toBe(0);
    }
  }, 60_000);

  it('refuses a GGUF cut in its tensor infos (MODEL_INVALID)', async () => {
    const dir = await tmp();
    const { bytes, infosStart } = sample();
    const p = join(dir, 'cut.gguf');
    await writeFile(p, bytes.subarray(0, infosStart + 30));
    await expect(list(p, 'cut.gguf')).rejects.toMatchObject({ code: 'MODEL_INVALID' });
  });
});
