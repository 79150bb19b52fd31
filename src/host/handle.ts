/**
 * loadLicense(): the runtime interface for inference services. The licence is verified once
 * (signature, trust, host key, hardware, time, the clock's high-water mark) through the same
 * decision path as unpack and run; then validate() answers per call from memory with the same
 * time and feature rules (license/policy.ts), counts metered usage in the ledger, and records
 * every decision in the host's journal (which moves the clock's high-water mark).
 *
 *   const lic = await loadLicense({ bundle: 'resnet-2.1.0.mlb' });
 *   const r = await lic.validate({ feature: 'sentiment-analysis', meter: { metric: 'inferences', quantity: 32 } });
 *   if (!r.valid) throw new Error(r.error);
 *
 * Usage survives a process that never calls close(): the buffers are flushed when the event
 * loop empties, and a reservation left behind by a killed process becomes consumed usage when it
 * expires (usage/ledger.ts).
 */
import { MlicError } from '../errors.js';
import { wipe } from '../crypto/random.js';
import { METRIC_RE, type LicensePayload } from '../format/license.js';
import type { Manifest } from '../format/manifest.js';
import { readTextFile } from '../util/files.js';
import { checkFeature, checkTimeAt, timeWindow, validateErrorOf, validateErrorOfCode, type Denial, type TimeWindow, type ValidateError } from '../license/policy.js';
import { validHash, type AuditData } from '../usage/audit.js';
import { UsageLedger, type Durability, type Figures } from '../usage/ledger.js';
import { ledgerKey, ledgerPath } from '../usage/paths.js';
import type { ChainRecord } from '../state/chainlog.js';
import type { UsageData } from '../usage/ledger.js';
import { HostContext, type HostOptions } from './context.js';
import { Journal } from './journal.js';
import { loadRevoked } from './revocations.js';
import { ensureLease, keepLease, type HeldLease, type KeptLease } from './leases.js';
import type { FleetFigures } from '../format/reservation.js';
import { fleetClient } from './quotas.js';
import { callServer } from './server-client.js';
import { buildReport } from '../usage/report.js';
import type { HostIdentity } from '../state/home.js';
import type { RevokedLicense } from '../format/revocation.js';
import { stat } from 'node:fs/promises';
import { authorizeBundle, choose, tpmSecretFor, withDecision, type Candidate } from './licences.js';
import { MAX_LICENSE_BYTES } from '../format/license.js';
import { unwrapWatermarkKey } from '../license/keys.js';
import { textWatermarkProcessor, type LogitsProcessor, type TextWatermarkParams } from '../watermark/text.js';
import { markImage } from '../watermark/licence.js';
import type { EmbedOptions, RawImage } from '../watermark/image.js';
import type { EncodeOptions } from '../watermark/codec.js';
import { createHash } from 'node:crypto';

export type { ValidateError } from '../license/policy.js';

export interface LoadLicenseOptions extends HostOptions {
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
  /** for a usage report of past use: a revoked licence is still opened (internal: mlic usage report) */
  forReport?: boolean;
}

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
  /** metered: recorded usage this period (docs/USAGE.md: the figures) */
  used?: number;
  /** metered: reserved by live leases and not yet used */
  reserved?: number;
  /** metered: what is left this period under the limit: limit - used - reserved */
  remaining?: number;
  limit?: number;
  resetsAt?: string;
  /** metered: this consumption went over the limit, within the licence's allowed overage */
  overage?: boolean;
  /** fleet meters, when refused: the fleet's figures as the licence server gave them */
  fleet?: FleetFigures;
  /** the licence has expired and is in its grace period */
  inGrace?: boolean;
  /** outputs must be watermarked (e.g. a free tier): the caller's contract, see docs/USAGE.md */
  watermarkRequired: boolean;
  /** the watermark to mark outputs with, when the licence carries its key (licences issued with --require-watermark) */
  watermark?: LicenceWatermark;
  tier?: string;
}

/** What marks a licence's outputs: made from the licence's watermark key, which the vendor can derive again to detect them. */
export interface LicenceWatermark {
  licenseId: string;
  /** a logits processor for a token-by-token sampling loop (src/watermark/text.ts); record each output with recordText() */
  text(params?: Partial<TextWatermarkParams>): LogitsProcessor;
  /** records a text output written through text() in the audit log (the SHA-256 of its token ids) */
  recordText(ids: readonly number[]): Promise<{ outputHash: string }>;
  /**
   * Marks an image (raw pixels, or an encoded PNG, JPEG, WebP or TIFF, returned in the same
   * format) with this licence's payload, and records the marked output's SHA-256 and the payload
   * in the audit log.
   */
  image<T extends RawImage | Uint8Array>(input: T, opts?: EmbedOptions & EncodeOptions): Promise<MarkedImage<T>>;
}

export interface MarkedImage<T> {
  image: T extends RawImage ? RawImage : Buffer;
  /** the 16 hex digits carried: the licence id's first 8 bytes */
  payload: string;
  /** sha256:<hex> of the marked output (its pixels for raw input, its bytes for an encoded one) */
  outputHash: string;
  /** the marked image's PSNR against the input, dB */
  psnr: number;
}

export interface MeterStatus extends Figures {
  metric: string;
  resetsAt: string | null;
  period: string;
}

/** Handles not yet closed: flushed and closed when the event loop empties (one listener for all). */
const live = new Set<LoadedLicense>();
const closeAllBeforeExit = () => {
  for (const h of live) void h.close().catch(() => undefined);
};

/** Fleet meters: how often an open handle looks for units to give back, and how long before the server's account ends it gives them back. */
export const GIVE_BACK_EVERY_MS = 30_000;
export const GIVE_BACK_BEFORE_MS = 120_000;

/** How often an open handle looks at the installed revocation list again (one stat; a read only when it changed). */
export const REVOCATION_CHECK_MS = 1000;

export class LoadedLicense {
  private closed = false;
  private readonly window: TimeWindow;
  private revocation: { checkedAt: number; mtimeMs: number; revoked?: RevokedLicense; checking: boolean } = { checkedAt: 0, mtimeMs: -1, checking: false };
  /** floating seats: the lease this handle holds (renewed in the background at a third of its life) */
  private kept: KeptLease | undefined;
  private giveBackTimer: NodeJS.Timeout | undefined;
  /** online licences: the server that gets this host's usage reports, and the host's key that signs them */
  private reporting: { server: string; host: HostIdentity; month: string } | undefined;

  /** Holds the licence's lease: renews it at about a third of its duration, in the background, until close(). */
  async holdLease(host: HostIdentity, lease: HeldLease): Promise<void> {
    if (!this.license.lease) return;
    this.kept = await keepLease(this.journal.stateDir, host, this.license, lease, this.clock);
  }

  constructor(
    readonly license: LicensePayload,
    readonly manifest: Pick<Manifest, 'bundleId' | 'model'> | undefined,
    private readonly ledger: UsageLedger,
    private readonly journal: Journal,
    private readonly clock: () => Date,
  ) {
    this.window = timeWindow(license);
    // fleet meters: units no process is using go back to the server before its account for them ends
    if (license.meters.some((m) => m.scope === 'fleet')) {
      this.giveBackTimer = setInterval(() => {
        void this.ledger.giveBack(this.clock(), { soon: GIVE_BACK_BEFORE_MS }).catch(() => undefined);
        // a new month: the last one's report goes to the server
        if (this.reporting && this.reporting.month !== this.clock().toISOString().slice(0, 7)) void this.postReports().catch(() => undefined);
      }, GIVE_BACK_EVERY_MS);
      this.giveBackTimer.unref();
    }
    // A script that ends without close() still has its usage recorded.
    if (live.size === 0) process.on('beforeExit', closeAllBeforeExit);
    live.add(this);
  }

  private base(now: Date): Omit<AuditData, 'action' | 'decision'> {
    return {
      t: now.toISOString(),
      licenseId: this.license.licenseId,
      ...(this.manifest ? { bundleId: this.manifest.bundleId, model: this.manifest.model.name, version: this.manifest.model.version } : { model: this.license.model }),
    };
  }

  private watermarkKey: Buffer | undefined;
  /** the licence's watermark key, opened on this host (loadLicense) */
  setWatermarkKey(k: Uint8Array): void {
    this.watermarkKey = Buffer.from(k);
  }

  private extras: Pick<ValidateResult, 'watermarkRequired' | 'watermark' | 'tier'> | undefined;
  private extra(): Pick<ValidateResult, 'watermarkRequired' | 'watermark' | 'tier'> {
    if (this.extras) return this.extras;
    const key = this.watermarkKey;
    const licenseId = this.license.licenseId;
    const watermark: LicenceWatermark | undefined = key
      ? {
          licenseId,
          text: (params) => {
            if (this.closed) throw new MlicError('USAGE', 'the licence handle is closed');
            return textWatermarkProcessor(key, params);
          },
          recordText: async (ids) => {
            if (this.closed) throw new MlicError('USAGE', 'the licence handle is closed');
            const outputHash = `sha256:${createHash('sha256').update(JSON.stringify(ids)).digest('hex')}`;
            await this.recordMark(outputHash, 'text');
            return { outputHash };
          },
          image: async (input, opts) => {
            if (this.closed) throw new MlicError('USAGE', 'the licence handle is closed');
            const r = await markImage(input, key, licenseId, opts);
            await this.recordMark(r.outputHash, `image:${r.payload}`);
            return r as never;
          },
        }
      : undefined;
    return (this.extras = { watermarkRequired: this.license.requireWatermark === true, ...(watermark ? { watermark } : {}), ...(this.license.tier ? { tier: this.license.tier } : {}) });
  }

  private deny(now: Date, error: ValidateError, message: string, req: ValidateRequest, figures?: Partial<ValidateResult>): ValidateResult {
    void this.journal.record({ ...this.base(now), action: req.meter ? 'consume' : 'validate', decision: 'deny', code: error, ...this.reqFields(req) }, now).catch(() => undefined);
    return { valid: false, error, message, ...figures, ...this.extra() };
  }

  private denial(now: Date, d: Denial, req: ValidateRequest): ValidateResult {
    return this.deny(now, validateErrorOf(d), d.message, req);
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
    if (this.closed) return { valid: false, error: 'closed', message: 'the licence handle is closed', ...this.extra() };
    if ((req.inputHash !== undefined && !validHash(req.inputHash)) || (req.outputHash !== undefined && !validHash(req.outputHash)))
      return this.deny(now, 'invalid_request', 'inputHash/outputHash must be short printable strings (e.g. sha256:<hex>)', req);
    // A list installed while this handle is open (mlic revocations sync) takes effect within a second.
    if (now.getTime() - this.revocation.checkedAt >= REVOCATION_CHECK_MS && !this.revocation.checking) this.recheckRevocation(now.getTime());
    if (this.kept && now.getTime() >= this.kept.endsAt())
      return this.deny(now, 'lease_expired', `the lease of licence ${this.license.licenseId} ended at ${new Date(this.kept.endsAt()).toISOString()} and could not be renewed (the licence server is unreachable, or every seat is taken); it resumes once a renewal succeeds`, req);
    const rv = this.revocation.revoked;
    if (rv) return this.deny(now, 'license_revoked', `licence ${this.license.licenseId} was revoked by its vendor at ${rv.revokedAt} (${rv.reason})`, req);
    const hw = this.journal.highWater()?.getTime() ?? 0;
    const time = checkTimeAt(this.license, this.window, now.getTime(), hw);
    if (!time.ok) return this.denial(now, time, req);
    const feature = checkFeature(this.license, req.feature);
    if (feature) return this.denial(now, feature, req);
    const extra = { ...this.extra(), ...(time.inGrace ? { inGrace: true } : {}) };
    if (req.meter) {
      const { metric, quantity } = req.meter;
      if (typeof metric !== 'string' || !METRIC_RE.test(metric) || !Number.isSafeInteger(quantity) || quantity < 0)
        return this.deny(now, 'invalid_request', 'meter needs a metric name and a non-negative integer quantity', req);
      if (!this.ledger.meter(metric)) return this.deny(now, 'metric_not_licensed', `the licence has no meter '${metric}' (it meters: ${this.license.meters.map((m) => m.metric).join(', ') || 'nothing'})`, req);
      const r = await this.ledger.consume(metric, quantity, now, req.feature);
      const q = { used: r.used, reserved: r.reserved, remaining: r.remaining, limit: r.limit, ...(r.resetsAt ? { resetsAt: r.resetsAt.toISOString() } : {}) };
      if (!r.ok && r.fleet) {
        const f = r.fleet;
        if (f.error.code === 'QUOTA_EXCEEDED') return this.deny(now, 'quota_exceeded', f.error.message, req, { ...q, ...(f.fleet ? { fleet: f.fleet } : {}) });
        // the server's other refusals keep their answer (a revoked licence, a skewed clock); the rest: no units to be had now
        const answer = validateErrorOfCode(f.error.code);
        if (!f.unreachable && answer) return this.deny(now, answer, f.error.message, req, q);
        return this.deny(now, 'quota_unavailable', `${f.error.message}; the units this host held for '${metric}' are used up`, req, q);
      }
      if (!r.ok)
        return this.deny(
          now,
          'quota_exceeded',
          `quota for '${metric}' exhausted: ${r.used} used${r.reserved ? ` and ${r.reserved} reserved by other processes` : ''} of ${r.limit} this period${r.resetsAt ? `; resets at ${r.resetsAt.toISOString()}` : ''}`,
          req,
          q,
        );
      void this.journal.record({ ...this.base(now), action: 'consume', decision: 'allow', ...this.reqFields(req), ...(r.overage ? { code: 'OVERAGE' } : {}) }, now).catch(() => undefined);
      return { valid: true, ...q, ...(r.overage ? { overage: true } : {}), ...extra };
    }
    void this.journal.record({ ...this.base(now), action: 'validate', decision: 'allow', ...this.reqFields(req) }, now).catch(() => undefined);
    return { valid: true, ...extra };
  }

  /** In the background: stat the vendor's installed list, and read it when it changed. A list that cannot be read changes nothing here (the next open decides, failing closed). */
  private recheckRevocation(now: number): void {
    this.revocation.checking = true;
    this.revocation.checkedAt = now;
    const keyId = this.license.vendor.keyId;
    void (async () => {
      try {
        const st = await stat(this.journal.stateDir.path('revocations', `${keyId}.json`)).catch(() => undefined);
        const mtimeMs = st?.mtimeMs ?? 0;
        if (mtimeMs !== this.revocation.mtimeMs) {
          const entry = (await loadRevoked(this.journal.stateDir)).get(keyId)?.licenses.get(this.license.licenseId);
          this.revocation.mtimeMs = mtimeMs;
          if (entry) this.revocation.revoked = entry;
        }
      } catch {
        /* unreadable now: the next open of a handle decides */
      } finally {
        this.revocation.checking = false;
      }
    })();
  }

  private async recordMark(outputHash: string, watermark: string): Promise<void> {
    const now = this.clock();
    await this.journal.record({ ...this.base(now), action: 'audit', decision: 'allow', outputHash, watermark }, now);
  }

  /** Records the hashes of one inference's input and output in the audit log. */
  async audit(r: { inputHash?: string; outputHash?: string; feature?: string }): Promise<void> {
    if ((r.inputHash !== undefined && !validHash(r.inputHash)) || (r.outputHash !== undefined && !validHash(r.outputHash)))
      throw new MlicError('USAGE', 'inputHash/outputHash must be short printable strings (e.g. sha256:<hex>)');
    const now = this.clock();
    await this.journal.record({ ...this.base(now), action: 'audit', decision: 'allow', ...this.reqFields(r) }, now);
  }

  /** Usage of each metered metric in its current period (the same figures validate() returns). */
  async status(): Promise<MeterStatus[]> {
    const now = this.clock();
    const out: MeterStatus[] = [];
    for (const m of this.license.meters) {
      const s = (await this.ledger.status(m.metric, now))!;
      out.push({ metric: m.metric, used: s.used, reserved: s.reserved, limit: s.limit, remaining: s.remaining, resetsAt: s.resetsAt?.toISOString() ?? null, period: s.period });
    }
    return out;
  }

  /** Every ledger record of this licence on this host, verified. */
  async usageRecords(): Promise<ChainRecord<UsageData>[]> {
    return this.ledger.records();
  }

  /** The audit log's last record seq (for reports). */
  get auditSeq(): number {
    return this.journal.audit.log.lastSeq;
  }

  /** Records a decision that is not a validate() call (a usage report). */
  async note(data: Omit<AuditData, 't' | 'hw' | 'decision'>): Promise<void> {
    const now = this.clock();
    await this.journal.record({ ...this.base(now), ...data, t: now.toISOString(), decision: 'allow' }, now);
  }

  async flush(): Promise<void> {
    await this.ledger.flush();
    await this.journal.flush();
  }

  /**
   * Online licences (a lease or fleet meters): posts this month's usage report to the licence
   * server, and last month's too (its final one once the month is over). A later report of the
   * month replaces the earlier one on the server; one that cannot be posted now is posted next time.
   */
  enableReports(server: string, host: HostIdentity): void {
    this.reporting = { server, host, month: this.clock().toISOString().slice(0, 7) };
  }

  /** Posts the usage reports of last month and this month (best effort: an unreachable server is tried again at the next close or month). */
  async postReports(): Promise<number> {
    const r = this.reporting;
    if (!r || this.closedLedger) return 0;
    const now = this.clock();
    const month = now.toISOString().slice(0, 7);
    const last = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
    let posted = 0;
    for (const period of [last, month]) {
      await this.note({ action: 'report', metric: period });
      await this.flush();
      const records = await this.ledger.records();
      if (!records.some((x) => x.data.t.startsWith(period))) continue; // nothing used that month
      const rep = buildReport({ records, period, license: this.license, hostSignSeed: r.host.signSeed, hostSignPublic: r.host.signPublic, hostBoxPublic: r.host.boxPublic, auditSeq: this.auditSeq, now });
      const a = await callServer(r.server, 'v1/usage-reports', { body: { report: JSON.stringify(rep) }, timeoutMs: 10_000 }).catch(() => undefined);
      if (!a) break; // unreachable: the next close or month tries again (one wait, not one per month)
      if (a.ok) posted++;
    }
    r.month = month;
    return posted;
  }

  private closedLedger = false;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watermarkKey?.fill(0);
    live.delete(this);
    if (live.size === 0) process.off('beforeExit', closeAllBeforeExit);
    if (this.giveBackTimer) clearInterval(this.giveBackTimer);
    await this.kept?.stop();
    try {
      // after the lease and the units are given back: the usage report, then the ledger closes
      if (this.reporting) {
        await this.ledger.settle(this.clock()).catch(() => undefined);
        await this.postReports().catch(() => undefined);
      }
      this.closedLedger = true;
      // the handle's clock (tests inject one): the server checks give-backs against its own
      await this.ledger.close(this.clock());
    } finally {
      await this.journal.close();
    }
  }
}

/** Verifies a licence once (the same decision path as unpack and run) and returns a handle for fast validate() calls. */
export async function loadLicense(o: LoadLicenseOptions = {}): Promise<LoadedLicense> {
  const clock = o.clock ?? (() => o.now ?? new Date());
  const ctx = new HostContext({ ...o, now: clock() });
  const durability = o.durability ?? 'batched';
  let license: LicensePayload;
  let manifest: Pick<Manifest, 'bundleId' | 'model'> | undefined;
  const installed = await ctx.state.licenseTexts();
  if (o.bundle !== undefined) {
    const a = await authorizeBundle(o.bundle, { ...o, now: clock(), action: 'validate' });
    license = a.license;
    manifest = { bundleId: a.manifest.bundleId, model: a.manifest.model };
    wipe(a.bundleKey);
    await a.bundle.close();
  } else {
    const candidates: Candidate[] = o.licenseFile !== undefined ? [{ path: o.licenseFile, text: await readTextFile(o.licenseFile, { maxBytes: MAX_LICENSE_BYTES, what: 'licence' }) }] : installed;
    if (candidates.length === 0) throw new MlicError('NO_LICENSE', 'no licence installed', { hint: 'run `mlic activate <licence>` first' });
    license = await withDecision(ctx, { licensed: installed.length > 0, action: 'validate', about: o.model ? { model: o.model } : {}, ...(o.forReport ? { ignoreRevocations: true } : {}) }, async (env) => {
      const { license: l } = await choose(env, candidates, o.model !== undefined ? { model: o.model } : {});
      return { value: l, audit: { licenseId: l.licenseId, model: l.model } };
    });
  }
  const host = await ctx.state.hostIdentity({ create: true });
  await ctx.state.ensure('usage');
  // The ledger carries the durability a caller asks for; the audit log follows within flushMs
  // (strict: one record per decision, never merged).
  const journal = await Journal.open(ctx.state, host, { licensed: true, durability: 'batched', merge: durability === 'batched', open: 'tail', ...(o.flushMs ? { flushMs: o.flushMs } : {}) });
  try {
    const id = license.licenseId;
    const fleet = license.meters.some((m) => m.scope === 'fleet') ? fleetClient(await ctx.state.serverUrl(), host, license) : undefined;
    const ledger = await UsageLedger.open(ledgerPath(ctx.state, id), ledgerKey(host, id), license, {
      durability,
      ...(fleet ? { fleet } : {}),
      ...(o.flushMs ? { flushMs: o.flushMs } : {}),
      beforeHead: async (d) => journal.durable(id, d.seq),
    });
    try {
      // Under the ledger's lock, caught up with other processes (lock order: ledger, then audit).
      await ledger.log.exclusive(async () => journal.checkLedger(id, ledger.log.lastSeq));
    } catch (e) {
      await ledger.close().catch(() => undefined);
      throw e;
    }
    const handle = new LoadedLicense(license, manifest, ledger, journal, clock);
    if (license.watermark) {
      const w = await tpmSecretFor(ctx, license);
      const k = unwrapWatermarkKey(license, host.boxSecret, w);
      w?.fill(0);
      if (k) {
        handle.setWatermarkKey(k);
        wipe(k);
      }
    }
    const server = license.lease || fleet ? await ctx.state.serverUrl() : undefined;
    if (server && !o.forReport) handle.enableReports(server, host);
    // the decision checked out (or found) the lease; the handle keeps it renewed
    if (license.lease)
      try {
        await handle.holdLease(host, await ensureLease(ctx.state, host, license, clock()));
      } catch (e) {
        await handle.close().catch(() => undefined);
        throw e;
      }
    return handle;
  } catch (e) {
    await journal.close().catch(() => undefined);
    throw e;
  }
}
