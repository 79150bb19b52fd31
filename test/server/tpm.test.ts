/**
 * Online activation of TPM hosts: the licence server started with --tpm-ca and --require-tpm
 * verifies each request's TPM attestation before a host takes a slot, and issues licences bound
 * to that TPM. Real processes: the server, the CLI on two hosts with two software TPMs.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mlic } from '../cli/run.js';
import { tmp, writeRandom } from '../helpers.js';
import { startSwtpm, type Swtpm } from '../tpm/swtpm.js';
import { vendorServer, type VendorServer } from './online.js';
import { dbRows } from './databases.js';
import BetterSqlite3 from 'better-sqlite3';
import { createActivationRequest } from '../../src/host/licences.js';
import { fakeHost } from '../license/hosts.js';

describe('licence server: TPM-attested online activation', () => {
  let a: Swtpm;
  let b: Swtpm;
  let vs: VendorServer;
  let vdir: string;
  let model: Buffer;

  beforeAll(async () => {
    [a, b] = await Promise.all([startSwtpm('srv-a'), startSwtpm('srv-b')]);
    vs = await vendorServer(['--tpm-ca', a.caDir, '--require-tpm', '--rate-limit-key', '0', '--rate-limit-address', '0']);
    vdir = await tmp('mlic-srv-tpm-');
    await mkdir(join(vdir, 'model'));
    model = await writeRandom(join(vdir, 'model', 'w.bin'), 50_000, 4);
    const { writeFile } = await import('node:fs/promises');
    const { encodeSecretKey, publicKeyFileText } = await import('../../src/keys/vendor.js');
    await writeFile(join(vdir, 'acme.key'), await encodeSecretKey(vs.vendor, undefined), { mode: 0o600 });
    await writeFile(join(vdir, 'acme.pub'), publicKeyFileText(vs.vendor));
    const p = await mlic(['pack', join(vdir, 'model'), '--name', 'resnet', '--version', '2.0.0', '--key', join(vdir, 'acme.key'), '-o', join(vdir, 'r.mlb')]);
    expect(p.code, p.stderr).toBe(0);
  }, 240_000);
  afterAll(async () => {
    vs?.s.child.kill('SIGTERM');
    await vs?.s.exited;
    await a?.stop();
    await b?.stop();
  });

  it('a host with a trusted TPM activates and opens the bundle; no attestation, or a TPM from an untrusted maker, takes no slot', async () => {
    const e = await vs.entitle({ maxHosts: 5, terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z' } });
    const host = async (tcti?: string) => {
      const env = { MLIC_HOME: join(await tmp(), 'h'), ...(tcti ? { MLIC_TPM: tcti } : {}) };
      expect((await mlic(['trust', 'add', join(vdir, 'acme.pub')], { env })).code).toBe(0);
      return env;
    };
    const envA = await host(a.tcti);
    const ok = await mlic(['activate', '--online', vs.s.url, '--license-key', e.licenseKey, '--tpm', '--json'], { env: envA });
    expect(ok.code, ok.stderr).toBe(0);
    const lic = await readFile(join(envA.MLIC_HOME, 'licenses', `${ok.json.result.licenseId}.lic`), 'utf8');
    const payload = JSON.parse(Buffer.from(lic.split('\n').slice(1, -2).join(''), 'base64').toString('utf8')).payload;
    expect(payload.host.tpm.ekHash).toMatch(/^[0-9a-f]{64}$/);
    const out = join(await tmp(), 'o');
    const u = await mlic(['unpack', join(vdir, 'r.mlb'), '-o', out, '--json'], { env: envA });
    expect(u.code, u.stderr).toBe(0);
    expect(await readFile(join(out, 'w.bin'))).toEqual(model);

    const plain = await mlic(['activate', '--online', vs.s.url, '--license-key', e.licenseKey, '--json'], { env: await host() });
    expect([plain.code, plain.json?.error?.code]).toEqual([1, 'TPM_REQUIRED']);
    const onB = await mlic(['activate', '--online', vs.s.url, '--license-key', e.licenseKey, '--tpm', '--json'], { env: await host(b.tcti) });
    expect([onB.code, onB.json?.error?.code]).toEqual([1, 'TPM_CERT_UNTRUSTED']);
    // the refused hosts hold no slot, and no licence was issued to them: the server's own rows
    const hosts = await dbRows<{ n: number }>('sqlite', vs.dataDir, undefined, 'SELECT COUNT(*) AS n FROM hosts WHERE entitlement_id = ?', [e.id]);
    const licences = await dbRows<{ n: number }>('sqlite', vs.dataDir, undefined, 'SELECT COUNT(*) AS n FROM licenses WHERE entitlement_id = ?', [e.id]);
    expect([Number(hosts[0]!.n), Number(licences[0]!.n)]).toEqual([1, 1]);
  }, 180_000);

  it("a TPM request must quote a challenge of this server, once, in time: a replayed, foreign or expired nonce is TPM_QUOTE_INVALID", async () => {
    const e = await vs.entitle({ maxHosts: 5, terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z' } });
    const h = await fakeHost('replay');
    const post = (request: string) =>
      fetch(`${vs.s.url}/v1/activations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ licenseKey: e.licenseKey, request }) }).then(async (r) => ({
        status: r.status,
        json: (await r.json()) as { error?: { code: string; message: string } },
      }));
    const challenge = async () => {
      const r = await fetch(`${vs.s.url}/v1/activations/challenge`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(r.status).toBe(201);
      return ((await r.json()) as { nonce: string }).nonce;
    };
    const request = async (tpmNonce?: string) =>
      JSON.stringify((await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe(), tpmMode: 'on', tpm: { tcti: a.tcti }, ...(tpmNonce ? { tpmNonce } : {}) })).request);

    const first = await request(await challenge());
    expect((await post(first)).status).toBe(201);
    const again = await post(first);
    expect([again.status, again.json.error?.code]).toEqual([403, 'TPM_QUOTE_INVALID']);
    expect(again.json.error?.message).toMatch(/already used/);
    const foreign = await post(await request());
    expect([foreign.status, foreign.json.error?.code]).toEqual([403, 'TPM_QUOTE_INVALID']);
    expect(foreign.json.error?.message).toMatch(/not a challenge this server issued/);
    // a challenge past its time (the server's row aged)
    const old = await challenge();
    const db = new BetterSqlite3(join(vs.dataDir, 'mlic.db'));
    db.prepare('UPDATE tpm_challenges SET expires_at = 1 WHERE nonce = ?').run(old);
    db.close();
    const late = await post(await request(old));
    expect([late.status, late.json.error?.code]).toEqual([403, 'TPM_QUOTE_INVALID']);
    expect(late.json.error?.message).toMatch(/expired/);
    // a fresh one, answered in time: the same host is re-issued its licence (its slot kept)
    expect((await post(await request(await challenge()))).status).toBe(200);
  }, 120_000);
});
