/**
 * The chunk pipeline shared by pack, verify and decryption: chunks of one file go through the
 * engine's slots with a few in flight (reads, crypto and writes of neighbouring chunks overlap),
 * and the parts that must see the chunks in file order (a streaming hash) run in order.
 */
import type { FileHandle } from 'node:fs/promises';
import type { ReadAt } from '../util/read-at.js';
import { MlicError } from '../errors.js';
import { FILE_WINDOW, type CryptoEngine, type Slot } from '../crypto/engine.js';

/**
 * Runs fn once chunk i-1's ordered part has run (or chunk i-1 has ended); returns fn's result.
 * To start asynchronous work in order without waiting for it, return it wrapped: () => ({ done: p }).
 */
export type InOrder = <T>(fn: () => T) => Promise<T>;

/**
 * Runs step(i, slot, inOrder) for chunks 0..n-1, each holding one engine slot, at most `window`
 * at once. A step must not return (or throw) while work it started on its slot is still running.
 * After a failure no further chunk starts; the call waits for the running ones, then throws the
 * failure of the lowest chunk.
 */
export async function forEachChunk(engine: CryptoEngine, n: number, step: (i: number, slot: Slot, inOrder: InOrder) => Promise<void>, window = FILE_WINDOW): Promise<void> {
  const failures: { i: number; e: unknown }[] = [];
  const running = new Set<Promise<void>>();
  let turn: Promise<void> = Promise.resolve();
  for (let i = 0; i < n && failures.length === 0; i++) {
    while (running.size >= window) await Promise.race(running);
    if (failures.length > 0) break;
    let slot: Slot;
    try {
      slot = await engine.acquire();
    } catch (e) {
      failures.push({ i, e });
      break;
    }
    const prev = turn;
    let endTurn!: () => void;
    turn = new Promise<void>((r) => (endTurn = r));
    const inOrder: InOrder = async (fn) => {
      await prev;
      try {
        return fn();
      } finally {
        endTurn();
      }
    };
    const p = (async () => {
      try {
        await step(i, slot, inOrder);
      } catch (e) {
        failures.push({ i, e });
      } finally {
        endTurn();
        engine.release(slot);
      }
    })();
    running.add(p);
    void p.then(() => running.delete(p));
  }
  await Promise.all(running);
  if (failures.length > 0) throw failures.reduce((a, b) => (b.i < a.i ? b : a)).e;
}

/** Reads exactly len bytes at pos into buf; a short file is an error (`what` names it). */
export async function readExactly(fh: ReadAt, buf: Buffer, len: number, pos: number, onShort: () => MlicError): Promise<void> {
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
    if (bytesRead === 0) throw onShort();
    got += bytesRead;
  }
}

/** Writes all of buf[0, len) at pos. */
export async function writeAll(fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<void> {
  let done = 0;
  while (done < len) {
    const { bytesWritten } = await fh.write(buf, done, len - done, pos + done);
    done += bytesWritten;
  }
}

/** Puts per-chunk results back in chunk order: fold(i, x) runs for 0, 1, 2, ... as they become available. */
export class InOrderFold<T> {
  private readonly waiting = new Map<number, T>();
  private next = 0;

  constructor(private readonly fold: (x: T) => void) {}

  add(i: number, x: T): void {
    this.waiting.set(i, x);
    for (let y = this.waiting.get(this.next); y !== undefined; y = this.waiting.get(this.next)) {
      this.waiting.delete(this.next++);
      this.fold(y);
    }
  }

  get count(): number {
    return this.next;
  }
}
