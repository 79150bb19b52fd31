/**
 * Deactivation and revocation against real server processes on both databases: a host frees its
 * slot (online, or by a signed file the admin posts) and its licence is revoked; the admin revokes
 * a licence, a host or an entitlement; hosts install the signed list (sync, file) and refuse a
 * revoked licence with LICENSE_REVOKED; an older list is ROLLBACK_REFUSED, a modified one
 * SIGNATURE_INVALID. Checked against the database's rows as well as the answers.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createActivationRequest, activateLicense } from '../../src/host/licences.js';
import { makeDeactivation } from '../../src/host/deactivate.js';
import { signDeactivation } from '../../src/format/revocation.js';
import { mlic } from '../cli/run.js';
import { tmp, writeRandom } from '../helpers.js';
import { fakeHost, type FakeHost } from '../license/hosts.js';
import { KINDS, dbRows, freshServerPlace } from './databases.js';
import { startServer, stop, type Running } from './process.js';

describe.each(KINDS)('deactivation and revocation on %s', (kind) => {
  let v: string;
  let place: { dataDir: string; url: string | undefined };
  let servers: Running[] = [];
  let adminEnv: Record<string, string>;
  const rows = <T>(sql: string, params: unknown[] = []) => dbRows<T>(kind, place.dataDir, place.url, sql, params);

  beforeAll(async () => {
    v = await tmp('mlic-vendor-');
    expect((await mlic(['keygen', '-o', v, '--name', 'acme', '--unencrypted'])).code).toBe(0);
    const src = join(v, 'model');
    await mkdir(src);
    await writeRandom(join(src, 'weights.bin'), 100_000, 5);
    const p = await mlic(['pack', src, '--name', 'resnet', '--version', '2.1.0', '--release-date', '2026-03-01', '--key', join(v, 'acme.key'), '-o', join(v, 'm.mlb')]);
    expect(p.code, p.stderr).toBe(0);
    place = await freshServerPlace(kind);
    const db = place.url ? ['--database', place.url] : [];
    servers.push(await startServer(['--data', place.dataDir, ...db, '--key', join(v, 'acme.key')]));
    if (kind === 'postgres') servers.push(await startServer(['--data', join(await tmp(), 'second'), ...db, '--key', join(v, 'acme.key')]));
    adminEnv = { MLIC_SERVER: servers[0]!.url, MLIC_ADMIN_TOKEN: servers[0]!.first.adminToken as string };
  });
  afterAll(async () => {
    for (const s of servers) expect(await stop(s)).toBe(0);
    servers = [];
  });

  const entitle = async (maxHosts: number) => {
    const r = await mlic(['admin', 'entitlement', 'create', '--customer', 'globex', '--model', 'resnet', '--versions', '^2', '--days', '365', '--max-hosts', String(maxHosts), '--json'], { env: adminEnv });
    expect(r.code, r.stderr).toBe(0);
    return { id: r.json.result.entitlement.id as string, key: r.json.result.licenseKey as string };
  };
  const cliHost = async (name: string) => {
    const env = { MLIC_HOME: join(await tmp(`mlic-${name}-`), 'home') };
    expect((await mlic(['trust', 'add', join(v, 'acme.pub')], { env })).code).toBe(0);
    return env;
  };
  const unpack = async (env: Record<string, string>) => mlic(['unpack', join(v, 'm.mlb'), '-o', join(await tmp(), 'out'), '--json'], { env });

  it('mlic deactivate --online frees the slot, removes the licence and revokes it: a copy kept back is refused', async () => {
    const e = await entitle(1);
    const a = await cliHost('a');
    const act = await mlic(['activate', '--online', servers[0]!.url, '--license-key', e.key, '--json'], { env: a });
    expect(act.code, act.stderr).toBe(0);
    const licenseId = act.json.result.licenseId as string;
    const kept = await readFile(join(a.MLIC_HOME, 'licenses', `${licenseId}.lic`), 'utf8');
    expect((await unpack(a)).code).toBe(0);
    const b = await cliHost('b');
    expect((await mlic(['activate', '--online', servers[0]!.url, '--license-key', e.key, '--json'], { env: b })).json.error.code).toBe('HOST_LIMIT_REACHED');

    const d = await mlic(['deactivate', '--online', '--json'], { env: a }); // the server this host activated with
    expect(d.code, d.stderr).toBe(0);
    expect(d.json.result).toMatchObject({ licenseId, already: false, revoked: [licenseId] });
    expect((await mlic(['licenses', '--json'], { env: a })).json.result.licenses).toEqual([]);
    // the slot is free: another host takes it (through the second server on PostgreSQL)
    const onB = await mlic(['activate', '--online', servers.at(-1)!.url, '--license-key', e.key, '--json'], { env: b });
    expect(onB.code, onB.stderr).toBe(0);
    // the copy kept back: refused on this host, which has the list that revokes it
    const keptFile = join(await tmp(), 'kept.lic');
    await writeFile(keptFile, kept);
    const back = await mlic(['activate', keptFile, '--json'], { env: a });
    expect([back.code, back.json.error.code]).toEqual([1, 'LICENSE_REVOKED']);
    // and put straight into the state directory
    await writeFile(join(a.MLIC_HOME, 'licenses', `${licenseId}.lic`), kept, { mode: 0o600 });
    const refused = await unpack(a);
    expect(refused.code).toBe(1);
    expect(refused.json.error.code).toBe('LICENSE_REVOKED');
    expect((await mlic(['licenses', '--json'], { env: a })).json.result.licenses[0].status).toBe('LICENSE_REVOKED');
    // the database: A's host row is deactivated, its licence revoked as 'deactivated'
    const [l] = await rows<{ revoke_reason: string; deactivated_at: number | null }>(
      'SELECT l.revoke_reason, h.deactivated_at FROM licenses l JOIN hosts h ON h.id = l.host_id WHERE l.id = $1',
      [licenseId],
    );
    expect(l!.revoke_reason).toBe('deactivated');
    expect(l!.deactivated_at).not.toBeNull();
    // deactivating again says so
    const again = await mlic(['deactivate', '--online'], { env: a });
    expect(again.code).toBe(0);
  }, 60_000);

  it('admin revoke --license: a host that syncs refuses it (LICENSE_REVOKED); an older list is ROLLBACK_REFUSED, a modified one SIGNATURE_INVALID', async () => {
    const e = await entitle(3);
    const c = await cliHost('c');
    const act = await mlic(['activate', '--online', servers[0]!.url, '--license-key', e.key, '--json'], { env: c });
    expect(act.code, act.stderr).toBe(0);
    const id = act.json.result.licenseId as string;
    const before = await (await fetch(`${servers[0]!.url}/v1/revocations`)).text();
    const r = await mlic(['admin', 'revoke', '--license', id, '--json'], { env: adminEnv });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.result.revoked).toEqual([id]);
    expect(r.json.result.serial).toBeGreaterThan(JSON.parse(before).payload.serial);
    // offline the host does not know yet
    expect((await unpack(c)).code).toBe(0);
    const s = await mlic(['revocations', 'sync', '--json'], { env: c });
    expect(s.code, s.stderr).toBe(0);
    expect(s.json.result).toMatchObject({ status: 'installed', serial: r.json.result.serial, revokesInstalled: [id] });
    const u = await unpack(c);
    expect([u.code, u.json.error.code]).toEqual([1, 'LICENSE_REVOKED']);
    // every server process serves the same bytes for a serial
    const lists = await Promise.all(servers.map(async (x) => (await fetch(`${x.url}/v1/revocations`)).text()));
    expect(new Set(lists).size).toBe(1);
    const dir = await tmp();
    await writeFile(join(dir, 'old.json'), before);
    const old = await mlic(['revocations', 'install', join(dir, 'old.json'), '--json'], { env: c });
    expect([old.code, old.json.error.code]).toEqual([1, 'ROLLBACK_REFUSED']);
    const list = JSON.parse(lists[0]!);
    list.payload.licenses = list.payload.licenses.filter((x: { id: string }) => x.id !== id);
    list.payload.serial += 5;
    await writeFile(join(dir, 'forged.json'), JSON.stringify(list));
    const forged = await mlic(['revocations', 'install', join(dir, 'forged.json'), '--json'], { env: c });
    expect([forged.code, forged.json.error.code]).toEqual([1, 'SIGNATURE_INVALID']);
    // the same list again: unchanged; the host's list survives
    expect((await mlic(['revocations', 'sync', '--json'], { env: c })).json.result.status).toBe('unchanged');
    expect((await mlic(['revocations', 'list', '--json'], { env: c })).json.result.lists[0].serial).toBe(r.json.result.serial);
    // removing the installed list, or putting the older one back by hand, is tampering (the clock record names the serial)
    const listFile = join(c.MLIC_HOME, 'revocations', `${JSON.parse(before).payload.vendor.keyId}.json`);
    const current = await readFile(listFile, 'utf8');
    await rm(listFile);
    const gone = await unpack(c);
    expect([gone.code, gone.json.error.code]).toEqual([1, 'STATE_TAMPERED']);
    await writeFile(listFile, before);
    expect((await unpack(c)).json.error.code).toBe('STATE_TAMPERED');
    await writeFile(listFile, current);
    expect((await unpack(c)).json.error.code).toBe('LICENSE_REVOKED');
    // revoking it again changes nothing
    const twice = await mlic(['admin', 'revoke', '--license', id, '--json'], { env: adminEnv });
    expect(twice.json.result).toEqual({ revoked: [], serial: r.json.result.serial });
  }, 60_000);

  it('admin revoke --host frees its slot and bars its key; --entitlement refuses new activations and revokes every licence', async () => {
    const e = await entitle(2);
    const hosts: FakeHost[] = [await fakeHost('r1'), await fakeHost('r2'), await fakeHost('r3')];
    const req = async (h: FakeHost) => JSON.stringify((await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe() })).request);
    const post = async (h: FakeHost) => {
      const res = await fetch(`${servers[0]!.url}/v1/activations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ licenseKey: e.key, request: await req(h) }) });
      return { status: res.status, body: (await res.json()) as { hostId: string; licenseId: string; error?: { code: string } } };
    };
    const one = await post(hosts[0]!);
    const two = await post(hosts[1]!);
    expect([one.status, two.status]).toEqual([201, 201]);
    expect((await post(hosts[2]!)).body.error?.code).toBe('HOST_LIMIT_REACHED');
    const h = await mlic(['admin', 'hosts', '--entitlement', e.id, '--json'], { env: adminEnv });
    expect(h.json.result.hosts.map((x: { id: string }) => x.id).sort()).toEqual([one.body.hostId, two.body.hostId].sort());

    const r = await mlic(['admin', 'revoke', '--host', one.body.hostId, '--json'], { env: adminEnv });
    expect(r.json.result.revoked).toEqual([one.body.licenseId]);
    const barred = await post(hosts[0]!);
    expect([barred.status, barred.body.error?.code]).toEqual([403, 'LICENSE_REVOKED']);
    expect((await post(hosts[2]!)).status).toBe(201); // the revoked host's slot is free
    const all = await mlic(['admin', 'hosts', '--entitlement', e.id, '--all', '--json'], { env: adminEnv });
    expect(all.json.result.hosts.find((x: { id: string }) => x.id === one.body.hostId).revokedAt).toBeDefined();

    const ent = await mlic(['admin', 'revoke', '--entitlement', e.id, '--json'], { env: adminEnv });
    expect(ent.json.result.revoked).toHaveLength(2); // the two live licences (the host's was revoked already)
    const list = JSON.parse(await (await fetch(`${servers[0]!.url}/v1/revocations`)).text());
    const listed = await rows<{ id: string }>('SELECT id FROM licenses WHERE entitlement_id = $1', [e.id]);
    for (const { id } of listed) expect(list.payload.licenses.map((x: { id: string }) => x.id)).toContain(id);
    const after = await post(await fakeHost('r4'));
    expect([after.status, after.body.error?.code]).toEqual([403, 'LICENSE_REVOKED']);
    expect((await mlic(['admin', 'revoke', '--host', 'host_0000000000000000', '--json'], { env: adminEnv })).json.error.code).toBe('IO_NOT_FOUND');
    expect((await mlic(['admin', 'revoke', '--host', one.body.hostId, '--license', one.body.licenseId], { env: adminEnv })).code).toBe(2);
  }, 60_000);

  it('a deactivation must be signed by the host the licence was issued to, and made after its latest activation; offline files are posted by the admin', async () => {
    const e = await entitle(2);
    const pub = await readFile(join(v, 'acme.pub'), 'utf8');
    const a = await fakeHost('da');
    const b = await fakeHost('db');
    const activateOn = async (h: FakeHost) => {
      await h.state.trustAdd(pub);
      const request = JSON.stringify((await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe() })).request);
      const res = await fetch(`${servers[0]!.url}/v1/activations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ licenseKey: e.key, request }) });
      const body = (await res.json()) as { license: string; licenseId: string; hostId: string };
      await activateLicense(body.license, { stateDir: h.stateDir, hostProbe: h.probe() });
      return body;
    };
    const la = await activateOn(a);
    await activateOn(b);
    const postD = async (d: unknown) => {
      const res = await fetch(`${servers[0]!.url}/v1/deactivations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ deactivation: JSON.stringify(d) }) });
      return { status: res.status, body: (await res.json()) as { error?: { code: string }; already?: boolean } };
    };
    // B takes A's public host key (it is in A's licence) with its own signing key: not A's slot
    const ha0 = (await a.state.loadHost())!;
    const hb0 = (await b.state.loadHost())!;
    const hijack = JSON.parse(JSON.stringify((await createActivationRequest({ stateDir: b.stateDir, hostProbe: b.probe() })).request));
    hijack.payload.hostPublicKey = Buffer.from(ha0.boxPublic).toString('base64');
    const { signRequest } = await import('../../src/license/sign.js');
    const hijackRes = await fetch(`${servers[0]!.url}/v1/activations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ licenseKey: e.key, request: JSON.stringify(signRequest(hijack.payload, hb0.signSeed)) }),
    });
    expect([hijackRes.status, ((await hijackRes.json()) as { error: { code: string } }).error.code]).toEqual([403, 'SIGNATURE_INVALID']);
    const [rowA] = await rows<{ signing_key: string }>('SELECT signing_key FROM hosts WHERE id = $1', [la.hostId]);
    expect(rowA!.signing_key).toBe(Buffer.from(ha0.signPublic).toString('base64'));
    // an open licence handle on B sees a revocation installed while it is open (within a second)
    const { loadLicense } = await import('../../src/host/handle.js');
    const { installRevocationList } = await import('../../src/host/revocations.js');
    const handle = await loadLicense({ stateDir: b.stateDir, hostProbe: b.probe(), model: 'resnet' });
    try {
      expect((await handle.validate()).valid).toBe(true);
      const lb = (await rows<{ id: string }>('SELECT license_id AS id FROM hosts WHERE host_key = $1', [Buffer.from(hb0.boxPublic).toString('base64')]))[0]!.id;
      const rv = await mlic(['admin', 'revoke', '--license', lb, '--json'], { env: adminEnv });
      expect(rv.code, rv.stderr).toBe(0);
      await installRevocationList(b.state, await (await fetch(`${servers[0]!.url}/v1/revocations`)).text());
      let r = await handle.validate();
      for (let i = 0; i < 40 && r.valid; i++) {
        await new Promise((res) => setTimeout(res, 100));
        r = await handle.validate();
      }
      expect(r).toMatchObject({ valid: false, error: 'license_revoked' });
    } finally {
      await handle.close();
    }
    // B signs a deactivation naming A's licence: refused
    const hb = (await b.state.loadHost())!;
    const b64 = (x: Uint8Array) => Buffer.from(x).toString('base64');
    const forged = signDeactivation(
      { v: 1, kind: 'mlic-deactivation', licenseId: la.licenseId, hostPublicKey: b64(hb.boxPublic), signingPublicKey: b64(hb.signPublic), createdAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z') },
      hb.signSeed,
    );
    expect(await postD(forged)).toMatchObject({ status: 403, body: { error: { code: 'SIGNATURE_INVALID' } } });
    // a modified one: its signature does not verify
    const { deactivation } = await makeDeactivation({ stateDir: a.stateDir });
    expect((await postD({ ...deactivation, payload: { ...deactivation.payload, createdAt: '2030-01-01T00:00:00Z' } })).body.error?.code).toBe('SIGNATURE_INVALID');
    // one made long before the host's activation (a replay): refused
    const ha = (await a.state.loadHost())!;
    const stale = signDeactivation({ ...deactivation.payload, createdAt: '2020-01-01T00:00:00Z' }, ha.signSeed);
    expect(await postD(stale)).toMatchObject({ status: 409, body: { error: { code: 'IO_EXISTS' } } });
    expect((await postD({ ...deactivation, payload: { ...deactivation.payload, licenseId: '0'.repeat(32) } })).status).toBe(403);
    // A's own, written offline and posted by the admin
    const dir = await tmp();
    await writeFile(join(dir, 'd.json'), JSON.stringify(deactivation));
    const ad = await mlic(['admin', 'deactivate', join(dir, 'd.json'), '--json'], { env: adminEnv });
    expect(ad.code, ad.stderr).toBe(0);
    expect(ad.json.result).toMatchObject({ hostId: la.hostId, already: false, revoked: [la.licenseId] });
    expect((await postD(deactivation)).body.already).toBe(true);
    const active = await rows<{ n: number | string }>('SELECT COUNT(*) AS n FROM hosts WHERE entitlement_id = $1 AND deactivated_at IS NULL', [e.id]);
    expect(Number(active[0]!.n)).toBe(1);
  }, 60_000);

  it(`revocations racing${kind === 'postgres' ? ' on two server processes' : ''} each get their own serial, and the list holds them all`, async () => {
    const e = await entitle(30);
    const ids: string[] = [];
    for (let i = 0; i < 24; i++) {
      const h = await fakeHost(`race${i}`);
      const request = JSON.stringify((await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe() })).request);
      const res = await fetch(`${servers[0]!.url}/v1/activations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ licenseKey: e.key, request }) });
      expect(res.status).toBe(201);
      ids.push(((await res.json()) as { licenseId: string }).licenseId);
    }
    const start = JSON.parse(await (await fetch(`${servers[0]!.url}/v1/revocations`)).text()).payload.serial as number;
    const answers = await Promise.all(
      ids.map(async (licenseId, i) => {
        const s = servers[i % servers.length]!;
        const res = await fetch(`${s.url}/v1/revocations`, { method: 'POST', headers: { authorization: `Bearer ${adminEnv.MLIC_ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ licenseId }) });
        expect(res.status).toBe(200);
        return (await res.json()) as { revoked: string[]; serial: number };
      }),
    );
    // one serial per change, all different, all past the start
    const serials = answers.map((a) => a.serial).sort((a, b) => a - b);
    expect(new Set(serials).size).toBe(ids.length);
    expect(serials[0]).toBeGreaterThan(start);
    const last = serials.at(-1)!;
    const [st] = await rows<{ serial: number | string }>('SELECT serial FROM revocation_state');
    expect(Number(st!.serial)).toBe(last);
    for (const s of servers) {
      const list = JSON.parse(await (await fetch(`${s.url}/v1/revocations`)).text());
      expect(list.payload.serial).toBe(last);
      const listed = new Set(list.payload.licenses.map((x: { id: string }) => x.id));
      for (const id of ids) expect(listed.has(id)).toBe(true);
    }
  }, 90_000);

  it('mlic deactivate without --online writes the signed file and removes the licence', async () => {
    const e = await entitle(1);
    const c = await cliHost('off');
    const act = await mlic(['activate', '--online', servers[0]!.url, '--license-key', e.key, '--json'], { env: c });
    expect(act.code, act.stderr).toBe(0);
    const out = join(await tmp(), 'deactivation.json');
    const d = await mlic(['deactivate', '-o', out, '--json'], { env: c });
    expect(d.code, d.stderr).toBe(0);
    expect((await mlic(['licenses', '--json'], { env: c })).json.result.licenses).toEqual([]);
    const ad = await mlic(['admin', 'deactivate', out, '--json'], { env: adminEnv });
    expect(ad.code, ad.stderr).toBe(0);
    expect(ad.json.result.revoked).toEqual([act.json.result.licenseId]);
    expect((await mlic(['deactivate', '--json'], { env: c })).json.error.code).toBe('NO_LICENSE');
  }, 60_000);
});
