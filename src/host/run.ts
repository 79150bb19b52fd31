/**
 * mlic run: decrypt into a private directory in memory-backed storage, run a command on it,
 * and wipe the directory when the command ends (success, failure, SIGINT, SIGTERM, SIGHUP).
 */
import { spawn } from 'node:child_process';
import { access, mkdtemp, chmod, rm, constants } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { MlicError } from '../errors.js';
import { wipe } from '../crypto/random.js';
import { authorizeBundle, type AuthorizeOptions } from './licences.js';
import { HostContext } from './context.js';
import { ensureLease, keepLease, type KeptLease } from './leases.js';
import { registerTempDir } from '../util/atomic.js';
import { unpackAuthorized } from './unpack.js';
import { SafeDir, removeTree } from '../util/safedir.js';

export interface RunOptions extends AuthorizeOptions {
  /** where to create the private directory; default /dev/shm when writable, else the OS temp dir */
  baseDir?: string;
  env?: NodeJS.ProcessEnv;
  /** send the command's stdout to stderr (so that stdout can carry one JSON object) */
  stdoutToStderr?: boolean;
  /** called once the model directory exists (tests) */
  onReady?: (dir: string) => void;
}

export interface RunResult {
  exitCode: number;
  signal?: NodeJS.Signals;
  modelDir: string;
  memoryBacked: boolean;
}

async function privateBase(opt?: string): Promise<{ base: string; memoryBacked: boolean }> {
  if (opt) return { base: opt, memoryBacked: opt.startsWith('/dev/shm') };
  try {
    await access('/dev/shm', constants.W_OK);
    return { base: '/dev/shm', memoryBacked: true };
  } catch {
    return { base: tmpdir(), memoryBacked: false };
  }
}

export async function runWithBundle(bundlePath: string, command: string[], opts: RunOptions = {}): Promise<RunResult> {
  if (command.length === 0) throw new MlicError('USAGE', 'no command to run', { hint: 'mlic run model.mlb -- python serve.py --model {model}' });
  const a = await authorizeBundle(bundlePath, { action: 'run', ...opts });
  const { base, memoryBacked } = await privateBase(opts.baseDir);
  let dir: string | undefined;
  let unregister: () => void = () => undefined;
  // Paths inside may be deeper than PATH_MAX; removeTree walks through directory handles.
  const wipeDir = async () => {
    if (dir) await removeTree(dir).catch(() => rm(dir!, { recursive: true, force: true }).catch(() => undefined));
    unregister();
  };
  try {
    dir = await mkdtemp(join(base, 'mlic-run-'));
    unregister = registerTempDir(dir);
    await chmod(dir, 0o700);
    const root = await SafeDir.open(dir);
    try {
      await unpackAuthorized(a, root);
    } finally {
      await root.close();
    }
  } catch (e) {
    await wipeDir();
    throw e;
  } finally {
    wipe(a.bundleKey);
    await a.bundle.close();
  }
  opts.onReady?.(dir);
  const modelDir = dir;
  const args = command.slice(1).map((s) => s.split('{model}').join(modelDir));
  const cmd = command[0]!.split('{model}').join(modelDir);
  // Floating seats: the lease is renewed while the command runs; if it runs out (the server away
  // or the seat taken), the command is stopped (SIGTERM), as any other use would be refused.
  const license = a.license;
  const ctx = new HostContext(opts);
  let kept: KeptLease | undefined;
  let watch: NodeJS.Timeout | undefined;
  if (license.lease) {
    const host = await ctx.state.hostIdentity({ create: false });
    const lease = (kept = await keepLease(ctx.state, host, license, await ensureLease(ctx.state, host, license, new Date())));
    watch = setInterval(() => {
      if (Date.now() < lease.endsAt()) return;
      clearInterval(watch);
      process.stderr.write(`mlic: the lease of licence ${license.licenseId} ended at ${new Date(lease.endsAt()).toISOString()} without a renewal: stopping the command [LEASE_EXPIRED]\n`);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    }, 1000);
    watch.unref();
  }
  const endLease = async () => {
    if (watch) clearInterval(watch);
    await kept?.stop();
  };
  let child: ReturnType<typeof spawn>;
  return new Promise<RunResult>((resolve, reject) => {
    child = spawn(cmd, args, { stdio: opts.stdoutToStderr ? [0, 2, 2] : 'inherit', env: { ...(opts.env ?? process.env), MLIC_MODEL_DIR: modelDir } });
    const forward = (sig: NodeJS.Signals) => () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    };
    const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
    for (const [s, h] of handlers) process.prependListener(s, h);
    // While the child runs, mlic's own exit-on-signal handlers must wait: remove them temporarily.
    const saved = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, process.listeners(s).filter((l) => !handlers.some(([, h]) => h === l))] as const);
    for (const [s, ls] of saved) for (const l of ls) process.off(s, l);
    const restore = () => {
      for (const [s, h] of handlers) process.off(s, h);
      for (const [s, ls] of saved) for (const l of ls) process.on(s, l);
    };
    child.on('error', async (e) => {
      restore();
      await endLease();
      await wipeDir();
      reject(new MlicError('USAGE', `cannot run ${cmd}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'command not found' : e.message}`));
    });
    child.on('exit', async (code, signal) => {
      restore();
      await endLease();
      await wipeDir();
      resolve({ exitCode: code ?? 128 + (signal ? signalNumber(signal) : 0), ...(signal ? { signal } : {}), modelDir, memoryBacked });
    });
  });
}

function signalNumber(s: NodeJS.Signals): number {
  return osConstants.signals[s] ?? 1;
}
