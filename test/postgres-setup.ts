/**
 * A private PostgreSQL for the server's tests (vitest globalSetup): a fresh cluster in a temporary
 * directory, listening on 127.0.0.1 at a free port, stopped and removed after the run. Uses the
 * machine's PostgreSQL binaries (Debian: apt-get install postgresql; .ci/run installs them), or
 * MLIC_TEST_DATABASE_URL if set. Without either, the PostgreSQL tests fail and say why.
 */
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** an administrative URL of the test PostgreSQL ('' when there is none) */
    pgUrl: string;
    pgWhy: string;
  }
}

function pgBin(): string | undefined {
  const which = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  if (which) return join(which, '..');
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const v = readdirSync(root).filter((d) => existsSync(join(root, d, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a))[0];
  return v ? join(root, v, 'bin') : undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export default async function setup(project: TestProject): Promise<(() => void) | undefined> {
  if (process.env.MLIC_TEST_DATABASE_URL) {
    project.provide('pgUrl', process.env.MLIC_TEST_DATABASE_URL);
    project.provide('pgWhy', '');
    return undefined;
  }
  const bin = pgBin();
  if (!bin) {
    project.provide('pgUrl', '');
    project.provide('pgWhy', 'PostgreSQL is not installed (Debian: apt-get install postgresql), and MLIC_TEST_DATABASE_URL is not set');
    return undefined;
  }
  const dir = mkdtempSync('/tmp/mlic-pg-');
  // PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user.
  const asRoot = process.getuid?.() === 0;
  let uid: number | undefined;
  if (asRoot) {
    const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    uid = Number(id.stdout.trim());
    const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    chownSync(dir, uid, gid);
  }
  const run = (cmd: string, args: string[]) => {
    const r = asRoot ? spawnSync('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args], { encoding: 'utf8' }) : spawnSync(join(bin, cmd), args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}): ${r.stderr || r.stdout}`);
  };
  const data = join(dir, 'data');
  run('initdb', ['-D', data, '-U', 'mlic', '--auth=trust', '-E', 'UTF8', '--locale=C']);
  const port = await freePort();
  run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '60', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`, 'start']);
  project.provide('pgUrl', `postgres://mlic@127.0.0.1:${port}/postgres`);
  project.provide('pgWhy', '');
  return () => {
    try {
      run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}
