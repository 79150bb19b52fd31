import { spawnSync } from 'node:child_process';

/** Whether a third-party tool is on PATH. In CI (CI=true) a missing tool fails the suite instead of skipping. */
export function tool(name: string): boolean {
  const ok = spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
  if (!ok) {
    if (process.env.CI) throw new Error(`${name} is required in CI (.ci/run installs it with apt-get)`);
    console.warn(`SKIPPING interop tests that need ${name}: not installed (apt-get install ${name === 'signify-openbsd' ? 'signify-openbsd' : name})`);
  }
  return ok;
}

export function sh(cmd: string, args: string[], opts: { input?: string; cwd?: string } = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input ?? '', cwd: opts.cwd });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
