/**
 * Entitlements: what a customer bought (a model, its versions, a time window, tier, features,
 * components, meters, regions, the hardware match policy: the terms `mlic license issue` takes)
 * and how many hosts may hold it (maxHosts). Creating one returns its licence key, once; the
 * server keeps the key's hash. Terms are checked at creation by issuing a throwaway licence with
 * them (under a throwaway key), so every later activation can issue a real one.
 */
import { randomBytes } from 'node:crypto';
import { MlicError } from '../errors.js';
import { issueLicense, type IssueOptions } from '../license/issue.js';
import { generateVendorKey, type VendorKey } from '../keys/vendor.js';
import { parseLicenseText, type ActivationRequest } from '../format/license.js';
import { isoSeconds } from '../format/fields.js';
import type { Queries } from './db/index.js';
import { pageOf, pageResult } from './paging.js';
import type { SeatUnit } from '../format/lease.js';
import { generateLicenseKey, licenseKeyHash } from './license-key.js';

/**
 * The terms of issueLicense as JSON: the same fields, with dates as UTC strings (they are stored
 * and sent as JSON) and no pins (a pin needs the pinned bundle).
 */
export type EntitlementTerms = Pick<IssueOptions, 'perpetual' | 'graceSeconds' | 'clockToleranceSeconds' | 'tier' | 'features' | 'components' | 'match' | 'meters' | 'regions' | 'requireWatermark'> & {
  versions: { policy: 'range'; range: string } | { policy: 'rolling' } | { policy: 'maintenance'; until: string; range?: string };
  notBefore?: string;
  expires?: string;
  /** its licences are for the bundles marked for each of them alone (mlic mark; docs/TRACING.md) */
  marked?: boolean;
};

/** Floating seats: at most `count` at once across the fleet, each held by a lease of `leaseSeconds`. */
export interface Seats {
  count: number;
  /** host: one seat per host; gpu: one per GPU the host's fingerprint lists; process: one per process */
  unit: SeatUnit;
  leaseSeconds: number;
}

export const DEFAULT_LEASE_SECONDS = 15 * 60;

export interface EntitlementInput {
  customer: string;
  model: string;
  maxHosts: number;
  terms: EntitlementTerms;
  /** floating seats (none: every activated host may use the model at once) */
  seats?: Omit<Seats, 'leaseSeconds'> & { leaseSeconds?: number };
}

export interface Entitlement extends EntitlementInput {
  id: string;
  createdAt: string;
  revokedAt?: string;
}

const str = (max: number) => ({ type: 'string', minLength: 1, maxLength: max });
const names = { type: 'array', maxItems: 64, uniqueItems: true, items: str(64) };
// UTC, to the second, RFC 3339: 2027-12-31T00:00:00Z (no zone-less or local-time forms, which servers in different zones would read differently)
const date = { type: 'string', pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$' };

/** The request body of POST /v1/entitlements (JSON Schema, checked before the handler runs). */
export const ENTITLEMENT_INPUT_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['customer', 'model', 'maxHosts', 'terms'],
  properties: {
    customer: str(200),
    model: str(128),
    maxHosts: { type: 'integer', minimum: 1, maximum: 1_000_000 },
    seats: {
      type: 'object',
      additionalProperties: false,
      required: ['count', 'unit'],
      properties: {
        count: { type: 'integer', minimum: 1, maximum: 1_000_000 },
        unit: { type: 'string', enum: ['host', 'gpu', 'process'] },
        leaseSeconds: { type: 'integer', minimum: 60, maximum: 7 * 86_400, description: `a lease's life (default ${15 * 60})` },
      },
    },
    terms: {
      type: 'object',
      additionalProperties: false,
      required: ['versions'],
      properties: {
        versions: {
          oneOf: [
            { type: 'object', additionalProperties: false, required: ['policy', 'range'], properties: { policy: { const: 'range' }, range: str(256) } },
            { type: 'object', additionalProperties: false, required: ['policy'], properties: { policy: { const: 'rolling' } } },
            { type: 'object', additionalProperties: false, required: ['policy', 'until'], properties: { policy: { const: 'maintenance' }, until: date, range: str(256) } },
          ],
        },
        notBefore: date,
        expires: date,
        perpetual: { type: 'boolean' },
        graceSeconds: { type: 'integer', minimum: 0, maximum: 10 * 365 * 86400 },
        clockToleranceSeconds: { type: 'integer', minimum: 0, maximum: 30 * 86400 },
        tier: str(64),
        features: names,
        components: names,
        match: {
          oneOf: [
            { type: 'object', additionalProperties: false, required: ['policy'], properties: { policy: { enum: ['all', 'most', 'any'] } } },
            { type: 'object', additionalProperties: false, required: ['policy', 'k'], properties: { policy: { const: 'k' }, k: { type: 'integer', minimum: 1, maximum: 999 } } },
          ],
        },
        meters: {
          type: 'array',
          maxItems: 64,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['metric', 'limit', 'period'],
            properties: {
              metric: str(64),
              limit: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
              period: { enum: ['day', 'month', 'term'] },
              overage: {
                oneOf: [
                  { type: 'object', additionalProperties: false, required: ['mode'], properties: { mode: { enum: ['refuse', 'record'] } } },
                  { type: 'object', additionalProperties: false, required: ['mode', 'percent'], properties: { mode: { const: 'allow' }, percent: { type: 'integer', minimum: 0, maximum: 1000 } } },
                ],
              },
              scope: { const: 'fleet', description: 'counted by this server for the whole entitlement (absent: per host)' },
            },
          },
        },
        regions: names,
        requireWatermark: { type: 'boolean' },
        marked: { type: 'boolean', description: 'licences for the bundles marked for each of them alone (mlic mark), so that a leak can be traced' },
      },
    },
  },
} as const;

const when = (s: string | undefined, what: string): Date | undefined => {
  if (s === undefined) return undefined;
  const d = new Date(s);
  // a day that does not exist (2030-02-31) would roll over silently: the date must read back as given
  if (Number.isNaN(d.getTime()) || d.toISOString().replace('.000Z', 'Z') !== s) throw new MlicError('FORMAT_INVALID', `terms.${what}: '${s}' is not a date (UTC, e.g. 2027-12-31T00:00:00Z)`);
  return d;
};

/** The options of issueLicense for this entitlement (and a host's request, when activating). */
export function issueOptionsFor(e: EntitlementInput, key: VendorKey, request: ActivationRequest | undefined, now: Date): IssueOptions {
  const t = e.terms;
  const notBefore = when(t.notBefore, 'notBefore') ?? now;
  const expires = when(t.expires, 'expires');
  return {
    key,
    ...(request ? { request } : {}),
    model: e.model,
    versions: t.versions.policy === 'maintenance' ? { policy: 'maintenance', until: when(t.versions.until, 'versions.until')!.toISOString(), ...(t.versions.range ? { range: t.versions.range } : {}) } : t.versions,
    notBefore,
    ...(expires ? { expires } : {}),
    ...(t.perpetual ? { perpetual: true } : {}),
    graceSeconds: t.graceSeconds ?? 0,
    clockToleranceSeconds: t.clockToleranceSeconds ?? 3600,
    ...(t.tier ? { tier: t.tier } : {}),
    features: t.features ?? [],
    components: t.components ?? [],
    ...(t.match ? { match: t.match } : {}),
    meters: t.meters ?? [],
    regions: t.regions ?? [],
    customer: e.customer,
    ...(t.requireWatermark ? { requireWatermark: true } : {}),
    ...(t.marked ? { marked: true } : {}),
    now,
  };
}

let throwaway: VendorKey | undefined;

/** Checks the terms the way issuing will: issueLicense's MlicError (USAGE/FORMAT_INVALID) as FORMAT_INVALID. */
export function checkTerms(e: EntitlementInput, now: Date): void {
  throwaway ??= generateVendorKey('terms-check');
  try {
    // the throwaway licence is unbound, and a fleet meter needs a host: activations always have one
    const meters = e.terms.meters?.map(({ scope: _fleet, ...m }) => m);
    issueLicense(issueOptionsFor({ ...e, terms: { ...e.terms, ...(meters ? { meters } : {}) } }, throwaway, undefined, now));
  } catch (x) {
    if (x instanceof MlicError) throw new MlicError('FORMAT_INVALID', `the entitlement's terms would not make a licence: ${x.message}`, x.hint ? { hint: x.hint } : {});
    throw x;
  }
}

interface Row {
  id: string;
  customer: string;
  model: string;
  terms: string;
  max_hosts: number;
  created_at: number;
  revoked_at: number | null;
  seats?: number | null;
  seat_unit?: string | null;
  lease_seconds?: number | null;
}

const iso = (t: number) => new Date(t * 1000).toISOString().replace('.000Z', 'Z');

function fromRow(r: Row): Entitlement {
  return {
    id: r.id,
    customer: r.customer,
    model: r.model,
    maxHosts: Number(r.max_hosts),
    terms: JSON.parse(r.terms) as EntitlementTerms,
    createdAt: iso(Number(r.created_at)),
    ...(r.seats != null ? { seats: { count: Number(r.seats), unit: r.seat_unit as SeatUnit, leaseSeconds: Number(r.lease_seconds) } } : {}),
    ...(r.revoked_at !== null ? { revokedAt: iso(Number(r.revoked_at)) } : {}),
  };
}

export async function createEntitlement(q: Queries, input: EntitlementInput, now: Date): Promise<{ entitlement: Entitlement; licenseKey: string }> {
  checkTerms(input, now);
  const id = `ent_${randomBytes(8).toString('hex')}`;
  const licenseKey = generateLicenseKey();
  const t = Math.floor(now.getTime() / 1000);
  const seats = input.seats ? { ...input.seats, leaseSeconds: input.seats.leaseSeconds ?? DEFAULT_LEASE_SECONDS } : undefined;
  await q.run('INSERT INTO entitlements (id, customer, model, terms, max_hosts, key_hash, created_at, seats, seat_unit, lease_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', [
    id,
    input.customer,
    input.model,
    JSON.stringify(input.terms),
    input.maxHosts,
    licenseKeyHash(licenseKey),
    t,
    seats?.count ?? null,
    seats?.unit ?? null,
    seats?.leaseSeconds ?? null,
  ]);
  return {
    entitlement: fromRow({
      id,
      customer: input.customer,
      model: input.model,
      terms: JSON.stringify(input.terms),
      max_hosts: input.maxHosts,
      created_at: t,
      revoked_at: null,
      seats: seats?.count ?? null,
      seat_unit: seats?.unit ?? null,
      lease_seconds: seats?.leaseSeconds ?? null,
    }),
    licenseKey,
  };
}

export async function listEntitlements(q: Queries, o: { customer?: string; limit?: string; after?: string } = {}): Promise<{ entitlements: Entitlement[]; next: string | null }> {
  const page = pageOf(o);
  const rows = await q.all<Row>(
    `SELECT id, customer, model, terms, max_hosts, created_at, revoked_at, seats, seat_unit, lease_seconds FROM entitlements WHERE ${page.where}${o.customer !== undefined ? ' AND customer = ?' : ''} ORDER BY created_at, id LIMIT ${page.limit}`,
    [...page.params, ...(o.customer !== undefined ? [o.customer] : [])],
  );
  const r = pageResult(rows, page);
  return { entitlements: r.rows.map(fromRow), next: r.next };
}

export async function getEntitlement(q: Queries, id: string): Promise<Entitlement | undefined> {
  const r = await q.get<Row>('SELECT id, customer, model, terms, max_hosts, created_at, revoked_at, seats, seat_unit, lease_seconds FROM entitlements WHERE id = ?', [id]);
  return r ? fromRow(r) : undefined;
}

/** A licence the server issued, for the admin (`GET /v1/licenses`; `mlic trace --server`). */
export interface LicenseView {
  id: string;
  entitlementId: string;
  hostId: string;
  issuedAt: string;
  revokedAt: string | null;
  /** the signed licence, as the host got it */
  text: string;
}

/** The paging cursor of GET /v1/licenses: `<issued_at>.<licence id>` (licence ids have no prefix). */
export const LICENSE_CURSOR = { type: 'string', pattern: '^[0-9]{1,15}\\.[0-9a-f]{32}$', description: 'the `next` cursor of the previous page' } as const;

/** Whether a stored licence is for marked bundles: read from its own signed payload (exact, whatever the entitlement says). */
function isMarked(text: string): boolean {
  try {
    return parseLicenseText(text).payload.marked === true;
  } catch {
    return false;
  }
}

function carriesWatermark(text: string): boolean {
  try {
    return parseLicenseText(text).payload.watermark !== undefined;
  } catch {
    return false;
  }
}

/**
 * The licences issued, in order of issue, with the entitlement's model and the licence's own
 * `marked` and `watermark` (it carries a watermark key: issued with --require-watermark) as
 * filters. Those two are read from each licence's text, after the page is read: a page filtered
 * by them may hold fewer than `limit` licences (follow `next` until it is null).
 */
export async function listLicenses(
  q: Queries,
  o: { model?: string; marked?: boolean; watermark?: boolean; entitlement?: string; limit?: string; after?: string },
): Promise<{ licenses: LicenseView[]; next: string | null }> {
  const page = pageOf(o);
  const where = [page.where];
  const params = [...page.params];
  if (o.model !== undefined) {
    where.push('model = ?');
    params.push(o.model);
  }
  if (o.entitlement !== undefined) {
    where.push('entitlement_id = ?');
    params.push(o.entitlement);
  }
  const rows = await q.all<{ id: string; entitlement_id: string; host_id: string; created_at: number; revoked_at: number | null; text: string }>(
    `SELECT id, entitlement_id, host_id, created_at, revoked_at, text FROM (SELECT l.id AS id, l.entitlement_id AS entitlement_id, l.host_id AS host_id, l.issued_at AS created_at, l.revoked_at AS revoked_at, l.text AS text, e.model AS model FROM licenses l JOIN entitlements e ON e.id = l.entitlement_id) x WHERE ${where.join(' AND ')} ORDER BY created_at, id LIMIT ${page.limit}`,
    params,
  );
  const r = pageResult(rows, page);
  return {
    licenses: r.rows
      .filter((l) => (o.marked === undefined || isMarked(l.text) === o.marked) && (o.watermark === undefined || carriesWatermark(l.text) === o.watermark))
      .map((l) => ({
        id: l.id,
        entitlementId: l.entitlement_id,
        hostId: l.host_id,
        issuedAt: isoSeconds(new Date(Number(l.created_at) * 1000)),
        revokedAt: l.revoked_at !== null ? isoSeconds(new Date(Number(l.revoked_at) * 1000)) : null,
        text: l.text,
      })),
    next: r.next,
  };
}
