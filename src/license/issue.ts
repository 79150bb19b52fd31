/**
 * The vendor's side: turning a verified activation request into a signed licence. Only fields
 * mlic defines are copied from the request, each validated; the finished payload is validated
 * with the same code every host runs (format/license.ts) before it is signed, so a vendor can
 * never sign a licence that hosts refuse or that carries what the customer chose.
 */
import { MlicError } from '../errors.js';
import { randomBytes } from '../crypto/random.js';
import { keyIdHex } from '../format/minisign.js';
import { NAME_RE, isoSeconds } from '../format/fields.js';
import type { Manifest } from '../format/manifest.js';
import { assertLicensePayload, MAX_GRANTS, METRIC_RE, type ActivationRequest, type GrantedKey, type HostBinding, type LeaseTerms, type LicensePayload, type MatchPolicy, type Meter, type SignedLicense, type VersionPolicy } from '../format/license.js';
import { parseRange } from '../format/semver-range.js';
import { parseSemver, versionLine } from '../format/semver.js';
import { bundleKeyFromMaster, modelKeyFor, nodeKey, watermarkKey, type Tree } from '../keys/derive.js';
import { sha256Hex } from '../crypto/hash.js';
import type { VendorKey } from '../keys/vendor.js';
import { sealGrant, sealKey, tpmGrantMask } from './keys.js';
import { sealForTpm, verifyTpmRequest, type TpmVerifyOptions } from '../tpm/attest.js';
import { ALL_LINES, grantNodes, lineIntervals } from './lines.js';
import { signLicense } from './sign.js';

export interface IssueOptions {
  key: VendorKey;
  /** the host's activation request (verified: parseAndVerifyRequest), or undefined for an unbound licence */
  request?: ActivationRequest;
  model: string;
  versions: { policy: 'range'; range: string } | { policy: 'pin'; version: string } | { policy: 'rolling' } | { policy: 'maintenance'; until: string; range?: string };
  /**
   * For a pin: the bundle it pins, read from a bundle whose signature was verified with this
   * vendor's key (never an unverified manifest: its id and version decide which key is granted).
   */
  pinnedBundle?: Pick<Manifest, 'bundleId' | 'model' | 'encryption' | 'vendor'>;
  notBefore?: Date;
  expires?: Date;
  /** a licence without an end must be asked for explicitly */
  perpetual?: boolean;
  graceSeconds?: number;
  clockToleranceSeconds?: number;
  tier?: string;
  features?: string[];
  components?: string[];
  match?: MatchPolicy;
  meters?: Meter[];
  regions?: string[];
  customer?: string;
  requireWatermark?: boolean;
  /** floating seats (the licence server): uses need a live lease */
  lease?: LeaseTerms;
  /** a licence for the bundles marked for it (mlic mark): its keys open those alone */
  marked?: boolean;
  /** how a TPM attestation in the request is checked (trusted CAs, PCR policy, required or not) */
  tpm?: TpmVerifyOptions;
  now?: Date;
}

/** Parses `inferences=1000000/month` (overage: `...,overage=10%`). */
export function parseMeter(spec: string): Meter {
  const m = /^([a-z][a-z0-9_.-]{0,63})=(\d+)\/(day|month|term)((?:,[a-z]+=[^,]*)*)$/.exec(spec.trim());
  const usage = `--meter expects METRIC=LIMIT/PERIOD[,overage=N%|record|refuse][,scope=fleet|host] (period day, month or term), got '${spec}'`;
  if (!m || !METRIC_RE.test(m[1]!)) throw new MlicError('USAGE', usage);
  const limit = Number(m[2]);
  if (!Number.isSafeInteger(limit)) throw new MlicError('USAGE', `--meter limit too large: ${m[2]}`);
  const meter: Meter = { metric: m[1]!, limit, period: m[3] as Meter['period'] };
  for (const opt of m[4]!.split(',').slice(1)) {
    const [k, v] = opt.split('=') as [string, string];
    const pct = /^(\d{1,4})%$/.exec(v);
    if (k === 'overage' && v === 'record') meter.overage = { mode: 'record' };
    else if (k === 'overage' && v === 'refuse') meter.overage = { mode: 'refuse' };
    else if (k === 'overage' && pct) meter.overage = { mode: 'allow', percent: Number(pct[1]) };
    else if (k === 'scope' && v === 'fleet') meter.scope = 'fleet';
    else if (k === 'scope' && v === 'host') delete meter.scope;
    else throw new MlicError('USAGE', usage);
  }
  return meter;
}

/** Parses all, most, any, or K (k of n). */
export function parseMatch(s: string): MatchPolicy {
  if (s === 'all' || s === 'most' || s === 'any') return { policy: s };
  const k = /^(\d{1,3})(?:-of-\d+)?$/.exec(s);
  if (k && Number(k[1]) >= 1) return { policy: 'k', k: Number(k[1]) };
  throw new MlicError('USAGE', `--match expects all, most, any or a number k (k of n), got '${s}'`);
}

/**
 * Version-tree node keys by vendor master, model and node: every licence of an entitlement grants
 * the same nodes, and deriving one costs a chain of HKDFs (most of a licence server's time per
 * activation). Kept per master key object, at most 4,096 nodes; a copy is handed out (the caller
 * wipes it).
 */
const nodeKeys = new WeakMap<Uint8Array, { of: string; keys: Map<string, Buffer> }>();
function cachedNodeKey(master: Uint8Array, mk: Buffer, model: string, tree: Tree, depth: number, prefix: number): Buffer {
  // the same buffer refilled with another master must not find the first one's keys
  const of = sha256Hex(master);
  let c = nodeKeys.get(master);
  if (!c || c.of !== of) {
    for (const v of c?.keys.values() ?? []) v.fill(0);
    nodeKeys.set(master, (c = { of, keys: new Map() }));
  }
  const id = `${model}\u0000${tree}\u0000${depth}\u0000${prefix}`;
  let k = c.keys.get(id);
  if (!k) {
    if (c.keys.size >= 4096) {
      for (const v of c.keys.values()) v.fill(0);
      c.keys.clear();
    }
    k = nodeKey(mk, tree, depth, prefix);
    c.keys.set(id, Buffer.from(k));
  }
  return Buffer.from(k);
}

export function issueLicense(o: IssueOptions): { license: SignedLicense; payload: LicensePayload } {
  const now = o.now ?? new Date();
  if (!NAME_RE.test(o.model)) throw new MlicError('USAGE', `invalid model name '${o.model}'`);
  if (o.expires === undefined && !o.perpetual)
    throw new MlicError('USAGE', 'say how long the licence is valid: --days N, --expires DATE, or --perpetual for a licence without an end');
  if (o.expires !== undefined && o.perpetual) throw new MlicError('USAGE', '--perpetual and an expiry exclude each other');
  const notBefore = o.notBefore ?? now;
  if (o.expires && o.expires.getTime() <= notBefore.getTime()) throw new MlicError('USAGE', 'the licence would expire before it starts');
  const host = o.request?.payload;
  const hostPub = host ? Buffer.from(host.hostPublicKey, 'base64') : undefined;
  const licenseId = randomBytes(16).toString('hex');
  // a TPM host: verified before anything is derived; its grants are masked with W, which the credential releases to that TPM alone
  if (!host && o.tpm?.require) throw new MlicError('USAGE', 'a licence that requires a TPM is bound to a host: give the host\'s activation request');
  const tpm = host ? verifyTpmRequest(host, { ...o.tpm, now }) : undefined;
  const sealedTpm = tpm ? sealForTpm(tpm) : undefined;
  const seal = (scope: Parameters<typeof sealGrant>[0], k: Uint8Array) => {
    const mask = sealedTpm ? tpmGrantMask(sealedTpm.secret, licenseId, grants.length) : undefined;
    grants.push(sealGrant(scope, k, hostPub, mask));
    mask?.fill(0);
  };
  if (o.marked && o.versions.policy === 'pin')
    throw new MlicError('USAGE', 'a licence for marked bundles cannot pin one bundle: the bundle marked for it does not exist yet', { hint: "grant the version by range instead, e.g. --versions '=2.1.0'" });
  const markedFor = o.marked ? licenseId : undefined;
  const mk = modelKeyFor(o.key.master, o.model, markedFor);
  const grants: GrantedKey[] = [];
  const grantLines = (range: string | undefined) => {
    const parsed = range === undefined ? undefined : parseRange(range);
    if (range !== undefined && !parsed) throw new MlicError('USAGE', `--versions: '${range}' is not a version range`, { hint: "for example '^2', '>=2.1 <3' or '=2.1.0'" });
    const nodes = grantNodes(parsed ? lineIntervals(parsed) : ALL_LINES);
    if (nodes.length === 0) throw new MlicError('USAGE', `--versions: '${range}' matches no version`);
    if (nodes.length > MAX_GRANTS) throw new MlicError('USAGE', `--versions: '${range}' needs ${nodes.length} keys, more than the ${MAX_GRANTS} a licence may carry; use fewer alternatives`);
    for (const n of nodes) {
      const k = markedFor ? nodeKey(mk, n.tree, n.depth, n.prefix) : cachedNodeKey(o.key.master, mk, o.model, n.tree, n.depth, n.prefix);
      seal({ scope: 'lines', ...n }, k);
      k.fill(0);
    }
  };
  let versions: VersionPolicy;
  const v = o.versions;
  switch (v.policy) {
    case 'range':
      grantLines(v.range);
      versions = { policy: 'range', range: v.range };
      break;
    case 'pin': {
      const sv = parseSemver(v.version);
      if (!sv) throw new MlicError('USAGE', `--versions: '${v.version}' is not a semantic version`);
      const b = o.pinnedBundle;
      if (!b) throw new MlicError('USAGE', "a pinned licence needs the bundle it pins, so that it can grant that bundle's key alone", { hint: 'add --bundle model-2.1.0.mlb' });
      if (b.model.name !== o.model || b.model.version !== v.version) throw new MlicError('USAGE', `--bundle is ${b.model.name}@${b.model.version}, not ${o.model}@${v.version}`);
      if (b.vendor.keyId !== keyIdHex(o.key.keyId)) throw new MlicError('USAGE', `--bundle was packed with vendor key ${b.vendor.keyId}, not this key`);
      versions = { policy: 'pin', version: v.version, bundleId: b.bundleId };
      const k = bundleKeyFromMaster(o.key.master, o.model, versionLine(sv), b.bundleId);
      seal({ scope: 'bundle', bundleId: b.bundleId }, k);
      k.fill(0);
      break;
    }
    case 'rolling':
      grantLines(undefined);
      versions = { policy: 'rolling' };
      break;
    case 'maintenance':
      grantLines(v.range);
      versions = { policy: 'maintenance', until: v.until, ...(v.range !== undefined ? { range: v.range } : {}) };
      break;
  }
  mk.fill(0);
  let watermark: LicensePayload['watermark'];
  if (o.requireWatermark) {
    const wk = watermarkKey(o.key.master, licenseId);
    const mask = sealedTpm ? tpmGrantMask(sealedTpm.secret, licenseId, 'watermark') : undefined;
    watermark = sealKey(wk, hostPub, mask);
    wk.fill(0);
    mask?.fill(0);
  }
  sealedTpm?.secret.fill(0);
  const customer = o.customer ?? host?.customer;
  const binding: LicensePayload['host'] = host
    ? ({
        binding: 'host',
        publicKey: host.hostPublicKey,
        signingPublicKey: host.signingPublicKey,
        requestId: host.requestId,
        hostname: host.hostname,
        ...(host.region !== undefined ? { region: host.region } : {}),
        fingerprint: {
          salt: host.fingerprint.salt,
          components: host.fingerprint.components.map((c) => ({ kind: c.kind, hash: c.hash, label: c.label })),
          container: host.fingerprint.container,
          vm: host.fingerprint.vm,
        },
        match: o.match ?? { policy: 'all' },
        ...(sealedTpm ? { tpm: sealedTpm.binding } : {}),
      } satisfies HostBinding)
    : { binding: 'unbound' };
  const payload: LicensePayload = {
    v: 2,
    kind: 'mlic-license',
    licenseId,
    issuedAt: isoSeconds(now),
    vendor: { keyId: keyIdHex(o.key.keyId), ...(o.key.name ? { name: o.key.name } : {}) },
    ...(customer !== undefined ? { customer } : {}),
    model: o.model,
    versions,
    notBefore: isoSeconds(notBefore),
    ...(o.expires ? { expires: isoSeconds(o.expires) } : {}),
    graceSeconds: o.graceSeconds ?? 0,
    clockToleranceSeconds: o.clockToleranceSeconds ?? 3600,
    ...(o.tier !== undefined ? { tier: o.tier } : {}),
    features: [...new Set(o.features ?? [])].sort(),
    ...(o.components?.length ? { components: [...new Set(o.components)].sort() } : {}),
    host: binding,
    meters: o.meters ?? [],
    ...(o.regions?.length ? { regions: [...new Set(o.regions)].sort() } : {}),
    keys: grants,
    ...(o.requireWatermark ? { requireWatermark: true } : {}),
    ...(watermark ? { watermark } : {}),
    ...(o.lease ? { lease: o.lease } : {}),
    ...(o.marked ? { marked: true as const } : {}),
  };
  // The host's own validation, before anything is signed.
  try {
    assertLicensePayload(payload);
  } catch (e) {
    if (e instanceof MlicError) throw new MlicError('USAGE', `refusing to sign a licence that hosts would reject: ${e.message}`, { ...(e.details ? { details: e.details } : {}) });
    throw e;
  }
  return { license: signLicense(payload, o.key.seed, o.key.keyId), payload };
}
