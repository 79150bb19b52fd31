import { MlicError } from '../../errors.js';
import { MAX_INPUT, readTextFile } from '../../util/files.js';
import { StateDir } from '../../state/home.js';
import { buildReport, monthBounds, verifyReport } from '../../usage/report.js';
import { loadLicense } from '../../host/handle.js';
import { Journal } from '../../host/journal.js';
import { parseLicenseText } from '../../format/license.js';
import { verifyLicenseText } from '../../license/sign.js';
import { loadPublicKey } from '../../keys/load.js';
import { keyIdHex } from '../../format/minisign.js';
import { writeSmallFileAtomic } from '../../util/atomic.js';
import { loadOpts, type MeterOpts } from './meter.js';
import { probeWithSpinner } from '../spinner.js';
import { stat } from 'node:fs/promises';
import { printResult, safeText, type Ctx } from '../output.js';
import { callServer, expectField } from '../../host/server-client.js';

const licenceText = (p: string) => readTextFile(p, { maxBytes: MAX_INPUT.licence, what: 'licence' });
const reportText = (p: string) => readTextFile(p, { maxBytes: MAX_INPUT.report, what: 'usage report' });

export async function report(ctx: Ctx, o: MeterOpts & { period?: string; output?: string; force?: boolean }): Promise<void> {
  const period = o.period ?? new Date().toISOString().slice(0, 7);
  monthBounds(period);
  const lic = await loadLicense({ ...loadOpts(o, await probeWithSpinner(ctx.json)), forReport: true });
  try {
    const state = StateDir.fromEnv(process.env, o.home);
    const host = await state.hostIdentity({ create: false });
    const out = o.output ?? `usage-${lic.license.licenseId.slice(0, 8)}-${period}.json`;
    // Making a report is itself recorded, so that the audit log moves forward between reports.
    await lic.note({ action: 'report', metric: period });
    await lic.flush();
    const records = await lic.usageRecords();
    const r = buildReport({ records, period, license: lic.license, hostSignSeed: host.signSeed, hostSignPublic: host.signPublic, hostBoxPublic: host.boxPublic, auditSeq: lic.auditSeq });
    await writeSmallFileAtomic(out, JSON.stringify(r, null, 2) + '\n', { mode: 0o644, force: o.force ?? false });
    ctx.out(`wrote ${out}: ${period}, ${r.payload.ledger.count} records (${r.payload.ledger.firstSeq}..${r.payload.ledger.lastSeq})`);
    for (const t of r.payload.totals) ctx.out(`  ${t.metric}${t.feature ? ` [${t.feature}]` : ''}: ${t.quantity}${t.overageQuantity ? ` (${t.overageQuantity} overage)` : ''}${t.forfeitedQuantity ? ` (${t.forfeitedQuantity} forfeited by killed processes)` : ''}`);
    printResult(ctx, { report: out, period, ledger: r.payload.ledger, totals: r.payload.totals });
  } finally {
    await lic.close();
  }
}

/** Posts usage reports to the licence server (the one this host activated with, or --server). */
export async function post(ctx: Ctx, files: string[], o: { server?: string; home?: string }): Promise<void> {
  const server = o.server ?? (await StateDir.fromEnv(process.env, o.home).serverUrl());
  if (!server) throw new MlicError('USAGE', 'which licence server? this host did not activate online: give --server URL');
  const posted: unknown[] = [];
  for (const f of files) {
    const a = await callServer(server, 'v1/usage-reports', { body: { report: await reportText(f) } });
    expectField(a, 'period', `usage report ${f}`);
    const body = a.json as { period: string; already?: boolean; problem?: string };
    ctx.out(`${f}: ${body.already ? 'already received' : 'received'} by the licence server (${body.period})${body.problem ? `; it flagged: ${body.problem}` : ''}`);
    posted.push({ file: f, ...body });
  }
  printResult(ctx, { posted });
}

export async function verify(ctx: Ctx, file: string, o: { license: string; previous?: string; pub?: string }): Promise<void> {
  const licText = await licenceText(o.license);
  let license;
  if (o.pub) {
    const pub = await loadPublicKey(o.pub);
    license = (await verifyLicenseText(licText, async (id) => (keyIdHex(pub.keyId) === id ? pub : undefined), o.license)).payload;
  } else license = parseLicenseText(licText, o.license).payload;
  const r = verifyReport(await reportText(file), license, o.previous ? await reportText(o.previous) : undefined);
  ctx.out(`ok: usage report for ${r.period}, licence ${r.licenseId}, ${r.records} ledger records; continuity ${r.continuity === 'checked' ? 'checked against the previous report' : r.continuity === 'first-report' ? 'starts at the first record' : 'NOT checked (pass --previous)'}`);
  for (const t of r.totals)
    ctx.out(`  billable ${t.metric}${t.feature ? ` [${t.feature}]` : ''}: ${t.quantity}${t.overageQuantity ? ` (of which overage ${t.overageQuantity})` : ''}${t.forfeitedQuantity ? ` (of which forfeited reservations ${t.forfeitedQuantity})` : ''}`);
  if (!o.pub) ctx.note('note: the licence file itself was not verified (pass --pub vendor.pub)');
  printResult(ctx, { valid: true, ...r });
}

async function openAudit(home: string | undefined): Promise<Journal> {
  const state = StateDir.fromEnv(process.env, home);
  const host = await state.hostIdentity({ create: false });
  if (!(await stat(state.path('audit', 'audit.log')).then(() => true, () => false)))
    throw new MlicError('IO_NOT_FOUND', `${state.path('audit', 'audit.log')}: no audit log yet (nothing has been decided on this host)`);
  return Journal.open(state, host, { licensed: (await state.licenseTexts()).length > 0, open: 'full' });
}

export async function auditVerify(ctx: Ctx, o: { home?: string }): Promise<void> {
  const journal = await openAudit(o.home);
  try {
    const r = await journal.audit.log.verify();
    ctx.out(`ok: audit log intact and bound to the clock record, ${r.records} records, head ${r.head.slice(0, 16)}`);
    printResult(ctx, r);
  } finally {
    await journal.close();
  }
}

const CSV_COLUMNS = ['seq', 't', 'action', 'decision', 'code', 'licenseId', 'bundleId', 'model', 'version', 'feature', 'metric', 'quantity', 'count', 'tEnd', 'hw', 'inputHash', 'outputHash', 'watermark', 'hash'] as const;

/** One CSV field (RFC 4180), with control and bidi characters escaped for terminals and spreadsheets. */
function csvField(v: unknown): string {
  if (v === undefined) return '';
  const s = safeText(String(v));
  return /[",\r\n]/.test(s) || /^[=+\-@]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export async function auditExport(ctx: Ctx, o: { home?: string; csv?: boolean; since?: string; json?: boolean }): Promise<void> {
  if (o.csv && o.json) throw new MlicError('USAGE', '--csv and --json exclude each other (--json prints the records as one JSON object)');
  let since = 0;
  if (o.since !== undefined) {
    since = Date.parse(o.since);
    if (Number.isNaN(since)) throw new MlicError('USAGE', `--since: '${o.since}' is not a date`);
  }
  const journal = await openAudit(o.home);
  try {
    const recs = (await journal.audit.readAll()).filter((r) => Date.parse(r.data.t) >= since);
    if (o.csv) {
      const lines = [CSV_COLUMNS.join(',')];
      for (const r of recs) lines.push(CSV_COLUMNS.map((c) => csvField(c === 'seq' ? r.seq : c === 'hash' ? r.hash : (r.data as unknown as Record<string, unknown>)[c])).join(','));
      process.stdout.write(lines.join('\n') + '\n');
      return;
    }
    const rows = recs.map((r) => ({ seq: r.seq, hash: r.hash, ...r.data }));
    if (ctx.json) printResult(ctx, { records: rows });
    else process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
  } finally {
    await journal.close();
  }
}
