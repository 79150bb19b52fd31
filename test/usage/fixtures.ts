import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { issueLicense, type IssueOptions } from '../../src/license/issue.js';
import { serializeLicense } from '../../src/format/license.js';
import { createActivationRequest, activateLicense } from '../../src/host/licences.js';
import { publicKeyFileText, type VendorKey } from '../../src/keys/vendor.js';
import { writeFile } from 'node:fs/promises';
import { key, tmp } from '../helpers.js';
import { fakeHost, type FakeHost } from '../license/hosts.js';

export interface MeteredSetup {
  vendor: VendorKey;
  host: FakeHost;
  licenseText: string;
  licenseFile: string;
  licenseId: string;
  dir: string;
}

export async function meteredHost(o: Partial<IssueOptions> = {}, now = new Date('2026-11-01T00:00:00Z')): Promise<MeteredSetup> {
  const vendor = key('acme');
  const host = await fakeHost(`h${Math.random().toString(16).slice(2, 8)}`);
  await host.state.trustAdd(publicKeyFileText(vendor));
  const { request } = await createActivationRequest({ stateDir: host.stateDir, hostProbe: host.probe(), now });
  const { license, payload } = issueLicense({
    key: vendor,
    request,
    model: 'm',
    versions: { policy: 'range', range: '^1' },
    notBefore: new Date('2026-01-01T00:00:00Z'),
    features: ['sentiment-analysis', 'batch'],
    meters: [{ metric: 'inferences', limit: 1000, period: 'month' }],
    now,
    ...(o.expires ? {} : { perpetual: true }),
    ...o,
  });
  const licenseText = serializeLicense(license);
  await activateLicense(licenseText, { stateDir: host.stateDir, hostProbe: host.probe(), now });
  const dir = await tmp();
  await mkdir(dir, { recursive: true });
  const licenseFile = join(dir, 'c.lic');
  await writeFile(licenseFile, licenseText);
  return { vendor, host, licenseText, licenseFile, licenseId: payload.licenseId, dir };
}
