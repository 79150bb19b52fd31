import { MlicError } from '../../errors.js';
import { MAX_INPUT, readTextFile } from '../../util/files.js';
import { issueLicense, parseMatch, parseMeter, type IssueOptions } from '../../license/issue.js';
import { parseAndVerifyRequest, verifyLicenseText } from '../../license/sign.js';
import { checkTime, describeVersions } from '../../license/policy.js';
import { overageText } from '../../license/meter.js';
import { loadPublicKey } from '../../keys/load.js';
import { vendorPublicKey } from '../../keys/vendor.js';
import { parseLicenseText, redactedPayload, serializeLicense } from '../../format/license.js';
import { isoSeconds } from '../../format/fields.js';
import { keyIdHex } from '../../format/minisign.js';
import { openVerified } from '../../bundle/verify.js';
import { StateDir } from '../../state/home.js';
import { writeSmallFileAtomic } from '../../util/atomic.js';
import { vendorKey } from '../keys.js';
import { loadTpmCas } from '../../tpm/ekcert.js';
import { parsePcrPolicy, policyFromValues } from '../../tpm/pcr.js';
import { verifyTpmRequest, type TpmVerifyOptions } from '../../tpm/attest.js';
import { printResult, type Ctx } from '../output.js';

/** The terms a licence grants, as the CLI takes them (license issue, admin entitlement create). */
export interface TermsOpts {
  versions?: string;
  rolling?: boolean;
  updatesUntil?: string;
  notBefore?: string;
  expires?: string;
  days?: string;
  perpetual?: boolean;
  grace?: string;
  clockTolerance?: string;
  tier?: string;
  feature?: string[];
  component?: string[];
  match?: string;
  meter?: string[];
  region?: string[];
  requireWatermark?: boolean;
}

export interface IssueOpts extends TermsOpts {
  key?: string;
  passphraseFile?: string;
  request?: string;
  unbound?: boolean;
  model: string;
  bundle?: string;
  customer?: string;
  output?: string;
  force?: boolean;
  marked?: boolean;
  tpmCa?: string;
  requireTpm?: boolean;
  pcrPolicy?: string;
  maxRequestAge?: string;
}

/** How TPM requests are checked: --tpm-ca (or MLIC_TPM_CA), --require-tpm, --pcr-policy, --max-request-age. */
export async function tpmChecks(o: Pick<IssueOpts, 'tpmCa' | 'requireTpm' | 'pcrPolicy' | 'maxRequestAge'>): Promise<TpmVerifyOptions> {
  const caDir = o.tpmCa ?? (process.env.MLIC_TPM_CA || undefined);
  if (o.requireTpm && !caDir) throw new MlicError('USAGE', "--require-tpm needs --tpm-ca DIR (or MLIC_TPM_CA): without the manufacturers' CAs nothing shows the TPM is real");
  return {
    ...(caDir ? { cas: await loadTpmCas(caDir) } : {}),
    ...(o.requireTpm ? { require: true } : {}),
    ...(o.pcrPolicy ? { pcrPolicy: parsePcrPolicy(await readTextFile(o.pcrPolicy, { maxBytes: 1 << 16, what: 'PCR policy' }), o.pcrPolicy) } : {}),
    ...(o.maxRequestAge ? { maxAgeSeconds: duration(o.maxRequestAge, '--max-request-age') } : {}),
  };
}

export function date(s: string, what: string): Date {
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) throw new MlicError('USAGE', `${what}: '${s}' is not a date`, { hint: 'use ISO 8601, e.g. 2027-01-31 or 2027-01-31T12:00:00Z' });
  return d;
}

/** Durations: 3600, 90s, 30m, 12h, 7d. */
export function duration(s: string, what: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(s.trim());
  if (!m) throw new MlicError('USAGE', `${what}: '${s}' is not a duration (e.g. 3600, 30m, 12h, 7d)`);
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
}

export async function issue(ctx: Ctx, o: IssueOpts): Promise<void> {
  if (!o.request === !o.unbound) throw new MlicError('USAGE', 'give exactly one of --request FILE or --unbound');
  if ([o.rolling, o.updatesUntil !== undefined].filter(Boolean).length > 1) throw new MlicError('USAGE', '--rolling and --updates-until exclude each other');
  if (o.rolling && o.versions) throw new MlicError('USAGE', '--rolling covers every version; drop --versions');
  if ([o.expires !== undefined, o.days !== undefined, o.perpetual === true].filter(Boolean).length > 1) throw new MlicError('USAGE', '--expires, --days and --perpetual exclude each other');
  if (o.expires === undefined && o.days === undefined && !o.perpetual)
    throw new MlicError('USAGE', 'say how long the licence is valid: --days N, --expires DATE, or --perpetual for a licence without an end');
  let versions: IssueOptions['versions'];
  if (o.rolling) versions = { policy: 'rolling' };
  else if (o.updatesUntil !== undefined) versions = { policy: 'maintenance', until: isoSeconds(date(o.updatesUntil, '--updates-until')), ...(o.versions ? { range: o.versions } : {}) };
  else if (o.versions === undefined) throw new MlicError('USAGE', 'say which versions: --versions RANGE, --rolling or --updates-until DATE');
  else if (/^=\s*\d/.test(o.versions.trim()) && !o.marked) versions = { policy: 'pin', version: o.versions.trim().replace(/^=\s*/, '') };
  else versions = { policy: 'range', range: o.versions };
  if (o.bundle !== undefined && versions.policy !== 'pin') throw new MlicError('USAGE', "--bundle is for a pin (--versions '=X.Y.Z')");
  const request = o.request ? parseAndVerifyRequest(await readTextFile(o.request, { maxBytes: MAX_INPUT.request, what: 'activation request' }), o.request) : undefined;
  const tpm = await tpmChecks(o);
  const key = await vendorKey(ctx, o);
  // The pinned bundle decides which key is granted: trust it only once its signature verifies with this key.
  let pinnedBundle;
  if (o.bundle !== undefined) {
    const v = await openVerified(o.bundle, vendorPublicKey(key));
    await v.bundle.close();
    pinnedBundle = v.manifest;
  }
  const now = new Date();
  const notBefore = o.notBefore ? date(o.notBefore, '--not-before') : now;
  const expires = o.expires ? date(o.expires, '--expires') : o.days ? new Date(notBefore.getTime() + duration(`${o.days}d`, '--days') * 1000) : undefined;
  const { license, payload } = issueLicense({
    key,
    ...(request ? { request } : {}),
    model: o.model,
    versions,
    ...(pinnedBundle ? { pinnedBundle } : {}),
    notBefore,
    ...(expires ? { expires } : {}),
    ...(o.perpetual ? { perpetual: true } : {}),
    graceSeconds: o.grace ? duration(o.grace, '--grace') : 0,
    clockToleranceSeconds: o.clockTolerance ? duration(o.clockTolerance, '--clock-tolerance') : 3600,
    ...(o.tier ? { tier: o.tier } : {}),
    features: o.feature ?? [],
    components: o.component ?? [],
    ...(o.match ? { match: parseMatch(o.match) } : {}),
    meters: (o.meter ?? []).map((spec) => {
      const m = parseMeter(spec);
      if (m.scope === 'fleet')
        throw new MlicError('USAGE', `--meter ${spec}: a fleet meter is counted by the licence server, so only the server issues it`, { hint: 'create an entitlement with mlic admin entitlement create --meter ...' });
      return m;
    }),
    regions: o.region ?? [],
    ...(o.customer ? { customer: o.customer } : {}),
    ...(o.requireWatermark ? { requireWatermark: true } : {}),
    ...(o.marked ? { marked: true } : {}),
    tpm,
    now,
  });
  const t = payload.host.binding === 'host' ? payload.host.tpm : undefined;
  if (t) ctx.note(`bound to the host's TPM (endorsement key ${t.ekHash.slice(0, 16)}…)${tpm.cas ? ', its certificate chained to a trusted manufacturer CA' : "; WARNING: its endorsement key certificate was not checked (no --tpm-ca): nothing shows it is a real TPM"}`);
  const out = o.output ?? `${payload.model}-${payload.licenseId.slice(0, 8)}.lic`;
  // 0600 like every secret: a bound licence holds sealed keys, an unbound one its keys in the clear.
  await writeSmallFileAtomic(out, serializeLicense(license), { mode: 0o600, force: o.force ?? false });
  ctx.out(`wrote ${out}: licence ${payload.licenseId} for ${payload.model}, ${describeVersions(payload.versions)}, ${payload.host.binding === 'host' ? `bound to host ${payload.host.hostname ?? payload.host.requestId}` : 'UNBOUND (its keys are in the file: treat it as a secret)'}${payload.marked ? '; for marked bundles only (mlic mark)' : ''}`);
  printResult(ctx, { license: out, licenseId: payload.licenseId, tpm: t ? { ekHash: t.ekHash, ekCertificateVerified: tpm.cas !== undefined } : null, payload: redactedPayload(payload) });
}

export async function inspect(ctx: Ctx, file: string, o: { pub?: string; home?: string }): Promise<void> {
  const text = await readTextFile(file, { maxBytes: MAX_INPUT.licence, what: 'licence' });
  const l = parseLicenseText(text, file);
  let verified = false;
  let verifyError: { code: string; message: string } | undefined;
  try {
    const state = StateDir.fromEnv(process.env, o.home);
    const pub = o.pub ? await loadPublicKey(o.pub) : undefined;
    await verifyLicenseText(text, async (id) => (pub ? (keyIdHex(pub.keyId) === id ? pub : undefined) : state.trusted(id)), file);
    verified = true;
  } catch (e) {
    if (!(e instanceof MlicError)) throw e;
    verifyError = { code: e.code, message: e.message };
  }
  const p = l.payload;
  const time = checkTime(p, new Date());
  const status = !time.ok ? (time.code === 'LICENSE_EXPIRED' ? `EXPIRED on ${p.expires}` : `not yet valid (from ${p.notBefore})`) : time.inGrace ? `EXPIRED on ${p.expires}, in its grace period` : 'valid now';
  const lines: [string, string][] = [
    ['licence', p.licenseId],
    ['signature', verified ? `valid (vendor key ${l.signature.keyId})` : `NOT VERIFIED: ${verifyError?.message}`],
    ['status', status],
    ['model', p.model],
    ['versions', describeVersions(p.versions)],
    ['issued', p.issuedAt],
    ['valid', `${p.notBefore} to ${p.expires ?? 'no expiry'}${p.graceSeconds ? ` (+${p.graceSeconds}s grace)` : ''}`],
    ['clock', `rollback tolerance ${p.clockToleranceSeconds}s`],
    ['customer', p.customer ?? '-'],
    ['tier', p.tier ?? '-'],
    ['features', p.features.join(', ') || '-'],
    ['components', p.components?.join(', ') ?? 'all'],
    ['host', p.host.binding === 'host' ? `${p.host.hostname ?? '?'} (${p.host.fingerprint.components.length} components, match ${p.host.match.policy === 'k' ? `${p.host.match.k} of n` : p.host.match.policy})${p.host.region ? `, region ${p.host.region}` : ''}` : 'unbound'],
    ['meters', p.meters.map((m) => `${m.metric} ${m.limit}/${m.period}${overageText(m)}${m.scope === 'fleet' ? ' (fleet)' : ''}`).join(', ') || '-'],
    ['regions', p.regions?.join(', ') ?? 'anywhere'],
    ['marked', p.marked ? 'yes: its keys open only the bundles marked for it (mlic mark)' : 'no'],
    ['tpm', p.host.binding === 'host' && p.host.tpm ? `bound: endorsement key ${p.host.tpm.ekHash}` : '-'],
    ['keys', `${p.keys.length} (${p.keys.some((k) => k.sealed) ? (p.host.binding === 'host' && p.host.tpm ? "sealed to the host key and to its TPM" : 'sealed to the host') : 'in the clear: an unbound licence, keep it secret'})`],
  ];
  for (const [k, v] of lines) ctx.out(`${k.padEnd(11)} ${v}`);
  if (!verified && verifyError)
    throw new MlicError(verifyError.code as 'SIGNATURE_INVALID', verifyError.message, { details: { payload: redactedPayload(p) } });
  printResult(ctx, { verified, status: !time.ok ? time.code : time.inGrace ? 'IN_GRACE' : 'VALID', expired: !time.ok && time.code === 'LICENSE_EXPIRED', signature: { alg: l.signature.alg, keyId: l.signature.keyId }, payload: redactedPayload(p) });
}

/** A PCR policy from a known-good host's TPM request: the PCR values it quoted (the quote is checked first). */
export async function pcrPolicy(ctx: Ctx, o: { request: string; output?: string; force?: boolean; maxRequestAge?: string }): Promise<void> {
  const request = parseAndVerifyRequest(await readTextFile(o.request, { maxBytes: MAX_INPUT.request, what: 'activation request' }), o.request);
  if (!request.payload.tpm) throw new MlicError('TPM_REQUIRED', `${o.request} has no TPM attestation`, { hint: 'on the host: mlic activate --request --tpm' });
  const v = verifyTpmRequest(request.payload, { ...(o.maxRequestAge ? { maxAgeSeconds: duration(o.maxRequestAge, '--max-request-age') } : { maxAgeSeconds: 365 * 86400 }) });
  const policy = policyFromValues(request.payload.tpm.pcrs);
  const out = o.output ?? 'pcr-policy.json';
  await writeSmallFileAtomic(out, JSON.stringify(policy, null, 2) + '\n', { mode: 0o644, force: o.force ?? false });
  ctx.out(`wrote ${out}: PCRs ${v!.pcrs.join(', ')} (sha256) as host ${request.payload.hostname} quoted them; add other allowed values to each list as needed`);
  printResult(ctx, { policy: out, pcrs: v!.pcrs, hostname: request.payload.hostname });
}
