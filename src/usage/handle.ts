/**
 * loadLicense(): the runtime interface for inference services. The licence is verified once
 * (signature, trust, host, time, hardware), then validate() answers per call from memory, counts
 * metered usage in the ledger, and records every decision in the audit log.
 *
 *   const lic = await loadLicense({ bundle: 'resnet-2.1.0.mlb' });
 *   const r = await lic.validate({ feature: 'sentiment-analysis', meter: { metric: 'inferences', quantity: 32 } });
 *   if (!r.valid) throw new Error(r.error);
 */
import { MlicError, readTextFile } from '../errors.js';
import { hkdfSha256 } from '../crypto/kdf.js';
import { wipe } from '../crypto/random.js';
import type { LicensePayload } from '../format/license.js';
import type { Manifest } from '../format/manifest.js';
import { StateDir, type HostIdentity } from '../state/home.js';
import { decide } from '../license/policy.js';
import { authorizeBundle, checkHost, type RuntimeOptions } from '../license/runtime.js';
import { verifyLicenseText } from '../license/sign.js';
import { AuditLog, validHash, type AuditData } from './audit.js';
import { UsageLedger, type Durability } from './ledger.js';
import { METRIC_RE } from '../format/license.js';

export interface LoadLicenseOptions extends RuntimeOptions {
  /** the bundle the licence must cover (its installed licence is found and checked against it) */
  bundle?: string;
  /** a licence file to use instead of the installed ones */
  licenseFile?: string;
  /** with neither bundle nor licenceFile: an installed licence for this model */
  model?: string;
  durability?: Durability;
  flushMs?: number;
  /** the clock (tests inject one); default () => new Date() */
  clock?: () => Date;
}

export type ValidateError =
  | 'quota_exceeded'
  | 'feature_not_licensed'
  | 'license_expired'
  | 'license_not_yet_valid'
  | 'metric_not_licensed'
  | 'clock_tampered'
  | 'invalid_request'
  | 'closed';

export interface ValidateRequest {
  feature?: string;
  meter?: { metric: string; quantity: number };
  inputHash?: string;
  outputHash?: string;
}

export interface ValidateResult {
  valid: boolean;
  error?: ValidateError;
  message?: string;
  /** metered: what is left in this period under the limit */
  remaining?: number;
  used?: number;
  limit?: number;
  resetsAt?: string;
  /** metered: this consumption went over the limit, within the licence's allowed overage */
  overage?: boolean;
  /** the licence has expired and is in its grace period */
  inGrace?: boolean;
  /** outputs must be watermarked (e.g. a free tier): the caller's contract, see docs/USAGE.md */
  watermarkRequired: boolean;
  tier?: string;
}

export function ledgerKey(h: HostIdentity, licenseId: string): Buffer {
  return hkdfSha256(h.signSeed, Buffer.from('mlic/v1/ledger'), Buffer.from(licenseId, 'utf8'));
}

export function auditKey(h: HostIdentity): Buffer {
  return hkdfSha256(h.signSeed, Buffer.from('mlic/v1/audit'), Buffer.from('audit-log'));
}

export function ledgerPath(state: StateDir, licenseId: string): string {
  return state.path('usage', `${licenseId}.log`);
}

export function auditPath(state: StateDir): string {
  return state.path('audit', 'audit.log');
}

export class LoadedLicense {
  private highWater: number;
  private lastPersist = 0;
  private closed = false;
  private readonly notBefore: number;
  private readonly expires: number;
  private readonly hardEnd: number;
  private readonly features: Set<string>;

  constructor(
    readonly license: LicensePayload,
    readonly manifest: Pick<Manifest, 'bundleId' | 'model'> | undefined,
    private readonly state: StateDir,
    private readonly host: HostIdentity,
    private readonly ledger: UsageLedger,
    private readonly auditLog: AuditLog,
    private readonly clock: () => Date,
    highWater: Date | undefined,
  ) {
    this.highWater = highWater?.getTime() ?? 0;
    this.notBefore = Date.parse(license.notBefore);
    this.expires = license.expires ? Date.parse(license.expires) : Infinity;
    this.hardEnd = this.expires + license.graceSeconds * 1000;
    this.features = new Set(license.features);
  }

  private base(now: Date): Omit<AuditData, 'action' | 'decision'> {
    return {
      t: now.toISOString(),
      licenseId: this.license.licenseId,
      ...(this.manifest ? { bundleId: this.manifest.bundleId, model: this.manifest.model.name, version: this.manifest.model.version } : { model: this.license.model }),
    };
  }

  private deny(now: Date, error: ValidateError, message: string, req: ValidateRequest): ValidateResult {
    void this.auditLog.record({ ...this.base(now), action: req.meter ? 'consume' : 'validate', decision: 'deny', code: error, ...this.reqFields(req) }).catch(() => undefined);
    return { valid: false, error, message, watermarkRequired: this.license.requireWatermark === true, ...(this.license.tier ? { tier: this.license.tier } : {}) };
  }

  private reqFields(req: ValidateRequest): Partial<AuditData> {
    return {
      ...(req.feature !== undefined ? { feature: String(req.feature).slice(0, 128) } : {}),
      ...(req.meter ? { metric: String(req.meter.metric).slice(0, 64), quantity: Number(req.meter.quantity) } : {}),
      ...(validHash(req.inputHash) ? { inputHash: req.inputHash } : {}),
      ...(validHash(req.outputHash) ? { outputHash: req.outputHash } : {}),
    };
  }

  /** Is this use allowed now? Counts metered usage. Never throws for a "no": returns valid false with an error. */
  async validate(req: ValidateRequest = {}): Promise<ValidateResult> {
    const now = this.clock();
    const t = now.getTime();
    if (this.closed) return { valid: false, error: 'closed', message: 'the licence handle is closed', watermarkRequired: this.license.requireWatermark === true };
    if ((req.inputHash !== undefined && !validHash(req.inputHash)) || (req.outputHash !== undefined && !validHash(req.outputHash)))
      return this.deny(now, 'invalid_request', 'inputHash/outputHash must be short printable strings (e.g. sha256:<hex>)', req);
    if (t < this.highWater - this.license.clockToleranceSeconds * 1000)
      return this.deny(now, 'clock_tampered', `the clock (${now.toISOString()}) is behind the latest time seen (${new Date(this.highWater).toISOString()})`, req);
    if (t > this.highWater) {
      this.highWater = t;
      if (t - this.lastPersist > 60_000) {
        this.lastPersist = t;
        void this.state.clockAdvance(this.host, now).catch(() => undefined);
      }
    }
    if (t < this.notBefore) return this.deny(now, 'license_not_yet_valid', `the licence is valid from ${this.license.notBefore}`, req);
    if (t > this.hardEnd) return this.deny(now, 'license_expired', `the licence expired on ${this.license.expires}`, req);
    if (req.feature !== undefined && !this.features.has(req.feature)) return this.deny(now, 'feature_not_licensed', `feature '${req.feature}' is not licensed`, req);
    const extra = { watermarkRequired: this.license.requireWatermark === true, ...(this.license.tier ? { tier: this.license.tier } : {}), ...(t > this.expires ? { inGrace: true } : {}) };
    if (req.meter) {
      const { metric, quantity } = req.meter;
      if (typeof metric !== 'string' || !METRIC_RE.test(metric) || !Number.isSafeInteger(quantity) || quantity < 0)
        return this.deny(now, 'invalid_request', 'meter needs a metric name and a non-negative integer quantity', req);
      if (!this.ledger.meter(metric)) return this.deny(now, 'metric_not_licensed', `the licence has no meter '${metric}' (it meters: ${this.license.meters.map((m) => m.metric).join(', ') || 'nothing'})`, req);
      const r = await this.ledger.consume(metric, quantity, now, req.feature);
      const q = { used: r.used, limit: r.limit, remaining: r.remaining, ...(r.resetsAt ? { resetsAt: r.resetsAt.toISOString() } : {}) };
      if (!r.ok) {
        const d = this.deny(now, 'quota_exceeded', `quota for '${metric}' exhausted: ${r.used} of ${r.limit} used this period${r.resetsAt ? `; resets at ${r.resetsAt.toISOString()}` : ''}`, req);
        return { ...d, ...q };
      }
      void this.auditLog.record({ ...this.base(now), action: 'consume', decision: 'allow', ...this.reqFields(req), ...(r.overage ? { code: 'OVERAGE' } : {}) }).catch(() => undefined);
      return { valid: true, ...q, ...(r.overage ? { overage: true } : {}), ...extra };
    }
    void this.auditLog.record({ ...this.base(now), action: 'validate', decision: 'allow', ...this.reqFields(req) }).catch(() => undefined);
    return { valid: true, ...extra };
  }

  /** Records the hashes of one inference's input and output in the audit log. */
  async audit(r: { inputHash?: string; outputHash?: string; feature?: string }): Promise<void> {
    if ((r.inputHash !== undefined && !validHash(r.inputHash)) || (r.outputHash !== undefined && !validHash(r.outputHash)))
      throw new MlicError('USAGE', 'inputHash/outputHash must be short printable strings (e.g. sha256:<hex>)');
    await this.auditLog.record({ ...this.base(this.clock()), action: 'audit', decision: 'allow', ...this.reqFields(r) });
  }

  /** Usage of each metered metric in its current period. */
  async status(): Promise<{ metric: string; used: number; limit: number; remaining: number; resetsAt: string | null; period: string }[]> {
    const now = this.clock();
    const out = [];
    for (const m of this.license.meters) {
      const s = (await this.ledger.status(m.metric, now))!;
      out.push({ metric: m.metric, used: s.used, limit: s.limit, remaining: s.remaining, resetsAt: s.resetsAt?.toISOString() ?? null, period: s.period });
    }
    return out;
  }

  /** Every ledger record of this licence on this host, verified. */
  async usageRecords(): Promise<import('../state/chainlog.js').ChainRecord<import('./ledger.js').UsageData>[]> {
    return this.ledger.records();
  }

  async flush(): Promise<void> {
    await this.ledger.flush();
    await this.auditLog.flush();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.ledger.close();
    await this.auditLog.close();
    if (this.highWater > 0) await this.state.clockAdvance(this.host, new Date(this.highWater)).catch(() => undefined);
  }
}

/** Verifies a licence once and returns a handle for fast validate() calls. */
export async function loadLicense(o: LoadLicenseOptions = {}): Promise<LoadedLicense> {
  const state = StateDir.fromEnv(process.env, o.stateDir);
  const clock = o.clock ?? (() => new Date());
  const now = clock();
  let license: LicensePayload;
  let manifest: Pick<Manifest, 'bundleId' | 'model'> | undefined;
  if (o.bundle !== undefined) {
    const a = await authorizeBundle(o.bundle, { ...o, now });
    license = a.license;
    manifest = { bundleId: a.manifest.bundleId, model: a.manifest.model };
    wipe(a.bundleKey);
    await a.bundle.close();
  } else {
    const texts: { path: string; text: string }[] = [];
    if (o.licenseFile !== undefined) {
      texts.push({ path: o.licenseFile, text: await readTextFile(o.licenseFile) });
    } else texts.push(...(await state.licenseTexts()));
    let lastError: unknown = new MlicError('NO_LICENSE', o.model ? `no installed licence for model ${o.model}` : 'no licence installed', { hint: 'run `mlic activate <licence>` first' });
    let found: LicensePayload | undefined;
    const h0 = await state.loadHost();
    const hw = h0 ? await state.clockHighWater(h0) : undefined;
    for (const { path, text } of texts) {
      try {
        const l = (await verifyLicenseText(text, (id) => state.trusted(id), path)).payload;
        if (o.model !== undefined && l.model !== o.model) continue;
        const fingerprint = await checkHost(l, h0, o);
        decide({ license: l, now, ...(fingerprint ? { fingerprint } : {}), ...(h0?.region ? { region: h0.region } : {}), ...(hw ? { highWater: hw } : {}) });
        found = l;
        break;
      } catch (e) {
        lastError = e;
      }
    }
    if (!found) throw lastError;
    license = found;
  }
  const host = await state.hostIdentity({ create: true });
  await state.ensure('usage');
  await state.ensure('audit');
  const ledger = await UsageLedger.open(ledgerPath(state, license.licenseId), ledgerKey(host, license.licenseId), license, { durability: o.durability ?? 'batched', ...(o.flushMs ? { flushMs: o.flushMs } : {}) });
  const audit = await AuditLog.open(auditPath(state), auditKey(host), { durability: o.durability ?? 'batched', open: 'tail', ...(o.flushMs ? { flushMs: o.flushMs } : {}) });
  const hw = await state.clockHighWater(host);
  return new LoadedLicense(license, manifest, state, host, ledger, audit, clock, hw);
}
