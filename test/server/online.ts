/** A vendor's licence server as a real process, its entitlements, and hosts activated online against it (for end-to-end tests). */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { activateLicense, createActivationRequest } from '../../src/host/licences.js';
import { encodeSecretKey, publicKeyFileText, type VendorKey } from '../../src/keys/vendor.js';
import { key, tmp } from '../helpers.js';
import { fakeHost, type FakeHost } from '../license/hosts.js';
import { startServer, type Running } from './process.js';

export interface VendorServer {
  s: Running;
  /** the server's arguments (to start it again on the same data) */
  args: string[];
  dataDir: string;
  vendor: VendorKey;
  /** POSTs an entitlement (the API's body) with the first admin token */
  entitle(body: Record<string, unknown>): Promise<{ licenseKey: string; id: string }>;
  /** a fake host that trusts the vendor, activated online on the server (or `url`), knowing its server */
  host(licenseKey: string, name: string, o?: { gpus?: number; url?: string }): Promise<FakeHost>;
}

/** A vendor key on disk and a server on SQLite with it (`extra`: more server arguments). */
export async function vendorServer(extra: string[] = []): Promise<VendorServer> {
  const v = await tmp('mlic-vendor-');
  const vendor = key('acme');
  await writeFile(join(v, 'acme.key'), await encodeSecretKey(vendor, undefined), { mode: 0o600 });
  const dataDir = join(await tmp(), 'd');
  const args = ['--data', dataDir, '--key', join(v, 'acme.key'), ...extra];
  const s = await startServer(args);
  const me: VendorServer = {
    s,
    args,
    dataDir,
    vendor,
    async entitle(body) {
      const r = await fetch(`${me.s.url}/v1/entitlements`, {
        method: 'POST',
        headers: { authorization: `Bearer ${s.first.adminToken as string}`, 'content-type': 'application/json' },
        body: JSON.stringify({ customer: 'globex', model: 'resnet', maxHosts: 20, ...body }),
      });
      if (r.status !== 201) throw new Error(`entitlement refused: ${r.status} ${await r.text()}`);
      const e = (await r.json()) as { licenseKey: string; entitlement: { id: string } };
      return { licenseKey: e.licenseKey, id: e.entitlement.id };
    },
    async host(licenseKey, name, o = {}) {
      const url = o.url ?? me.s.url;
      const h = await fakeHost(name, o.gpus !== undefined ? { gpus: o.gpus } : {});
      await h.state.trustAdd(publicKeyFileText(vendor));
      const request = JSON.stringify((await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe() })).request);
      const a = await fetch(`${url}/v1/activations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ licenseKey, request }) });
      if (a.status !== 201) throw new Error(`activation refused: ${a.status} ${await a.text()}`);
      await activateLicense(((await a.json()) as { license: string }).license, { stateDir: h.stateDir, hostProbe: h.probe() });
      await h.state.setServerUrl(url);
      return h;
    },
  };
  return me;
}
