#!/usr/bin/env node
// Chain-log throughput from one process (run after `npm run build`): sequential append() and
// read-check-append transact() in strict and batched modes, plus a burst of concurrent appends.
// Each figure ends with close(), so everything it appended is on disk.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ChainLog } from '../dist/state/chainlog.js';

const dir = mkdtempSync(join(tmpdir(), 'mlic-bench-chainlog-'));
const key = randomBytes(32);
const json = process.argv.includes('--json');
const results = [];

async function measure(label, durability, n, body) {
  const path = join(dir, `${label.replace(/\W+/g, '-')}-${durability}.log`);
  const log = await ChainLog.open({ path, macKey: key, durability });
  const t0 = performance.now();
  await body(log, n);
  await log.close();
  const s = (performance.now() - t0) / 1000;
  const check = await ChainLog.open({ path, macKey: key });
  const { records } = await check.verify();
  await check.close();
  if (records !== n) throw new Error(`${label} ${durability}: expected ${n} records, found ${records}`);
  results.push({ label, durability, n, perSec: Math.round(n / s) });
}

const seqAppend = async (log, n) => {
  for (let i = 0; i < n; i++) await log.append({ metric: 'inferences', quantity: 1, i });
};
const seqTransact = async (log, n) => {
  let total = 0;
  for (let i = 0; i < n; i++)
    await log.transact((v) => {
      for (let j = total; j < v.records.length; j++) total = j + 1;
      return { append: total < 1e9 ? [{ metric: 'inferences', quantity: 1, i }] : [], result: undefined };
    });
};
const burst = async (log, n) => {
  await Promise.all(Array.from({ length: n }, (_, i) => log.append({ metric: 'inferences', quantity: 1, i })));
};

try {
  const quick = process.argv.includes('--quick');
  const nStrict = quick ? 300 : 2_000;
  const nBatched = quick ? 3_000 : 20_000;
  for (const [label, fn] of [['append', seqAppend], ['transact', seqTransact], ['concurrent append', burst]]) {
    await measure(label, 'strict', nStrict, fn);
    await measure(label, 'batched', nBatched, fn);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

if (json) console.log(JSON.stringify(results));
else for (const r of results) console.log(`${r.label.padEnd(18)} ${r.durability.padEnd(8)} ${String(r.n).padStart(6)} records  ${String(r.perSec).padStart(8)} /s`);
