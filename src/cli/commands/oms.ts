import { MlicError } from '../../errors.js';
import { MAX_INPUT, readTextFile } from '../../util/files.js';
import { omsSign } from '../../oms/sign.js';
import { omsVerify } from '../../oms/verify.js';
import { writeSmallFileAtomic } from '../../util/atomic.js';
import { printResult, type Ctx } from '../output.js';
import { passphraseSource } from '../passphrase.js';

async function text(p: string | undefined, what: string, maxBytes: number): Promise<string> {
  if (p === undefined) throw new MlicError('USAGE', `${what} is required with --oms`);
  return readTextFile(p, { maxBytes });
}

export async function signOms(ctx: Ctx, paths: string[], o: { key?: string; output?: string; ignore?: string[]; passphraseFile?: string; force?: boolean }): Promise<void> {
  if (paths.length !== 1) throw new MlicError('USAGE', '--oms signs one model directory (or file) at a time');
  const model = paths[0]!;
  const privateKeyPem = o.key !== undefined ? await text(o.key, '--key', MAX_INPUT.pem) : process.env.MLIC_OMS_KEY;
  if (!privateKeyPem) throw new MlicError('USAGE', '--oms needs an ECDSA private key: --key key.pem (or MLIC_OMS_KEY)', { hint: 'make one with `mlic keygen --type ecdsa-p256`' });
  const out = o.output ?? 'model.sig';
  let passphrase: string | undefined;
  if (privateKeyPem.includes('ENCRYPTED PRIVATE KEY')) {
    const source = passphraseSource(o.passphraseFile, o.key ?? 'the key in MLIC_OMS_KEY', ctx.json);
    passphrase = await source();
    source.done();
  }
  const r = await omsSign(model, { privateKeyPem, ...(passphrase !== undefined ? { passphrase } : {}), ignore: [...(o.ignore ?? []), out] });
  await writeSmallFileAtomic(out, r.bundleJson, { mode: 0o644, force: o.force ?? false });
  ctx.out(`signed ${r.files.length} file(s) of ${model} -> ${out} (OpenSSF Model Signing v1.0)`);
  printResult(ctx, { signature: out, files: r.files });
}

export async function verifyOms(ctx: Ctx, paths: string[], o: { pub: string; sig?: string; ignore?: string[] }): Promise<void> {
  if (paths.length !== 1) throw new MlicError('USAGE', '--oms verifies one model directory (or file) at a time');
  const model = paths[0]!;
  const sigPath = o.sig ?? 'model.sig';
  const bundleJson = await text(sigPath, '--sig', MAX_INPUT.omsSignature);
  const publicKeyPem = await text(o.pub, '--pub', MAX_INPUT.pem);
  const r = await omsVerify(model, bundleJson, { publicKeyPem, ignore: [...(o.ignore ?? []), sigPath] });
  if (!r.ok) {
    const parts = [
      r.mismatched.length ? `changed: ${r.mismatched.join(', ')}` : '',
      r.missing.length ? `missing: ${r.missing.join(', ')}` : '',
      r.uncovered.length ? `not covered by the signature: ${r.uncovered.join(', ')}` : '',
    ].filter(Boolean);
    throw new MlicError('OMS_VERIFY_FAILED', `${model} does not match its signature (${parts.join('; ')})`, { details: { mismatched: r.mismatched, missing: r.missing, uncovered: r.uncovered } });
  }
  ctx.out(`ok: ${model} matches ${sigPath}: ${r.files.length} file(s), signature valid`);
  printResult(ctx, { valid: true, files: r.files, statementDigest: r.statementDigest });
}
