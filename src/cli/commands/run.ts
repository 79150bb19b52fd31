import { runWithBundle } from '../../host/run.js';
import { printResult, type Ctx } from '../output.js';
import { probeWithSpinner } from '../spinner.js';

export interface RunOpts {
  feature?: string;
  component?: string[];
  home?: string;
}

/** Returns the child's exit status (main exits with it). With --json the command's stdout goes to stderr. */
export async function run(ctx: Ctx, bundle: string, command: string[], o: RunOpts): Promise<number> {
  const r = await runWithBundle(bundle, command, {
    hostProbe: await probeWithSpinner(ctx.json),
    ...(o.home ? { stateDir: o.home } : {}),
    ...(o.feature ? { feature: o.feature } : {}),
    ...(o.component?.length ? { components: o.component } : {}),
    stdoutToStderr: ctx.json,
  });
  if (!r.memoryBacked) ctx.note('note: /dev/shm is not available; the model was decrypted to the temporary directory instead');
  printResult(ctx, { exitCode: r.exitCode, ...(r.signal ? { signal: r.signal } : {}), memoryBacked: r.memoryBacked, wiped: true });
  return r.exitCode;
}
