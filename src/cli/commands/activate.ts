import { MlicError } from '../../errors.js';
import { MAX_INPUT, readTextFile } from '../../util/files.js';
import { activateLicense, createActivationRequest } from '../../host/licences.js';
import { writeSmallFileAtomic } from '../../util/atomic.js';
import { describeVersions } from '../../license/policy.js';
import { printResult, type Ctx } from '../output.js';
import { probeWithSpinner } from '../spinner.js';

export interface ActivateOpts {
  request?: boolean;
  output?: string;
  region?: string;
  customer?: string;
  home?: string;
  force?: boolean;
}

export async function run(ctx: Ctx, licenseFile: string | undefined, o: ActivateOpts): Promise<void> {
  const base = o.home ? { stateDir: o.home } : {};
  if (o.request) {
    if (licenseFile !== undefined) throw new MlicError('USAGE', '--request takes no licence file');
    const hostProbe = await probeWithSpinner(ctx.json);
    const { request, reused } = await createActivationRequest({ ...base, hostProbe, ...(o.region ? { region: o.region } : {}), ...(o.customer ? { customer: o.customer } : {}) });
    const text = JSON.stringify(request, null, 2) + '\n';
    const out = o.output ?? 'request.json';
    await writeSmallFileAtomic(out, text, { mode: 0o644, force: o.force ?? false });
    ctx.note(`${reused ? 'reused this host\'s key' : 'created this host\'s key'}; ${request.payload.fingerprint.components.length} hardware components, as salted hashes`);
    ctx.out(`wrote ${out}: send it to your vendor, then run \`mlic activate <licence-file>\``);
    printResult(ctx, { request: out, requestId: request.payload.requestId, reusedHostKey: reused, components: request.payload.fingerprint.components.length, region: request.payload.region ?? null });
    return;
  }
  if (licenseFile === undefined) throw new MlicError('USAGE', 'give a licence file, or --request to make an activation request');
  const text = await readTextFile(licenseFile, { maxBytes: MAX_INPUT.licence, what: 'licence' });
  const r = await activateLicense(text, { ...base, hostProbe: await probeWithSpinner(ctx.json) });
  const l = r.license;
  ctx.out(`activated licence ${l.licenseId} for ${l.model} (${describeVersions(l.versions)})${l.expires ? `, valid until ${l.expires}` : ''}`);
  if (r.inGrace) ctx.note('warning: the licence has expired and is in its grace period');
  printResult(ctx, { licenseId: l.licenseId, model: l.model, versions: l.versions, expires: l.expires ?? null, installedAt: r.path, inGrace: r.inGrace });
}
