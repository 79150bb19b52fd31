import { MlicError } from '../../errors.js';
import { StateDir } from '../../state/home.js';
import { installRevocationList } from '../../host/revocations.js';
import { callServer, expectField } from '../../host/server-client.js';
import { MAX_INPUT, readTextFile } from '../../util/files.js';
import { activateLicense, createActivationRequest, type RequestResult, type TpmMode } from '../../host/licences.js';
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
  online?: string;
  licenseKey?: string;
  tpm?: string | boolean;
  pcrs?: string;
}

function tpmMode(o: ActivateOpts): { tpmMode?: TpmMode; pcrs?: string } {
  if (o.pcrs !== undefined && (o.tpm === undefined || o.tpm === 'off')) throw new MlicError('USAGE', '--pcrs is for a TPM request: add --tpm');
  const pcrs = o.pcrs !== undefined ? { pcrs: o.pcrs } : {};
  if (o.tpm === undefined) return pcrs;
  const m = o.tpm === true ? 'on' : o.tpm;
  if (m !== 'on' && m !== 'auto' && m !== 'off') throw new MlicError('USAGE', `--tpm ${m}: say on, auto or off`);
  return { tpmMode: m, ...pcrs };
}

function sayTpm(ctx: Ctx, t: RequestResult['tpm']): void {
  if (t.attested) ctx.note('the host key is bound to this host\'s TPM; the request carries its attestation (endorsement key certificate, attestation key, quote)');
  else if (t.fallback) ctx.note(`no TPM attestation (--tpm auto): ${t.fallback}; the request uses the host key file alone`);
}

export async function run(ctx: Ctx, licenseFile: string | undefined, o: ActivateOpts): Promise<void> {
  const base = o.home ? { stateDir: o.home } : {};
  if (o.request) {
    if (licenseFile !== undefined) throw new MlicError('USAGE', '--request takes no licence file');
    const hostProbe = await probeWithSpinner(ctx.json);
    const { request, reused, tpm } = await createActivationRequest({ ...base, hostProbe, ...tpmMode(o), ...(o.region ? { region: o.region } : {}), ...(o.customer ? { customer: o.customer } : {}) });
    sayTpm(ctx, tpm);
    const text = JSON.stringify(request, null, 2) + '\n';
    const out = o.output ?? 'request.json';
    await writeSmallFileAtomic(out, text, { mode: 0o644, force: o.force ?? false });
    ctx.note(`${reused ? 'reused this host\'s key' : 'created this host\'s key'}; ${request.payload.fingerprint.components.length} hardware components, as salted hashes`);
    ctx.out(`wrote ${out}: send it to your vendor, then run \`mlic activate <licence-file>\``);
    printResult(ctx, { request: out, requestId: request.payload.requestId, reusedHostKey: reused, components: request.payload.fingerprint.components.length, region: request.payload.region ?? null, tpm: tpm.attested, ...(tpm.fallback ? { tpmFallback: tpm.fallback } : {}) });
    return;
  }
  let text: string;
  let revocations: string | undefined;
  let hostProbe;
  if (o.online !== undefined) {
    if (licenseFile !== undefined) throw new MlicError('USAGE', '--online takes no licence file: the server sends it');
    if (!o.licenseKey) throw new MlicError('USAGE', '--online needs --license-key MLIC-XXXXX-XXXXX-XXXXX-XXXXX');
    hostProbe = await probeWithSpinner(ctx.json);
    // a TPM host quotes the server's challenge, so the server knows the quote is fresh
    const mode = tpmMode(o);
    const tpmNonce = (mode.tpmMode !== undefined && mode.tpmMode !== 'off') || (await StateDir.fromEnv(process.env, o.home).hostKind()) === 'tpm' ? await challenge(o.online) : undefined;
    const { request, tpm } = await createActivationRequest({ ...base, hostProbe, ...mode, ...(tpmNonce ? { tpmNonce } : {}), ...(o.region ? { region: o.region } : {}), ...(o.customer ? { customer: o.customer } : {}) });
    sayTpm(ctx, tpm);
    const answer = await postActivation(o.online, o.licenseKey, JSON.stringify(request));
    text = answer.license;
    revocations = answer.revocations;
  } else {
    if (licenseFile === undefined) throw new MlicError('USAGE', 'give a licence file, --request to make an activation request, or --online URL --license-key KEY');
    text = await readTextFile(licenseFile, { maxBytes: MAX_INPUT.licence, what: 'licence' });
  }
  const state = StateDir.fromEnv(process.env, o.home);
  // the server's revocation list first: the licence it just issued must not be one it revoked
  let installed: Awaited<ReturnType<typeof installRevocationList>> | undefined;
  if (revocations !== undefined)
    try {
      installed = await installRevocationList(state, revocations, "the server's revocation list");
    } catch (e) {
      // the licence is issued either way: keep the installed list (a newer one, say) and say so
      if (!(e instanceof MlicError)) throw e;
      ctx.note(`warning: kept the installed revocation list: ${e.message} [${e.code}]`);
    }
  const r = await activateLicense(text, { ...base, hostProbe: hostProbe ?? (await probeWithSpinner(ctx.json)) });
  if (o.online !== undefined) await state.setServerUrl(o.online);
  if (installed?.revokesInstalled.length) ctx.note(`the server revokes ${installed.revokesInstalled.length} licence(s) installed here: ${installed.revokesInstalled.join(', ')}`);
  const l = r.license;
  ctx.out(`activated licence ${l.licenseId} for ${l.model} (${describeVersions(l.versions)})${l.expires ? `, valid until ${l.expires}` : ''}`);
  if (r.inGrace) ctx.note('warning: the licence has expired and is in its grace period');
  printResult(ctx, { licenseId: l.licenseId, model: l.model, versions: l.versions, expires: l.expires ?? null, installedAt: r.path, inGrace: r.inGrace });
}

/** A nonce from the server for the TPM to quote. */
async function challenge(server: string): Promise<string> {
  const a = await callServer(server, 'v1/activations/challenge', { body: {} });
  expectField(a, 'nonce', 'TPM challenge');
  const nonce = a.json!.nonce;
  if (typeof nonce !== 'string' || !/^[0-9a-f]{32}$/.test(nonce)) throw new MlicError('FORMAT_INVALID', "the licence server's TPM challenge is not a 16-byte hex nonce");
  return nonce;
}

/** Posts the request; the licence text and the server's revocation list on success, the server's mlic code otherwise. */
async function postActivation(server: string, licenseKey: string, request: string): Promise<{ license: string; revocations?: string }> {
  const a = await callServer(server, 'v1/activations', { body: { licenseKey, request } });
  expectField(a, 'license', 'activation');
  const { license, revocations } = a.json as { license: string; revocations?: unknown };
  return { license, ...(typeof revocations === 'string' ? { revocations } : {}) };
}
