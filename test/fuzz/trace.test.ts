/**
 * Fuzz: hostile suspects for `mlic trace` (a leaked model comes from anyone). A marked model as
 * safetensors, as ONNX (inline and external data) and as GGUF is damaged byte-wise; each damaged
 * suspect is indexed and traced against the original and 50 candidates. Every case ends in a
 * result or an MlicError (never an internal error or a hang), and a result never names anyone but
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
import { cases, fuzz, mutateBytes } from './lib.js';

const master = Buffer.alloc(32, 9);
const candidates: Candidate[] = Array.from({ length: 50 }, (_, i) => ({ licenseId: `lic_${i}`, markKey: licenceMarkKey(master, `lic_${i}`) }));

describe('fuzz: hostile suspects for trace', () => {
  let dir: string;
  const originals = new Map<string, ModelTensors>();
  const marked = new Map<string, Buffer>();

  beforeAll(async () => {
    dir = await tmp('mlic-fuzz-trace-');
    const m = synthModel(21, 64, 2);
    const st = join(dir, 'o.safetensors');
    await writeFile(st, safetensorsBytes([...m.entries()]));
    const on = join(dir, 'o.onnx');
    await writeFile(on, onnxModel(m).onnx);
    for (const [kind, p] of [['safetensors', st], ['onnx', on]] as const) {
      originals.set(kind, await indexModel(p));
      const out = join(dir, `m.${kind}`);
      await markModel(p, out, { markKey: licenceMarkKey(master, 'lic_7') });
      marked.set(kind, await readFile(out));
    }
  });

  for (const kind of ['safetensors', 'onnx'] as const) {
    it(`${kind} suspects, damaged`, async () => {
      let named = 0;
      const t = await fuzz(`trace suspect (${kind})`, kind === 'onnx' ? 0x7a01 : 0x7a02, cases(150), 20_000, async (r, i) => {
        const m = mutateBytes(r, marked.get(kind)!);
        const d = join(dir, `case-${kind}-${i}`);
        await mkdir(d);
        await writeFile(join(d, `model.${kind}`), m.bytes);
        return {
          desc: m.desc,
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
