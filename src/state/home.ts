/**
 * The host's state directory (docs/FORMAT.md §7): host keys, trusted vendor keys, installed
 * licences and the clock high-water mark. Default $XDG_CONFIG_HOME/mlic or ~/.config/mlic;
 * MLIC_HOME overrides. Directories 0700, files 0600, every write atomic.
 */
import { mkdir, readFile, readdir, chmod, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { MlicError, fromFsError } from '../errors.js';
import { ed25519Generate, ed25519PublicFromSeed } from '../crypto/ed25519.js';
import { hkdfSha256 } from '../crypto/kdf.js';
import { hmacSha256 } from '../crypto/hash.js';
import { constantTimeEqual, randomBytes } from '../crypto/random.js';
import { x25519FromSecret, x25519Generate } from '../crypto/x25519.js';
import { canonicalJson } from '../format/canonical.js';
import { keyFingerprint, keyIdHex, parsePublicKey, serializePublicKey, type MinisignPublicKey } from '../format/minisign.js';
import { REGION_RE } from '../format/license.js';
import { writeSmallFileAtomic } from '../util/atomic.js';
import { readJsonIfPresent } from '../util/files.js';
import type { TpmOptions } from '../tpm/tools.js';

export function defaultHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MLIC_HOME) return env.MLIC_HOME;
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'mlic');
}

export interface HostIdentity {
  /** X25519 secret: licences seal their keys to its public half */
  boxSecret: Uint8Array;
  boxPublic: Uint8Array;
  /** Ed25519 seed: signs activation requests and usage reports */
  signSeed: Uint8Array;
  signPublic: Uint8Array;
  /** salt for this host's fingerprint hashes in its requests */
  salt: Buffer;
  region?: string;
  createdAt: string;
  /** the keys are computed by the host's TPM (src/tpm/store.ts); none is on disk */
  tpm?: true;
}

/** v1: the keys in the file; v2: a TPM host, whose keys its TPM computes (tpm.json). */
type HostFile =
  | { v: 1; boxSecret: string; signSeed: string; salt: string; region?: string; createdAt: string }
  | { v: 2; keys: 'tpm'; salt: string; region?: string; createdAt: string };

const readJson = async <T>(path: string): Promise<T | undefined> => (await readJsonIfPresent(path)) as T | undefined;

export class StateDir {
  /** the TPM a TPM-bound host's keys are in (default MLIC_TPM, else /dev/tpmrm0) */
  tpm: TpmOptions | undefined;

  constructor(readonly dir: string) {}

  static fromEnv(env: NodeJS.ProcessEnv = process.env, dir?: string): StateDir {
    return new StateDir(dir ?? defaultHome(env));
  }

  path(...p: string[]): string {
    return join(this.dir, ...p);
  }

  async ensure(sub?: string): Promise<string> {
    const d = sub ? this.path(sub) : this.dir;
    try {
      await mkdir(d, { recursive: true, mode: 0o700 });
      await chmod(d, 0o700);
    } catch (e) {
      throw fromFsError(e, d);
    }
    return d;
  }

  // ---- host identity ----

  /** Whether this state directory has a host key, and where it is: in the file, or in the TPM. */
  async hostKind(): Promise<'none' | 'file' | 'tpm'> {
    const f = await readJson<HostFile>(this.path('host.json'));
    return !f ? 'none' : f.v === 2 ? 'tpm' : 'file';
  }

  /** The host's fingerprint salt, without its keys (a TPM host's keys need the TPM; the salt does not). */
  async hostSalt(): Promise<Buffer | undefined> {
    const f = await readJson<HostFile>(this.path('host.json'));
    if (!f) return undefined;
    if (typeof f !== 'object' || f === null || typeof f.salt !== 'string' || !/^[0-9a-f]{64}$/.test(f.salt)) throw new MlicError('FORMAT_INVALID', `${this.path('host.json')}: corrupt host key file`);
    return Buffer.from(f.salt, 'hex');
  }

  async loadHost(): Promise<HostIdentity | undefined> {
    const f = await readJson<HostFile>(this.path('host.json'));
    if (!f) return undefined;
    const corrupt = () => new MlicError('FORMAT_INVALID', `${this.path('host.json')}: corrupt host key file`);
    if (typeof f !== 'object' || f === null || typeof f.salt !== 'string' || !/^[0-9a-f]{64}$/.test(f.salt)) throw corrupt();
    let boxSecret: Buffer;
    let signSeed: Buffer;
    if (f.v === 2) {
      if (f.keys !== 'tpm') throw corrupt();
      ({ boxSecret, signSeed } = await (await import('../tpm/store.js')).tpmHostSecrets(this, this.tpm ?? {}));
    } else {
      if (f.v !== 1 || typeof f.boxSecret !== 'string' || typeof f.signSeed !== 'string') throw corrupt();
      boxSecret = Buffer.from(f.boxSecret, 'base64');
      signSeed = Buffer.from(f.signSeed, 'base64');
    }
    if (boxSecret.length !== 32 || signSeed.length !== 32) throw corrupt();
    return {
      boxSecret,
      boxPublic: x25519FromSecret(boxSecret).publicKey,
      signSeed,
      signPublic: ed25519PublicFromSeed(signSeed),
      salt: Buffer.from(f.salt, 'hex'),
      ...(f.region ? { region: f.region } : {}),
      createdAt: f.createdAt,
      ...(f.v === 2 ? { tpm: true as const } : {}),
    };
  }

  /**
   * Makes this host a TPM host (its keys in the TPM: src/tpm/store.ts), or returns the TPM host it
   * already is. Refused for a host whose keys are in the file: its licences are sealed to those.
   */
  async createTpmHost(opts: { region?: string; now?: Date } = {}): Promise<HostIdentity> {
    if (opts.region !== undefined && !REGION_RE.test(opts.region))
      throw new MlicError('USAGE', `invalid region '${opts.region}'`, { hint: 'use an ISO 3166 country code like DE or US, or a region code like EU' });
    const kind = await this.hostKind();
    if (kind === 'file')
      throw new MlicError('USAGE', `this host's key was made without the TPM (${this.path('host.json')}), and its licences are sealed to it`, {
        hint: 'to bind a host to its TPM, start from a new state directory (MLIC_HOME or --home) and activate again',
      });
    if (kind === 'none') {
      const now = opts.now ?? new Date();
      await (await import('../tpm/store.js')).ensureTpmKey(this, this.tpm ?? {}, now);
      const f: HostFile = { v: 2, keys: 'tpm', salt: randomBytes(32).toString('hex'), ...(opts.region ? { region: opts.region } : {}), createdAt: now.toISOString() };
      await this.ensure();
      try {
        await writeSmallFileAtomic(this.path('host.json'), JSON.stringify(f, null, 2) + '\n', { mode: 0o600, force: false });
      } catch (e) {
        if (!(e instanceof MlicError && e.code === 'IO_EXISTS')) throw e;
      }
    }
    let h = (await this.loadHost())!;
    if (!h.tpm) throw new MlicError('USAGE', `this host's key was made without the TPM (${this.path('host.json')})`);
    if (opts.region !== undefined && opts.region !== h.region) await this.saveHost((h = { ...h, region: opts.region }));
    return h;
  }

  /** Loads the host identity, creating it on first use. A new region replaces the declared one. */
  async hostIdentity(opts: { create: boolean; region?: string; now?: Date } = { create: false }): Promise<HostIdentity> {
    if (opts.region !== undefined && !REGION_RE.test(opts.region))
      throw new MlicError('USAGE', `invalid region '${opts.region}'`, { hint: 'use an ISO 3166 country code like DE or US, or a region code like EU' });
    let h = await this.loadHost();
    if (!h) {
      if (!opts.create) throw new MlicError('NO_LICENSE', `this host has not been activated (no host key in ${this.dir})`, { hint: 'run `mlic activate --request` first' });
      const box = x25519Generate();
      const sign = ed25519Generate();
      h = {
        boxSecret: box.secretKey,
        boxPublic: box.publicKey,
        signSeed: sign.seed,
        signPublic: sign.publicKey,
        salt: randomBytes(32),
        ...(opts.region ? { region: opts.region } : {}),
        createdAt: (opts.now ?? new Date()).toISOString(),
      };
      // Created without overwriting: of processes racing to make the first host key, one wins
      // and the others use its key (a second key would make the MACs disagree for good).
      try {
        await this.saveHost(h, false);
      } catch (e) {
        if (!(e instanceof MlicError && e.code === 'IO_EXISTS')) throw e;
        h = (await this.loadHost())!;
        if (opts.region !== undefined && opts.region !== h.region) await this.saveHost((h = { ...h, region: opts.region }));
      }
    } else if (opts.region !== undefined && opts.region !== h.region) {
      h = { ...h, region: opts.region };
      await this.saveHost(h);
    }
    return h;
  }

  private async saveHost(h: HostIdentity, replace = true): Promise<void> {
    await this.ensure();
    const f: HostFile = h.tpm
      ? { v: 2, keys: 'tpm', salt: h.salt.toString('hex'), ...(h.region ? { region: h.region } : {}), createdAt: h.createdAt }
      : {
      v: 1,
      boxSecret: Buffer.from(h.boxSecret).toString('base64'),
      signSeed: Buffer.from(h.signSeed).toString('base64'),
      salt: h.salt.toString('hex'),
      ...(h.region ? { region: h.region } : {}),
      createdAt: h.createdAt,
    };
    await writeSmallFileAtomic(this.path('host.json'), JSON.stringify(f, null, 2) + '\n', { mode: 0o600, force: replace });
  }

  // ---- trusted vendor keys ----

  /**
   * Trusts a vendor key. Key ids are chosen by a key's owner, so a different key under an id
   * already trusted is refused unless `replace` says so explicitly.
   */
  async trustAdd(pubText: string, opts: { replace?: boolean } = {}): Promise<{ key: MinisignPublicKey; status: 'added' | 'unchanged' | 'replaced'; previous?: MinisignPublicKey }> {
    const pk = parsePublicKey(pubText);
    const id = keyIdHex(pk.keyId);
    const existing = await this.trusted(id);
    if (existing && constantTimeEqual(existing.publicKey, pk.publicKey)) return { key: existing, status: 'unchanged' };
    if (existing && !opts.replace)
      throw new MlicError('IO_EXISTS', `a different key with id ${id} is already trusted (${keyFingerprint(existing)}; this one is ${keyFingerprint(pk)})`, {
        hint: 'key ids are chosen by whoever made the key: check both fingerprints with your vendor; `mlic trust add --replace` replaces the trusted one',
      });
    await this.ensure('trust');
    await writeSmallFileAtomic(this.path('trust', `${id}.pub`), serializePublicKey(pk), { mode: 0o600, force: true });
    return { key: pk, status: existing ? 'replaced' : 'added', ...(existing ? { previous: existing } : {}) };
  }

  async trustRemove(keyId: string): Promise<boolean> {
    try {
      await unlink(this.path('trust', `${keyId.toUpperCase()}.pub`));
      return true;
    } catch {
      return false;
    }
  }

  async trustList(): Promise<MinisignPublicKey[]> {
    let names: string[];
    try {
      names = (await readdir(this.path('trust'))).filter((n) => /^[0-9A-F]{16}\.pub$/.test(n)).sort();
    } catch {
      return [];
    }
    const out: MinisignPublicKey[] = [];
    for (const n of names) {
      const pk = parsePublicKey(await readFile(this.path('trust', n), 'utf8'));
      if (keyIdHex(pk.keyId) === n.slice(0, 16)) out.push(pk);
    }
    return out;
  }

  async trusted(keyIdHexStr: string): Promise<MinisignPublicKey | undefined> {
    if (!/^[0-9A-F]{16}$/.test(keyIdHexStr)) return undefined;
    try {
      const pk = parsePublicKey(await readFile(this.path('trust', `${keyIdHexStr}.pub`), 'utf8'));
      return keyIdHex(pk.keyId) === keyIdHexStr ? pk : undefined;
    } catch {
      return undefined;
    }
  }

  // ---- installed licences ----

  async licenseInstall(licenseId: string, text: string): Promise<string> {
    await this.ensure('licenses');
    const p = this.path('licenses', `${licenseId}.lic`);
    await writeSmallFileAtomic(p, text, { mode: 0o600, force: true });
    return p;
  }

  async licenseTexts(): Promise<{ path: string; text: string }[]> {
    let names: string[];
    try {
      names = (await readdir(this.path('licenses'))).filter((n) => /^[0-9a-f]{32}\.lic$/.test(n)).sort();
    } catch {
      return [];
    }
    const out: { path: string; text: string }[] = [];
    for (const n of names) out.push({ path: this.path('licenses', n), text: await readFile(this.path('licenses', n), 'utf8') });
    return out;
  }

  /** Removes an installed licence; false when it was not installed. */
  async licenseRemove(licenseId: string): Promise<boolean> {
    if (!/^[0-9a-f]{32}$/.test(licenseId)) return false;
    try {
      await unlink(this.path('licenses', `${licenseId}.lic`));
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw fromFsError(e, this.path('licenses', `${licenseId}.lic`));
    }
  }

  // ---- the online licence server this host activated with ----

  async serverUrl(): Promise<string | undefined> {
    const f = await readJson<{ url?: unknown }>(this.path('server.json'));
    return typeof f?.url === 'string' ? f.url : undefined;
  }

  async setServerUrl(url: string): Promise<void> {
    await this.ensure();
    await writeSmallFileAtomic(this.path('server.json'), JSON.stringify({ url }) + '\n', { mode: 0o600, force: true });
  }

  // ---- the clock record (docs/FORMAT.md §7) ----

  private clockKey(h: HostIdentity): Buffer {
    return hkdfSha256(h.signSeed, Buffer.from('mlic/v2/clock'), Buffer.from('clock-record'));
  }

  /** The clock record, verified; undefined when there is none. A record that fails its MAC is STATE_TAMPERED. */
  async readClock(h: HostIdentity): Promise<ClockRecord | undefined> {
    const p = this.path('clock.json');
    const f = await readJson<Record<string, unknown>>(p);
    if (!f) return undefined;
    const { mac, ...body } = f;
    const ok =
      body.v === 2 &&
      typeof body.t === 'string' &&
      !Number.isNaN(Date.parse(body.t)) &&
      Number.isSafeInteger(body.audit) &&
      typeof body.ledgers === 'object' &&
      body.ledgers !== null &&
      Object.entries(body.ledgers).every(([k, v]) => /^[0-9a-f]{32}$/.test(k) && Number.isSafeInteger(v)) &&
      (body.revocations === undefined ||
        (typeof body.revocations === 'object' && body.revocations !== null && Object.entries(body.revocations).every(([k, v]) => /^[0-9A-F]{16}$/.test(k) && Number.isSafeInteger(v)))) &&
      typeof mac === 'string';
    if (!ok || !constantTimeEqual(hmacSha256(this.clockKey(h), canonicalJson(body)), Buffer.from(mac as string, 'hex')))
      throw new MlicError('STATE_TAMPERED', `${p}: the clock record was modified or is not from this host`, { hint: 'restore the state directory from a backup, or ask your vendor' });
    return body as unknown as ClockRecord;
  }

  async writeClock(h: HostIdentity, rec: ClockRecord, sync: boolean): Promise<void> {
    const body = { v: 2, t: rec.t, audit: rec.audit, ledgers: rec.ledgers, ...(rec.revocations && Object.keys(rec.revocations).length ? { revocations: rec.revocations } : {}) };
    const mac = hmacSha256(this.clockKey(h), canonicalJson(body)).toString('hex');
    // The file is fsynced so that a crash never leaves it empty; an older one after a crash is harmless (host/journal.ts).
    await writeSmallFileAtomic(this.path('clock.json'), JSON.stringify({ ...body, mac }) + '\n', { mode: 0o600, force: true, sync, syncDir: false });
  }
}

/**
 * The host's clock record: the latest time any licence decision has seen, bound to the audit log
 * and the usage ledgers by the last record of each it was written with (docs/FORMAT.md §7).
 */
export interface ClockRecord {
  v: 2;
  /** the high-water mark, ISO */
  t: string;
  /** seq of the audit log record this was written after (-1: none) */
  audit: number;
  /** licenceId -> seq of that licence's usage ledger record this was written after */
  ledgers: Record<string, number>;
  /** vendor key id -> serial of the revocation list installed when this was written (host/revocations.ts) */
  revocations?: Record<string, number>;
}
