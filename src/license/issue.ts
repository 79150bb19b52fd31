/** The vendor's side: turning an activation request into a signed licence. */
import { MlicError } from '../errors.js';
import { randomBytes } from '../crypto/random.js';
import { keyIdHex } from '../format/minisign.js';
import { NAME_RE, type Manifest } from '../format/manifest.js';
import { METRIC_RE, REGION_RE, type ActivationRequest, type GrantedKey, type LicensePayload, type MatchPolicy, type Meter, type SignedLicense, type VersionPolicy } from '../format/license.js';
import { parseRange, linesOfRange } from '../format/semver-range.js';
import { parseSemver, versionLine } from '../format/semver.js';
import { bundleKeyFromMaster, lineKey, modelKey } from '../keys/derive.js';
import type { VendorKey } from '../keys/vendor.js';
import { sealGrant } from './keys.js';
import { signLicense } from './sign.js';

export interface IssueOptions {
  key: VendorKey;
  /** the host's activation request, or undefined for an unbound licence */
  request?: ActivationRequest;
  model: string;
  versions: VersionPolicy;
  /** for a pin: the bundle it pins (its id and version; its key is granted alone) */
  pinnedBundle?: Pick<Manifest, 'bundleId' | 'model' | 'encryption' | 'vendor'>;
  notBefore?: Date;
  expires?: Date;
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
  now?: Date;
}

const iso = (d: Date) => new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');

/** Parses `inferences=1000000/month` (overage: `...,overage=10%`). */
export function parseMeter(spec: string): Meter {
  const m = /^([a-z][a-z0-9_.-]{0,63})=(\d+)\/(day|month|term)(?:,overage=(\d+)%)?$/.exec(spec.trim());
  if (!m || !METRIC_RE.test(m[1]!)) throw new MlicError('USAGE', `--meter expects METRIC=LIMIT/PERIOD[,overage=N%] (period day, month or term), got '${spec}'`);
  const limit = Number(m[2]);
  if (!Number.isSafeInteger(limit)) throw new MlicError('USAGE', `--meter limit too large: ${m[2]}`);
  return { metric: m[1]!, limit, period: m[3] as Meter['period'], ...(m[4] !== undefined ? { overage: { mode: 'allow' as const, percent: Number(m[4]) } } : {}) };
}

/** Parses all, most, any, or K (k of n). */
export function parseMatch(s: string): MatchPolicy {
  if (s === 'all' || s === 'most' || s === 'any') return { policy: s };
  const k = /^(\d+)(?:-of-\d+)?$/.exec(s);
  if (k && Number(k[1]) >= 1) return { policy: 'k', k: Number(k[1]) };
  throw new MlicError('USAGE', `--match expects all, most, any or a number k (k of n), got '${s}'`);
}

export function issueLicense(o: IssueOptions): { license: SignedLicense; payload: LicensePayload } {
  const now = o.now ?? new Date();
  if (!NAME_RE.test(o.model)) throw new MlicError('USAGE', `invalid model name '${o.model}'`);
  for (const f of [...(o.features ?? []), ...(o.components ?? [])]) if (!NAME_RE.test(f)) throw new MlicError('USAGE', `invalid feature or component name '${f}'`);
  if (o.tier !== undefined && !NAME_RE.test(o.tier)) throw new MlicError('USAGE', `invalid tier '${o.tier}'`);
  for (const r of o.regions ?? []) if (!REGION_RE.test(r)) throw new MlicError('USAGE', `invalid region '${r}' (use ISO 3166 codes like DE, or EU/EEA)`);
  const notBefore = o.notBefore ?? now;
  if (o.expires && o.expires.getTime() <= notBefore.getTime()) throw new MlicError('USAGE', 'the licence would expire before it starts');
  const host = o.request?.payload;
  const hostPub = host ? Buffer.from(host.hostPublicKey, 'base64') : undefined;
  const master = o.key.master;
  const grants: GrantedKey[] = [];
  const v = o.versions;
  const grantLines = (range: string | undefined) => {
    const lines = range === undefined ? undefined : linesOfRange(parseRange(range)!);
    if (lines === undefined) grants.push(sealGrant('model', modelKey(master, o.model), hostPub, {}));
    else for (const line of lines) grants.push(sealGrant('line', lineKey(modelKey(master, o.model), line), hostPub, { line }));
  };
  let versions: VersionPolicy = v;
  switch (v.policy) {
    case 'range':
      if (!parseRange(v.range)) throw new MlicError('USAGE', `--versions: '${v.range}' is not a version range`, { hint: "for example '^2', '>=2.1 <3' or '=2.1.0'" });
      grantLines(v.range);
      break;
    case 'pin': {
      const sv = parseSemver(v.version);
      if (!sv) throw new MlicError('USAGE', `--versions: '${v.version}' is not a semantic version`);
      const b = o.pinnedBundle;
      if (!b)
        throw new MlicError('USAGE', 'a pinned licence needs the bundle it pins, so that it can grant that bundle\'s key alone', { hint: 'add --bundle model-2.1.0.mlb' });
      if (b.model.name !== o.model || b.model.version !== v.version) throw new MlicError('USAGE', `--bundle is ${b.model.name}@${b.model.version}, not ${o.model}@${v.version}`);
      if (b.vendor.keyId !== keyIdHex(o.key.keyId)) throw new MlicError('USAGE', `--bundle was packed with vendor key ${b.vendor.keyId}, not this key`);
      versions = { policy: 'pin', version: v.version, bundleId: b.bundleId };
      grants.push(sealGrant('bundle', bundleKeyFromMaster(master, o.model, versionLine(sv), b.bundleId), hostPub, { bundleId: b.bundleId }));
      break;
    }
    case 'rolling':
      grantLines(undefined);
      break;
    case 'maintenance':
      if (v.range !== undefined && !parseRange(v.range)) throw new MlicError('USAGE', `--versions: '${v.range}' is not a version range`);
      grantLines(v.range);
      break;
  }
  const payload: LicensePayload = {
    v: 1,
    kind: 'mlic-license',
    licenseId: randomBytes(16).toString('hex'),
    issuedAt: iso(now),
    vendor: { keyId: keyIdHex(o.key.keyId), ...(o.key.name ? { name: o.key.name } : {}) },
    ...(o.customer ?? host?.customer ? { customer: o.customer ?? host?.customer } : {}),
    model: o.model,
    versions,
    notBefore: iso(notBefore),
    ...(o.expires ? { expires: iso(o.expires) } : {}),
    graceSeconds: o.graceSeconds ?? 0,
    clockToleranceSeconds: o.clockToleranceSeconds ?? 3600,
    ...(o.tier ? { tier: o.tier } : {}),
    features: [...new Set(o.features ?? [])].sort(),
    ...(o.components?.length ? { components: [...new Set(o.components)].sort() } : {}),
    host: host
      ? {
          binding: 'host',
          publicKey: host.hostPublicKey,
          signingPublicKey: host.signingPublicKey,
          requestId: host.requestId,
          ...(host.hostname ? { hostname: host.hostname } : {}),
          ...(host.region ? { region: host.region } : {}),
          fingerprint: host.fingerprint,
          match: o.match ?? { policy: 'all' },
        }
      : { binding: 'unbound' },
    meters: o.meters ?? [],
    ...(o.regions?.length ? { regions: [...new Set(o.regions)].sort() } : {}),
    keys: grants,
    ...(o.requireWatermark ? { requireWatermark: true } : {}),
  };
  return { license: signLicense(payload, o.key.seed, o.key.keyId), payload };
}
