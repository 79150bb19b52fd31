/** mlic leases: the floating-seat leases this host holds (docs/SERVER.md). */
import { listLeases } from '../../host/leases.js';
import { StateDir } from '../../state/home.js';
import { printResult, type Ctx } from '../output.js';

export async function run(ctx: Ctx, o: { home?: string }): Promise<void> {
  const leases = await listLeases(StateDir.fromEnv(process.env, o.home), new Date());
  if (leases.length === 0) ctx.note('no leases (only licences with floating seats take one)');
  for (const l of leases) ctx.out(`${l.live ? 'live   ' : 'expired'}  ${l.leaseId}  licence ${l.licenseId}  ${l.seats} ${l.unit} seat(s)  ${l.clientId}  until ${l.expiresAt}`);
  printResult(ctx, { leases });
}
