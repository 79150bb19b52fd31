import { MlicError } from '../../errors.js';
import { MAX_INPUT, readTextFile } from '../../util/files.js';
import { fingerprintOf, matchFingerprint } from '../../hardware/fingerprint.js';
import { probeHost } from '../../hardware/probe.js';
import { parseAndVerifyRequest } from '../../license/sign.js';
import { parseLicenseText } from '../../format/license.js';
import { StateDir } from '../../state/home.js';
import { printResult, type Ctx } from '../output.js';
import { spinner } from '../spinner.js';

export interface FingerprintOpts {
  compare?: string;
  home?: string;
}

export async function run(ctx: Ctx, o: FingerprintOpts): Promise<void> {
  const spin = await spinner('probing this host (nvidia-smi, /etc, /sys, the TPM)', ctx.json);
  const probe = await probeHost().finally(() => spin.stop());
  if (o.compare !== undefined) {
    const text = await readTextFile(o.compare, { maxBytes: MAX_INPUT.licence, what: 'request or licence' });
    // Either an activation request or a licence.
    let licensed;
    let match = { policy: 'all' } as import('../../format/license.js').MatchPolicy;
    if (text.includes('-----BEGIN MLIC LICENSE-----')) {
      const l = parseLicenseText(text, o.compare).payload;
      if (l.host.binding !== 'host') throw new MlicError('USAGE', `${o.compare} is an unbound licence; it names no hardware`);
      licensed = l.host.fingerprint;
      match = l.host.match;
    } else licensed = parseAndVerifyRequest(text, o.compare).payload.fingerprint;
    const current = fingerprintOf(probe, Buffer.from(licensed.salt, 'hex'));
    const r = matchFingerprint(licensed.components, current.components, match);
    const rows = [
      ...licensed.components.map((c) => ({ component: c.label, kind: c.kind, status: current.components.some((x) => x.hash === c.hash) ? 'same' : 'changed or missing' })),
      ...r.added.map((c) => ({ component: c.label, kind: c.kind, status: 'new on this host' })),
    ];
    for (const row of rows) ctx.out(`${row.status.padEnd(20)} ${row.component}`);
    ctx.out(`${r.matched} of ${r.total} components match; under policy '${match.policy === 'k' ? `${match.k} of n` : match.policy}' this host ${r.ok ? 'matches' : 'does NOT match'}`);
    const result = { matched: r.matched, total: r.total, required: r.required, matches: r.ok, components: rows };
    if (!r.ok)
      throw new MlicError('HW_MISMATCH', `this host differs from ${o.compare}: ${r.missing.map((c) => c.label).join(', ')} changed or missing`, {
        details: result,
        hint: 'ask your vendor to re-issue the licence from a new `mlic activate --request`',
      });
    printResult(ctx, result);
    return;
  }
  const state = StateDir.fromEnv(process.env, o.home);
  const hostSalt = await state.hostSalt();
  const salt = hostSalt ?? Buffer.alloc(32);
  const fp = fingerprintOf(probe, salt);
  ctx.out(`GPUs          ${probe.gpus.length ? '' : 'none found'}`);
  for (const g of probe.gpus) ctx.out(`  ${g.index}: ${g.name}  ${g.uuid}${g.pciBusId ? `  ${g.pciBusId}` : ''}${g.serial ? `  serial ${g.serial}` : ''}  (${g.source})`);
  ctx.out(`CPU           ${probe.cpuModel ?? 'unknown'}`);
  ctx.out(`TPM           ${probe.tpm ? `${[probe.tpm.manufacturer, probe.tpm.vendor].filter(Boolean).join(' ')}, firmware ${probe.tpm.firmware}, endorsement key sha256:${probe.tpm.ekHash.slice(0, 16)}… (${probe.tpm.ekCertificate ? 'with' : 'no'} EK certificate; ${probe.tpm.tcti})` : 'none found'}`);
  ctx.out(`container     ${probe.container ? 'yes' : 'no'}`);
  ctx.out(`VM            ${probe.vm ? 'yes' : 'no'}`);
  ctx.out(`components    ${fp.components.length} (each leaves this host only as a salted hash)`);
  for (const c of fp.components) ctx.out(`  ${c.kind.padEnd(13)} ${c.label.padEnd(40)} ${c.hash.slice(0, 16)}…`);
  for (const [src, why] of Object.entries(probe.missing)) ctx.note(`note: ${src}: ${why}`);
  printResult(ctx, {
    gpus: probe.gpus,
    cpuModel: probe.cpuModel ?? null,
    container: probe.container,
    vm: probe.vm,
    tpm: probe.tpm ?? null,
    salted: hostSalt !== undefined,
    components: fp.components,
    missing: probe.missing,
  });
}
