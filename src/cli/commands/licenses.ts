import { listLicenses } from '../../host/list.js';
import { redactedPayload } from '../../format/license.js';
import { describeVersions } from '../../license/policy.js';
import { printResult, type Ctx } from '../output.js';

export async function run(ctx: Ctx, o: { home?: string }): Promise<void> {
  const ls = await listLicenses(o.home ? { stateDir: o.home } : {});
  if (ls.length === 0) ctx.note('no licences installed (see `mlic activate --help`)');
  for (const x of ls) {
    const l = x.license?.payload;
    if (!l) {
      ctx.out(`${x.status.padEnd(22)} ${x.path}: ${x.error?.message ?? ''}`);
      continue;
    }
    const grants = [
      describeVersions(l.versions),
      l.tier ? `tier ${l.tier}` : undefined,
      l.features.length ? `features ${l.features.join(',')}` : undefined,
      l.components ? `components ${l.components.join(',')}` : undefined,
      l.meters.length ? `meters ${l.meters.map((m) => `${m.metric}=${m.limit}/${m.period}`).join(',')}` : undefined,
      l.regions ? `regions ${l.regions.join(',')}` : undefined,
      l.expires ? `until ${l.expires}` : 'no expiry',
    ].filter(Boolean);
    ctx.out(`${x.status.padEnd(22)} ${l.licenseId}  ${l.model}: ${grants.join('; ')}`);
  }
  printResult(ctx, { licenses: ls.map((x) => ({ path: x.path, status: x.status, ...(x.license ? { license: redactedPayload(x.license.payload) } : {}), ...(x.error ? { error: x.error } : {}) })) });
}
