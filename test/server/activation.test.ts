/**
 * Online activation against real server processes: the CLI end to end, maxHosts exact under 200
 * concurrent activations (two servers on one PostgreSQL), re-activation keeps its slot, and every
 * refusal has its code. Checked against the database's own rows, not only the answers.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import BetterSqlite3 from 'better-sqlite3';
import { encodeSecretKey, publicKeyFileText, type VendorKey } from '../../src/keys/vendor.js';
import { createActivationRequest } from '../../src/host/licences.js';
import { mlic } from '../cli/run.js';
import { key, tmp } from '../helpers.js';
import { fakeHost } from '../license/hosts.js';
import { KINDS, freshServerPlace, type Kind } from './databases.js';
import { startServer, stop, type Running } from './process.js';

async function activeHosts(kind: Kind, dataDir: string, url: string | undefined, entitlementId: string): Promise<number> {
  const sql = 'SELECT COUNT(*) AS n FROM hosts WHERE entitlement_id = $1 AND deactivated_at IS NULL';
  if (kind === 'sqlite') {
    const db = new BetterSqlite3(join(dataDir, 'mlic.db'), { readonly: true });
    try {
      return Number((db.prepare(sql.replace('$1', '?')).get(entitlementId) as { n: number }).n);
    } finally {
      db.close();
    }
  }
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return Number((await c.query(sql, [entitlementId])).rows[0].n);
  } finally {
    await c.end();
  }
}

async function entitle(s: Running, body: Record<string, unknown>): Promise<{ id: string; licenseKey: string }> {
  const r = await fetch(`${s.url}/v1/entitlements`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.first.adminToken as string}`, 'content-type': 'application/json' },
    body: JSON.stringify({ customer: 'globex', model: 'resnet', terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z' }, ...body }),
  });
  expect(r.status).toBe(201);
  const j = (await r.json()) as { entitlement: { id: string }; licenseKey: string };
  return { id: j.entitlement.id, licenseKey: j.licenseKey };
}

const post = (s: Running, licenseKey: string, request: string) =>
  fetch(`${s.url}/v1/activations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ licenseKey, request }) });

describe.each(KINDS)('online activation on %s', (kind) => {
  let vendor: VendorKey;
  let keyFile: string;
  let pubFile: string;
  let place: { dataDir: string; url: string | undefined };
  let servers: Running[] = [];
  beforeAll(async () => {
    vendor = key('acme');
    const d = await tmp();
    keyFile = join(d, 'acme.key');
    pubFile = join(d, 'acme.pub');
    await writeFile(keyFile, await encodeSecretKey(vendor, undefined), { mode: 0o600 });
    await writeFile(pubFile, publicKeyFileText(vendor));
    place = await freshServerPlace(kind);
    const db = place.url ? ['--database', place.url] : [];
    servers.push(await startServer(['--data', place.dataDir, ...db, '--key', keyFile]));
    // PostgreSQL: a second server process on the same database
    if (kind === 'postgres') servers.push(await startServer(['--data', join(await tmp(), 'second'), ...db, '--key', keyFile]));
  });
  afterAll(async () => {
    for (const s of servers) expect(await stop(s)).toBe(0);
    servers = [];
  });

  it('mlic activate --online installs a host-bound licence; activating again re-issues it without another slot', async () => {
    const s = servers[0]!;
    const e = await entitle(s, { maxHosts: 1 });
    const home = join(await tmp(), 'home');
    const env = { MLIC_HOME: home };
    expect((await mlic(['trust', 'add', pubFile], { env })).code).toBe(0);
    const a = await mlic(['activate', '--online', s.url, '--license-key', e.licenseKey.toLowerCase(), '--json'], { env });
    expect(a.code, a.stdout + a.stderr).toBe(0);
    const l = await mlic(['licenses', '--json'], { env });
    expect(l.json.result.licenses).toHaveLength(1);
    expect(l.json.result.licenses[0].status).toBe('ok');
    expect(l.json.result.licenses[0].license.host.binding).toBe('host');
    const again = await mlic(['activate', '--online', s.url, '--license-key', e.licenseKey, '--json'], { env });
    expect(again.code, again.stdout).toBe(0);
    expect(await activeHosts(kind, place.dataDir, place.url, e.id)).toBe(1);
    // another host: the one slot is taken
    const other = await mlic(['activate', '--online', s.url, '--license-key', e.licenseKey, '--json'], { env: { MLIC_HOME: join(await tmp(), 'h2') } });
    expect(other.code).toBe(1);
    expect(other.json.error.code).toBe('HOST_LIMIT_REACHED');
  });

  it(`200 concurrent activations against maxHosts 50 from distinct hosts activate exactly 50${kind === 'postgres' ? ', across two server processes' : ''}`, async () => {
    const e = await entitle(servers[0]!, { maxHosts: 50 });
    const requests: string[] = [];
    for (let i = 0; i < 200; i++) {
      const h = await fakeHost(`h${i}`);
      requests.push(JSON.stringify((await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe() })).request));
    }
    const answers = await Promise.all(requests.map((r, i) => post(servers[i % servers.length]!, e.licenseKey, r).then(async (res) => ({ status: res.status, body: (await res.json()) as { error?: { code: string } } }))));
    expect(answers.filter((a) => a.status === 201)).toHaveLength(50);
    const refused = answers.filter((a) => a.status !== 201);
    expect(refused.every((a) => a.status === 403 && a.body.error?.code === 'HOST_LIMIT_REACHED')).toBe(true);
    expect(await activeHosts(kind, place.dataDir, place.url, e.id)).toBe(50);
    // one of the 50 activating again keeps its slot
    const winner = requests[answers.findIndex((a) => a.status === 201)]!;
    expect((await post(servers[0]!, e.licenseKey, winner)).status).toBe(200);
    expect(await activeHosts(kind, place.dataDir, place.url, e.id)).toBe(50);
  }, 120_000);

  it('refusals carry their codes: a mistyped key, an unknown key, a tampered request, a region outside the terms', async () => {
    const s = servers[0]!;
    const e = await entitle(s, { maxHosts: 5, terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z', regions: ['EU'] } });
    const h = await fakeHost('r');
    const de = JSON.stringify((await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe(), region: 'DE' })).request);
    const h2 = await fakeHost('us');
    const us = JSON.stringify((await createActivationRequest({ stateDir: h2.stateDir, hostProbe: h2.probe(), region: 'US' })).request);
    const typo = e.licenseKey.slice(0, -2) + (e.licenseKey.at(-2) === 'A' ? 'B' : 'A') + e.licenseKey.at(-1);
    const cases: [string, string, number, string][] = [
      [typo, de, 400, 'FORMAT_INVALID'],
      ['MLIC-00000-00000-00000-00000', de, 403, 'NO_LICENSE'],
      [e.licenseKey, de.replace('"hostname":"r"', '"hostname":"x"'), 403, 'SIGNATURE_INVALID'],
      [e.licenseKey, us, 403, 'REGION_NOT_ALLOWED'],
      [e.licenseKey, '{"not":"a request"}', 400, 'FORMAT_INVALID'],
    ];
    for (const [k, r, status, code] of cases) {
      const res = await post(s, k, r);
      const b = (await res.json()) as { error: { code: string } };
      expect([res.status, b.error.code], code).toEqual([status, code]);
    }
    expect((await post(s, e.licenseKey, de)).status).toBe(201);
  });
});

describe('a server without the vendor key', () => {
  it('answers activation with 503 IO_ERROR, and says why', async () => {
    const s = await startServer(['--data', join(await tmp(), 'd')]);
    try {
      const res = await post(s, 'MLIC-00000-00000-00000-00000', '{}');
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'IO_ERROR', message: expect.stringContaining('vendor key') });
    } finally {
      expect(await stop(s)).toBe(0);
    }
  });
});
