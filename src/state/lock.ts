/**
 * An inter-process exclusive lock for one host, without native addons (docs/FORMAT.md §8.3).
 * The lock is a file created with O_EXCL holding "pid token starttime". A waiter that finds the
 * holder dead (no such pid, a zombie, or a pid reused by a process that started later) breaks the lock, but only while holding a second, short-lived "breaker" lock and after
 * re-reading the same dead owner, so two waiters never both break it and both think they own it.
 */
import { open, readFile, unlink, stat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { MlicError } from '../errors.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Fields of /proc/<pid>/stat after the command name: state (index 0) and start time (index 19). */
function procStat(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** This process's start time in clock ticks since boot ('' where /proc is not available). */
const MY_START = procStat(process.pid)?.[19] ?? '';

/** "pid starttime" of this process: what processAlive() checks later (a reused pid is not this process). */
export function processMark(): string {
  return `${process.pid} ${MY_START}`;
}

/** Is the process of a mark (or a pid and its start time) still running? */
export function processAlive(mark: string): boolean {
  const [pid, start] = mark.trim().split(' ');
  return alive(Number(pid), start || undefined);
}

function alive(pid: number, startTime: string | undefined): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const st = procStat(pid);
  if (!st) return true; // no /proc: trust kill(0)
  if (st[0] === 'Z' || st[0] === 'X') return false; // killed, not yet reaped
  return !startTime || st[19] === startTime; // a reused pid started later
}

const OWNER_RE = /^(\d+) ([0-9a-f]+)(?: (\d*))?\s*$/;

async function tryCreate(path: string, content: string): Promise<boolean> {
  try {
    const fh = await open(path, 'wx', 0o600);
    try {
      await fh.writeFile(content);
    } finally {
      await fh.close();
    }
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new MlicError('IO_ERROR', `cannot create lock ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

async function owner(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

export class FileLock {
  private token: string | undefined;

  constructor(
    readonly path: string,
    readonly timeoutMs = 10_000,
  ) {}

  get held(): boolean {
    return this.token !== undefined;
  }

  async acquire(): Promise<void> {
    const token = `${process.pid} ${randomBytes(8).toString('hex')} ${MY_START}`;
    const deadline = Date.now() + this.timeoutMs;
    let delay = 1;
    for (;;) {
      if (await tryCreate(this.path, token)) {
        this.token = token;
        return;
      }
      const cur = await owner(this.path);
      // An empty owner is a holder between create and write: never stale, unless old.
      const m = cur === undefined ? null : OWNER_RE.exec(cur);
      if (m && !alive(Number(m[1]), m[3] || undefined)) await this.breakStale(cur!);
      else if (cur === '') await this.breakIfOld();
      if (Date.now() > deadline)
        throw new MlicError('IO_ERROR', `timed out waiting for lock ${this.path} (held by pid ${cur?.split(' ')[0] ?? '?'})`, { hint: 'another mlic process holds it; if none runs, remove the lock file' });
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 20);
    }
  }

  private async breakStale(seen: string): Promise<void> {
    const breaker = `${this.path}.break`;
    if (!(await tryCreate(breaker, `${process.pid}`))) {
      // A breaker that died mid-break leaves its lock behind: old ones are removed.
      try {
        const st = await stat(breaker);
        if (Date.now() - st.mtimeMs > 2_000) await unlink(breaker);
      } catch {
        /* gone already */
      }
      return;
    }
    try {
      if ((await owner(this.path)) === seen) await unlink(this.path).catch(() => undefined);
    } finally {
      await unlink(breaker).catch(() => undefined);
    }
  }

  private async breakIfOld(): Promise<void> {
    try {
      const st = await stat(this.path);
      if (Date.now() - st.mtimeMs > 5_000 && (await owner(this.path)) === '') await this.breakStale('');
    } catch {
      /* gone */
    }
  }

  async release(): Promise<void> {
    if (!this.token) return;
    const mine = (await owner(this.path)) === this.token;
    this.token = undefined;
    if (mine) await unlink(this.path).catch(() => undefined);
  }
}
