#!/usr/bin/env node
// Metering throughput (part of `npm run bench`): validate() without a meter, metered validate in
// batched and strict modes, and the Unix-socket service from one client.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import { generateVendorKey, publicKeyFileText } from '../dist/keys/vendor.js';
import { issueLicense } from '../dist/license/issue.js';
import { serializeLicense } from '../dist/format/license.js';
import { StateDir } from '../dist/state/home.js';
import { loadLicense } from '../dist/host/handle.js';
import { serve } from '../dist/host/meter-server.js';

const dir = mkdtempSync(join(tmpdir(), 'mlic-bench-meter-'));
try {
  const vendor = generateVendorKey('bench');
  const state = new StateDir(join(dir, 'state'));
  await state.trustAdd(publicKeyFileText(vendor));
  const text = serializeLicense(
    issueLicense({ key: vendor, model: 'm', versions: { policy: 'rolling' }, features: ['f'], meters: [{ metric: 'inferences', limit: 1e12, period: 'month' }], perpetual: true }).license,
  );
  const lf = join(dir, 'l.lic');
  writeFileSync(lf, text);
  let current;
  // Each figure includes writing what the calls recorded (ledger and audit log flushed at the end).
  const rate = async (label, n, fn) => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await fn(i);
    await current?.flush();
    const s = (performance.now() - t0) / 1000;
    return { label, n, perSec: n / s };
  };
  const results = [];
  for (const durability of ['batched', 'strict']) {
    const lic = await loadLicense({ stateDir: state.dir, licenseFile: lf, durability });
    current = lic;
    if (durability === 'batched') {
      await rate('warm-up', 20000, () => lic.validate({ feature: 'f' }));
      results.push(await rate('validate(), no meter', 300000, () => lic.validate({ feature: 'f' })));
      results.push(await rate('validate() metered, batched', 200000, () => lic.validate({ meter: { metric: 'inferences', quantity: 1 } })));
    } else {
      results.push(await rate('validate() metered, strict (fsync each)', 300, () => lic.validate({ meter: { metric: 'inferences', quantity: 1 } })));
    }
    await lic.close();
  }
  // Socket service: one client, sequential request/answer, and pipelined (32 in flight).
  const lic = await loadLicense({ stateDir: state.dir, licenseFile: lf, durability: 'batched' });
  current = lic;
  const sock = join(dir, 's.sock');
  const server = await serve({ socketPath: sock, license: lic });
  const c = createConnection(sock);
  await new Promise((r) => c.once('connect', r));
  let buf = '';
  const waiters = [];
  c.setEncoding('utf8');
  c.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      buf = buf.slice(i + 1);
      waiters.shift()();
    }
  });
  const req = JSON.stringify({ op: 'validate', meter: { metric: 'inferences', quantity: 1 } }) + '\n';
  const one = () => new Promise((r) => {
    waiters.push(r);
    c.write(req);
  });
  results.push(await rate('socket, 1 client, sequential', 20000, one));
  const N = 100000;
  const t0 = performance.now();
  let inflight = [];
  for (let i = 0; i < N; i++) {
    inflight.push(one());
    if (inflight.length >= 32) {
      await inflight.shift();
    }
  }
  await Promise.all(inflight);
  results.push({ label: 'socket, 1 client, 32 in flight', n: N, perSec: N / ((performance.now() - t0) / 1000) });
  c.end();
  await new Promise((r) => server.close(r));
  await lic.close();

  console.log('\n| metering | calls | per second |');
  console.log('| --- | ---: | ---: |');
  for (const r of results) console.log(`| ${r.label} | ${r.n} | ${Math.round(r.perSec).toLocaleString('en-US')} |`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
