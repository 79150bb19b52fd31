/** The admin API for entitlements, through the server's full HTTP pipeline (fastify inject), on both databases. */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/server/app.js';
import { type Database } from '../../src/server/db/index.js';
import { createAdminToken } from '../../src/server/tokens.js';
import { licenseKeyHash, normalizeLicenseKey } from '../../src/server/license-key.js';
import { KINDS, freshDatabase } from './databases.js';

const good = {
  customer: 'acme-gmbh',
  model: 'resnet',
  maxHosts: 5,
  terms: { versions: { policy: 'range', range: '^2' }, expires: '2027-12-31T00:00:00Z', tier: 'pro', features: ['batch'], meters: [{ metric: 'inferences', limit: 1000000, period: 'month' }], regions: ['EU'] },
};

describe.each(KINDS)('entitlements API on %s', (kind) => {
  let db: Database;
  let app: FastifyInstance;
  let token: string;
  const logs: string[] = [];
  beforeAll(async () => {
    ({ db, token } = await freshDatabase(kind));
    app = await buildApp({ db, log: (l) => logs.push(l) });
  });
  afterAll(async () => {
    await app?.close();
    await db?.close();
  });
  const call = (method: 'GET' | 'POST', url: string, body?: unknown, as: string | null = token) =>
    app.inject({
      method,
      url,
      headers: { ...(as ? { authorization: `Bearer ${as}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { payload: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });

  it('checks the token before it reads a body: without one, even a malformed body or query is 401', async () => {
    for (const [method, url, body] of [['POST', '/v1/entitlements', {}], ['POST', '/v1/entitlements', '{bad'], ['GET', '/v1/entitlements?foo=1', undefined], ['GET', '/v1/entitlements/xyz', undefined]] as const) {
      const r = await call(method, url, body, null);
      expect(r.statusCode, `${method} ${url}`).toBe(401);
      expect(JSON.stringify(r.json())).not.toMatch(/customer|pattern|foo/);
    }
    // the scheme is case-insensitive (RFC 7235)
    expect((await app.inject({ method: 'GET', url: '/v1/entitlements', headers: { authorization: `bearer ${token}` } })).statusCode).toBe(200);
  });

  it('needs a live admin token: none, a wrong one or a revoked one is 401 UNAUTHORIZED', async () => {
    for (const auth of [null, 'mlat_0000000000000000_' + 'A'.repeat(43), token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A')]) {
      const r = await call('GET', '/v1/entitlements', undefined, auth);
      expect(r.statusCode).toBe(401);
      expect(r.json().error.code).toBe('UNAUTHORIZED');
    }
    const t2 = await createAdminToken(db, 'soon revoked', 1_800_000_000);
    expect((await call('GET', '/v1/entitlements', undefined, t2.token)).statusCode).toBe(200);
    await db.run('UPDATE admin_tokens SET revoked_at = ? WHERE id = ?', [1_800_000_001, t2.id]);
    expect((await call('GET', '/v1/entitlements', undefined, t2.token)).statusCode).toBe(401);
  });

  it('creates an entitlement and returns its licence key once; the database keeps only the key hash', async () => {
    const r = await call('POST', '/v1/entitlements', good);
    expect(r.statusCode).toBe(201);
    const { entitlement, licenseKey } = r.json() as { entitlement: { id: string; customer: string; maxHosts: number; terms: unknown }; licenseKey: string };
    expect(normalizeLicenseKey(licenseKey)).toBe(licenseKey);
    expect(entitlement).toMatchObject({ customer: 'acme-gmbh', model: 'resnet', maxHosts: 5, terms: good.terms });
    expect(entitlement.id).toMatch(/^ent_[0-9a-f]{16}$/);
    const rows = JSON.stringify(await db.all('SELECT * FROM entitlements'));
    expect(rows).not.toContain(licenseKey);
    expect(rows).toContain(licenseKeyHash(licenseKey));
    const got = await call('GET', `/v1/entitlements/${entitlement.id}`);
    expect(got.json().entitlement).toEqual(r.json().entitlement);
    expect(JSON.stringify(got.json())).not.toContain(licenseKey);
    await call('POST', '/v1/entitlements', { ...good, customer: 'other-co' });
    const mine = (await call('GET', '/v1/entitlements?customer=acme-gmbh')).json().entitlements as { customer: string }[];
    expect(mine.length).toBeGreaterThanOrEqual(1);
    expect(mine.every((e) => e.customer === 'acme-gmbh')).toBe(true);
    expect((await call('GET', '/v1/entitlements/ent_0000000000000000')).statusCode).toBe(404);
  });

  it('admin tokens: create (shown once), list (never the secret), revoke; the last live token is never revoked, even by two revocations at once', async () => {
    const made = await call('POST', '/v1/admin-tokens', { name: 'pipeline' });
    expect(made.statusCode).toBe(201);
    const t = made.json() as { id: string; token: string };
    expect(t.token).toMatch(/^mlat_/);
    expect((await call('GET', '/v1/entitlements', undefined, t.token)).statusCode).toBe(200);
    const listed = await call('GET', '/v1/admin-tokens');
    expect(listed.json().tokens.some((x: { id: string }) => x.id === t.id)).toBe(true);
    expect(listed.body).not.toContain(t.token.slice(22));
    expect((await call('POST', `/v1/admin-tokens/${t.id}/revoke`, {})).json()).toMatchObject({ id: t.id, revoked: true });
    expect((await call('GET', '/v1/entitlements', undefined, t.token)).statusCode).toBe(401);
    expect((await call('POST', '/v1/admin-tokens/0000000000000000/revoke', {})).statusCode).toBe(404);
    expect((await call('POST', '/v1/admin-tokens', { name: 'x', extra: 1 })).statusCode).toBe(400);
    // revoke every live token at once, each call with its own token: one must stay
    await call('POST', '/v1/admin-tokens', { name: 'second' });
    const live = ((await call('GET', '/v1/admin-tokens')).json().tokens as { id: string; revokedAt?: string }[]).filter((x) => !x.revokedAt);
    expect(live.length).toBeGreaterThanOrEqual(2);
    const results = await Promise.all(live.map((x) => call('POST', `/v1/admin-tokens/${x.id}/revoke`, {})));
    // each call either revoked (200), was refused as the last (400), or came with a token revoked meanwhile (401)
    expect(results.every((r) => [200, 400, 401].includes(r.statusCode))).toBe(true);
    for (const r of results.filter((x) => x.statusCode === 400)) expect(r.json().error.message).toContain('last live admin token');
    const rows = await db.all<{ revoked_at: number | null }>('SELECT revoked_at FROM admin_tokens');
    expect(rows.filter((r) => r.revoked_at === null)).toHaveLength(1);
  });

  it('refuses bad bodies with 4xx and an mlic code, and stays up: unknown fields, wrong types, bounds, terms no licence could have, oversized', async () => {
    const bad: [unknown, RegExp?][] = [
      [{ ...good, extra: 1 }],
      [{ ...good, terms: { ...good.terms, surprise: true } }],
      [{ ...good, maxHosts: '5' }],
      [{ ...good, maxHosts: 0 }],
      [{ ...good, customer: '' }],
      [{ ...good, terms: { ...good.terms, versions: { policy: 'pin', version: '2.1.0' } } }],
      [{ ...good, terms: { ...good.terms, versions: { policy: 'range', range: 'not a range' } } }, /would not make a licence/],
      [{ ...good, terms: { versions: { policy: 'rolling' } } }, /would not make a licence/],
      [{ ...good, terms: { ...good.terms, expires: 'sometime-later' } }],
      [{ ...good, terms: { ...good.terms, expires: '2030-01-01T00:00' } }],
      [{ ...good, terms: { ...good.terms, expires: 'Tue, 01 Jan 2030 00:00:00 GMT' } }],
      [{ ...good, terms: { ...good.terms, expires: '2030-02-31T00:00:00Z' } }, /not a date/],
      [{ ...good, terms: { ...good.terms, meters: [{ metric: 'x', limit: -1, period: 'month' }] } }],
      ['{"customer":'],
      [[1, 2, 3]],
    ];
    for (const [body, msg] of bad) {
      const r = await call('POST', '/v1/entitlements', body);
      expect(r.statusCode, JSON.stringify(body)).toBe(400);
      expect(r.json().error.code, JSON.stringify(body)).toBe('FORMAT_INVALID');
      if (msg) expect(r.json().error.message).toMatch(msg);
    }
    const huge = await call('POST', '/v1/entitlements', { ...good, customer: 'x'.repeat(70_000) });
    expect(huge.statusCode).toBe(413);
    expect((await call('GET', '/healthz')).statusCode).toBe(200);
    expect(logs.join('\n')).not.toContain(token);
  });
});
