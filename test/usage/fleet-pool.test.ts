/**
 * Fleet meters on one host: the process that asked the server for units gets them. Two ledgers on
 * one file are two processes of a host; the server is a counter behind a FleetClient. The other
 * process is made to run in the window between the asker's grant and its next try (the window in
 * which, before the fix, it took the whole grant each time, and the asker gave up after three).
 */
import { describe, it, expect } from 'vitest';
import { join } from 'node:path';
import { UsageLedger, type UsageData } from '../../src/usage/ledger.js';
import type { FleetClient, FleetResult } from '../../src/format/reservation.js';
import type { LicensePayload } from '../../src/format/license.js';
import { tmp } from '../helpers.js';

const NOW = new Date('2026-11-15T12:00:00Z');

/** A licence server's count for one fleet meter: grants what is asked while units are left. */
function counter(limit: number) {
  let net = 0;
  let n = 0;
  const figures = () => ({ limit, hardLimit: limit, consumed: 0, outstanding: net, unusedElsewhere: 0 });
  const client: FleetClient = {
    reserve(_metric, _period, amount, min): Promise<FleetResult> {
      const amountGranted = Math.min(amount, limit - net);
      if (amountGranted < min) {
        const error = Object.assign(new Error('fleet quota used up'), { code: 'QUOTA_EXCEEDED', details: figures() });
        return Promise.resolve({ ok: false, error: error as never, unreachable: false });
      }
      net += amountGranted;
      n++;
      return Promise.resolve({ ok: true, answer: { accountId: `acct_${n.toString(16).padStart(16, '0')}`, amount: amountGranted, overage: 0, expiresAt: new Date(NOW.getTime() + 900_000).toISOString(), fleet: figures() } });
    },
    giveBack: (): Promise<FleetResult> => Promise.reject(new Error('not used here')),
  };
  return client;
}

const license = (limit: number) => ({ notBefore: '2026-01-01T00:00:00Z', meters: [{ metric: 'inferences', limit, period: 'month', scope: 'fleet' }] }) as unknown as LicensePayload;

describe.each(['batched', 'strict'] as const)('a fleet meter, %s', (durability) => {
  it('the process that asked the server for units uses them, even when another process runs right after the grant is recorded', async () => {
    const dir = await tmp();
    const path = join(dir, 'usage.log');
    const macKey = new Uint8Array(32).fill(7);
    const server = counter(1_000_000);
    const lic = license(1_000_000);
    const a = await UsageLedger.open(path, macKey, lic, { durability, fleet: server });
    const b = await UsageLedger.open(path, macKey, lic, { durability, fleet: server });
    // after each transaction of A's that records a grant, B asks for that many units before A goes on
    const transact = a.log.transact.bind(a.log);
    let stolen = 0;
    a.log.transact = (async (fn: Parameters<typeof transact>[0]) => {
      let granted = 0;
      const out = await transact((view) => {
        const r = fn(view);
        for (const d of r.append as UsageData[]) if (d.kind === 'grant') granted += d.amount;
        return r;
      });
      if (granted > 0) {
        // B wants as many units as the server just granted A
        const rb = await b.consume('inferences', granted, NOW);
        expect(rb.ok).toBe(true);
        stolen++;
      }
      return out;
    }) as typeof a.log.transact;
    for (let i = 0; i < 5; i++) {
      const r = await a.consume('inferences', 1, NOW);
      expect(r, JSON.stringify(r)).toMatchObject({ ok: true });
    }
    expect(stolen).toBeGreaterThan(0);
    await a.close();
    await b.close();
  });
});
