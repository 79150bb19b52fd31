/**
 * mlic admin: the licence server's admin API from the command line. The server and token come
 * from --server / --token or MLIC_SERVER / MLIC_ADMIN_TOKEN (the environment keeps the token out
 * of the process list).
 */
import { MlicError } from '../../errors.js';
import { callServer, refusal, serverUrl } from '../../host/server-client.js';
import { isoSeconds } from '../../format/fields.js';
import { parseMatch, parseMeter } from '../../license/issue.js';
import type { EntitlementInput, EntitlementTerms } from '../../server/entitlements.js';
import type { StoredReport, UsageSummary } from '../../server/usage.js';
import type { FleetUsage } from '../../server/quotas.js';
import { printResult, type Ctx } from '../output.js';
import { MAX_INPUT, readTextFile } from '../../util/files.js';
import { date, duration, type TermsOpts } from './license.js';

interface Conn {
  server?: string;
  token?: string;
}

async function call<T>(c: Conn, method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const server = c.server ?? process.env.MLIC_SERVER;
  const token = c.token ?? process.env.MLIC_ADMIN_TOKEN;
  if (!server) throw new MlicError('USAGE', 'which server? give --server URL or set MLIC_SERVER');
  if (!token) throw new MlicError('USAGE', 'an admin token is needed: set MLIC_ADMIN_TOKEN (or --token)');
  const a = await callServer(server, path, { token, timeoutMs: 30_000, ...(method === 'POST' ? { body: body ?? {} } : {}) });
  if (a.json === undefined) throw new MlicError('IO_ERROR', `the server at ${serverUrl(server, path).origin} answered ${a.status} with something that is not JSON`);
  if (!a.ok) throw refusal('request', a.status, a.json.error as Parameters<typeof refusal>[2]);
  return a.json as T;
}

export interface CreateOpts extends Conn, TermsOpts {
  customer: string;
  model: string;
  maxHosts: string;
  floatingSeats?: string;
  seatUnit?: string;
  lease?: string;
  /** its licences are for marked bundles (mlic mark) */
  marked?: boolean;
}

export function entitlementInput(o: CreateOpts, now = new Date()): EntitlementInput {
  const maxHosts = Number(o.maxHosts);
  if (!Number.isSafeInteger(maxHosts) || maxHosts < 1) throw new MlicError('USAGE', `--max-hosts must be a whole number of hosts, at least 1 (got '${o.maxHosts}')`);
  if ([o.rolling, o.updatesUntil !== undefined].filter(Boolean).length > 1) throw new MlicError('USAGE', '--rolling and --updates-until exclude each other');
  if ([o.expires !== undefined, o.days !== undefined, o.perpetual === true].filter(Boolean).length > 1) throw new MlicError('USAGE', '--expires, --days and --perpetual exclude each other');
  if (o.expires === undefined && o.days === undefined && !o.perpetual) throw new MlicError('USAGE', 'say how long its licences are valid: --days N, --expires DATE, or --perpetual');
  let versions: EntitlementTerms['versions'];
  if (o.rolling) versions = { policy: 'rolling' };
  else if (o.updatesUntil !== undefined) versions = { policy: 'maintenance', until: isoSeconds(date(o.updatesUntil, '--updates-until')), ...(o.versions ? { range: o.versions } : {}) };
  else if (o.versions === undefined) throw new MlicError('USAGE', 'say which versions: --versions RANGE, --rolling or --updates-until DATE');
  else if (/^=\s*\d/.test(o.versions.trim())) throw new MlicError('USAGE', 'an entitlement cannot pin one bundle; give a range (e.g. --versions "~2.1.0") or use mlic license issue --bundle');
  else versions = { policy: 'range', range: o.versions };
  const notBefore = o.notBefore ? date(o.notBefore, '--not-before') : undefined;
  const expires = o.expires ? date(o.expires, '--expires') : o.days ? new Date((notBefore ?? now).getTime() + duration(`${o.days}d`, '--days') * 1000) : undefined;
  const terms: EntitlementTerms = {
    versions,
    ...(notBefore ? { notBefore: isoSeconds(notBefore) } : {}),
    ...(expires ? { expires: isoSeconds(expires) } : {}),
    ...(o.perpetual ? { perpetual: true } : {}),
    ...(o.grace ? { graceSeconds: duration(o.grace, '--grace') } : {}),
    ...(o.clockTolerance ? { clockToleranceSeconds: duration(o.clockTolerance, '--clock-tolerance') } : {}),
    ...(o.tier ? { tier: o.tier } : {}),
    ...(o.feature?.length ? { features: o.feature } : {}),
    ...(o.component?.length ? { components: o.component } : {}),
    ...(o.match ? { match: parseMatch(o.match) } : {}),
    // an entitlement's meters are counted for the whole fleet unless a spec says scope=host
    ...(o.meter?.length ? { meters: o.meter.map((spec) => ({ ...parseMeter(spec), ...(/,scope=host\b/.test(spec) ? {} : { scope: 'fleet' as const }) })) } : {}),
    ...(o.region?.length ? { regions: o.region } : {}),
    ...(o.requireWatermark ? { requireWatermark: true } : {}),
    ...(o.marked ? { marked: true } : {}),
  };
  let seats: EntitlementInput['seats'];
  if (o.floatingSeats !== undefined) {
    const count = Number(o.floatingSeats);
    if (!Number.isSafeInteger(count) || count < 1) throw new MlicError('USAGE', `--floating-seats must be a whole number, at least 1 (got '${o.floatingSeats}')`);
    const unit = o.seatUnit ?? 'host';
    if (unit !== 'host' && unit !== 'gpu' && unit !== 'process') throw new MlicError('USAGE', `--seat-unit is host, gpu or process (got '${unit}')`);
    const leaseSeconds = duration(o.lease ?? '15m', '--lease');
    if (leaseSeconds < 60 || leaseSeconds > 7 * 86_400) throw new MlicError('USAGE', '--lease must be between 1 minute and 7 days');
    seats = { count, unit, leaseSeconds };
  }
  return { customer: o.customer, model: o.model, maxHosts, terms, ...(seats ? { seats } : {}) };
}

interface EntitlementView {
  id: string;
  customer: string;
  model: string;
  maxHosts: number;
  createdAt: string;
  revokedAt?: string;
}

export async function entitlementCreate(ctx: Ctx, o: CreateOpts): Promise<void> {
  const r = await call<{ entitlement: EntitlementView; licenseKey: string }>(o, 'POST', 'v1/entitlements', entitlementInput(o));
  ctx.note(`entitlement ${r.entitlement.id} for ${r.entitlement.customer}: ${r.entitlement.model}, up to ${r.entitlement.maxHosts} hosts; its licence key (shown this once):`);
  ctx.out(r.licenseKey);
  printResult(ctx, r);
}

/** Every page of a paged list (the server answers `next` until the last one). */
async function allPages<K extends string, T>(c: Conn, path: string, key: K): Promise<T[]> {
  const out: T[] = [];
  let after: string | null = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const r: Record<K, T[]> & { next: string | null } = await call(c, 'GET', `${path}${after ? `${sep}after=${encodeURIComponent(after)}` : ''}`);
    out.push(...r[key]);
    after = r.next;
  } while (after);
  return out;
}

export async function entitlementList(ctx: Ctx, o: Conn & { customer?: string }): Promise<void> {
  const entitlements = await allPages<'entitlements', EntitlementView>(o, `v1/entitlements?limit=1000${o.customer ? `&customer=${encodeURIComponent(o.customer)}` : ''}`, 'entitlements');
  if (entitlements.length === 0) ctx.note('no entitlements');
  for (const e of entitlements) ctx.out(`${e.id}  ${e.customer}  ${e.model}  max ${e.maxHosts} hosts  ${e.createdAt}${e.revokedAt ? `  REVOKED ${e.revokedAt}` : ''}`);
  printResult(ctx, { entitlements });
}

export async function entitlementShow(ctx: Ctx, id: string, o: Conn): Promise<void> {
  const r = await call<{ entitlement: EntitlementView }>(o, 'GET', `v1/entitlements/${encodeURIComponent(id)}`);
  ctx.out(JSON.stringify(r.entitlement, null, 2));
  printResult(ctx, r);
}

export async function tokenCreate(ctx: Ctx, o: Conn & { name: string }): Promise<void> {
  const r = await call<{ id: string; name: string; token: string }>(o, 'POST', 'v1/admin-tokens', { name: o.name });
  ctx.note(`admin token ${r.id} (${r.name}); shown this once:`);
  ctx.out(r.token);
  printResult(ctx, r);
}

export async function tokenList(ctx: Ctx, o: Conn): Promise<void> {
  const r = await call<{ tokens: { id: string; name: string; createdAt: string; revokedAt?: string }[] }>(o, 'GET', 'v1/admin-tokens');
  for (const t of r.tokens) ctx.out(`${t.id}  ${t.createdAt}  ${t.revokedAt ? `REVOKED ${t.revokedAt}` : 'live'}  ${t.name}`);
  printResult(ctx, r);
}

export async function tokenRevoke(ctx: Ctx, id: string, o: Conn): Promise<void> {
  const r = await call<{ id: string; revoked: boolean; already?: boolean }>(o, 'POST', `v1/admin-tokens/${encodeURIComponent(id)}/revoke`, {});
  ctx.note(r.already ? `admin token ${id} was already revoked` : `revoked admin token ${id}`);
  printResult(ctx, r);
}

interface HostView {
  id: string;
  entitlementId: string;
  hostname: string;
  licenseId: string;
  activatedAt: string;
  lastSeen: string;
  deactivatedAt?: string;
  revokedAt?: string;
}

export async function hosts(ctx: Ctx, o: Conn & { entitlement?: string; all?: boolean }): Promise<void> {
  const q = [`limit=1000`, ...(o.entitlement ? [`entitlement=${encodeURIComponent(o.entitlement)}`] : []), ...(o.all ? [] : ['active=true'])];
  const list = await allPages<'hosts', HostView>(o, `v1/hosts?${q.join('&')}`, 'hosts');
  if (list.length === 0) ctx.note(o.all ? 'no hosts' : 'no active hosts (--all shows deactivated ones too)');
  for (const h of list)
    ctx.out(`${h.id}  ${h.entitlementId}  ${h.hostname}  licence ${h.licenseId}  since ${h.activatedAt}${h.revokedAt ? `  REVOKED ${h.revokedAt}` : h.deactivatedAt ? `  deactivated ${h.deactivatedAt}` : ''}`);
  printResult(ctx, { hosts: list });
}

export async function revoke(ctx: Ctx, o: Conn & { entitlement?: string; license?: string; host?: string }): Promise<void> {
  const given = [o.entitlement !== undefined && { entitlementId: o.entitlement }, o.license !== undefined && { licenseId: o.license }, o.host !== undefined && { hostId: o.host }].filter(Boolean);
  if (given.length !== 1) throw new MlicError('USAGE', 'revoke one thing: --entitlement ID, --license ID or --host ID');
  const r = await call<{ revoked: string[]; serial: number }>(o, 'POST', 'v1/revocations', given[0]);
  ctx.note(r.revoked.length ? `revoked ${r.revoked.length} licence(s); the revocation list is at serial ${r.serial}` : `nothing new to revoke (the revocation list stays at serial ${r.serial})`);
  for (const id of r.revoked) ctx.out(id);
  printResult(ctx, r);
}

/** Posts a deactivation a host wrote offline (`mlic deactivate -o FILE`): frees its slot. */
export async function deactivate(ctx: Ctx, file: string, o: Conn): Promise<void> {
  const text = await readTextFile(file, { maxBytes: 4096, what: 'deactivation' });
  const r = await call<{ hostId: string; revoked: string[]; already: boolean }>(o, 'POST', 'v1/deactivations', { deactivation: text });
  ctx.note(r.already ? `host ${r.hostId} was already deactivated` : `deactivated host ${r.hostId}: its slot is free; ${r.revoked.length} licence(s) revoked`);
  printResult(ctx, { hostId: r.hostId, revoked: r.revoked, already: r.already });
}

type Summary = UsageSummary & { fleet: FleetUsage[] };

export async function usage(ctx: Ctx, o: Conn & { entitlement?: string; period?: string; upload?: string[] }): Promise<void> {
  if (o.period !== undefined && !/^\d{4}-(0[1-9]|1[0-2])$/.test(o.period)) throw new MlicError('USAGE', `--period must be a month like 2026-11, got '${o.period}'`);
  if (o.upload) {
    const uploaded: StoredReport[] = [];
    for (const f of o.upload) {
      const report = await readTextFile(f, { maxBytes: MAX_INPUT.report, what: 'usage report' });
      const r = await call<StoredReport>(o, 'POST', 'v1/usage-reports', { report });
      ctx.out(`${f}: ${r.already ? 'already stored' : 'stored'} (${r.period}, licence ${r.licenseId})${r.problem ? `: FLAGGED: ${r.problem}` : ''}`);
      uploaded.push(r);
    }
    printResult(ctx, { uploaded });
    return;
  }
  const q = [...(o.entitlement ? [`entitlement=${encodeURIComponent(o.entitlement)}`] : []), ...(o.period ? [`period=${o.period}`] : [])];
  const r = await call<Summary>(o, 'GET', `v1/usage${q.length ? `?${q.join('&')}` : ''}`);
  if (r.totals.length === 0) ctx.note('no usage reports');
  for (const t of r.totals)
    ctx.out(`${t.entitlementId}  ${t.period}  ${t.metric}${t.feature ? ` [${t.feature}]` : ''}  ${t.quantity}${t.overageQuantity ? ` (overage ${t.overageQuantity})` : ''}${t.forfeitedQuantity ? ` (forfeited ${t.forfeitedQuantity})` : ''}  from ${t.reports} report(s)`);
  for (const rep of r.reports.filter((x) => x.problem)) ctx.note(`flagged: ${rep.period} licence ${rep.licenseId} (host ${rep.hostId}): ${rep.problem}`);
  // fleet meters: the server's own count, and any difference from what the hosts' ledgers report
  for (const f of r.fleet)
    ctx.out(
      `${f.entitlementId}  ${f.period}  ${f.metric} (fleet)  granted ${f.net} of ${f.limit}${f.overage ? ` (overage ${f.overage})` : ''}${f.outstanding ? `, ${f.outstanding} held by hosts now` : ''}${f.reported !== undefined ? `; hosts report ${f.reported} used${f.difference ? ` (difference ${f.difference > 0 ? '+' : ''}${f.difference})` : ', no difference'}` : ''}`,
    );
  printResult(ctx, r);
}
