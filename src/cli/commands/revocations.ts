/** mlic revocations: the vendor-signed lists of revoked licences on this host (sync from the licence server, install from a file, list). */
import { MlicError } from '../../errors.js';
import { fetchRevocationList, installRevocationList, installedLists, type InstallResult } from '../../host/revocations.js';
import { MAX_REVOCATION_LIST_BYTES } from '../../format/revocation.js';
import { StateDir } from '../../state/home.js';
import { readTextFile } from '../../util/files.js';
import { printResult, type Ctx } from '../output.js';

function report(ctx: Ctx, r: InstallResult): void {
  ctx.out(
    r.status === 'unchanged'
      ? `revocation list of vendor key ${r.keyId} is up to date (serial ${r.serial}, ${r.revoked} revoked)`
      : `installed the revocation list of vendor key ${r.keyId}: serial ${r.serial} (was ${r.previous}), ${r.revoked} revoked`,
  );
  if (r.revokesInstalled.length) ctx.note(`it revokes licence(s) installed here, which are now refused: ${r.revokesInstalled.join(', ')}`);
  printResult(ctx, { ...r });
}

export async function sync(ctx: Ctx, o: { server?: string; home?: string }): Promise<void> {
  const state = StateDir.fromEnv(process.env, o.home);
  const server = o.server ?? (await state.serverUrl());
  if (!server) throw new MlicError('USAGE', 'which licence server? this host did not activate online: give --server URL');
  report(ctx, await installRevocationList(state, await fetchRevocationList(server), `the revocation list of ${server}`));
}

export async function install(ctx: Ctx, file: string, o: { home?: string }): Promise<void> {
  const text = await readTextFile(file, { maxBytes: MAX_REVOCATION_LIST_BYTES, what: 'revocation list' });
  report(ctx, await installRevocationList(StateDir.fromEnv(process.env, o.home), text, file));
}

export async function list(ctx: Ctx, o: { home?: string }): Promise<void> {
  const lists = await installedLists(StateDir.fromEnv(process.env, o.home));
  if (lists.length === 0) ctx.note('no revocation lists installed');
  for (const l of lists) ctx.out(`${l.keyId}  serial ${l.serial}  issued ${l.issuedAt}  ${l.revoked} revoked`);
  printResult(ctx, { lists });
}
