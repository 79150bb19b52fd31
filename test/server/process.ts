/** A licence server as a real process, on a free loopback port. */
import { spawn, type ChildProcess } from 'node:child_process';
import { BIN } from '../cli/run.js';

export interface Running {
  child: ChildProcess;
  url: string;
  first: Record<string, unknown>;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts a server on a free loopback port (--listen 127.0.0.1:0) and waits for its first line. */
export function startServer(args: string[], env: Record<string, string> = {}, listen = '127.0.0.1:0'): Promise<Running> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'server', 'start', '--listen', listen, '--json', ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    child.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0 && !started) {
        started = true;
        let first: { ok?: boolean; result?: Record<string, unknown> } | undefined;
        try {
          first = JSON.parse(out.slice(0, nl)) as typeof first;
        } catch {
          first = undefined;
        }
        if (first?.ok !== true || typeof first.result?.url !== 'string') {
          child.kill('SIGKILL');
          reject(new Error(`server did not start: ${out.slice(0, nl)} ${err}`));
          return;
        }
        resolve({ child, url: first.result.url, first: first.result, stdout: () => out, stderr: () => err, exited });
      }
    });
    child.stderr!.on('data', (d) => (err += d));
    let started = false;
    void exited.then((code) => {
      if (!started) reject(new Error(`server exited ${code} before listening: ${out} ${err}`));
    });
  });
}

export async function stop(s: Running): Promise<number | null> {
  s.child.kill('SIGTERM');
  return s.exited;
}

