/**
 * `mark` and `trace` on real files: a synthetic transformer-shaped model (1,769,472 marked
 * weights in 24 matrices) marked for three licences, each copy changed as a leaker would, traced
 * against 1,000 candidate licences. Checked: the right licence is named, and nobody is named for
 * an unmarked model, one marked for a licence outside the candidates, or a model of the same
 * architecture with weights of its own. Also: a sharded checkpoint (shards and index) marked as
 * a directory stays a valid checkpoint of the same layout.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { join } from 'node:path';
import { readFile, writeFile } from 'node:fs/promises';
import { markModel } from '../../src/mark/mark.js';
import { indexModel } from '../../src/mark/model.js';
import { licenceMarkKey } from '../../src/mark/pattern.js';
import { trace, type Candidate, type TraceResult } from '../../src/mark/trace.js';
import { tmp } from '../helpers.js';
import { attacks, onnxBytes, readModel, synthModel, writeSafetensors, type Model } from './synth.js';
import { expectSameLayout } from './layout.js';

const master = Buffer.alloc(32, 0x5a);
const ids = Array.from({ length: 1000 }, (_, i) => `lic_${String(i).padStart(4, '0')}`);
const candidates: Candidate[] = ids.map((licenseId) => ({ licenseId, markKey: licenceMarkKey(master, licenseId) }));
const OUTSIDE = 'lic_outside';

let dir: string;
let originalPath: string;
const marked = new Map<string, Model>();

async function traceModel(m: Model | string, cands = candidates, o: { dtype?: 'F32' | 'F16' | 'BF16'; shards?: number } = {}): Promise<TraceResult> {
  const p = typeof m === 'string' ? m : await writeSafetensors(join(dir, `suspect-${Math.random().toString(36).slice(2)}${o.shards ? '' : '.safetensors'}`), m, o);
  return trace(await indexModel(originalPath), await indexModel(p), cands);
}

const top = (r: TraceResult) => r.candidates.slice(0, 3).map((c) => `${c.licenseId} z=${c.score.toFixed(1)}`).join(', ');

beforeAll(async () => {
  dir = await tmp();
  originalPath = await writeSafetensors(join(dir, 'original.safetensors'), synthModel(1, 192, 4));
  for (const id of ['lic_0007', 'lic_0042', 'lic_0099', OUTSIDE]) {
    const out = join(dir, `${id}.safetensors`);
    const rep = await markModel(originalPath, out, { markKey: licenceMarkKey(master, id) });
    expect(rep.tensors.marked).toBe(24);
    // 4 layers of 4 attention matrices of 192 × 192 and two MLP matrices of 768 × 192
    expect(rep.elements.marked).toBe(1_769_472);
    marked.set(id, await readModel(out));
  }
}, 120_000);

describe('trace', () => {
  const cases: [string, () => Model][] = [
    ['as marked', () => marked.get('lic_0007')!],
    ['cast to float16', () => attacks.castF16(marked.get('lic_0007')!)],
    ['cast to bfloat16', () => attacks.castBf16(marked.get('lic_0007')!)],
    ['int8 per-channel quantize, dequantize', () => attacks.int8(marked.get('lic_0007')!)],
    ['Gaussian noise of 1% of each tensor’s std', () => attacks.noise(marked.get('lic_0007')!)],
    ['the smallest 30% of weights pruned', () => attacks.prune(marked.get('lic_0007')!)],
    ['random low-rank updates of 5% of each matrix’s norm', () => attacks.lowRank(marked.get('lic_0007')!)],
    ['renamed and reordered', () => attacks.rename(marked.get('lic_0007')!)],
    ['half of the tensors', () => attacks.half(marked.get('lic_0007')!)],
  ];
  for (const [what, make] of cases) {
    it(`names the licence: ${what}`, async () => {
      const r = await traceModel(make());
      console.log(`[trace] ${what}: ${top(r)}`);
      expect(r.implicated, top(r)).toEqual(['lic_0007']);
    }, 60_000);
  }

  it('names the licence: resharded into 3 files stored as float16', async () => {
    const r = await traceModel(attacks.rename(marked.get('lic_0007')!), candidates, { shards: 3, dtype: 'F16' });
    console.log(`[trace] resharded into 3 float16 files: ${top(r)}`);
    expect(r.implicated, top(r)).toEqual(['lic_0007']);
    expect(new Set(r.matched.map((m) => m.file)).size).toBe(3);
  }, 60_000);

  it('names the licence: converted to ONNX (the same tensors as initializers)', async () => {
    const p = join(dir, 'converted.onnx');
    await writeFile(p, onnxBytes(marked.get('lic_0007')!));
    const r = await traceModel(p);
    console.log(`[trace] converted to ONNX: ${top(r)}`);
    expect(r.implicated, top(r)).toEqual(['lic_0007']);
  }, 60_000);

  it('two customers’ copies averaged: both named; three averaged: at least one named, and only those three', async () => {
    const two = await traceModel(attacks.average(marked.get('lic_0007')!, marked.get('lic_0042')!));
    console.log(`[trace] two averaged: ${top(two)}`);
    expect([...two.implicated].sort(), top(two)).toEqual(['lic_0007', 'lic_0042']);
    const three = await traceModel(attacks.average(marked.get('lic_0007')!, marked.get('lic_0042')!, marked.get('lic_0099')!));
    console.log(`[trace] three averaged: ${top(three)}, best innocent ${three.candidates[3]!.licenseId} z=${three.candidates[3]!.score.toFixed(1)}`);
    expect(three.implicated.length, top(three)).toBeGreaterThan(0);
    for (const id of three.implicated) expect(['lic_0007', 'lic_0042', 'lic_0099']).toContain(id);
  }, 60_000);

  it('never a false accusation: the unmarked original, and a copy marked for a licence outside the 1,000 candidates, implicate nobody', async () => {
    const plain = await traceModel(originalPath);
    expect(plain.implicated).toEqual([]);
    expect(plain.candidates.every((c) => c.score === 0 && c.log10p === 0)).toBe(true);
    const other = await traceModel(marked.get(OUTSIDE)!);
    expect(other.implicated, top(other)).toEqual([]);
    // the scores of innocent licences are N(0,1)-like: none near the threshold
    expect(other.candidates[0]!.score).toBeLessThan(5);
    // and the attacked outsider too
    const attacked = await traceModel(attacks.lowRank(attacks.int8(marked.get(OUTSIDE)!)));
    expect(attacked.implicated, top(attacked)).toEqual([]);
  }, 60_000);

  it('a model of the same architecture with weights of its own (same names and shapes) is TRACE_NO_MATCH, never an accusation, even marked for a candidate licence', async () => {
    const own = synthModel(5, 192, 4);
    const orig = await readModel(originalPath);
    expect([...own].map(([n, t]) => [n, t.shape])).toEqual([...orig].map(([n, t]) => [n, t.shape]));
    // no tensor of it pairs with the original's (pairing is by content), so nothing can be said
    await expect(traceModel(own)).rejects.toMatchObject({ code: 'TRACE_NO_MATCH' });
    // the same, carrying a candidate's mark (the vendor's other model of this architecture, marked for lic_0007)
    const p = await writeSafetensors(join(dir, 'own.safetensors'), own);
    const out = join(dir, 'own-lic_0007.safetensors');
    await markModel(p, out, { markKey: licenceMarkKey(master, 'lic_0007') });
    await expect(traceModel(out)).rejects.toMatchObject({ code: 'TRACE_NO_MATCH' });
    // and as float16 with its tensors renamed
    await expect(traceModel(attacks.rename(attacks.castF16(await readModel(out))), candidates, { dtype: 'F16' })).rejects.toMatchObject({ code: 'TRACE_NO_MATCH' });
  }, 60_000);

  it('a suspect that matches nothing (another architecture) is TRACE_NO_MATCH, never an accusation', async () => {
    const other = synthModel(2, 160, 2);
    await expect(traceModel(other)).rejects.toMatchObject({ code: 'TRACE_NO_MATCH' });
    const p = join(dir, 'not-a-model.safetensors');
    await writeFile(p, 'hello');
    await expect(traceModel(p)).rejects.toMatchObject({ code: 'MODEL_INVALID' });
  }, 60_000);
});

describe('mark', () => {
  it('changes only the markable tensors, each weight by at most its share, and keeps the file a valid safetensors file of the same layout', async () => {
    const orig = await readModel(originalPath);
    const m = marked.get('lic_0042')!;
    expect([...m.keys()]).toEqual([...orig.keys()]);
    for (const [name, t] of orig) {
      const u = m.get(name)!;
      const isMarked = t.shape.length >= 2 && !name.includes('embed');
      let changed = 0;
      let tooFar = 0;
      for (let i = 0; i < t.data.length; i++) {
        const a = t.data[i]!;
        const b = u.data[i]!;
        if (a !== b) changed++;
        if (Math.abs(b - a) > Math.abs(a) * 0.0005 * 1.001 + 1e-45) tooFar++;
      }
      expect(tooFar, name).toBe(0);
      if (isMarked) expect(changed / t.data.length, name).toBeGreaterThan(0.99);
      else expect(changed, name).toBe(0);
    }
  });

  it('marks float16 and bfloat16 models: every nonzero weight moves by at least one unit in the last place, and tracing names the licence', async () => {
    for (const dtype of ['F16', 'BF16'] as const) {
      const p = await writeSafetensors(join(dir, `orig-${dtype}.safetensors`), synthModel(3, 128, 4), { dtype });
      const out = join(dir, `marked-${dtype}.safetensors`);
      const rep = await markModel(p, out, { markKey: licenceMarkKey(master, 'lic_0500') });
      expect(rep.tensors.marked).toBe(24);
      const a = await readModel(p);
      const b = await readModel(out);
      let same = 0;
      for (const [name, t] of a) if (t.shape.length >= 2 && !name.includes('embed')) for (let i = 0; i < t.data.length; i++) if (t.data[i] !== 0 && t.data[i] === b.get(name)!.data[i]) same++;
      expect(same).toBe(0);
      const r = await trace(await indexModel(p), await indexModel(out), candidates);
      expect(r.implicated, top(r)).toEqual(['lic_0500']);
    }
  }, 60_000);

  it('refuses to overwrite, and leaves nothing behind when it fails', async () => {
    const out = join(dir, 'lic_0007.safetensors');
    await expect(markModel(originalPath, out, { markKey: licenceMarkKey(master, 'x') })).rejects.toMatchObject({ code: 'IO_EXISTS' });
    await expect(markModel(join(dir, 'not-a-model.safetensors'), join(dir, 'y.safetensors'), { markKey: licenceMarkKey(master, 'x') })).rejects.toMatchObject({ code: 'MODEL_INVALID' });
    const { readdir } = await import('node:fs/promises');
    expect((await readdir(dir)).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});

describe('sharded safetensors', () => {
  it('marks a sharded checkpoint (3 shards, model.safetensors.index.json, config.json) as a directory: the same files and layout, the index still right, and traced', async () => {
    const orig = join(dir, 'sharded');
    await writeSafetensors(orig, synthModel(1, 192, 4), { shards: 3, index: true });
    await writeFile(join(orig, 'config.json'), JSON.stringify({ architectures: ['SyntheticForCausalLM'], hidden_size: 192 }));
    const out = join(dir, 'sharded-lic_0007');
    const rep = await markModel(orig, out, { markKey: licenceMarkKey(master, 'lic_0007') });
    expect(rep.files).toBe(5);
    expect(rep.tensors.marked).toBe(24);
    expect(rep.elements.marked).toBe(1_769_472);
    const changed = await expectSameLayout(orig, out);
    expect([...changed].sort()).toEqual(rep.marked.map((t) => t.name).sort());
    expect(await readFile(join(out, 'model.safetensors.index.json'))).toEqual(await readFile(join(orig, 'model.safetensors.index.json')));
    // every shard holds marked tensors
    const idx = await indexModel(out);
    expect(new Set(idx.tensors.filter((t) => changed.has(t.name)).map((t) => t.file)).size).toBe(3);
    // the mark depends on the licence and the tensor's name only: the same weights as the single-file copy marked for lic_0007
    const a = await readModel(out);
    const b = marked.get('lic_0007')!;
    expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
    for (const [n, t] of a) expect(Buffer.from(t.data.buffer).equals(Buffer.from(b.get(n)!.data.buffer)), n).toBe(true);
    // traced from the marked shards, against the sharded original and against the single-file one
    const r1 = await trace(await indexModel(orig), idx, candidates);
    console.log(`[trace] sharded, marked as a directory: ${top(r1)}`);
    expect(r1.implicated, top(r1)).toEqual(['lic_0007']);
    expect(new Set(r1.matched.map((m) => m.file)).size).toBe(3);
    const r2 = await traceModel(out);
    expect(r2.implicated, top(r2)).toEqual(['lic_0007']);
  }, 60_000);
});

describe('ONNX', () => {
  it('float16 initializers and external data are marked in place (the .onnx file itself unchanged), and traced', async () => {
    const { mkdir, readFile } = await import('node:fs/promises');
    const { onnxModel } = await import('./synth.js');
    const base = synthModel(4, 128, 3);
    // float16 inline
    const f16 = join(dir, 'f16.onnx');
    await writeFile(f16, onnxModel(base, { dtype: 'F16' }).onnx);
    const f16Out = join(dir, 'f16-marked.onnx');
    expect((await markModel(f16, f16Out, { markKey: licenceMarkKey(master, 'lic_0123') })).tensors.marked).toBe(18);
    const r1 = await trace(await indexModel(f16), await indexModel(f16Out), candidates);
    expect(r1.implicated, top(r1)).toEqual(['lic_0123']);
    // external data: a directory with model.onnx and weights.data
    const ext = join(dir, 'ext');
    await mkdir(ext);
    const files = onnxModel(base, { external: 'weights.data' });
    await writeFile(join(ext, 'model.onnx'), files.onnx);
    await writeFile(join(ext, 'weights.data'), files.data!);
    const extOut = join(dir, 'ext-marked');
    const rep = await markModel(ext, extOut, { markKey: licenceMarkKey(master, 'lic_0456') });
    expect(rep.tensors.marked).toBe(18);
    expect(await readFile(join(extOut, 'model.onnx'))).toEqual(files.onnx);
    expect((await readFile(join(extOut, 'weights.data'))).equals(files.data!)).toBe(false);
    const r2 = await trace(await indexModel(ext), await indexModel(extOut), candidates);
    expect(r2.implicated, top(r2)).toEqual(['lic_0456']);
    // the .onnx alone, without its data file: a clear MODEL_INVALID, not a crash
    await expect(indexModel(join(extOut, 'model.onnx'))).rejects.toMatchObject({ code: 'MODEL_INVALID' });
  }, 60_000);
});
