import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/mlic.js', import.meta.url));

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** Spawns the built binary (no TTY), with a clean environment unless given. */
export function mlic(args: string[], opts: { env?: Record<string, string | undefined>; cwd?: string; dropDac?: boolean; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1' };
    for (const [k, v] of Object.entries(opts.env ?? {})) if (v !== undefined) env[k] = v;
    // dropDac: as root, run without the capabilities that let root read any file (so that
    // permissions apply to it as to anyone else).
    const [cmd, pre] = opts.dropDac && process.getuid?.() === 0 ? ['setpriv', ['--bounding-set', '-dac_override,-dac_read_search', process.execPath]] : [process.execPath, []];
    const child = spawn(cmd, [...pre, BIN, ...args], { cwd: opts.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.stdin.end(opts.input ?? '');
    child.on('close', (code) => {
      let json: unknown;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ code, stdout, stderr, json });
    });
  });
}
