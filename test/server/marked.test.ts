/**
 * Leak tracing with the licence server: an entitlement for marked bundles, whose licences issued
 * online carry `marked: true`; the admin's list of issued licences (GET /v1/licenses); and
 * `mlic trace --server`, which takes the server's licences as candidates, with no directory.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mlic } from '../cli/run.js';
import { tmp } from '../helpers.js';
import { publicKeyFileText } from '../../src/keys/vendor.js';
import { parseLicenseText } from '../../src/format/license.js';
import { attacks, readModel, synthModel, writeSafetensors } from '../mark/synth.js';
import { vendorServer, type VendorServer } from './online.js';
import { stop } from './process.js';

interface Listed {
  id: string;
  entitlementId: string;
  hostId: string;
  issuedAt: string;
  revokedAt: string | null;
  text: string;
}

let srv: VendorServer;
let dir: string;
let keyFile: string;
let token: string;
let vendorEnv: Record<string, string>;
let hostEnv: Record<string, string>;
const ids: { marked?: string; plain?: string; markedEnt?: string; plainEnt?: string; other?: string } = {};

const run = (args: string[], env = vendorEnv) => mlic(args, { cwd: dir, env });
const list = async (query: string, auth: string | null = token) => {
  const r = await fetch(`${srv.s.url}/v1/licenses${query}`, { headers: auth ? { authorization: `Bearer ${auth}` } : {} });
  return { status: r.status, body: (await r.json()) as { licenses: Listed[]; next: string | null; error?: { code: string } } };
};

beforeAll(async () => {
  srv = await vendorServer();
  keyFile = srv.args[srv.args.indexOf('--key') + 1]!;
  token = srv.s.first.adminToken as string;
  dir = await tmp('mlic-marked-');
  vendorEnv = { MLIC_HOME: join(dir, 'vendor-home') };
  hostEnv = { MLIC_HOME: join(dir, 'host-home') };
  await writeFile(join(dir, 'vendor.pub'), publicKeyFileText(srv.vendor));
  await writeSafetensors(join(dir, 'model', 'model.safetensors'), synthModel(7, 160, 4));
  const p = await run(['pack', 'model', '--name', 'llm', '--version', '1.2.0', '--key', keyFile, '-o', 'llm-1.2.0.mlb']);
  expect(p.code, p.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  if (srv) expect(await stop(srv.s)).toBe(0);
});

describe('licences for marked bundles from the licence server', () => {
  it('an entitlement created with --marked issues licences with marked: true online; one without does not', async () => {
    const e = await run(['admin', 'entitlement', 'create', '--server', srv.s.url, '--token', token, '--customer', 'acme', '--model', 'llm', '--versions', '^1', '--days', '30', '--max-hosts', '4', '--marked', '--json']);
    expect(e.code, e.stderr).toBe(0);
    ids.markedEnt = e.json.result.entitlement.id as string;
    const shown = await fetch(`${srv.s.url}/v1/entitlements/${ids.markedEnt}`, { headers: { authorization: `Bearer ${token}` } });
    expect(((await shown.json()) as { entitlement: { terms: { marked?: boolean } } }).entitlement.terms.marked).toBe(true);

    // a host activates online (the binary, on this machine's hardware)
    expect((await run(['trust', 'add', 'vendor.pub'], hostEnv)).code).toBe(0);
    const a = await run(['activate', '--online', srv.s.url, '--license-key', e.json.result.licenseKey as string, '--json'], hostEnv);
    expect(a.code, a.stderr).toBe(0);
    ids.marked = a.json.result.licenseId as string;
    const text = await readFile(join(hostEnv.MLIC_HOME!, 'licenses', `${ids.marked}.lic`), 'utf8');
    const payload = parseLicenseText(text).payload;
    expect(payload.marked).toBe(true);
    expect(payload).toMatchObject({ model: 'llm', customer: 'acme', host: { binding: 'host' } });

    // a second host of the same entitlement: another candidate, never implicated
    await srv.host(e.json.result.licenseKey as string, 'other');

    // an entitlement without: its licence is not for marked bundles
    const plain = await srv.entitle({ customer: 'globex', model: 'llm', terms: { versions: { policy: 'range', range: '^1' }, perpetual: true } });
    ids.plainEnt = plain.id;
    await srv.host(plain.licenseKey, 'plain');
    const hosts = await fetch(`${srv.s.url}/v1/hosts?entitlement=${plain.id}`, { headers: { authorization: `Bearer ${token}` } });
    ids.plain = ((await hosts.json()) as { hosts: { licenseId: string }[] }).hosts[0]!.licenseId;
    expect(ids.plain).toMatch(/^[0-9a-f]{32}$/);

    // terms.marked must be a boolean
    const bad = await fetch(`${srv.s.url}/v1/entitlements`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ customer: 'x', model: 'llm', maxHosts: 1, terms: { versions: { policy: 'rolling' }, perpetual: true, marked: 'yes' } }),
    });
    expect(bad.status).toBe(400);
  }, 120_000);

  it('GET /v1/licenses lists the issued licences by model, marked and entitlement, pages, and wants the admin token', async () => {
    const m = await list('?model=llm&marked=true');
    expect(m.status).toBe(200);
    expect(m.body.next).toBeNull();
    expect(m.body.licenses).toHaveLength(2);
    const mine = m.body.licenses.find((l) => l.id === ids.marked)!;
    expect(mine).toMatchObject({ entitlementId: ids.markedEnt, hostId: expect.stringMatching(/^host_[0-9a-f]{16}$/), revokedAt: null });
    expect(mine.issuedAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(mine.text).toBe(await readFile(join(hostEnv.MLIC_HOME!, 'licenses', `${ids.marked}.lic`), 'utf8'));
    ids.other = m.body.licenses.find((l) => l.id !== ids.marked)!.id;
    expect(m.body.licenses.map((l) => l.id)).not.toContain(ids.plain);
    for (const l of m.body.licenses) expect(parseLicenseText(l.text).payload.marked).toBe(true);

    const unmarked = await list('?model=llm&marked=false');
    expect(unmarked.body.licenses.map((l) => l.id)).toEqual([ids.plain]);
    expect((await list(`?entitlement=${ids.plainEnt}`)).body.licenses.map((l) => l.id)).toEqual([ids.plain]);
    expect((await list('?model=resnet&marked=true')).body.licenses).toEqual([]);

    // every licence, one a page
    const seen: string[] = [];
    let after: string | null = null;
    do {
      const r = await list(`?limit=1${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      expect(r.status).toBe(200);
      expect(r.body.licenses.length).toBeLessThanOrEqual(1);
      seen.push(...r.body.licenses.map((l) => l.id));
      after = r.body.next;
    } while (after);
    expect(seen.sort()).toEqual([ids.marked, ids.other, ids.plain].sort());

    const none = await list('?model=llm&marked=true', null);
    expect(none.status).toBe(401);
    expect(none.body.error?.code).toBe('UNAUTHORIZED');
    expect((await list('?model=llm&marked=true', 'mlat_0000000000000000_nottherealtoken')).status).toBe(401);
    expect((await list('?marked=yes')).status).toBe(400);
    expect((await list('?after=12.host_0123456789abcdef')).status).toBe(400);
  });

  it('mlic trace --server takes the server’s licences for marked bundles as candidates and names the leaker, with no --licenses directory', async () => {
    const text = (await list('?model=llm&marked=true')).body.licenses.find((l) => l.id === ids.marked)!.text;
    await mkdir(join(dir, 'issued'));
    await writeFile(join(dir, 'issued', 'acme.lic'), text);
    const m = await run(['mark', 'llm-1.2.0.mlb', '--license', 'issued/acme.lic', '--key', keyFile, '-o', 'llm-acme.mlb', '--json']);
    expect(m.code, m.stderr).toBe(0);
    expect(m.json.result.licenseId).toBe(ids.marked);
    // the customer's host opens its marked bundle, and the weights leak (cast to float16, renamed)
    const u = await run(['unpack', 'llm-acme.mlb', '-o', 'leak'], hostEnv);
    expect(u.code, u.stderr).toBe(0);
    await writeSafetensors(join(dir, 'leaked.safetensors'), attacks.rename(attacks.castF16(await readModel(join(dir, 'leak')))), { dtype: 'F16' });

    const t = await run(['trace', 'leaked.safetensors', '--original', 'llm-1.2.0.mlb', '--key', keyFile, '--server', srv.s.url, '--token', token, '--json']);
    expect(t.code, t.stderr).toBe(0);
    expect(t.json.result.implicated).toEqual([{ licenseId: ids.marked, customer: 'acme' }]);
    expect(t.json.result.candidates.map((c: { licenseId: string }) => c.licenseId).sort()).toEqual([ids.marked, ids.other].sort());
    expect(t.json.result.skipped).toEqual({});

    // the token from MLIC_ADMIN_TOKEN; a directory as well: a licence in both is one candidate
    const both = await run(['trace', 'leaked.safetensors', '--original', 'llm-1.2.0.mlb', '--key', keyFile, '--server', srv.s.url, '--licenses', 'issued', '--json'], { ...vendorEnv, MLIC_ADMIN_TOKEN: token });
    expect(both.code, both.stderr).toBe(0);
    expect(both.json.result.implicated).toEqual([{ licenseId: ids.marked, customer: 'acme' }]);
    expect(both.json.result.candidates).toHaveLength(2);
    expect(both.json.result.skipped).toEqual({ duplicate: 1 });
  }, 120_000);

  it('mlic trace wants --licenses or --server, and a token with --server', async () => {
    const neither = await run(['trace', 'leaked.safetensors', '--original', 'llm-1.2.0.mlb', '--key', keyFile, '--json']);
    expect(neither.code).toBe(2);
    expect(neither.json.error.code).toBe('USAGE');
    const noToken = await run(['trace', 'leaked.safetensors', '--original', 'llm-1.2.0.mlb', '--key', keyFile, '--server', srv.s.url, '--json']);
    expect(noToken.code).toBe(2);
    expect(noToken.json.error.code).toBe('USAGE');
    const wrong = await run(['trace', 'leaked.safetensors', '--original', 'llm-1.2.0.mlb', '--key', keyFile, '--server', srv.s.url, '--token', 'mlat_0000000000000000_nottherealtoken', '--json']);
    expect(wrong.code).not.toBe(0);
    expect(wrong.json.error.code).toBe('UNAUTHORIZED');
  }, 60_000);
});
