import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileLock } from '../../src/state/lock.js';
import { MlicError } from '../../src/errors.js';
import { tmp } from '../helpers.js';

const FIX = fileURLToPath(new URL('./fixtures/', import.meta.url));

function node(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    c.on('error', reject);
    c.on('close', (code) => resolve(code ?? -1));
  });
}

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const c = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((r) => c.on('close', r));
  return c.pid!;
}

describe('file lock', () => {
  it('excludes: 6 processes x 40 read-increment-write cycles lose no increment', async () => {
    const d = await tmp();
    const counter = join(d, 'counter');
    await writeFile(counter, '0');
    const codes = await Promise.all(Array.from({ length: 6 }, () => node([join(FIX, 'lock-counter.mjs'), join(d, 'c.lock'), counter, '40'])));
    expect(codes).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Number(await readFile(counter, 'utf8'))).toBe(240);
  }, 60_000);

  it('waiters racing to break stale locks still exclude each other (every holder "dies" holding the lock)', async () => {
    const d = await tmp();
    const lock = join(d, 'c.lock');
    const counter = join(d, 'counter');
    await writeFile(counter, '0');
    const dead = String(await deadPid());
    await writeFile(lock, `${dead} 0123456789abcdef`);
    const startAt = String(Date.now() + 600);
    const codes = await Promise.all(Array.from({ length: 6 }, () => node([join(FIX, 'lock-counter.mjs'), lock, counter, '25', dead, startAt])));
    expect(codes).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Number(await readFile(counter, 'utf8'))).toBe(150);
    expect(await readFile(lock, 'utf8')).toMatch(new RegExp(`^${dead} `));
  }, 60_000);

  it('a live holder makes a waiter time out with IO_ERROR naming the holder pid', async () => {
    const path = join(await tmp(), 'l.lock');
    const a = new FileLock(path, 1000);
    await a.acquire();
    const b = new FileLock(path, 150);
    const t0 = Date.now();
    const err = await b.acquire().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MlicError);
    expect((err as MlicError).code).toBe('IO_ERROR');
    expect((err as MlicError).message).toMatch(new RegExp(`timed out .*held by pid ${process.pid}`));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    expect(b.held).toBe(false);
    await a.release();
    await b.acquire();
    expect(b.held).toBe(true);
    await b.release();
  });

  it('an empty lock file (holder died between create and write) is broken only once it is old', async () => {
    const path = join(await tmp(), 'l.lock');
    await writeFile(path, '');
    await expect(new FileLock(path, 100).acquire()).rejects.toThrow(/timed out/);
    const old = new Date(Date.now() - 60_000);
    await utimes(path, old, old);
    const l = new FileLock(path, 2000);
    await l.acquire();
    expect(await readFile(path, "utf8")).toMatch(new RegExp(`^${process.pid} [0-9a-f]+ \\d*$`));
    await l.release();
  });

  it('release removes only its own lock file', async () => {
    const path = join(await tmp(), 'l.lock');
    const l = new FileLock(path, 1000);
    await l.acquire();
    await writeFile(path, `${process.pid} feedfacefeedface`); // someone else's lock now
    await l.release();
    expect(await readFile(path, 'utf8')).toBe(`${process.pid} feedfacefeedface`);
    expect(l.held).toBe(false);
  });
});

describe('lock: holders that died without being reaped', () => {
  it('a zombie holder (killed, not yet reaped by its parent) does not block others', async () => {
    const { spawn } = await import('node:child_process');
    const { mkdtemp, writeFile: wf } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join: j } = await import('node:path');
    const { FileLock: FL } = await import('../../src/state/lock.js');
    const d = await mkdtemp(j(tmpdir(), 'mlic-zombie-'));
    // A parent that forks a child which exits at once, and never reaps it: the child stays a zombie.
    const parent = spawn('python3', ['-c', 'import os, time\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nprint(pid, flush=True)\ntime.sleep(10)'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const zpid = Number(await new Promise<string>((r) => parent.stdout.once('data', (x) => r(String(x).trim()))));
    const { readFileSync } = await import('node:fs');
    let state = '';
    for (let i = 0; i < 50 && state !== 'Z'; i++) {
      await new Promise((r) => setTimeout(r, 20));
      const st = readFileSync(`/proc/${zpid}/stat`, 'utf8');
      state = st.slice(st.lastIndexOf(')') + 2).split(' ')[0]!;
    }
    try {
      expect(state).toBe('Z');
      const path = j(d, 'z.lock');
      await wf(path, `${zpid} deadbeef`);
      const l = new FL(path, 2000);
      await l.acquire();
      expect(l.held).toBe(true);
      await l.release();
    } finally {
      parent.kill('SIGKILL');
    }
  });
});
