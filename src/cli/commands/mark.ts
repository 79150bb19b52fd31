/** mlic mark and mlic trace: the vendor's leak tracing (docs/TRACING.md). */
import { stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { MlicError, fromFsError } from '../../errors.js';
import { sniffBundle } from '../../bundle/reader.js';
import { decryptOwnBundle, markBundle } from '../../mark/bundle.js';
import { indexModel } from '../../mark/model.js';
import { serverUrl } from '../../host/server-client.js';
import { licenceMarkKey } from '../../mark/pattern.js';
import { trace, ALPHA, type Candidate } from '../../mark/trace.js';
import { DEFAULT_STRENGTH } from '../../mark/embed.js';
import { vendorKey } from '../keys.js';
import { Candidates, verifiedLicence } from '../candidates.js';
import { makeProgress } from '../progress.js';
import { printResult, type Ctx } from '../output.js';

function strengthOf(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const v = Number(s);
  if (!Number.isFinite(v) || v <= 0 || v > 0.01) throw new MlicError('USAGE', `--strength must be a number above 0 and at most 0.01, got '${s}'`, { hint: `the default, ${DEFAULT_STRENGTH}, changes each weight by 0.05%` });
  return v;
}

export async function mark(ctx: Ctx, bundle: string, o: { license: string; key?: string; passphraseFile?: string; output?: string; strength?: string; force?: boolean }): Promise<void> {
  const strength = strengthOf(o.strength);
  const key = await vendorKey(ctx, o);
  const license = await verifiedLicence(o.license, key).catch((e: unknown) => {
    if (e instanceof MlicError && e.code === 'UNTRUSTED_VENDOR') throw new MlicError('USAGE', `${o.license} was not issued with this vendor key`);
    throw e;
  });
  const out = o.output ?? join(dirname(bundle), `${basename(bundle).replace(/\.mlb$/, '')}-${license.licenseId.slice(0, 8)}.mlb`);
  const progress = makeProgress('marking', ctx.json);
  ctx.note(`marking ${bundle} for licence ${license.licenseId}`);
  const r = await markBundle({ bundle, license, key, out, workDir: dirname(resolve(out)), ...(strength !== undefined ? { strength } : {}), force: o.force ?? false, onProgress: (d, t) => progress.update(d, t) });
  progress.done();
  const rep = r.report;
  const pct = (rep.share * 100).toFixed(1);
  ctx.out(`wrote ${r.out}: ${r.manifest.model.name}@${r.manifest.model.version} marked for licence ${license.licenseId}`);
  ctx.out(`marked ${rep.tensors.marked} of ${rep.tensors.total} tensors, ${rep.elements.marked.toLocaleString('en-US')} of ${rep.elements.total.toLocaleString('en-US')} weights (${pct}%)`);
  const other = Object.entries(rep.otherTypes);
  if (other.length) ctx.out(`left as they are (not F32/F16/BF16): ${other.map(([t, n]) => `${n} ${t}`).join(', ')}`);
  if (rep.tensors.marked === 0) ctx.note('warning: no tensor could carry the fingerprint (no float matrix of 4,096 weights or more): this bundle cannot be traced');
  printResult(ctx, { out: r.out, licenseId: license.licenseId, model: r.manifest.model, bundleId: r.manifest.bundleId, strength: strength ?? DEFAULT_STRENGTH, tensors: rep.tensors, elements: rep.elements, share: rep.share, otherTypes: rep.otherTypes });
}

export async function traceCmd(
  ctx: Ctx,
  suspect: string,
  o: { original: string; licenses?: string; server?: string; token?: string; key?: string; passphraseFile?: string; top?: string },
): Promise<void> {
  const top = o.top === undefined ? 5 : Number(o.top);
  if (!Number.isInteger(top) || top < 1) throw new MlicError('USAGE', `--top must be a positive whole number, got '${o.top}'`);
  if (o.licenses === undefined && o.server === undefined)
    throw new MlicError('USAGE', 'where are the licences you issued? give --licenses DIR, --server URL (the licence server that issued them), or both');
  // before the work: a bad URL or a missing token is a usage error
  if (o.server !== undefined) serverUrl(o.server, 'v1/licenses');
  const token = o.token ?? process.env.MLIC_ADMIN_TOKEN;
  if (o.server !== undefined && !token) throw new MlicError('USAGE', 'an admin token is needed for --server: set MLIC_ADMIN_TOKEN (or --token)');
  // both inputs exist before any work (decrypting the original takes a while)
  await stat(suspect).catch((e: unknown) => Promise.reject(fromFsError(e, suspect)));
  const key = await vendorKey(ctx, o);
  const bundle = (await sniffBundle(o.original)).bundle;
  const orig = bundle ? await decryptOwnBundle(o.original, key, tmpdir()) : undefined;
  try {
    const model = orig?.manifest.model.name;
    const c = new Candidates(key, (p) => (!p.marked ? 'not for marked bundles' : model !== undefined && p.model !== model ? 'another model' : undefined));
    if (o.licenses !== undefined) await c.fromDir(o.licenses);
    if (o.server !== undefined) await c.fromServer(o.server, token, 'marked', model);
    const { licences, skipped } = c;
    const skippedText = Object.entries(skipped).map(([k, v]) => `${v} ${k}`).join(', ');
    const where = [o.licenses, o.server !== undefined ? `the licence server at ${serverUrl(o.server, '').origin}` : undefined].filter((x) => x !== undefined);
    if (licences.length === 0)
      throw new MlicError('USAGE', `${where.join(' and ')} ${where.length > 1 ? 'hold' : 'holds'} no licence for marked bundles${model ? ` of ${model}` : ''} issued with this vendor key${skippedText ? ` (skipped: ${skippedText})` : ''}`, {
        hint: o.server !== undefined ? 'give the server that issued the licences (entitlements created with --marked), or the directory where you keep every licence you issued with --marked' : 'give the directory where you keep every licence you issued with --marked',
      });
    ctx.note(`comparing ${suspect} with ${orig ? `${o.original} (${orig.manifest.model.name}@${orig.manifest.model.version})` : o.original}; ${licences.length} candidate licence${licences.length === 1 ? '' : 's'}${skippedText ? ` (skipped: ${skippedText})` : ''}`);
    const candidates: Candidate[] = licences.map((l) => ({ licenseId: l.licenseId, markKey: licenceMarkKey(key.master, l.licenseId) }));
    let r;
    try {
      r = await trace(await indexModel(orig?.dir ?? o.original), await indexModel(suspect), candidates, { onProgress: (s) => ctx.note(s) });
    } finally {
      for (const c of candidates) c.markKey.fill(0);
    }
    const byId = new Map(licences.map((l) => [l.licenseId, l]));
    const fmtP = (log10: number) => (log10 === 0 ? '1' : log10 > -3 ? (10 ** log10).toPrecision(2) : `1e${Math.floor(log10)}`);
    ctx.out(`matched ${r.matched.length} of the original's ${r.tensors} fingerprinted tensors; ${r.sampled.toLocaleString('en-US')} weights compared, ${r.differing.toLocaleString('en-US')} differ from the original`);
    if (r.differing === 0) ctx.out('the suspect holds the original weights unchanged: it carries no fingerprint');
    ctx.out('licence                           customer              score     p-value   p × candidates');
    for (const c of r.candidates.slice(0, top)) {
      const l = byId.get(c.licenseId)!;
      ctx.out(`${c.licenseId}  ${(l.customer ?? '-').slice(0, 20).padEnd(20)}  ${c.score.toFixed(1).padStart(6)}  ${fmtP(c.log10p).padStart(9)}  ${fmtP(c.log10pAdjusted).padStart(9)}${c.implicated ? '  IMPLICATED' : ''}`);
    }
    const result = {
      implicated: r.implicated.map((id) => ({ licenseId: id, customer: byId.get(id)!.customer ?? null })),
      threshold: ALPHA,
      candidates: r.candidates.map((c) => ({ ...c, customer: byId.get(c.licenseId)!.customer ?? null })),
      matched: r.matched,
      tensors: r.tensors,
      sampled: r.sampled,
      differing: r.differing,
      skipped,
    };
    if (r.implicated.length === 0) {
      ctx.out(`no licence is implicated: no candidate's p-value times ${licences.length} is below ${ALPHA}`);
      throw new MlicError('NOT_IMPLICATED', `no licence is implicated: the suspect does not carry the fingerprint of any of the ${licences.length} candidate licences (at p × candidates < ${ALPHA})`, {
        hint: 'it may be unmarked, marked for a licence not among the candidates, or changed too much to tell',
        details: result,
      });
    }
    for (const i of result.implicated) ctx.out(`IMPLICATED: licence ${i.licenseId}${i.customer ? ` (customer ${i.customer})` : ''}`);
    printResult(ctx, result);
  } finally {
    await orig?.close();
  }
}
