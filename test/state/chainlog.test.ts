import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { ChainLog } from '../../src/state/chainlog.js';
import { FileLock } from '../../src/state/lock.js';
import { MlicError } from '../../src/errors.js';
import { tmp } from '../helpers.js';

const FIX = fileURLToPath(new URL('./fixtures/', import.meta.url));
const key = randomBytes(32);

async function kindOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    if (e instanceof MlicError && e.code === 'LEDGER_TAMPERED') return String(e.details?.kind);
    throw e;
  }
}

async function fresh(n: number): Promise<string> {
  const p = join(await tmp(), 'log');
  const log = await ChainLog.open<{ n: number }>({ path: p, macKey: key, durability: 'strict' });
  for (let i = 0; i < n; i++) await log.append({ n: i });
  await log.close();
  return p;
}
const reopen = (p: string, k: Uint8Array = key) => ChainLog.open({ path: p, macKey: k }).then((l) => l.close());
const lines = async (p: string) => (await readFile(p, 'utf8')).split('\n').filter(Boolean);
const writeLines = (p: string, ls: string[]) => writeFile(p, ls.map((l) => l + '\n').join(''));

function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`exit ${code}`))));
  });
}

describe('chained log', () => {
  it('round-trips and continues the chain after reopening', async () => {
    const p = await fresh(5);
    const log = await ChainLog.open<{ n: number }>({ path: p, macKey: key });
    await log.append({ n: 5 });
    const all = await log.readAll();
    expect(all.map((r) => r.data.n)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(all[5]!.prev).toBe(all[4]!.hash);
    expect((await log.verify()).records).toBe(6);
    await log.close();
  });

  it('a tail-only open appends in O(1) and continues the chain; full readers still verify everything', async () => {
    const p = await fresh(50);
    const t = await ChainLog.open<{ n: number }>({ path: p, macKey: key, open: 'tail' });
    expect(t.lastSeq).toBe(49);
    await t.append({ n: 50 });
    await t.close();
    const full = await ChainLog.open<{ n: number }>({ path: p, macKey: key });
    const all = await full.readAll();
    expect(all).toHaveLength(51);
    expect(all[50]!.prev).toBe(all[49]!.hash);
    await full.close();
    // A tail-only open still refuses a rolled-back tail and a forged last record.
    const ls = await lines(p);
    await writeLines(p, ls.slice(0, -1));
    expect(await kindOf(ChainLog.open({ path: p, macKey: key, open: 'tail' }).then((l) => l.close()))).toBe('rolled-back');
    await writeLines(p, [...ls.slice(0, -1), ls[50]!.replace('"n":50', '"n":51')]);
    expect(await kindOf(ChainLog.open({ path: p, macKey: key, open: 'tail' }).then((l) => l.close()))).toBe('edited');
  });

  it('detects every kind of tampering', async () => {
    let p = await fresh(6);
    let ls = await lines(p);
    await writeLines(p, ls.map((l, i) => (i === 2 ? l.replace('"n":2', '"n":9') : l)));
    expect(await kindOf(reopen(p))).toBe('edited');

    p = await fresh(6);
    ls = await lines(p);
    await writeLines(p, ls.map((l, i) => (i === 2 ? l.replace(/"mac":"[0-9a-f]/, '"mac":"0') : l)));
    expect(['mac', 'OK']).toContain(await kindOf(reopen(p))); // a MAC starting with 0 already would be unchanged
    await writeLines(p, ls.map((l, i) => (i === 2 ? l.replace(/"mac":"([0-9a-f]{64})"/, (_m, h: string) => `"mac":"${h.slice(0, 63)}${h[63] === 'a' ? 'b' : 'a'}"`) : l)));
    expect(await kindOf(reopen(p))).toBe('mac');

    p = await fresh(6);
    ls = await lines(p);
    await writeLines(p, ls.filter((_, i) => i !== 3));
    expect(await kindOf(reopen(p))).toBe('deleted');

    p = await fresh(6);
    ls = await lines(p);
    await writeLines(p, ls.slice(0, 5));
    expect(await kindOf(reopen(p))).toBe('rolled-back'); // the head file knows record 5 existed

    p = await fresh(6);
    ls = await lines(p);
    await writeLines(p, [ls[0]!, ls[2]!, ls[1]!, ...ls.slice(3)]);
    expect(['reordered', 'deleted']).toContain(await kindOf(reopen(p)));

    // A forged record appended with another key.
    p = await fresh(3);
    const forger = join(await tmp(), 'log');
    await copyFile(p, forger);
    await copyFile(`${p}.head`, `${forger}.head`);
    const other = randomBytes(32);
    await expect(ChainLog.open({ path: forger, macKey: other })).rejects.toThrow(MlicError);

    // Restoring an older copy of the whole file (and its head file is newer).
    p = await fresh(3);
    const old = `${p}.old`;
    await copyFile(p, old);
    const log = await ChainLog.open<{ n: number }>({ path: p, macKey: key });
    await log.append({ n: 3 });
    await log.close();
    await copyFile(old, p);
    expect(await kindOf(reopen(p))).toBe('rolled-back');

    // A cut inside acknowledged records is reported as truncated, and the evidence is kept.
    p = await fresh(6);
    const full = await readFile(p);
    await writeFile(p, full.subarray(0, full.length - 40));
    expect(await kindOf(reopen(p))).toBe('truncated');
    expect((await readFile(p)).length).toBe(full.length - 40);

    // The head file deleted while the log has records.
    p = await fresh(2);
    await rm(`${p}.head`);
    expect(await kindOf(reopen(p))).toBe('rolled-back');
  });

  it('8 processes against one limit: exactly the limit, no lost records, a valid chain', async () => {
    await run(['-e', '0']); // warm the node binary cache
    const p = join(await tmp(), 'log');
    const counts = await Promise.all(Array.from({ length: 8 }, () => run([join(FIX, 'append.mjs'), p, key.toString('hex'), '200', '1000', 'batched'])));
    expect(counts.reduce((a, c) => a + Number(c), 0)).toBe(1000);
    const log = await ChainLog.open({ path: p, macKey: key });
    expect((await log.verify()).records).toBe(1000);
    await log.close();
    const q = join(await tmp(), 'log');
    await Promise.all(Array.from({ length: 8 }, () => run([join(FIX, 'append.mjs'), q, key.toString('hex'), '200', '0', 'batched'])));
    const l2 = await ChainLog.open({ path: q, macKey: key });
    expect((await l2.verify()).records).toBe(1600);
    await l2.close();
  }, 120_000);

  it('kill -9 during writes never corrupts the log, and the count never goes backwards', async () => {
    const p = join(await tmp(), 'log');
    let last = 0;
    for (let i = 0; i < 15; i++) {
      const c = spawn(process.execPath, [join(FIX, 'writer.mjs'), p, key.toString('hex')], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => c.stdout.once('data', () => resolve()));
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 60));
      const dead = new Promise((r) => c.on('close', r));
      c.kill('SIGKILL');
      await dead;
      const log = await ChainLog.open({ path: p, macKey: key });
      const n = (await log.verify()).records;
      await log.close();
      expect(n).toBeGreaterThanOrEqual(last);
      last = n;
    }
    expect(last).toBeGreaterThan(0);
  }, 120_000);

  it('lock: a stale lock from a dead process is recovered; a live holder times out others', async () => {
    const d = await tmp();
    const path = join(d, 'l.lock');
    await writeFile(path, '999999 deadbeef'); // no such pid
    const l = new FileLock(path, 2000);
    await l.acquire();
    expect(l.held).toBe(true);
    const other = new FileLock(path, 200);
    await expect(other.acquire()).rejects.toThrow(/timed out/);
    await l.release();
    await other.acquire();
    await other.release();
  });
});
