/** The vendor key for a command: --key FILE or MLIC_SECRET_KEY, unlocked with a named prompt and a spinner. */
import { loadSecretKey } from '../keys/load.js';
import type { VendorKey } from '../keys/vendor.js';
import { passphraseSource } from './passphrase.js';
import type { Ctx } from './output.js';

export async function vendorKey(ctx: Ctx, o: { key?: string; passphraseFile?: string }): Promise<VendorKey> {
  const source = passphraseSource(o.passphraseFile, o.key ?? 'the key in MLIC_SECRET_KEY', ctx.json);
  try {
    return await loadSecretKey({ ...(o.key !== undefined ? { keyFile: o.key } : {}), passphrase: source });
  } finally {
    source.done();
  }
}
