/**
 * mlic admin: the licence server's admin API from the command line. The server and token come
 * from --server / --token or MLIC_SERVER / MLIC_ADMIN_TOKEN (the environment keeps the token out
 * of the process list).
 */
import { ERROR_CODES, MlicError, type ErrorCode } from '../../errors.js';
import { isoSeconds } from '../../format/fields.js';
import { parseMatch, parseMeter } from '../../license/issue.js';
import type { EntitlementInput, EntitlementTerms } from '../../server/entitlements.js';
import { printResult, type Ctx } from '../output.js';
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
  let url: URL;
  try {
    url = new URL(path, server.endsWith('/') ? server : `${server}/`);
  } catch {
    throw new MlicError('USAGE', `--server ${server}: not a URL`);
  }
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
    throw new MlicError('IO_ERROR', `cannot reach the licence server at ${url.origin}: ${cause}`);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new MlicError('IO_ERROR', `the server at ${url.origin} answered ${res.status} with something that is not JSON`);
  }
  if (!res.ok) {
    const err = (json as { error?: { code?: string; message?: string; hint?: string } }).error ?? {};
    const code: ErrorCode = err.code === 'NOT_FOUND' ? 'IO_NOT_FOUND' : ERROR_CODES.has(err.code ?? '') ? (err.code as ErrorCode) : 'IO_ERROR';
    throw new MlicError(code, `the server said ${res.status}: ${err.message ?? 'no message'}`, err.hint ? { hint: err.hint } : {});
  }
  return json as T;
}

export interface CreateOpts extends Conn, TermsOpts {
  customer: string;
  model: string;
  maxHosts: string;
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
    ...(o.meter?.length ? { meters: o.meter.map(parseMeter) } : {}),
    ...(o.region?.length ? { regions: o.region } : {}),
    ...(o.requireWatermark ? { requireWatermark: true } : {}),
  };
  return { customer: o.customer, model: o.model, maxHosts, terms };
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

export async function entitlementList(ctx: Ctx, o: Conn & { customer?: string }): Promise<void> {
  const r = await call<{ entitlements: EntitlementView[] }>(o, 'GET', `v1/entitlements${o.customer ? `?customer=${encodeURIComponent(o.customer)}` : ''}`);
  if (r.entitlements.length === 0) ctx.note('no entitlements');
  for (const e of r.entitlements) ctx.out(`${e.id}  ${e.customer}  ${e.model}  max ${e.maxHosts} hosts  ${e.createdAt}${e.revokedAt ? `  REVOKED ${e.revokedAt}` : ''}`);
  printResult(ctx, r);
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
