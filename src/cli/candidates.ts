/**
 * The candidate licences of mlic trace and mlic watermark detect: the .lic files in a directory
 * and the licences a licence server lists, each verified with the vendor key; those a command
 * cannot use are counted by why.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MlicError, fromFsError } from '../errors.js';
import { MAX_INPUT, readTextFile } from '../util/files.js';
import { verifyLicenseText } from '../license/sign.js';
import { vendorPublicKey, type VendorKey } from '../keys/vendor.js';
import { keyIdHex } from '../format/minisign.js';
import type { LicensePayload } from '../format/license.js';
import { callServer, refusal, serverUrl } from '../host/server-client.js';

export async function verifiedLicence(file: string, key: VendorKey): Promise<LicensePayload> {
  const text = await readTextFile(file, { maxBytes: MAX_INPUT.licence, what: 'licence' });
  const pub = vendorPublicKey(key);
  const l = await verifyLicenseText(text, async (id) => (id === keyIdHex(key.keyId) ? pub : undefined), file);
  return l.payload;
}

/**
 * Every licence the licence server lists (GET /v1/licenses, all pages, with the admin token): for
 * marked bundles (or, with filter 'watermark', those carrying a watermark key), of `model` if known.
 */
export async function serverLicences(server: string, token: string | undefined, model: string | undefined, filter: 'marked' | 'watermark' = 'marked'): Promise<{ id: string; text: string }[]> {
  if (!token) throw new MlicError('USAGE', 'an admin token is needed for --server: set MLIC_ADMIN_TOKEN (or --token)');
  const out: { id: string; text: string }[] = [];
  let after: string | null = null;
  do {
    const q = [`${filter}=true`, 'limit=1000', ...(model !== undefined ? [`model=${encodeURIComponent(model)}`] : []), ...(after ? [`after=${encodeURIComponent(after)}`] : [])];
    const path = `v1/licenses?${q.join('&')}`;
    const a = await callServer(server, path, { token, timeoutMs: 30_000 });
    if (a.json === undefined) throw new MlicError('IO_ERROR', `the server at ${serverUrl(server, path).origin} answered ${a.status} with something that is not JSON`);
    if (!a.ok) throw refusal('licence list', a.status, a.json.error as Parameters<typeof refusal>[2]);
    const r = a.json as { licenses?: unknown; next?: unknown };
    if (!Array.isArray(r.licenses) || (r.next !== undefined && r.next !== null && typeof r.next !== 'string'))
      throw new MlicError('IO_ERROR', `the server at ${serverUrl(server, path).origin} answered with no licence list`, { hint: 'is it an mlic licence server new enough to list licences (GET /v1/licenses)?' });
    for (const l of r.licenses as { id?: unknown; text?: unknown }[]) out.push({ id: String(l?.id), text: typeof l?.text === 'string' ? l.text : '' });
    // a cursor that does not move would loop for ever
    if (typeof r.next === 'string' && r.next === after) throw new MlicError('IO_ERROR', `the server at ${serverUrl(server, path).origin} answered the same page twice`);
    after = typeof r.next === 'string' ? r.next : null;
  } while (after);
  return out;
}

/** The candidates: verified, accepted by `reject` (which names why not), each once; the others counted by why. */
export class Candidates {
  readonly licences: LicensePayload[] = [];
  readonly skipped: Record<string, number> = {};
  private readonly seen = new Set<string>();

  constructor(
    private readonly key: VendorKey,
    private readonly reject: (p: LicensePayload) => string | undefined,
  ) {}

  private async consider(verify: () => Promise<LicensePayload>): Promise<void> {
    const skip = (why: string) => (this.skipped[why] = (this.skipped[why] ?? 0) + 1);
    let p: LicensePayload;
    try {
      p = await verify();
    } catch (e) {
      if (!(e instanceof MlicError)) throw e;
      skip(e.code === 'UNTRUSTED_VENDOR' ? 'another vendor key' : 'unreadable or not verified');
      return;
    }
    const why = this.reject(p) ?? (this.seen.has(p.licenseId) ? 'duplicate' : undefined);
    if (why) skip(why);
    else {
      this.seen.add(p.licenseId);
      this.licences.push(p);
    }
  }

  /** The .lic files in `dir`, recursively. */
  async fromDir(dir: string): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(dir, { recursive: true })).filter((n) => n.endsWith('.lic')).sort();
    } catch (e) {
      throw fromFsError(e, dir);
    }
    for (const n of names) await this.consider(() => verifiedLicence(join(dir, n), this.key));
  }

  /** The licences the licence server lists with `filter` (of `model`, if given), through its admin API. */
  async fromServer(server: string, token: string | undefined, filter: 'marked' | 'watermark', model?: string): Promise<void> {
    const pub = vendorPublicKey(this.key);
    for (const l of await serverLicences(server, token, model, filter))
      await this.consider(async () => (await verifyLicenseText(l.text, async (id) => (id === keyIdHex(this.key.keyId) ? pub : undefined), `licence ${l.id} from the server`)).payload);
  }
}
