import { MlicError, readTextFile } from '../../errors.js';
import { keyIdHex } from '../../format/minisign.js';
import { StateDir } from '../../state/home.js';
import { printResult, type Ctx } from '../output.js';

export async function add(ctx: Ctx, file: string, o: { home?: string }): Promise<void> {
  const text = await readTextFile(file);
  const pk = await StateDir.fromEnv(process.env, o.home).trustAdd(text);
  ctx.out(`trusted vendor key ${keyIdHex(pk.keyId)}`);
  printResult(ctx, { keyId: keyIdHex(pk.keyId) });
}

export async function list(ctx: Ctx, o: { home?: string }): Promise<void> {
  const keys = await StateDir.fromEnv(process.env, o.home).trustList();
  if (keys.length === 0) ctx.note('no trusted vendor keys (add one with `mlic trust add vendor.pub`)');
  for (const k of keys) ctx.out(`${keyIdHex(k.keyId)}  ${k.publicKey.toString('base64')}`);
  printResult(ctx, { keys: keys.map((k) => ({ keyId: keyIdHex(k.keyId), publicKey: k.publicKey.toString('base64') })) });
}

export async function remove(ctx: Ctx, keyId: string, o: { home?: string }): Promise<void> {
  if (!/^[0-9A-Fa-f]{16}$/.test(keyId)) throw new MlicError('USAGE', `'${keyId}' is not a key id (16 hex digits)`);
  const ok = await StateDir.fromEnv(process.env, o.home).trustRemove(keyId);
  if (!ok) throw new MlicError('IO_NOT_FOUND', `vendor key ${keyId.toUpperCase()} is not trusted here`);
  ctx.out(`removed vendor key ${keyId.toUpperCase()}`);
  printResult(ctx, { keyId: keyId.toUpperCase(), removed: true });
}
