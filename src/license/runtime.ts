/**
 * The customer's side: activation requests, installing licences, and authorizing a bundle on
 * this host (the runtime validation that happens before any weight is decrypted).
 */
import { hostname as osHostname } from 'node:os';
import { MlicError } from '../errors.js';
import { randomBytes, wipe } from '../crypto/random.js';
import type { ActivationRequest, Fingerprint, LicensePayload, SignedLicense } from '../format/license.js';
import type { Manifest } from '../format/manifest.js';
import { fingerprintOf } from '../hardware/fingerprint.js';
import { probeHost, type HostProbe, type ProbeOptions } from '../hardware/probe.js';
import { StateDir, type HostIdentity } from '../state/home.js';
import { BundleFile, parseManifest } from '../bundle/reader.js';
import { checkTrustedComment, verifyManifestSignature } from '../bundle/signature.js';
import { checkBundleKey } from '../bundle/decrypt.js';
import type { EntrySpan } from '../bundle/layout.js';
import { decide, checkTime, type Decision } from './policy.js';
import { bundleKeyFromLicense, unwrapGrant } from './keys.js';
import { signRequest, verifyLicenseText } from './sign.js';

export interface RuntimeOptions {
  /** state directory; default MLIC_HOME or ~/.config/mlic */
  stateDir?: string;
  now?: Date;
  probe?: ProbeOptions;
  /** a probe result to use instead of probing (tests, or a caller that already probed) */
  hostProbe?: HostProbe;
}

const stateOf = (o: RuntimeOptions) => StateDir.fromEnv(process.env, o.stateDir);
const probeOf = async (o: RuntimeOptions) => o.hostProbe ?? (await probeHost(o.probe ?? {}));

export async function createActivationRequest(o: RuntimeOptions & { region?: string; customer?: string }): Promise<{ request: ActivationRequest; reused: boolean }> {
  const state = stateOf(o);
  const existed = (await state.loadHost()) !== undefined;
  const h = await state.hostIdentity({ create: true, ...(o.region !== undefined ? { region: o.region } : {}), ...(o.now ? { now: o.now } : {}) });
  const probe = await probeOf(o);
  const payload = {
    v: 1 as const,
    kind: 'mlic-activation-request' as const,
    requestId: randomBytes(16).toString('hex'),
    createdAt: (o.now ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    hostPublicKey: Buffer.from(h.boxPublic).toString('base64'),
    signingPublicKey: Buffer.from(h.signPublic).toString('base64'),
    hostname: probe.hostname ?? osHostname(),
    ...(h.region ? { region: h.region } : {}),
    ...(o.customer ? { customer: o.customer } : {}),
    fingerprint: fingerprintOf(probe, h.salt),
  };
  return { request: signRequest(payload, h.signSeed), reused: existed };
}

async function currentFingerprint(o: RuntimeOptions, salt: string): Promise<Fingerprint> {
  return fingerprintOf(await probeOf(o), Buffer.from(salt, 'hex'));
}

/** Checks that a licence is for this host (key and fingerprint). */
export async function checkHost(l: LicensePayload, h: HostIdentity | undefined, o: RuntimeOptions): Promise<Fingerprint | undefined> {
  if (l.host.binding !== 'host') return undefined;
  if (!h || Buffer.from(h.boxPublic).toString('base64') !== l.host.publicKey)
    throw new MlicError('HW_MISMATCH', `licence ${l.licenseId.slice(0, 8)} was issued for another host (host key differs)`, {
      hint: 'send this host\'s `mlic activate --request` to your vendor for a licence of its own',
    });
  return currentFingerprint(o, l.host.fingerprint.salt);
}

export interface ActivateResult {
  license: LicensePayload;
  path: string;
  inGrace: boolean;
}

/** Verifies a licence (trusted vendor, this host, time window) and installs it. */
export async function activateLicense(text: string, o: RuntimeOptions = {}): Promise<ActivateResult> {
  try {
    const r = await activateLicenseInner(text, o);
    await audit(o, { action: 'activate', decision: 'allow', licenseId: r.license.licenseId, model: r.license.model });
    return r;
  } catch (e) {
    if (e instanceof MlicError) await audit(o, { action: 'activate', decision: 'deny', code: e.code });
    throw e;
  }
}

/** Records a decision in the host's audit log; an audit failure never changes the decision. */
async function audit(o: RuntimeOptions, d: Omit<import('../usage/audit.js').AuditData, 't'>): Promise<void> {
  try {
    const { recordDecision } = await import('../usage/open-logs.js');
    await recordDecision(o.stateDir, { ...d, ...(o.now ? { t: o.now.toISOString() } : {}) });
  } catch {
    /* the audit log is best effort for one-shot commands; `mlic audit verify` reports damage */
  }
}

async function activateLicenseInner(text: string, o: RuntimeOptions = {}): Promise<ActivateResult> {
  const state = stateOf(o);
  const now = o.now ?? new Date();
  const signed = await verifyLicenseText(text, (id) => state.trusted(id));
  const l = signed.payload;
  const h = await state.loadHost();
  const fingerprint = await checkHost(l, h, o);
  const highWater = h ? await state.clockHighWater(h) : undefined;
  const d = decide({ license: l, now, ...(fingerprint ? { fingerprint } : {}), ...(h?.region ? { region: h.region } : {}), ...(highWater ? { highWater } : {}) });
  // A host-bound licence must unwrap on this host: prove it now rather than at first use.
  if (l.host.binding === 'host') wipe(unwrapGrant(l.keys[0]!, h?.boxSecret));
  const path = await state.licenseInstall(l.licenseId, text.endsWith('\n') ? text : text + '\n');
  if (h) await state.clockAdvance(h, now);
  return { license: l, path, inGrace: d.inGrace };
}

export interface InstalledLicense {
  path: string;
  license?: SignedLicense;
  /** why it does not verify, if it does not */
  error?: { code: string; message: string };
  /** its status now: ok, or the code of what it refuses */
  status: string;
}

export async function listLicenses(o: RuntimeOptions = {}): Promise<InstalledLicense[]> {
  const state = stateOf(o);
  const now = o.now ?? new Date();
  const out: InstalledLicense[] = [];
  const h = await state.loadHost();
  for (const { path, text } of await state.licenseTexts()) {
    try {
      const l = await verifyLicenseText(text, (id) => state.trusted(id), path);
      let status = 'ok';
      try {
        checkTime(l.payload, now);
        if (l.payload.host.binding === 'host' && (!h || Buffer.from(h.boxPublic).toString('base64') !== l.payload.host.publicKey)) status = 'HW_MISMATCH';
      } catch (e) {
        status = (e as MlicError).code;
      }
      out.push({ path, license: l, status });
    } catch (e) {
      const err = e as MlicError;
      out.push({ path, error: { code: err.code, message: err.message }, status: err.code });
    }
  }
  return out;
}

export interface Authorization {
  bundle: BundleFile;
  manifest: Manifest;
  spans: EntrySpan[];
  bundleKey: Buffer;
  license: LicensePayload;
  decision: Decision;
  /** indexes of the files released (all, or those of the granted components) */
  files: number[];
}

export interface AuthorizeOptions extends RuntimeOptions {
  feature?: string;
  components?: string[];
  /** what the decision is for, in the audit log */
  action?: 'unpack' | 'run' | 'openBundle' | 'validate';
}

const PRIORITY = ['NO_LICENSE', 'UNTRUSTED_VENDOR', 'SIGNATURE_INVALID', 'FORMAT_INVALID', 'UNSUPPORTED_VERSION'];

/**
 * Opens a bundle and finds an installed licence that allows it here and now; returns the
 * bundle key. Nothing is decrypted. The caller must close `bundle`.
 */
export async function authorizeBundle(path: string, o: AuthorizeOptions = {}): Promise<Authorization> {
  try {
    const a = await authorizeBundleInner(path, o);
    await audit(o, { action: o.action ?? 'validate', decision: 'allow', licenseId: a.license.licenseId, bundleId: a.manifest.bundleId, model: a.manifest.model.name, version: a.manifest.model.version, ...(o.feature ? { feature: o.feature } : {}) });
    return a;
  } catch (e) {
    if (e instanceof MlicError) await audit(o, { action: o.action ?? 'validate', decision: 'deny', code: e.code, ...(o.feature ? { feature: o.feature } : {}) });
    throw e;
  }
}

async function authorizeBundleInner(path: string, o: AuthorizeOptions): Promise<Authorization> {
  const state = stateOf(o);
  const now = o.now ?? new Date();
  const bundle = await BundleFile.open(path);
  try {
    const head = await bundle.readHead();
    // Which vendor? Read the key id from the (not yet trusted) manifest, then verify with the trusted key.
    let claimed: string;
    try {
      claimed = parseManifest(head.manifestBytes).vendor.keyId;
    } catch {
      throw new MlicError('SIGNATURE_INVALID', `${path}: the manifest is damaged`);
    }
    const pub = await state.trusted(claimed);
    if (!pub)
      throw new MlicError('UNTRUSTED_VENDOR', `${path} is signed by vendor key ${claimed}, which this host does not trust`, {
        hint: "add the vendor's public key with `mlic trust add vendor.pub`",
      });
    const { trustedComment } = verifyManifestSignature(pub, head.manifestBytes, head.signatureBytes);
    const manifest = parseManifest(head.manifestBytes);
    checkTrustedComment(trustedComment, manifest.bundleId, manifest.createdAt);
    const layout = await bundle.checkLayout(manifest, head);

    const h = await state.loadHost();
    const highWater = h ? await state.clockHighWater(h) : undefined;
    let best: MlicError | undefined;
    const consider = (e: MlicError) => {
      if (!best || (PRIORITY.includes(best.code) && !PRIORITY.includes(e.code))) best = e;
    };
    for (const { path: lp, text } of await state.licenseTexts()) {
      let l: LicensePayload;
      try {
        l = (await verifyLicenseText(text, (id) => state.trusted(id), lp)).payload;
      } catch (e) {
        if (e instanceof MlicError) consider(e);
        continue;
      }
      if (l.model !== manifest.model.name || l.vendor.keyId !== manifest.vendor.keyId) continue;
      try {
        const fingerprint = await checkHost(l, h, o);
        const decision = decide({
          license: l,
          manifest,
          now,
          ...(fingerprint ? { fingerprint } : {}),
          ...(h?.region ? { region: h.region } : {}),
          ...(highWater ? { highWater } : {}),
          ...(o.feature !== undefined ? { feature: o.feature } : {}),
          ...(o.components ? { components: o.components } : {}),
        });
        const bundleKey = bundleKeyFromLicense(l, manifest, h?.boxSecret);
        checkBundleKey(manifest, bundleKey);
        if (h) await state.clockAdvance(h, now);
        const files = decision.components
          ? manifest.files.filter((f) => f.component !== undefined && decision.components!.includes(f.component)).map((f) => f.index)
          : manifest.files.map((f) => f.index);
        return { bundle, manifest, spans: layout.files, bundleKey, license: l, decision, files };
      } catch (e) {
        if (e instanceof MlicError) consider(e);
        else throw e;
      }
    }
    throw (
      best ??
      new MlicError('NO_LICENSE', `no installed licence covers ${manifest.model.name} ${manifest.model.version}`, {
        hint: 'run `mlic activate --request`, send the request to your vendor, then `mlic activate <licence>`',
      })
    );
  } catch (e) {
    await bundle.close();
    throw e;
  }
}
