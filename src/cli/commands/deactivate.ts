/** mlic deactivate: free this host's slot on the vendor's licence server (online, or by a signed file) and remove the licence. */
import { MlicError } from '../../errors.js';
import { deactivateOnline, makeDeactivation } from '../../host/deactivate.js';
import { StateDir } from '../../state/home.js';
import { writeSmallFileAtomic } from '../../util/atomic.js';
import { printResult, type Ctx } from '../output.js';

export interface DeactivateOpts {
  online?: string | boolean;
  output?: string;
  force?: boolean;
  home?: string;
}

export async function run(ctx: Ctx, licenseId: string | undefined, o: DeactivateOpts): Promise<void> {
  const base = { ...(o.home ? { stateDir: o.home } : {}), ...(licenseId !== undefined ? { licenseId } : {}) };
  if (o.online !== undefined && o.output !== undefined) throw new MlicError('USAGE', '--online and -o exclude each other: online, the server is told at once');
  if (o.online !== undefined) {
    const r = await deactivateOnline({ ...base, ...(typeof o.online === 'string' ? { server: o.online } : {}) });
    ctx.out(r.already ? `this host was already deactivated; removed licence ${r.licenseId}` : `deactivated: the slot is free and licence ${r.licenseId} is removed from this host`);
    printResult(ctx, { licenseId: r.licenseId, hostId: r.hostId, already: r.already, revoked: r.revoked, revocationSerial: r.revocations?.serial ?? null });
    return;
  }
  const { deactivation, licenseId: id } = await makeDeactivation(base);
  const out = o.output ?? 'deactivation.json';
  await writeSmallFileAtomic(out, JSON.stringify(deactivation, null, 2) + '\n', { mode: 0o644, force: o.force ?? false });
  await StateDir.fromEnv(process.env, o.home).licenseRemove(id);
  ctx.out(`wrote ${out} and removed licence ${id}: send the file to your vendor (\`mlic admin deactivate ${out}\`) to free the slot`);
  printResult(ctx, { licenseId: id, deactivation: out });
}
