/**
 * The customer's side: activation requests, installing licences, and the one decision path that
 * every licensed use goes through (activate, unpack, run, openBundle, loadLicense): for each
 * candidate licence, verify it, check it against this host and the request, decide; the first
 * that allows wins, else the most telling refusal. Every decision, allowed or refused, is
 * recorded in the host's journal, which moves the clock's high-water mark (host/journal.ts).
 */
import { hostname as osHostname } from 'node:os';
import { MlicError } from '../errors.js';
import { randomBytes, wipe } from '../crypto/random.js';
import type { ActivationRequest, ActivationRequestPayload, LicensePayload } from '../format/license.js';
import { parseSignature, keyIdHex } from '../format/minisign.js';
import type { Manifest } from '../format/manifest.js';
import { fingerprintOf } from '../hardware/fingerprint.js';
import type { HostIdentity } from '../state/home.js';
import { BundleFile, parseManifest } from '../bundle/reader.js';
import { checkTrustedComment, verifyManifestSignature } from '../bundle/signature.js';
import { checkBundleKey } from '../bundle/decrypt.js';
import type { EntrySpan } from '../bundle/layout.js';
import { decide, orThrow, type Allowed, type Decision } from '../license/policy.js';
import { bundleKeyFromLicense, unwrapLicenseGrant } from '../license/keys.js';
import { attestRequest, recoverTpmSecret } from '../tpm/attest.js';
import { tpmLikely } from '../tpm/tools.js';
import { signRequest, verifyLicenseText } from '../license/sign.js';
import type { AuditData } from '../usage/audit.js';
import { HostContext, type HostOptions } from './context.js';
import { Journal } from './journal.js';
import { loadRevoked, type Revoked } from './revocations.js';
import { ensureLease } from './leases.js';

export type { HostOptions } from './context.js';

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');

export type TpmMode = 'on' | 'auto' | 'off';

export interface RequestOptions extends HostOptions {
  region?: string;
  customer?: string;
  /**
   * Attest with the TPM: 'on' (or fail), 'auto' (when a TPM is present and working, else the file
   * key alone, saying why), 'off'. Default: 'on' for a host already bound to its TPM, else 'off'.
   * A TPM-bound host always attests: 'auto' never falls back for it, and 'off' is refused.
   */
  tpmMode?: TpmMode;
  /** the PCRs to quote (tpm2-tools syntax); default sha256:0,1,2,3,7 */
  pcrs?: string;
  /** the nonce to quote: a licence server's challenge (default: a random one) */
  tpmNonce?: string;
}

export interface RequestResult {
  request: ActivationRequest;
  reused: boolean;
  /** whether the request carries a TPM attestation, and why not when 'auto' fell back */
  tpm: { attested: boolean; fallback?: string };
}

export async function createActivationRequest(o: RequestOptions = {}): Promise<RequestResult> {
  const ctx = new HostContext(o);
  const kind = await ctx.state.hostKind();
  const mode = o.tpmMode ?? (kind === 'tpm' ? 'on' : 'off');
  if (kind === 'tpm' && mode === 'off')
    throw new MlicError('USAGE', `this host's keys are in its TPM (${ctx.state.path('tpm.json')}); its requests always carry the TPM's attestation`, {
      hint: 'drop --tpm off; to start over without the TPM, use a new state directory (MLIC_HOME)',
    });
  const region = o.region !== undefined ? { region: o.region } : {};
  let h: HostIdentity;
  let fallback: string | undefined;
  if (kind === 'tpm' || mode === 'on') h = await ctx.state.createTpmHost({ ...region, now: ctx.now() });
  else if (mode === 'auto' && kind === 'file') {
    fallback = "this host's key was made without the TPM (a new state directory would bind one to it)";
    h = await ctx.state.hostIdentity({ create: true, ...region, now: ctx.now() });
  } else if (mode === 'auto') {
    const noTpm = !(await tpmLikely()) && !ctx.tpm.tcti ? 'no TPM here (no /dev/tpmrm0 and MLIC_TPM is not set)' : undefined;
    let made: HostIdentity | undefined;
    if (!noTpm)
      try {
        made = await ctx.state.createTpmHost({ ...region, now: ctx.now() });
      } catch (e) {
        // only a TPM that is not there or not working falls back, and only while nothing is bound to it
        if (!(e instanceof MlicError && ['TPM_UNAVAILABLE', 'TPM_BUSY', 'TPM_LOCKOUT', 'TPM_FAILED'].includes(e.code)) || (await ctx.state.hostKind()) !== 'none') throw e;
        fallback = `${e.code}: ${e.message}`;
      }
    fallback ??= noTpm;
    h = made ?? (await ctx.state.hostIdentity({ create: true, ...region, now: ctx.now() }));
  } else h = await ctx.state.hostIdentity({ create: true, ...region, now: ctx.now() });
  const probe = await ctx.probe();
  const payload: ActivationRequestPayload = {
    v: 2 as const,
    kind: 'mlic-activation-request' as const,
    requestId: randomBytes(16).toString('hex'),
    createdAt: ctx.now().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    hostPublicKey: b64(h.boxPublic),
    signingPublicKey: b64(h.signPublic),
    hostname: (probe.hostname ?? osHostname()).slice(0, 255),
    ...(h.region ? { region: h.region } : {}),
    ...(o.customer ? { customer: o.customer } : {}),
    fingerprint: fingerprintOf(probe, h.salt),
  };
  const final = h.tpm ? await attestRequest(ctx.state, payload, { ...ctx.tpm, ...(o.pcrs ? { pcrs: o.pcrs } : {}), ...(o.tpmNonce ? { nonce: o.tpmNonce } : {}), now: ctx.now() }) : payload;
  return { request: signRequest(final, h.signSeed), reused: kind !== 'none', tpm: { attested: final.tpm !== undefined, ...(fallback ? { fallback } : {}) } };
}

/** W for a TPM-bound licence (undefined for others). */
export async function tpmSecretFor(ctx: HostContext, l: LicensePayload): Promise<Buffer | undefined> {
  return l.host.binding === 'host' && l.host.tpm ? recoverTpmSecret(ctx.state, l.host.tpm, ctx.tpm) : undefined;
}

/** What a decision is about. */
export interface Target {
  manifest?: Pick<Manifest, 'bundleId' | 'model' | 'vendor' | 'components'>;
  /** only licences for this model */
  model?: string;
  feature?: string;
  components?: string[];
}

export interface Candidate {
  path: string;
  text: string;
}

interface Env {
  ctx: HostContext;
  host: HostIdentity | undefined;
  highWater: Date | undefined;
  now: Date;
  /** what the installed revocation lists revoke */
  revoked: Revoked;
  /** what the decision is for: activating needs no lease */
  action: AuditData['action'];
}

type Evaluation = { license: LicensePayload; decision: Decision } | { error: MlicError };

async function evaluate(env: Env, c: Candidate, target: Target): Promise<Evaluation | undefined> {
  let l: LicensePayload;
  try {
    l = (await verifyLicenseText(c.text, (id) => env.ctx.state.trusted(id), c.path)).payload;
  } catch (e) {
    if (e instanceof MlicError) return { error: e };
    throw e;
  }
  if (target.model !== undefined && l.model !== target.model) return undefined;
  if (target.manifest && (l.model !== target.manifest.model.name || l.vendor.keyId !== target.manifest.vendor.keyId)) return undefined;
  const rv = env.revoked.get(l.vendor.keyId)?.licenses.get(l.licenseId);
  if (rv)
    return {
      error: new MlicError('LICENSE_REVOKED', `licence ${l.licenseId} was revoked by its vendor at ${rv.revokedAt} (${rv.reason})`, {
        hint: rv.reason === 'deactivated' ? 'this host was deactivated: activate it again' : 'ask your vendor',
      }),
    };
  const bound = l.host.binding === 'host';
  const hostKey = env.host ? b64(env.host.boxPublic) : undefined;
  // Probe only when the host key matches: a fingerprint is worth nothing without it.
  const fingerprint = bound && l.host.binding === 'host' && hostKey === l.host.publicKey ? await env.ctx.fingerprint(l.host.fingerprint.salt) : undefined;
  const decision = decide({
    license: l,
    now: env.now,
    ...(target.manifest ? { manifest: target.manifest } : {}),
    ...(env.highWater ? { highWater: env.highWater } : {}),
    ...(hostKey ? { hostKey } : {}),
    ...(fingerprint ? { fingerprint } : {}),
    ...(env.host?.region ? { region: env.host.region } : {}),
    ...(target.feature !== undefined ? { feature: target.feature } : {}),
    ...(target.components ? { components: target.components } : {}),
  });
  return { license: l, decision };
}

/** Codes that say less about why nothing matched than a licence that was looked at and refused. */
const WEAK = ['NO_LICENSE', 'UNTRUSTED_VENDOR', 'SIGNATURE_INVALID', 'FORMAT_INVALID', 'UNSUPPORTED_VERSION'];

/** The first candidate that allows `target`, or the most telling refusal (thrown). */
async function choose(env: Env, candidates: Candidate[], target: Target, onAllowed?: (l: LicensePayload) => void): Promise<{ license: LicensePayload; decision: Allowed }> {
  let best: MlicError | undefined;
  const consider = (e: MlicError) => {
    if (!best || (WEAK.includes(best.code) && !WEAK.includes(e.code))) best = e;
  };
  for (const c of candidates) {
    const r = await evaluate(env, c, target);
    if (!r) continue;
    if ('error' in r) {
      consider(r.error);
      continue;
    }
    try {
      const decision = orThrow(r.decision);
      // floating seats: a use needs a live lease (from the store, or the licence server)
      if (r.license.lease && env.action !== 'activate' && env.host) await ensureLease(env.ctx.state, env.host, r.license, env.now);
      onAllowed?.(r.license);
      return { license: r.license, decision };
    } catch (e) {
      if (e instanceof MlicError) consider(e);
      else throw e;
    }
  }
  const what = target.manifest ? `${target.manifest.model.name} ${target.manifest.model.version}` : target.model ? `model ${target.model}` : 'this use';
  throw best ?? new MlicError('NO_LICENSE', `no installed licence covers ${what}`, { hint: 'run `mlic activate --request`, send the request to your vendor, then `mlic activate <licence>`' });
}

/**
 * Runs one decision with the host's journal: opens it (checking the clock record), lets `fn`
 * decide with the high-water mark, and records the outcome, allowed or refused.
 */
export async function withDecision<T>(
  ctx: HostContext,
  opts: { licensed: boolean; journal?: Journal; action: AuditData['action']; about?: Partial<AuditData>; ignoreRevocations?: boolean },
  fn: (env: Env) => Promise<{ value: T; audit: Partial<AuditData> }>,
): Promise<T> {
  const host = await ctx.state.hostIdentity({ create: true, now: ctx.now() });
  const journal = opts.journal ?? (await Journal.open(ctx.state, host, { licensed: opts.licensed }));
  const now = ctx.now();
  try {
    // a usage report of past use is made for a revoked licence too (its usage is billable)
    const revoked = opts.ignoreRevocations ? new Map() : await loadRevoked(ctx.state);
    await journal.checkRevocationLists(new Map([...revoked].map(([k, v]) => [k, v.serial])));
    const env: Env = { ctx, host, highWater: journal.highWater(), now, revoked, action: opts.action };
    let r: { value: T; audit: Partial<AuditData> };
    try {
      r = await fn(env);
    } catch (e) {
      if (e instanceof MlicError) await journal.record({ t: now.toISOString(), action: opts.action, decision: 'deny', code: e.code, ...opts.about }, now);
      throw e;
    }
    await journal.record({ t: now.toISOString(), action: opts.action, decision: 'allow', ...opts.about, ...r.audit }, now);
    return r.value;
  } finally {
    if (!opts.journal) await journal.close();
  }
}

export interface ActivateResult {
  license: LicensePayload;
  path: string;
  inGrace: boolean;
}

/** Verifies a licence (trusted vendor, this host, time window) and installs it. */
export async function activateLicense(text: string, o: HostOptions = {}): Promise<ActivateResult> {
  const ctx = new HostContext(o);
  const installed = await ctx.state.licenseTexts();
  return withDecision(ctx, { licensed: installed.length > 0, action: 'activate' }, async (env) => {
    const { license: l, decision } = await choose(env, [{ path: 'licence', text }], {});
    // A host-bound licence must unwrap on this host: prove it now rather than at first use.
    if (l.host.binding === 'host') {
      const w = await tpmSecretFor(ctx, l);
      wipe(unwrapLicenseGrant(l, 0, env.host?.boxSecret, w));
      w?.fill(0);
    }
    const path = await ctx.state.licenseInstall(l.licenseId, text.endsWith('\n') ? text : text + '\n');
    return { value: { license: l, path, inGrace: decision.inGrace }, audit: { licenseId: l.licenseId, model: l.model } };
  });
}

/** A bundle a licence allows here and now, ready to decrypt. Internal: the public API hands out closable handles, never keys. */
export interface Authorization {
  bundle: BundleFile;
  manifest: Manifest;
  spans: EntrySpan[];
  bundleKey: Buffer;
  license: LicensePayload;
  decision: Allowed;
  /** indexes of the files released (all, or those of the granted components) */
  files: number[];
}

export interface AuthorizeOptions extends HostOptions {
  feature?: string;
  components?: string[];
  /** what the decision is for, in the audit log */
  action?: 'unpack' | 'run' | 'openBundle' | 'validate';
}

/**
 * Opens a bundle, verifies it with the trusted key its signature names, and finds an installed
 * licence that allows it here and now. Nothing is decrypted. The caller must close `bundle` and
 * wipe `bundleKey`.
 */
export async function authorizeBundle(path: string, o: AuthorizeOptions = {}): Promise<Authorization> {
  const ctx = new HostContext(o);
  const bundle = await BundleFile.open(path);
  try {
    const head = await bundle.readHead();
    // Which vendor? The signature names its key; nothing of the manifest is parsed before it verifies.
    let claimed: string;
    try {
      claimed = keyIdHex(parseSignature(head.signatureBytes.toString('utf8'), 'manifest signature').keyId);
    } catch {
      throw new MlicError('SIGNATURE_INVALID', `${path}: the manifest signature is malformed`);
    }
    const pub = await ctx.state.trusted(claimed);
    if (!pub)
      throw new MlicError('UNTRUSTED_VENDOR', `${path} is signed by vendor key ${claimed}, which this host does not trust`, {
        hint: "add the vendor's public key with `mlic trust add vendor.pub`",
      });
    const { trustedComment } = verifyManifestSignature(pub, head.manifestBytes, head.signatureBytes);
    const manifest = parseManifest(head.manifestBytes);
    checkTrustedComment(trustedComment, manifest.bundleId, manifest.createdAt);
    const layout = await bundle.checkLayout(manifest, head);
    const candidates = await ctx.state.licenseTexts();
    if (candidates.length === 0)
      throw new MlicError('NO_LICENSE', `no licence is installed here for ${manifest.model.name} ${manifest.model.version}`, {
        hint: 'run `mlic activate --request`, send the request to your vendor, then `mlic activate <licence>`',
      });
    const about = { bundleId: manifest.bundleId, model: manifest.model.name, version: manifest.model.version, ...(o.feature ? { feature: o.feature } : {}) };
    return await withDecision(ctx, { licensed: true, action: o.action ?? 'validate', about }, async (env) => {
      const target: Target = { manifest, ...(o.feature !== undefined ? { feature: o.feature } : {}), ...(o.components ? { components: o.components } : {}) };
      const { license, decision } = await choose(env, candidates, target);
      const w = await tpmSecretFor(ctx, license);
      const bundleKey = bundleKeyFromLicense(license, manifest, env.host?.boxSecret, w);
      w?.fill(0);
      checkBundleKey(manifest, bundleKey);
      const files = decision.components
        ? manifest.files.filter((f) => f.component !== undefined && decision.components!.includes(f.component)).map((f) => f.index)
        : manifest.files.map((f) => f.index);
      return { value: { bundle, manifest, spans: layout.files, bundleKey, license, decision, files }, audit: { licenseId: license.licenseId } };
    });
  } catch (e) {
    await bundle.close();
    throw e;
  }
}

export { choose, evaluate };
export type { Env as DecisionEnv };
