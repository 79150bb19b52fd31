/**
 * Fleet meters on the host: the ledger (usage/ledger.ts) asks the licence server for blocks of
 * units through this client, and gives back what it did not use. Requests are signed by the
 * host's key; the answer is checked strictly before the ledger records it.
 */
import { randomBytes } from 'node:crypto';
import { MlicError } from '../errors.js';
import { isoSeconds } from '../format/fields.js';
import type { LicensePayload } from '../format/license.js';
import { parseReservationAnswer, signReservationRequest, type FleetClient, type FleetResult, type ReservationRequestPayload } from '../format/reservation.js';
import type { HostIdentity } from '../state/home.js';
import { callServer, refusal } from './server-client.js';

/** How long a host waits for the server before a call is refused as unreachable. */
export const FLEET_TIMEOUT_MS = 10_000;

export function fleetClient(server: string | undefined, host: HostIdentity, license: LicensePayload): FleetClient {
  const call = async (payload: ReservationRequestPayload): Promise<FleetResult> => {
    if (!server)
      return {
        ok: false,
        unreachable: true,
        error: new MlicError('IO_ERROR', `licence ${license.licenseId} has fleet meters, and this host knows no licence server to reserve units from`, {
          hint: 'activate online (mlic activate --online URL --license-key KEY) so that the host knows its server',
        }),
      };
    const request = JSON.stringify(signReservationRequest(payload, host.signSeed));
    // one retry with the same request id: a lost answer gets the first answer again, never a second block
    let last: MlicError | undefined;
    for (let i = 0; i < 2; i++) {
      try {
        const a = await callServer(server, 'v1/reservations', { body: { request }, timeoutMs: FLEET_TIMEOUT_MS });
        if (!a.ok) return { ok: false, unreachable: a.status === 503 || a.status === 429, error: refusal('reservation', a.status, a.json?.error as Parameters<typeof refusal>[2]) };
        try {
          return { ok: true, answer: parseReservationAnswer(a.json, payload) };
        } catch (e) {
          // a confused server: no units from it (validate() says quota_unavailable, never throws)
          return { ok: false, unreachable: true, error: e as MlicError };
        }
      } catch (e) {
        if (!(e instanceof MlicError) || e.code !== 'IO_ERROR') throw e;
        last = e;
      }
    }
    return { ok: false, unreachable: true, error: last! };
  };
  const base = (now: Date) => ({ v: 1 as const, kind: 'mlic-reservation-request' as const, requestId: randomBytes(16).toString('hex'), licenseId: license.licenseId, createdAt: isoSeconds(now) });
  return {
    reserve: (metric, period, amount, min, used, now) => call({ ...base(now), action: 'reserve', metric, period, amount, min, used }),
    giveBack: (metric, period, amount, used, now) => call({ ...base(now), action: 'give-back', metric, period, amount, used }),
  };
}
