/**
 * Deactivation on the host: a statement signed by this host's key that frees its slot on the
 * vendor's licence server (docs/FORMAT.md §9). Online, it is posted at once; offline, it is written
 * to a file the vendor posts (`mlic admin deactivate FILE`). Either way the licence is then removed
 * from this host: the server revokes it, so a copy kept back is refused wherever the revocation
 * list reaches.
 */
import { MlicError } from '../errors.js';
import { isoSeconds } from '../format/fields.js';
import { parseLicenseText } from '../format/license.js';
import { signDeactivation, type Deactivation } from '../format/revocation.js';
import { HostContext, type HostOptions } from './context.js';
import { installRevocationList, type InstallResult } from './revocations.js';
import { callServer, expectField } from './server-client.js';

/** The installed licence to deactivate: the one named, or the only one installed. */
async function pick(ctx: HostContext, licenseId: string | undefined): Promise<{ id: string }> {
  const installed = (await ctx.state.licenseTexts()).map((t) => ({ ...t, id: /([0-9a-f]{32})\.lic$/.exec(t.path)![1]! }));
  if (licenseId !== undefined) {
    const l = installed.find((t) => t.id === licenseId.toLowerCase());
    if (!l) throw new MlicError('IO_NOT_FOUND', `no installed licence ${licenseId}`, { hint: 'see `mlic licenses`' });
    return l;
  }
  if (installed.length === 1) return installed[0]!;
  if (installed.length === 0) throw new MlicError('NO_LICENSE', 'no licence is installed on this host');
  throw new MlicError('USAGE', `${installed.length} licences are installed: name the one to deactivate (${installed.map((l) => l.id).join(', ')})`);
}

export async function makeDeactivation(o: HostOptions & { licenseId?: string }): Promise<{ deactivation: Deactivation; licenseId: string }> {
  const ctx = new HostContext(o);
  const h = await ctx.state.loadHost();
  if (!h) throw new MlicError('NO_LICENSE', 'this host has no host key: it was never activated');
  const { id } = await pick(ctx, o.licenseId);
  const text = (await ctx.state.licenseTexts()).find((t) => t.path.endsWith(`${id}.lic`))!.text;
  const l = parseLicenseText(text);
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
  if (l.payload.host.binding !== 'host' || l.payload.host.publicKey !== b64(h.boxPublic))
    throw new MlicError('HOST_KEY_MISMATCH', `licence ${id} is not bound to this host's key: there is no slot of this host to free`);
  const deactivation = signDeactivation(
    { v: 1, kind: 'mlic-deactivation', licenseId: id, hostPublicKey: b64(h.boxPublic), signingPublicKey: b64(h.signPublic), createdAt: isoSeconds(ctx.now()) },
    h.signSeed,
  );
  return { deactivation, licenseId: id };
}

export interface OnlineDeactivation {
  licenseId: string;
  hostId: string;
  already: boolean;
  revoked: string[];
  revocations?: InstallResult;
}

/** Posts a deactivation to the licence server; installs the revocation list it answers with. */
export async function deactivateOnline(o: HostOptions & { licenseId?: string; server?: string }): Promise<OnlineDeactivation> {
  const ctx = new HostContext(o);
  const server = o.server ?? (await ctx.state.serverUrl());
  if (!server) throw new MlicError('USAGE', 'which licence server? this host did not activate online: give --online URL');
  const { deactivation, licenseId } = await makeDeactivation(o);
  const a = await callServer(server, 'v1/deactivations', {
    body: { deactivation: JSON.stringify(deactivation) },
    hint: 'deactivate offline with `mlic deactivate -o deactivation.json` and send the file to your vendor',
  });
  expectField(a, 'hostId', 'deactivation');
  const body = a.json as { hostId: string; already?: boolean; revoked?: string[]; revocations?: unknown };
  // the slot is freed either way: a list that cannot be installed (an older one, say) leaves the installed one
  const revocations =
    typeof body.revocations === 'string'
      ? await installRevocationList(ctx.state, body.revocations, "the server's revocation list").catch((e: unknown) => {
          if (e instanceof MlicError) return undefined;
          throw e;
        })
      : undefined;
  await ctx.state.licenseRemove(licenseId);
  return { licenseId, hostId: body.hostId, already: body.already === true, revoked: body.revoked ?? [], ...(revocations ? { revocations } : {}) };
}
