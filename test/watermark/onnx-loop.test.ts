/**
 * The text watermark in an onnxruntime-node generation loop: a language model exported to ONNX
 * (the bigram log-probabilities of test/watermark/ngram.ts's model over its 1,000 most frequent
 * ids, as a Gather from a [1000, 1000] table: input `prev` int64 [1], output `logits` float
 * [1, 1000]), run token by token in onnxruntime-node; the licence's logits processor is called
 * with each step's logits before sampling. 200-token outputs name their licence among 1,000
 * candidates; the same loop without the processor names nobody.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import * as ort from 'onnxruntime-node';
import { detectTextWatermark, textWatermarkProcessor, type LogitsProcessor } from '../../src/watermark/text.js';
import { pbBytes, pbInt } from '../mark/synth.js';
import { candidates, rng, train } from './ngram.js';

const K = 1000;
const FLOAT = 1;
const INT64 = 7;

function bigramOnnx(table: Float32Array): Buffer {
  const msg = (field: number, ...parts: Buffer[]) => pbBytes(field, Buffer.concat(parts));
  const valueInfo = (field: number, name: string, type: number, dims: number[]) =>
    msg(field, pbBytes(1, name), msg(2, msg(1, pbInt(1, type), msg(2, ...dims.map((d) => msg(1, pbInt(1, d)))))));
  const graph = Buffer.concat([
    // NodeProto { input = 1, output = 2, name = 3, op_type = 4 }: Gather(table, prev), axis 0
    msg(1, pbBytes(1, 'table'), pbBytes(1, 'prev'), pbBytes(2, 'logits'), pbBytes(3, 'gather'), pbBytes(4, 'Gather')),
    pbBytes(2, 'bigram-lm'),
    // TensorProto { dims = 1, data_type = 2, name = 8, raw_data = 9 }
    msg(5, pbInt(1, K), pbInt(1, K), pbInt(2, FLOAT), pbBytes(8, 'table'), pbBytes(9, Buffer.from(table.buffer, table.byteOffset, table.byteLength))),
    valueInfo(11, 'prev', INT64, [1]),
    valueInfo(12, 'logits', FLOAT, [1, K]),
  ]);
  return Buffer.concat([pbInt(1, 8), pbBytes(2, 'mlic-tests'), msg(7, graph), msg(8, pbBytes(1, ''), pbInt(2, 17))]);
}

describe('the text watermark in an onnxruntime-node generation loop', () => {
  let session: ort.InferenceSession;
  beforeAll(async () => {
    const m = train();
    // the bigram table: log P(next | prev) over the first K ids (the most frequent words)
    const table = new Float32Array(K * K);
    for (let a = 0; a < K; a++) table.set(m.logits([a]).subarray(0, K), a * K);
    session = await ort.InferenceSession.create(bigramOnnx(table));
  }, 120_000);

  async function generate(seed: number, processor?: LogitsProcessor, n = 200): Promise<number[]> {
    const rnd = rng(seed);
    const ids = [1 + Math.floor(rnd() * 50)];
    while (ids.length < n) {
      const out = await session.run({ prev: new ort.Tensor('int64', BigInt64Array.of(BigInt(ids.at(-1)!)), [1]) });
      const logits = Float32Array.from(out.logits!.data as Float32Array);
      processor?.(logits, ids);
      // sample at temperature 1
      let max = -Infinity;
      for (const l of logits) max = Math.max(max, l);
      let z = 0;
      for (const l of logits) z += Math.exp(l - max);
      let r = rnd() * z;
      let next = K - 1;
      for (let v = 0; v < K; v++) if ((r -= Math.exp(logits[v]! - max)) <= 0) {
        next = v;
        break;
      }
      ids.push(next);
    }
    return ids;
  }

  it('200 marked tokens name their licence among 1,000; the same loop unmarked names nobody', async () => {
    const named: (string | undefined)[] = [];
    for (const [i, lic] of [3, 77, 512].entries()) {
      const ids = await generate(100 + i, textWatermarkProcessor(candidates[lic]!.key));
      named.push(detectTextWatermark(ids, candidates).named);
    }
    expect(named).toEqual(['lic3', 'lic77', 'lic512']);
    for (let i = 0; i < 3; i++) expect(detectTextWatermark(await generate(200 + i), candidates).named).toBeUndefined();
  }, 120_000);
});
