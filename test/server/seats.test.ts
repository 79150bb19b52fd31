/**
 * Floating GPU seats with real processes (issue 10): 40 clients on 10 simulated hosts (each its
 * own MLIC_HOME and host key, and a fake machine root with a fake nvidia-smi listing 1 to 4 GPUs,
 * which the real probe runs) against an entitlement of 8 GPU seats, on SQLite and on PostgreSQL
 * behind two server processes. At no instant do more than 8
 * GPUs hold leases, by the server's own records and by the clients' logs, and every client gets a
 * seat as others give theirs back.
 */
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFile } from 'node:fs/promises';
import { createActivationRequest, activateLicense } from '../../src/host/licences.js';
import { encodeSecretKey, publicKeyFileText } from '../../src/keys/vendor.js';
import { key, tmp } from '../helpers.js';
import { fakeRoot } from '../license/hosts.js';
import { StateDir } from '../../src/state/home.js';
import type { ProbeOptions } from '../../src/hardware/probe.js';
import { startServer, stop, type Running } from './process.js';
import { KINDS, dbRows, freshServerPlace } from './databases.js';

const CLIENT = fileURLToPath(new URL('./fixtures/seat-client.mjs', import.meta.url));
const HOSTS = 10;
const CLIENTS_PER_HOST = 4;
const SEATS = 8;

interface Log {
  acquired?: number;
  released?: number;
  attempts: number;
  error?: string;
  message?: string;
}

/** A simulated host: its MLIC_HOME, and a machine root whose nvidia-smi lists its GPUs. */
interface SimHost {
  home: string;
  state: StateDir;
  probe: ProbeOptions;
  gpus: number;
}

async function simHost(name: string, gpus: number): Promise<SimHost> {
  const uuids = Array.from({ length: gpus }, (_, g) => `GPU-${createHash('sha256').update(`${name}/${g}`).digest('hex').slice(0, 8)}-0000-4000-8000-${String(g).padStart(12, '0')}`);
  const { root, binDir } = await fakeRoot(name, uuids);
  const home = join(await tmp(`mlic-${name}-`), 'home');
  return { home, state: new StateDir(home), probe: { root, nvidiaSmi: join(binDir, 'nvidia-smi') }, gpus };
}

function client(h: SimHost, holdMs: number): Promise<Log> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [CLIENT, '-', JSON.stringify(h.probe), String(holdMs), '90000'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MLIC_HOME: h.home } });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!) as Log) : reject(new Error(`client exited ${code}: ${err}`))));
  });
}

/** The most seats held at once over half-open intervals [start, end): ends before starts at a tie. */
function peak(intervals: { start: number; end: number; seats: number }[]): number {
  const events = intervals.flatMap((i) => [
    { t: i.start, d: i.seats },
    { t: i.end, d: -i.seats },
  ]);
  events.sort((a, b) => a.t - b.t || a.d - b.d);
  let now = 0;
  let most = 0;
  for (const e of events) most = Math.max(most, (now += e.d));
  return most;
}

describe.each(KINDS)('floating GPU seats with real processes on %s', (kind) => {
  it(`${HOSTS} hosts × ${CLIENTS_PER_HOST} clients against ${SEATS} GPU seats: never more than ${SEATS} GPUs held (server rows and client logs); every client gets a seat`, async () => {
    const v = await tmp('mlic-vendor-');
    const vendor = key('acme');
    await writeFile(join(v, 'acme.key'), await encodeSecretKey(vendor, undefined), { mode: 0o600 });
    const place = await freshServerPlace(kind);
    const args = ['--data', place.dataDir, ...(place.url ? ['--database', place.url] : []), '--key', join(v, 'acme.key'), '--rate-limit-key', '0', '--rate-limit-address', '0'];
    const servers: Running[] = [await startServer(args)];
    // PostgreSQL: a second server process on the same database; half of the hosts use each
    if (kind === 'postgres') servers.push(await startServer(args));
    try {
      const e = await fetch(`${servers[0]!.url}/v1/entitlements`, {
        method: 'POST',
        headers: { authorization: `Bearer ${servers[0]!.first.adminToken as string}`, 'content-type': 'application/json' },
        body: JSON.stringify({ customer: 'g', model: 'resnet', maxHosts: HOSTS, seats: { count: SEATS, unit: 'gpu', leaseSeconds: 600 }, terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z' } }),
      });
      const ent = (await e.json()) as { licenseKey: string; entitlement: { id: string } };
      const hosts: SimHost[] = [];
      for (let i = 0; i < HOSTS; i++) {
        const url = servers[i % servers.length]!.url;
        const h = await simHost(`seat${i}`, 1 + (i % 4));
        await h.state.trustAdd(publicKeyFileText(vendor));
        const request = (await createActivationRequest({ stateDir: h.home, probe: h.probe })).request;
        // the probe found the fake nvidia-smi's GPUs: the server counts them from the licence it issues
        expect(request.payload.fingerprint.components.filter((c) => c.kind === 'gpu')).toHaveLength(h.gpus);
        const a = await fetch(`${url}/v1/activations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ licenseKey: ent.licenseKey, request: JSON.stringify(request) }) });
        expect(a.status).toBe(201);
        await activateLicense(((await a.json()) as { license: string }).license, { stateDir: h.home, probe: h.probe });
        await h.state.setServerUrl(url);
        hosts.push(h);
      }
      const gpus = (h: SimHost) => h.gpus;
      expect(hosts.reduce((n, h) => n + gpus(h), 0)).toBeGreaterThan(2 * SEATS); // demand well past the seats

      const logs = await Promise.all(hosts.flatMap((h) => Array.from({ length: CLIENTS_PER_HOST }, async () => ({ h, log: await client(h, 400) }))));
      for (const { log } of logs) expect(log.error, log.message).toBeUndefined();
      expect(logs.some(({ log }) => log.attempts > 1)).toBe(true); // some waited for a seat

      // the clients' view: a host holds its GPUs while any of its clients holds the lease (they share it)
      const held = hosts.flatMap((h) => {
        const mine = logs.filter((l) => l.h === h).map((l) => [l.log.acquired!, l.log.released!] as const).sort((a, b) => a[0] - b[0]);
        const merged: { start: number; end: number; seats: number }[] = [];
        for (const [s, e] of mine) {
          const last = merged[merged.length - 1];
          if (last && s <= last.end) last.end = Math.max(last.end, e);
          else merged.push({ start: s, end: e, seats: gpus(h) });
        }
        return merged;
      });
      const clientPeak = peak(held);
      expect(clientPeak).toBeLessThanOrEqual(SEATS);
      expect(clientPeak).toBeGreaterThanOrEqual(SEATS - 3); // the seats were used, not left idle (the largest demand is 4)

      // the server's own records: every lease row held [issued_at, released_at or expires_at)
      const rows = await dbRows<{ host_id: string; seats: number; issued_at: number; released_at: number | null; expires_at: number }>(
        kind,
        place.dataDir,
        place.url,
        'SELECT host_id, seats, issued_at, released_at, expires_at FROM leases WHERE entitlement_id = $1',
        [ent.entitlement.id],
      );
      expect(new Set(rows.map((r) => r.host_id)).size).toBe(HOSTS); // every host had a lease
      expect(peak(rows.map((r) => ({ start: Number(r.issued_at), end: Number(r.released_at ?? r.expires_at), seats: Number(r.seats) })))).toBeLessThanOrEqual(SEATS);
      // each host's last client gave the lease back: none is left held
      expect(rows.filter((r) => r.released_at === null)).toEqual([]);
    } finally {
      for (const s of servers) expect(await stop(s)).toBe(0);
    }
  }, 180_000);
});
