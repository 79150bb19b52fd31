/** mlic watermark embed (on a licensed host) and mlic watermark detect (the vendor's side): docs/WATERMARK.md. */
import { MlicError } from '../../errors.js';
import { readSmallFile, readTextFile } from '../../util/files.js';
import { writeFileAtomic } from '../../util/atomic.js';
import { loadLicense } from '../../host/handle.js';
import { VALIDATE_ERRORS } from '../../license/policy.js';
import { decodeImage, formatOfName } from '../../watermark/codec.js';
import { analyzeImage, DEFAULT_STRENGTH, detectImageWatermark, type ImageDetection } from '../../watermark/image.js';
import { watermarkCandidates } from '../../watermark/licence.js';
import { detectTextWatermark, minTokensToName, type TextDetection } from '../../watermark/text.js';
import { loadTokenizer, tokenizerMismatch, type Tokenizer } from '../../watermark/wordlevel.js';
import { loadOpts, type MeterOpts } from './meter.js';
import { vendorKey } from '../keys.js';
import { serverUrl } from '../../host/server-client.js';
import { Candidates } from '../candidates.js';
import { probeWithSpinner } from '../spinner.js';
import { printResult, type Ctx } from '../output.js';

/** text: the tokens scored at most */
const MAX_TOKENS = 100_000;

/** encoded images up to 256 MiB (a 100-megapixel PNG is about 300 MB raw, much less encoded) */
const MAX_IMAGE_BYTES = 256 * 1024 * 1024;

function numberOpt(s: string | undefined, name: string, lo: number, hi: number, integer = false): number | undefined {
  if (s === undefined) return undefined;
  const v = Number(s);
  if (!Number.isFinite(v) || v < lo || v > hi || (integer && !Number.isInteger(v))) throw new MlicError('USAGE', `${name} must be ${integer ? 'a whole number' : 'a number'} from ${lo} to ${hi}, got '${s}'`);
  return v;
}

export async function embed(ctx: Ctx, input: string, o: MeterOpts & { output: string; strength?: string; quality?: string; force?: boolean }): Promise<void> {
  const strength = numberOpt(o.strength, '--strength', 0.5, 16);
  const quality = numberOpt(o.quality, '--quality', 1, 100, true);
  const bytes = await readSmallFile(input, { maxBytes: MAX_IMAGE_BYTES, what: 'image' });
  const lic = await loadLicense(loadOpts(o, await probeWithSpinner(ctx.json)));
  try {
    const r = await lic.validate();
    if (!r.valid) throw new MlicError(VALIDATE_ERRORS[r.error!], r.message ?? r.error!, { details: { ...r } });
    if (!r.watermark)
      throw new MlicError('USAGE', `licence ${lic.license.licenseId} carries no watermark key`, { hint: 'the vendor issues licences whose outputs are marked with --require-watermark' });
    // the output's extension names its format (out.jpg from a PNG is a JPEG); otherwise the input's
    const format = formatOfName(o.output);
    const m = await r.watermark.image(bytes, { ...(strength !== undefined ? { strength } : {}), ...(quality !== undefined ? { quality } : {}), ...(format ? { format } : {}) });
    await writeFileAtomic(o.output, { force: o.force ?? false }, async (fh) => {
      await fh.writeFile(m.image);
    });
    ctx.out(`wrote ${o.output}: marked for licence ${lic.license.licenseId} (payload ${m.payload}, PSNR ${m.psnr.toFixed(1)} dB); recorded in the audit log as ${m.outputHash}`);
    printResult(ctx, { output: o.output, licenseId: lic.license.licenseId, payload: m.payload, psnr: Number(m.psnr.toFixed(2)), outputHash: m.outputHash, strength: strength ?? DEFAULT_STRENGTH });
  } finally {
    await lic.close();
  }
}

type Kind = 'image' | 'tokens' | 'text';

/** What a file holds: an image (by its magic bytes), token ids (a JSON array, or {"ids": [...]}) or text. */
function kindOf(b: Buffer): Kind {
  const head = b.subarray(0, 16);
  const magic = [
    [0x89, 0x50, 0x4e, 0x47], // PNG
    [0xff, 0xd8, 0xff], // JPEG
    [0x52, 0x49, 0x46, 0x46], // RIFF (WebP)
    [0x49, 0x49, 0x2a, 0x00], // TIFF, little-endian
    [0x4d, 0x4d, 0x00, 0x2a], // TIFF, big-endian
    [0x47, 0x49, 0x46, 0x38], // GIF
  ];
  if (magic.some((m) => m.every((v, i) => head[i] === v))) return 'image';
  const t = b.subarray(0, 64).toString('utf8').trimStart();
  if (t.startsWith('[') || t.startsWith('{')) return 'tokens';
  return 'text';
}

function tokenIds(b: Buffer, file: string): number[] {
  let v: unknown;
  try {
    v = JSON.parse(b.toString('utf8'));
  } catch {
    throw new MlicError('FORMAT_INVALID', `${file}: not valid JSON (token ids are a JSON array of whole numbers, or {"ids": [...]})`);
  }
  const ids = Array.isArray(v) ? v : v !== null && typeof v === 'object' && Array.isArray((v as { ids?: unknown }).ids) ? (v as { ids: unknown[] }).ids : undefined;
  if (!ids || !ids.every((x) => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 0xffffffff))
    throw new MlicError('FORMAT_INVALID', `${file}: token ids are a JSON array of whole numbers from 0 to 2^32 − 1 (or {"ids": [...]})`);
  return ids as number[];
}

interface FileResult {
  file: string;
  kind: Kind;
  named: string | null;
  customer: string | null;
  error?: { code: string; message: string };
  detection?: ImageDetection | TextDetection;
}

export async function detect(
  ctx: Ctx,
  files: string[],
  o: { licenses?: string; server?: string; token?: string; key?: string; passphraseFile?: string; tokenizer?: string; top?: string },
): Promise<void> {
  const top = numberOpt(o.top ?? '3', '--top', 1, 1_000_000, true)!;
  if (o.licenses === undefined && o.server === undefined)
    throw new MlicError('USAGE', 'where are the licences you issued? give --licenses DIR, --server URL (the licence server that issued them), or both (each licence issued with --require-watermark is a candidate)');
  // before the work: a bad URL or a missing token is a usage error
  if (o.server !== undefined) serverUrl(o.server, 'v1/licenses');
  const token = o.token ?? process.env.MLIC_ADMIN_TOKEN;
  if (o.server !== undefined && !token) throw new MlicError('USAGE', 'an admin token is needed for --server: set MLIC_ADMIN_TOKEN (or --token)');
  let tokenizer: Tokenizer | undefined;
  if (o.tokenizer !== undefined) {
    const text = await readTextFile(o.tokenizer, { maxBytes: 64 * 1024 * 1024, what: 'tokenizer' });
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new MlicError('FORMAT_INVALID', `${o.tokenizer}: not valid JSON`);
    }
    tokenizer = loadTokenizer(json);
  }
  const key = await vendorKey(ctx, o);
  const c = new Candidates(key, (p) => (p.watermark ? undefined : 'no watermark key (not issued with --require-watermark)'));
  if (o.licenses !== undefined) await c.fromDir(o.licenses);
  if (o.server !== undefined) await c.fromServer(o.server, token, 'watermark');
  const { licences, skipped } = c;
  const skippedText = Object.entries(skipped).map(([k, v]) => `${v} ${k}`).join(', ');
  const where = [o.licenses, o.server !== undefined ? `the licence server at ${serverUrl(o.server, '').origin}` : undefined].filter((x) => x !== undefined).join(' and ');
  if (licences.length === 0)
    throw new MlicError('USAGE', `no candidate licences in ${where}${skippedText ? ` (skipped: ${skippedText})` : ''}`, { hint: 'candidates are the licences you issued with --require-watermark, signed by this vendor key' });
  ctx.note(`${licences.length} candidate licence${licences.length === 1 ? '' : 's'}${skippedText ? ` (skipped: ${skippedText})` : ''}`);
  const customer = new Map(licences.map((l) => [l.licenseId, l.customer ?? null]));
  const candidates = watermarkCandidates(
    licences.map((l) => l.licenseId),
    key.master,
  );
  const results: FileResult[] = [];
  try {
    for (const file of files) {
      let kind: Kind = 'text';
      try {
        const b = await readSmallFile(file, { maxBytes: MAX_IMAGE_BYTES, what: 'input' });
        kind = kindOf(b);
        let d: ImageDetection | TextDetection;
        if (kind === 'image') {
          const { image } = await decodeImage(b);
          d = detectImageWatermark(analyzeImage(image), candidates);
        } else {
          let ids: number[];
          if (kind === 'tokens') {
            ids = tokenIds(b, file);
            if (tokenizer) {
              const why = tokenizerMismatch(ids, tokenizer);
              if (why) throw new MlicError('TOKENIZER_MISMATCH', `${file}: ${why}`);
            }
          } else {
            if (!tokenizer) throw new MlicError('USAGE', `${file} is text: give the tokenizer of the model that wrote it (--tokenizer tokenizer.json), or its token ids as a JSON array`);
            const text = b.toString('utf8');
            if (text.trim() === '') throw new MlicError('TEXT_TOO_SHORT', `${file} is empty`, { hint: `a text needs at least ${minTokensToName(candidates.length) + 1} tokens to name a licence among ${candidates.length}` });
            const why = tokenizerMismatch(text, tokenizer);
            if (why) throw new MlicError('TOKENIZER_MISMATCH', `${file}: ${why}`, { hint: 'give the tokenizer.json of the model that wrote the text' });
            ids = tokenizer.encode(text);
          }
          if (ids.length > MAX_TOKENS) {
            // far more than naming needs (200 are plenty), and scoring grows with tokens × candidates
            ctx.note(`${file}: ${ids.length.toLocaleString('en-US')} tokens; the first ${MAX_TOKENS.toLocaleString('en-US')} are scored`);
            ids = ids.slice(0, MAX_TOKENS);
          }
          d = detectTextWatermark(ids, candidates);
        }
        results.push({ file, kind, named: d.named ?? null, customer: d.named ? customer.get(d.named)! : null, detection: d });
      } catch (e) {
        if (!(e instanceof MlicError)) throw e;
        if (files.length === 1) throw e;
        results.push({ file, kind, named: null, customer: null, error: { code: e.code, message: e.message } });
      }
    }
  } finally {
    for (const c of candidates) c.key.fill(0);
  }
  for (const r of results) {
    if (r.error) ctx.out(`${r.file}: ${r.error.code}: ${r.error.message}`);
    else if (r.named) {
      const best = r.detection!.scores[0]!;
      const extra = r.kind === 'image' && 'payloadMatch' in best ? `, payload ${best.payloadMatch ? 'read in full' : `${(best.bitAccuracy * 100).toFixed(0)}% of its coded bits read`}` : '';
      ctx.out(`${r.file}: licence ${r.named}${r.customer ? ` (${r.customer})` : ''}, z ${best.z.toFixed(1)}, p ${best.pValue.toExponential(1)}${extra}`);
    } else ctx.out(`${r.file}: no licence's watermark found (best z ${r.detection!.scores[0]!.z.toFixed(1)}, p ${r.detection!.scores[0]!.pValue.toExponential(1)}; naming needs p below ${r.detection!.bound.toExponential(1)})`);
  }
  const result = {
    candidates: candidates.length,
    skipped,
    files: results.map((r) => ({
      file: r.file,
      kind: r.kind,
      named: r.named,
      customer: r.customer,
      ...(r.error ? { error: r.error } : {}),
      ...(r.detection ? { bound: r.detection.bound, scores: r.detection.scores.slice(0, top) } : {}),
    })),
  };
  const bad = results.filter((r) => r.error);
  if (bad.length) {
    // the worst: bad input (exit 2) before a file that only carried no mark
    const code = bad[0]!.error!.code as 'USAGE';
    throw new MlicError(code, `${bad.length} of ${results.length} files could not be tested (${bad.map((r) => `${r.file}: ${r.error!.code}`).join(', ')})`, { details: result });
  }
  const missing = results.filter((r) => !r.named);
  if (missing.length)
    throw new MlicError('WATERMARK_NOT_FOUND', `${results.length === 1 ? 'no' : `${missing.length} of ${results.length} files carry no`} candidate licence's watermark${results.length === 1 ? ' is in it' : ''} (at p × candidates < 1e-9)`, {
      hint: 'the output may be unmarked, marked for a licence not among the candidates, or changed too much to tell',
      details: result,
    });
  printResult(ctx, result);
}
