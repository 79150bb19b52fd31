/**
 * Lease tokens as the host checks them (issue 10): a server (or anyone between) that answers with
 * an edited token, one signed by another vendor key, or one for another host, licence, entitlement
 * or process gets it refused with its code; a stored token that was edited or forged on disk is
 * no lease at all. The "server" here is a plain HTTP listener on loopback that answers what each
 * test tells it to, so that every token is crafted, not asked for.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile, writeFile } from 'node:fs/promises';
import { activateLicense, createActivationRequest } from '../../src/host/licences.js';
import { ensureLease, keepLease, listLeases } from '../../src/host/leases.js';
import { issueLicense } from '../../src/license/issue.js';
import { serializeLicense, type LicensePayload } from '../../src/format/license.js';
import { serializeLease, signLease, type LeasePayload } from '../../src/format/lease.js';
import { publicKeyFileText, type VendorKey } from '../../src/keys/vendor.js';
import { keyIdHex } from '../../src/format/minisign.js';
import type { HostIdentity } from '../../src/state/home.js';
import { key } from '../helpers.js';
import { fakeHost, type FakeHost } from '../license/hosts.js';

const NOW = new Date('2027-02-01T12:00:00Z');
const ENT = 'ent_00112233445566aa';

describe('lease tokens on the host', () => {
  let server: Server;
  let url: string;
  /** what the listener answers next; 'drop' closes the connection (a server that cannot be reached) */
  type Answer = { status: number; body: unknown } | 'drop';
  let answer: (request: string) => Answer | Promise<Answer> = () => 'drop';
  let vendor: VendorKey;
  let other: VendorKey;
  let host: FakeHost;
  let identity: HostIdentity;
  let license: LicensePayload;

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        void Promise.resolve(answer(body)).then((a) => {
          if (a === 'drop') return void req.socket.destroy();
          res.writeHead(a.status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(a.body));
        });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    vendor = key('acme');
    other = key('mallory');
    host = await fakeHost('tok', { gpus: 2 });
    await host.state.trustAdd(publicKeyFileText(vendor));
    const { request } = await createActivationRequest({ stateDir: host.stateDir, hostProbe: host.probe(), now: NOW });
    const issued = issueLicense({ key: vendor, request, model: 'resnet', versions: { policy: 'range', range: '^2' }, now: NOW, notBefore: NOW, perpetual: true, lease: { entitlementId: ENT, unit: 'gpu', seats: 4, leaseSeconds: 900 } });
    license = issued.payload;
    await activateLicense(serializeLicense(issued.license), { stateDir: host.stateDir, hostProbe: host.probe(), now: NOW });
    await host.state.setServerUrl(url);
    identity = (await host.state.loadHost())!;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const payload = (o: Partial<LeasePayload> = {}): LeasePayload => ({
    v: 1,
    kind: 'mlic-lease',
    leaseId: 'lease_0011223344556677',
    vendor: { keyId: keyIdHex(vendor.keyId) },
    entitlementId: ENT,
    licenseId: license.licenseId,
    hostPublicKey: Buffer.from(identity.boxPublic).toString('base64'),
    clientId: 'host',
    unit: 'gpu',
    seats: 2,
    issuedAt: '2027-02-01T12:00:00Z',
    expiresAt: '2027-02-01T12:15:00Z',
    ...o,
  });
  const serve = (text: string) => (answer = () => ({ status: 201, body: { lease: text, renewed: false } }));
  const codeOf = (p: Promise<unknown>) => p.then(
    () => 'OK',
    (e: { code?: string }) => e.code ?? String(e),
  );

  it('a token the vendor signed for this licence, host and process is taken and stored (the control)', async () => {
    serve(serializeLease(signLease(payload(), vendor.seed)));
    expect(await codeOf(ensureLease(host.state, identity, license, NOW))).toBe('OK');
    // the stored token carries the host through a server that is away
    answer = () => 'drop';
    expect((await ensureLease(host.state, identity, license, NOW)).lease.payload.leaseId).toBe('lease_0011223344556677');
  });

  it('refused: an edited token (SIGNATURE_INVALID), another vendor key (UNTRUSTED_VENDOR), another host, licence, entitlement or process (HW_MISMATCH)', async () => {
    const edited = JSON.parse(serializeLease(signLease(payload(), vendor.seed)));
    edited.payload.seats = 1;
    edited.payload.expiresAt = '2027-03-01T00:00:00Z';
    const cases: [string, string][] = [
      [JSON.stringify(edited), 'SIGNATURE_INVALID'],
      [serializeLease(signLease(payload(), other.seed)), 'SIGNATURE_INVALID'], // claims the vendor's key id, signed by another
      [serializeLease(signLease(payload({ vendor: { keyId: keyIdHex(other.keyId) } }), other.seed)), 'UNTRUSTED_VENDOR'],
      [serializeLease(signLease(payload({ hostPublicKey: Buffer.alloc(32, 7).toString('base64') }), vendor.seed)), 'HW_MISMATCH'],
      [serializeLease(signLease(payload({ licenseId: 'ab'.repeat(16) }), vendor.seed)), 'HW_MISMATCH'],
      [serializeLease(signLease(payload({ entitlementId: 'ent_ffffffffffffffff' }), vendor.seed)), 'HW_MISMATCH'],
      [serializeLease(signLease(payload({ clientId: 'pid-1' }), vendor.seed)), 'HW_MISMATCH'],
      ['{"payload":{}}', 'FORMAT_INVALID'],
    ];
    for (const [text, code] of cases) {
      serve(text);
      expect(await codeOf(ensureLease(host.state, identity, license, NOW, { renew: true })), code).toBe(code);
    }
  });

  it('a stored token edited or forged on disk is no lease: with the server away the host has none (SEAT_UNAVAILABLE); a genuine one past its end is LEASE_EXPIRED', async () => {
    serve(serializeLease(signLease(payload(), vendor.seed)));
    await ensureLease(host.state, identity, license, NOW, { renew: true });
    const file = host.state.path('leases', `${license.licenseId}.host.json`);
    const good = await readFile(file, 'utf8');
    answer = () => 'drop';
    const stored = JSON.parse(good);
    const token = JSON.parse(stored.lease);
    token.payload.expiresAt = '2099-01-01T00:00:00Z';
    const wrap = (lease: string, receivedAt = stored.receivedAt) => JSON.stringify({ v: 1, receivedAt, lease });
    for (const text of [
      wrap(JSON.stringify(token)),
      wrap(serializeLease(signLease(payload({ expiresAt: '2099-01-01T00:00:00Z', vendor: { keyId: keyIdHex(other.keyId) } }), other.seed))),
      serializeLease(signLease(payload(), vendor.seed)), // a bare token: no time of receipt
      wrap(stored.lease, '2099-01-01T00:00:00.000Z'), // received in the future: the clock went back
      'garbage',
    ]) {
      await writeFile(file, text);
      expect(await codeOf(ensureLease(host.state, identity, license, NOW))).toBe('SEAT_UNAVAILABLE');
    }
    // past its end, the genuine token no longer counts either
    await writeFile(file, good);
    expect(await codeOf(ensureLease(host.state, identity, license, new Date('2027-02-01T12:16:00Z')))).toBe('LEASE_EXPIRED');
  });

  it("clock skew: a lease lasts its duration from when the host received it, by the host's clock, whether that clock is ahead of or behind the server's", async () => {
    serve(serializeLease(signLease(payload(), vendor.seed))); // issued 12:00, ends 12:15 by the server's clock
    for (const skewMin of [25, -25]) {
      const hostNow = new Date(NOW.getTime() + skewMin * 60_000);
      const held = await ensureLease(host.state, identity, license, hostNow);
      expect(held.endsAt).toBe(hostNow.getTime() + 15 * 60_000);
      answer = () => 'drop';
      // still held 14 minutes later by the host's clock, over at 16
      expect(await codeOf(ensureLease(host.state, identity, license, new Date(hostNow.getTime() + 14 * 60_000)))).toBe('OK');
      expect(await codeOf(ensureLease(host.state, identity, license, new Date(hostNow.getTime() + 16 * 60_000)))).toBe('LEASE_EXPIRED');
      serve(serializeLease(signLease(payload(), vendor.seed)));
    }
  });

  it('a renewal answered after the last holder gave the lease back stores nothing: the give-back waits for it, then wins', async () => {
    serve(serializeLease(signLease(payload(), vendor.seed)));
    const held = await ensureLease(host.state, identity, license, NOW);
    const kept = await keepLease(host.state, identity, license, held, () => NOW);
    const seen: string[] = [];
    let answerRenewal: (() => void) | undefined;
    answer = (request) => {
      const action = (JSON.parse(JSON.parse(request).request as string) as { payload: { action: string } }).payload.action;
      seen.push(action);
      if (action === 'release') return { status: 200, body: { released: true } };
      // the renewal's answer comes late
      return new Promise((resolve) => (answerRenewal = () => resolve({ status: 201, body: { lease: serializeLease(signLease(payload(), vendor.seed)), renewed: true } })));
    };
    const renewal = ensureLease(host.state, identity, license, NOW, { renew: true });
    while (!answerRenewal) await new Promise((r) => setTimeout(r, 5));
    const stopping = kept.stop();
    await new Promise((r) => setTimeout(r, 200));
    expect(seen).toEqual(['checkout']); // the give-back waits for the renewal in flight
    answerRenewal();
    await renewal;
    await stopping;
    expect(seen).toEqual(['checkout', 'release']);
    // and nothing is left stored: the next process checks out anew, with the server's knowledge
    expect(await listLeases(host.state, NOW)).toEqual([]);
    // a renewal after the give-back asks nobody
    expect(await codeOf(ensureLease(host.state, identity, license, NOW, { renew: true }))).toBe('LEASE_EXPIRED');
    expect(seen).toEqual(['checkout', 'release']);
  });
});
