import { MlicError } from '../../errors.js';
import { MAX_INPUT, readTextFile } from '../../util/files.js';
import { keyFingerprint, keyIdHex } from '../../format/minisign.js';
import { StateDir } from '../../state/home.js';
import { printResult, type Ctx } from '../output.js';

export async function add(ctx: Ctx, file: string, o: { home?: string; replace?: boolean }): Promise<void> {
  const text = await readTextFile(file, { maxBytes: MAX_INPUT.publicKey, what: 'public key' });
  const r = await StateDir.fromEnv(process.env, o.home).trustAdd(text, { replace: o.replace ?? false });
  const id = keyIdHex(r.key.keyId);
  const fp = keyFingerprint(r.key);
  if (r.status === 'unchanged') ctx.out(`vendor key ${id} is already trusted (${fp})`);
  else if (r.status === 'replaced') ctx.out(`replaced trusted vendor key ${id}: was ${keyFingerprint(r.previous!)}, now ${fp}`);
  else ctx.out(`trusted vendor key ${id} (${fp})`);
  if (r.status !== 'unchanged') ctx.note('compare the fingerprint with the one your vendor publishes');
  printResult(ctx, { keyId: id, fingerprint: fp, status: r.status, ...(r.previous ? { previousFingerprint: keyFingerprint(r.previous) } : {}) });
}

export async function list(ctx: Ctx, o: { home?: string }): Promise<void> {
  const keys = await StateDir.fromEnv(process.env, o.home).trustList();
  if (keys.length === 0) ctx.note('no trusted vendor keys (add one with `mlic trust add vendor.pub`)');
  for (const k of keys) ctx.out(`${keyIdHex(k.keyId)}  ${keyFingerprint(k)}`);
  printResult(ctx, { keys: keys.map((k) => ({ keyId: keyIdHex(k.keyId), fingerprint: keyFingerprint(k), publicKey: k.publicKey.toString('base64') })) });
}

export async function remove(ctx: Ctx, keyId: string, o: { home?: string }): Promise<void> {
  if (!/^[0-9A-Fa-f]{16}$/.test(keyId)) throw new MlicError('USAGE', `'${keyId}' is not a key id (16 hex digits)`);
  const ok = await StateDir.fromEnv(process.env, o.home).trustRemove(keyId);
  if (!ok) throw new MlicError('IO_NOT_FOUND', `vendor key ${keyId.toUpperCase()} is not trusted here`);
  ctx.out(`removed vendor key ${keyId.toUpperCase()}`);
  printResult(ctx, { keyId: keyId.toUpperCase(), removed: true });
}
