/**
 * Fuzz: usage reports, through what `mlic usage verify REPORT --license L [--previous P]` calls
 * (verifyReport, which parses with parseReport), with and without a previous report.
 */
import { describe, it, beforeAll, expect } from 'vitest';
import { buildReport, parseReport, verifyReport, REPORT_SIG_DOMAIN } from '../../src/usage/report.js';
import type { LicensePayload } from '../../src/format/license.js';
import type { ChainRecord } from '../../src/state/chainlog.js';
import type { UsageData } from '../../src/usage/ledger.js';
import { cases, fuzz, mutateJson, mutateText, serialize, type Ast, type Rng } from './lib.js';
import { det, deterministicNacl, host, licence, signOver, vectorKey, type Host } from './fixtures.js';

const KEYS = ['v', 'kind', 'reportId', 'createdAt', 'period', 'licenseId', 'model', 'vendorKeyId', 'host', 'ledger', 'audit', 'totals', 'firstSeq', 'lastSeq', 'count', 'prevHash', 'firstHash', 'lastHash', 'headSeq', 'headHash', 'genesisHash', 'seq', 'metric', 'feature', 'quantity', 'overageQuantity', 'forfeitedQuantity', 'records', 'signingPublicKey', 'hostPublicKey'];

function records(): ChainRecord<UsageData>[] {
  const out: ChainRecord<UsageData>[] = [];
  const add = (t: string, data: Omit<Extract<UsageData, { kind: 'consume' }>, 't' | 'kind'>) => {
    const seq = out.length;
    out.push({ seq, time: t, prev: seq ? out[seq - 1]!.hash : '0'.repeat(64), hash: det(`record ${seq}`).toString('hex'), data: { kind: 'consume', t, ...data } });
  };
  add('2026-10-03T10:00:00.000Z', { metric: 'inferences', period: '2026-10', quantity: 5 });
  add('2026-10-20T10:00:00.000Z', { metric: 'inferences', period: '2026-10', quantity: 7, feature: 'batch', count: 3 });
  add('2026-11-02T10:00:00.000Z', { metric: 'inferences', period: '2026-11', quantity: 900, overage: true });
  add('2026-11-05T10:00:00.000Z', { metric: 'tokens', period: 'term', quantity: 2, forfeited: true });
  add('2026-11-09T10:00:00.000Z', { metric: 'inferences', period: '2026-11', quantity: 1 });
  return out;
}

describe('fuzz: usage reports', () => {
  let A: Host;
  let lic: LicensePayload;
  let docs: { text: string; payload: unknown }[];

  beforeAll(async () => {
    const vendor = await vectorKey();
    A = await host('fuzzrepa', vendor);
    lic = (await deterministicNacl('report licence', () => licence(vendor, { request: A.request, meters: [{ metric: 'inferences', limit: 1000, period: 'month' }, { metric: 'tokens', limit: 5, period: 'term' }] }, 'report'))).payload;
    const recs = records();
    const make = (period: string, auditSeq: number) => {
      const r = buildReport({ records: recs, period, license: lic, hostSignSeed: A.id.signSeed, hostSignPublic: A.id.signPublic, hostBoxPublic: A.id.boxPublic, auditSeq, now: new Date(`${period}-28T00:00:00Z`) });
      // a fixed report id, signed again (buildReport draws a random one)
      const payload = { ...r.payload, reportId: det(`report ${period}`, 16).toString('hex') };
      const signature = signOver(A.id.signSeed, REPORT_SIG_DOMAIN, { t: 'raw', s: JSON.stringify(payload) });
      return { text: JSON.stringify({ payload, signature }, null, 2) + '\n', payload };
    };
    docs = [make('2026-10', 4), make('2026-11', 9)];
    expect(verifyReport(docs[1]!.text, lic, docs[0]!.text).continuity).toBe('checked');
  });

  function mutant(r: Rng, d: { text: string; payload: unknown }, other: { payload: unknown }): { desc: string; text: string } {
    const level = r.int(10);
    if (level < 3) {
      const m = mutateText(r, d.text);
      return { desc: `text: ${m.desc}`, text: m.text };
    }
    if (level < 5) {
      const m = mutateJson(r, JSON.parse(d.text), [], KEYS);
      return { desc: `json: ${m.desc}`, text: serialize(m.ast, { indent: r.chance(0.5) }) };
    }
    const m = mutateJson(r, d.payload, [other.payload], KEYS);
    const doc: Ast = { t: 'obj', e: [['payload', m.ast], ['signature', { t: 'raw', s: JSON.stringify(signOver(A.id.signSeed, REPORT_SIG_DOMAIN, m.ast)) }]] };
    return { desc: `signed: ${m.desc}`, text: serialize(doc, { indent: r.chance(0.5) }) };
  }

  it('verifyReport with and without --previous (either report mutated)', async () => {
    const [prev, cur] = docs as [{ text: string; payload: unknown }, { text: string; payload: unknown }];
    const t = await fuzz('usage report', 0x4e70, cases(3000), 10_000, (r) => {
      const which = r.int(10);
      if (which < 4) {
        const m = mutant(r, cur, prev);
        return { desc: `report, no previous: ${m.desc}`, run: () => (parseReport(m.text), verifyReport(m.text, lic)) };
      }
      if (which < 7) {
        const m = mutant(r, cur, prev);
        return { desc: `report, with previous: ${m.desc}`, run: () => verifyReport(m.text, lic, prev.text) };
      }
      const m = mutant(r, prev, cur);
      return { desc: `previous: ${m.desc}`, run: () => verifyReport(cur.text, lic, m.text) };
    });
    t.report();
  }, 180_000);
});
