/**
 * A seeded stand-in for a language model, for the text watermark's tests: a 2,000-token vocabulary
 * whose next-token logits depend on the previous token (a Zipf-shaped base plus a pseudo-random
 * context term), sampled at temperature 1, optionally through a logits processor.
 */
import { textWatermarkProcessor, type LogitsProcessor } from '../../src/watermark/text.js';

export const V = 2000;

export function lm(seed: number) {
  let s = seed >>> 0;
  const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const base = Float64Array.from({ length: V }, (_, v) => -Math.log(v + 1) * 1.1);
  const logitsFor = (prev: number) => {
    const l = new Float64Array(V);
    let h = Math.imul(prev + 1, 2654435761) >>> 0;
    for (let v = 0; v < V; v++) {
      h = (Math.imul(h ^ (h >>> 15), 2246822519) + v) >>> 0;
      l[v] = base[v]! + (h / 2 ** 32 - 0.5) * 4;
    }
    return l;
  };
  const sample = (l: Float64Array) => {
    let m = -Infinity;
    for (const x of l) m = Math.max(m, x);
    let z = 0;
    const p = new Float64Array(V);
    for (let v = 0; v < V; v++) z += p[v] = Math.exp(l[v]! - m);
    let r = rnd() * z;
    for (let v = 0; v < V; v++) if ((r -= p[v]!) <= 0) return v;
    return V - 1;
  };
  return {
    rnd,
    generate(k: Uint8Array | LogitsProcessor | undefined, n = 200) {
      const proc = k === undefined ? undefined : typeof k === 'function' ? k : textWatermarkProcessor(k);
      const ids = [sample(logitsFor(0))];
      while (ids.length < n) {
        const l = logitsFor(ids.at(-1)!);
        proc?.(l, ids);
        ids.push(sample(l));
      }
      return ids;
    },
  };
}

