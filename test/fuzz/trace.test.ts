/**
 * Fuzz: hostile suspects for `mlic trace` (a leaked model comes from anyone). A marked model as
 * safetensors, as ONNX (inline, and with external data: the .onnx file or its data file damaged)
 * and as GGUF (F32 tensors and a quantized Q8_0 one) is damaged byte-wise; each damaged suspect is
 * indexed and traced against the original and 50 candidates. Every case ends in a result or an
 * MlicError (never an internal error or a hang past 20 s), and a result never names anyone but
 * the licence the model was marked for.
 */
import { describe, it, beforeAll, expect } from 'vitest';
import { join } from 'node:path';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { markModel } from '../../src/mark/mark.js';
import { indexModel, type ModelTensors } from '../../src/mark/model.js';
import { licenceMarkKey } from '../../src/mark/pattern.js';
import { trace, type Candidate } from '../../src/mark/trace.js';
import { tmp } from '../helpers.js';
import { onnxModel, safetensorsBytes, synthModel } from '../mark/synth.js';
import { ggufModel } from '../mark/gguf-file.js';
import { cases, fuzz, mutateBytes } from './lib.js';

const master = Buffer.alloc(32, 9);
const candidates: Candidate[] = Array.from({ length: 50 }, (_, i) => ({ licenseId: `lic_${i}`, markKey: licenceMarkKey(master, `lic_${i}`) }));

/** Each kind of suspect: its files (relative name -> marked bytes), and the fuzzer's seed. */
const KINDS = {
  safetensors: { seed: 0x7a02, files: ['model.safetensors'] },
  onnx: { seed: 0x7a01, files: ['model.onnx'] },
  'onnx-external': { seed: 0x7a03, files: ['model.onnx', 'weights.data'] },
  gguf: { seed: 0x7a04, files: ['model.gguf'] },
} as const;
type Kind = keyof typeof KINDS;

describe('fuzz: hostile suspects for trace', () => {
  let dir: string;
  const originals = new Map<Kind, ModelTensors>();
  const marked = new Map<Kind, Map<string, Buffer>>();

  beforeAll(async () => {
    dir = await tmp('mlic-fuzz-trace-');
    const m = synthModel(21, 64, 2);
    const ext = onnxModel(m, { external: 'weights.data' });
    const contents: Record<Kind, Record<string, Buffer>> = {
      safetensors: { 'model.safetensors': safetensorsBytes([...m.entries()]) },
      onnx: { 'model.onnx': onnxModel(m).onnx },
      'onnx-external': { 'model.onnx': ext.onnx, 'weights.data': ext.data! },
      gguf: { 'model.gguf': ggufModel(m, { quantized: true }).bytes },
    };
    for (const kind of Object.keys(KINDS) as Kind[]) {
      const o = join(dir, `original-${kind}`);
      await mkdir(o);
      for (const [name, b] of Object.entries(contents[kind])) await writeFile(join(o, name), b);
      originals.set(kind, await indexModel(o));
      const out = join(dir, `marked-${kind}`);
      const rep = await markModel(o, out, { markKey: licenceMarkKey(master, 'lic_7') });
      expect(rep.tensors.marked, kind).toBe(12);
      marked.set(kind, new Map(await Promise.all(KINDS[kind].files.map(async (f) => [f, await readFile(join(out, f))] as [string, Buffer]))));
    }
  });

  for (const kind of Object.keys(KINDS) as Kind[]) {
    it(`${kind} suspects, damaged`, async () => {
      let named = 0;
      const t = await fuzz(`trace suspect (${kind})`, KINDS[kind].seed, cases(150), 20_000, async (r, i) => {
        const files = marked.get(kind)!;
        // one of the model's files damaged (for ONNX with external data: the .onnx or its data), the others as marked
        const victim = files.size > 1 ? r.pick([...files.keys()]) : [...files.keys()][0]!;
        const m = mutateBytes(r, files.get(victim)!);
        const d = join(dir, `case-${kind}-${i}`);
        await mkdir(d);
        for (const [name, b] of files) await writeFile(join(d, name), name === victim ? m.bytes : b);
        return {
          desc: `${victim}: ${m.desc}`,
          run: async () => {
            const res = await trace(originals.get(kind)!, await indexModel(d), candidates);
            for (const id of res.implicated) expect(id).toBe('lic_7');
            named += res.implicated.length;
          },
        };
      });
      t.report();
      // some damaged copies still carry enough of the mark to be named
      expect(named).toBeGreaterThan(0);
    }, 240_000);
  }
});
