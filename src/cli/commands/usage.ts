import { MlicError, readTextFile } from '../../errors.js';
import { StateDir } from '../../state/home.js';
import { buildReport, monthBounds, verifyReport } from '../../usage/report.js';
import { loadLicense } from '../../usage/handle.js';
import { parseLicenseText } from '../../format/license.js';
import { verifyLicenseText } from '../../license/sign.js';
import { loadPublicKey } from '../../keys/load.js';
import { keyIdHex } from '../../format/minisign.js';
import { writeSmallFileAtomic } from '../../util/atomic.js';
import { loadOpts, type MeterOpts } from './meter.js';
import { printResult, type Ctx } from '../output.js';

const text = readTextFile;

export async function report(ctx: Ctx, o: MeterOpts & { period?: string; output?: string; force?: boolean }): Promise<void> {
  const period = o.period ?? new Date().toISOString().slice(0, 7);
  monthBounds(period);
  const lic = await loadLicense(loadOpts(o));
  try {
    const state = StateDir.fromEnv(process.env, o.home);
    const host = await state.hostIdentity({ create: false });
    const records = await lic.usageRecords();
    const r = buildReport({ records, period, license: lic.license, hostSignSeed: host.signSeed, hostSignPublic: host.signPublic, hostBoxPublic: host.boxPublic });
    const out = o.output ?? `usage-${lic.license.licenseId.slice(0, 8)}-${period}.json`;
    await writeSmallFileAtomic(out, JSON.stringify(r, null, 2) + '\n', { mode: 0o644, force: o.force ?? false });
    ctx.out(`wrote ${out}: ${period}, ${r.payload.ledger.count} records (${r.payload.ledger.firstSeq}..${r.payload.ledger.lastSeq})`);
    for (const t of r.payload.totals) ctx.out(`  ${t.metric}${t.feature ? ` [${t.feature}]` : ''}: ${t.quantity}${t.overageQuantity ? ` (${t.overageQuantity} overage)` : ''}`);
    printResult(ctx, { report: out, period, ledger: r.payload.ledger, totals: r.payload.totals });
  } finally {
    await lic.close();
  }
}

export async function verify(ctx: Ctx, file: string, o: { license: string; previous?: string; pub?: string }): Promise<void> {
  const licText = await text(o.license);
  let license;
  if (o.pub) {
    const pub = await loadPublicKey(o.pub);
    license = (await verifyLicenseText(licText, async (id) => (keyIdHex(pub.keyId) === id ? pub : undefined), o.license)).payload;
  } else license = parseLicenseText(licText, o.license).payload;
  const r = verifyReport(await text(file), license, o.previous ? await text(o.previous) : undefined);
  ctx.out(`ok: usage report for ${r.period}, licence ${r.licenseId}, ${r.records} ledger records; continuity ${r.continuity === 'checked' ? 'checked against the previous report' : r.continuity === 'first-report' ? 'starts at the first record' : 'NOT checked (pass --previous)'}`);
  for (const t of r.totals) ctx.out(`  billable ${t.metric}${t.feature ? ` [${t.feature}]` : ''}: ${t.quantity}${t.overageQuantity ? ` (of which overage ${t.overageQuantity})` : ''}`);
  if (!o.pub) ctx.note('note: the licence file itself was not verified (pass --pub vendor.pub)');
  printResult(ctx, { valid: true, ...r });
}

export async function auditVerify(ctx: Ctx, o: { home?: string }): Promise<void> {
  const { openAudit } = await import('../../usage/open-logs.js');
  const { audit, close } = await openAudit(o.home);
  try {
    const r = await audit.log.verify();
    ctx.out(`ok: audit log intact, ${r.records} records, head ${r.head.slice(0, 16)}`);
    printResult(ctx, r);
  } finally {
    await close();
  }
}

export async function auditExport(ctx: Ctx, o: { home?: string; csv?: boolean; since?: string; json?: boolean }): Promise<void> {
  let since = 0;
  if (o.since !== undefined) {
    since = Date.parse(o.since);
    if (Number.isNaN(since)) throw new MlicError('USAGE', `--since: '${o.since}' is not a date`);
  }
  const { openAudit } = await import('../../usage/open-logs.js');
  const { audit, close } = await openAudit(o.home);
  try {
    const recs = (await audit.readAll()).filter((r) => Date.parse(r.data.t) >= since);
    if (o.csv) {
      const cols = ['seq', 't', 'action', 'decision', 'code', 'licenseId', 'bundleId', 'model', 'version', 'feature', 'metric', 'quantity', 'inputHash', 'outputHash', 'hash'] as const;
      const esc = (v: unknown) => (v === undefined ? '' : /[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
      process.stdout.write(cols.join(',') + '\n');
      for (const r of recs) process.stdout.write(cols.map((c) => esc(c === 'seq' ? r.seq : c === 'hash' ? r.hash : (r.data as unknown as Record<string, unknown>)[c])).join(',') + '\n');
      return;
    }
    const rows = recs.map((r) => ({ seq: r.seq, hash: r.hash, ...r.data }));
    if (ctx.json) printResult(ctx, { records: rows });
    else process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
  } finally {
    await close();
  }
}
