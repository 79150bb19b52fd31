import { MlicError } from '../../errors.js';
import { loadLicense, type LoadLicenseOptions } from '../../host/handle.js';
import { serve } from '../../host/meter-server.js';
import { VALIDATE_ERRORS } from '../../license/policy.js';
import { printResult, type Ctx } from '../output.js';
import { probeWithSpinner } from '../spinner.js';
import type { HostProbe } from '../../hardware/probe.js';

export interface MeterOpts {
  home?: string;
  bundle?: string;
  license?: string;
  model?: string;
  durability?: string;
  feature?: string;
  metric?: string;
  quantity?: string;
  socket?: string;
}


export function loadOpts(o: MeterOpts, hostProbe?: HostProbe): LoadLicenseOptions {
  if (o.durability !== undefined && o.durability !== 'strict' && o.durability !== 'batched') throw new MlicError('USAGE', '--durability is strict or batched');
  return {
    ...(o.home ? { stateDir: o.home } : {}),
    ...(o.bundle ? { bundle: o.bundle } : {}),
    ...(o.license ? { licenseFile: o.license } : {}),
    ...(o.model ? { model: o.model } : {}),
    ...(o.durability ? { durability: o.durability as 'strict' | 'batched' } : {}),
    ...(hostProbe ? { hostProbe } : {}),
  };
}

export async function status(ctx: Ctx, o: MeterOpts): Promise<void> {
  const lic = await loadLicense(loadOpts(o, await probeWithSpinner(ctx.json)));
  try {
    const meters = await lic.status();
    const l = lic.license;
    ctx.out(`licence ${l.licenseId} for ${l.model}${l.tier ? `, tier ${l.tier}` : ''}${l.features.length ? `, features ${l.features.join(', ')}` : ''}`);
    if (meters.length === 0) ctx.out('no meters in this licence');
    for (const m of meters) ctx.out(`${m.metric.padEnd(16)} ${m.used} of ${m.limit} used${m.reserved ? `, ${m.reserved} reserved by running processes` : ''} (${m.period}), ${m.remaining} left${m.resetsAt ? `, resets ${m.resetsAt}` : ''}`);
    printResult(ctx, { licenseId: l.licenseId, model: l.model, tier: l.tier ?? null, features: l.features, meters });
  } finally {
    await lic.close();
  }
}

export async function consume(ctx: Ctx, o: MeterOpts): Promise<void> {
  if (o.metric === undefined || o.quantity === undefined) throw new MlicError('USAGE', '--metric and --quantity are required');
  if (!/^\d+$/.test(o.quantity)) throw new MlicError('USAGE', `--quantity must be a non-negative integer, got '${o.quantity}'`);
  const lic = await loadLicense({ ...loadOpts(o, await probeWithSpinner(ctx.json)), durability: (o.durability as 'strict' | 'batched' | undefined) ?? 'strict' });
  try {
    const r = await lic.validate({ ...(o.feature ? { feature: o.feature } : {}), meter: { metric: o.metric, quantity: Number(o.quantity) } });
    if (!r.valid) throw new MlicError(VALIDATE_ERRORS[r.error!], r.message ?? r.error!, { details: { ...r } });
    ctx.out(`ok: ${o.quantity} ${o.metric} counted; ${r.used} of ${r.limit} used${r.reserved ? `, ${r.reserved} reserved by running processes` : ''}, ${r.remaining} left this period${r.overage ? ' (OVERAGE)' : ''}`);
    printResult(ctx, r);
  } finally {
    await lic.close();
  }
}

export async function serveCmd(ctx: Ctx, o: MeterOpts): Promise<void> {
  if (!o.socket) throw new MlicError('USAGE', '--socket PATH is required');
  const lic = await loadLicense(loadOpts(o, await probeWithSpinner(ctx.json)));
  const server = await serve({ socketPath: o.socket, license: lic });
  ctx.note(`mlic meter: serving licence ${lic.license.licenseId} (${lic.license.model}) on ${o.socket}; stop with SIGTERM or Ctrl-C`);
  if (ctx.json) process.stdout.write(JSON.stringify({ ok: true, result: { listening: o.socket, licenseId: lic.license.licenseId } }) + '\n');
  await new Promise<void>((resolve) => {
    const stop = () => {
      server.close(() => resolve());
      // Connections still open are ended so that close() can finish.
      setTimeout(() => resolve(), 1000).unref();
    };
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.removeAllListeners(s);
      process.once(s, stop);
    }
  });
  await lic.close();
}
