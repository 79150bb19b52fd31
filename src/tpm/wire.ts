/**
 * TPM 2.0 commands sent directly, over one connection, for the two operations that need the
 * endorsement key's authorization: a quote by the attestation key (loaded under the EK) and
 * credential activation (which uses the EK itself). The EK's policy (PolicySecret with the
 * endorsement hierarchy) must be satisfied in a policy session, and the kernel's resource manager
 * (/dev/tpmrm0) flushes a connection's sessions when it closes: a session started by one
 * tpm2-tools command is gone before the next one runs. So these two run as a short sequence of
 * TPM commands on a single connection (TPM 2.0 Library, Part 3), and everything else stays with
 * tpm2-tools (tools.ts).
 *
 * Connections: `device:PATH` (the kernel's /dev/tpmrm0, or a raw /dev/tpm0) and
 * `swtpm:host=H,port=P` (a software TPM's TCP socket, the Microsoft simulator's framing). Every
 * response is parsed as hostile input: sizes are checked against what arrived.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { MlicError } from '../errors.js';
import { DEFAULT_TCTI } from './tools.js';
import { tpm2b, u16, u32, u8 } from './credential.js';

const MAX_RESPONSE = 8192;
/** how long a software TPM's socket may take to answer one command (default) */
const ANSWER_MS = 30_000;

export interface TpmConnection {
  /** one command, one response (both whole marshalled buffers) */
  send(cmd: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

const unavailable = (tcti: string, why: string) =>
  new MlicError('TPM_UNAVAILABLE', `no TPM at ${tcti} (${why})`, {
    hint: tcti === DEFAULT_TCTI ? 'this host has no TPM 2.0 at /dev/tpmrm0, or this user may not use it (the tss group); set MLIC_TPM to another TCTI' : 'check MLIC_TPM (a TCTI such as swtpm:host=127.0.0.1,port=2321) and that the TPM there is running',
  });

function parseSwtpm(conf: string): { host: string; port: number } {
  const kv = new Map(conf.split(',').filter(Boolean).map((p) => p.split('=', 2) as [string, string]));
  const port = Number(kv.get('port') ?? '2321');
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new MlicError('USAGE', `MLIC_TPM: bad swtpm port in '${conf}'`);
  return { host: kv.get('host') ?? '127.0.0.1', port };
}

async function deviceConnection(tcti: string, path: string): Promise<TpmConnection> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r+');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EBUSY') throw new MlicError('TPM_BUSY', `the TPM at ${path} is in use by another program`, { hint: 'try again, or use /dev/tpmrm0 (the kernel shares it)' });
    throw unavailable(tcti, `${code ?? 'error'} opening ${path}`);
  }
  return {
    async send(cmd) {
      await fh.write(cmd);
      const buf = Buffer.alloc(MAX_RESPONSE);
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      return buf.subarray(0, bytesRead);
    },
    close: () => fh.close(),
  };
}

async function swtpmConnection(tcti: string, conf: string, answerMs: number): Promise<TpmConnection> {
  const { host, port } = parseSwtpm(conf);
  const sock: Socket = await new Promise((resolve, reject) => {
    const s = netConnect({ host, port });
    s.once('connect', () => resolve(s));
    s.once('error', (e: NodeJS.ErrnoException) => reject(unavailable(tcti, e.code ?? e.message)));
  });
  sock.setNoDelay(true);
  let pending = Buffer.alloc(0);
  let waiter: (() => void) | undefined;
  let failed: Error | undefined;
  sock.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    waiter?.();
  });
  sock.on('error', (e) => {
    failed = e;
    waiter?.();
  });
  sock.on('close', () => {
    failed ??= new Error('connection closed');
    waiter?.();
  });
  const need = async (n: number): Promise<Buffer> => {
    const deadline = Date.now() + answerMs;
    while (pending.length < n) {
      if (failed) throw new MlicError('TPM_FAILED', `the TPM at ${tcti} closed the connection (${failed.message})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new MlicError('TPM_FAILED', `the TPM at ${tcti} did not answer within ${answerMs / 1000} s`);
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((r) => {
        waiter = r;
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
      waiter = undefined;
    }
    const out = pending.subarray(0, n);
    pending = pending.subarray(n);
    return out;
  };
  return {
    async send(cmd) {
      const head = Buffer.alloc(9);
      head.writeUInt32BE(8, 0); // TPM_SEND_COMMAND
      head.writeUInt8(0, 4); // locality 0
      head.writeUInt32BE(cmd.length, 5);
      sock.write(Buffer.concat([head, cmd]));
      const len = (await need(4)).readUInt32BE(0);
      if (len > MAX_RESPONSE) throw new MlicError('TPM_FAILED', `the TPM sent a ${len}-byte response`);
      const resp = Buffer.from(await need(len));
      await need(4); // the trailing acknowledgement
      return resp;
    },
    async close() {
      await new Promise<void>((r) => sock.end(r));
      sock.destroy();
    },
  };
}

/** A connection to the TPM that `tcti` names (tpm2-tools' syntax: device:PATH or swtpm:host=H,port=P). */
export async function connectTpm(tcti: string, o: { answerMs?: number } = {}): Promise<TpmConnection> {
  const [kind, ...rest] = tcti.split(':');
  const conf = rest.join(':');
  if (kind === 'device') return deviceConnection(tcti, conf || '/dev/tpmrm0');
  if (kind === 'swtpm') return swtpmConnection(tcti, conf, o.answerMs ?? ANSWER_MS);
  throw new MlicError('TPM_UNAVAILABLE', `MLIC_TPM '${tcti}': mlic talks to device:PATH or swtpm:host=H,port=P for this operation`, {
    hint: 'use device:/dev/tpmrm0 (the kernel resource manager) or a software TPM socket',
  });
}

// ---- marshalling ----

const TPM_ST_NO_SESSIONS = 0x8001;
const TPM_ST_SESSIONS = 0x8002;
const CC = { CreatePrimary: 0x131, PolicySecret: 0x151, Load: 0x157, Quote: 0x158, ActivateCredential: 0x147, FlushContext: 0x165, StartAuthSession: 0x176, ReadPublic: 0x173 } as const;
/** where platforms keep the RSA EK persistent (TCG EK Credential Profile) */
const PERSISTENT_EK = 0x81010001;
const TPM_RH_ENDORSEMENT = 0x4000000b;
const TPM_RH_NULL = 0x40000007;
const TPM_RS_PW = 0x40000009;
const ALG = { RSA: 0x0001, SHA256: 0x000b, AES: 0x0006, CFB: 0x0043, NULL: 0x0010 } as const;

/** The TCG default RSA 2048 EK template (EK Credential Profile, template L-1): the key the EK certificate certifies. */
const EK_TEMPLATE = Buffer.concat([
  u16(ALG.RSA),
  u16(ALG.SHA256),
  u32(0x000300b2), // fixedTPM fixedParent sensitiveDataOrigin adminWithPolicy restricted decrypt
  tpm2b(Buffer.from('837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa', 'hex')), // PolicySecret(TPM_RH_ENDORSEMENT)
  u16(ALG.AES),
  u16(128),
  u16(ALG.CFB),
  u16(ALG.NULL), // scheme
  u16(2048),
  u32(0), // exponent: the default
  tpm2b(Buffer.alloc(256)),
]);

interface Auth {
  handle: number;
  /** continueSession */
  keep: boolean;
}
const PW: Auth = { handle: TPM_RS_PW, keep: true };

function authArea(a: Auth): Buffer {
  // a password session has an empty nonce; a policy session without PolicyAuthValue has no HMAC
  const nonce = a.handle === TPM_RS_PW ? Buffer.alloc(0) : randomBytes(32);
  return Buffer.concat([u32(a.handle), tpm2b(nonce), u8(a.keep ? 1 : 0), tpm2b(Buffer.alloc(0))]);
}

/** TPM return codes worth their own error code. */
function rcError(rc: number, what: string): MlicError {
  const hex = `0x${rc.toString(16).padStart(3, '0')}`;
  if (rc === 0x921)
    return new MlicError('TPM_LOCKOUT', `the TPM is in dictionary-attack lockout (${what}: ${hex})`, { hint: 'wait for the lockout to end (its recovery time), or have the owner reset it: tpm2_dictionarylockout --clear-lockout' });
  if (rc === 0x922 || rc === 0x908 || rc === 0x90a) return new MlicError('TPM_BUSY', `the TPM asked to retry (${what}: ${hex})`, { hint: 'another program is using it; try again' });
  return new MlicError('TPM_FAILED', `TPM2_${what} failed: response code ${hex}`);
}

class Reader {
  pos = 0;
  constructor(
    readonly b: Buffer,
    readonly what: string,
  ) {}
  take(n: number): Buffer {
    if (this.pos + n > this.b.length) throw new MlicError('TPM_FAILED', `TPM2_${this.what}: the response is truncated`);
    const out = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  u16() {
    return this.take(2).readUInt16BE(0);
  }
  u32() {
    return this.take(4).readUInt32BE(0);
  }
  tpm2b() {
    return Buffer.from(this.take(this.u16()));
  }
}

/**
 * Runs one command: `handles` in the handle area, one auth per entry of `auths`, `params`; returns
 * the response's handles (`outHandles` of them) and a reader over its parameters.
 */
async function run(c: TpmConnection, what: keyof typeof CC, handles: number[], auths: Auth[], params: Buffer, outHandles = 0): Promise<{ handles: number[]; params: Reader }> {
  const authBytes = Buffer.concat(auths.map(authArea));
  const body = Buffer.concat([...handles.map(u32), ...(auths.length ? [u32(authBytes.length), authBytes] : []), params]);
  const cmd = Buffer.concat([u16(auths.length ? TPM_ST_SESSIONS : TPM_ST_NO_SESSIONS), u32(10 + body.length), u32(CC[what]), body]);
  // a TPM may answer "retry" (busy, yielded, self-testing): sent again, as the TSS does
  let resp: Buffer;
  let r: Reader;
  let tag: number;
  for (let attempt = 0; ; attempt++) {
    resp = await c.send(cmd);
    r = new Reader(resp, what);
    tag = r.u16();
    const size = r.u32();
    const rc = r.u32();
    if (size !== resp.length) throw new MlicError('TPM_FAILED', `TPM2_${what}: the response's size field says ${size} bytes, ${resp.length} arrived`);
    if (rc === 0) break;
    if ((rc === 0x922 || rc === 0x908 || rc === 0x90a) && attempt < 12) {
      await new Promise((res) => setTimeout(res, Math.min(10 * 2 ** attempt, 300)));
      continue;
    }
    throw rcError(rc, what);
  }
  const out: number[] = [];
  for (let i = 0; i < outHandles; i++) out.push(r.u32());
  if (tag === TPM_ST_SESSIONS) {
    const paramSize = r.u32();
    return { handles: out, params: new Reader(Buffer.from(r.take(paramSize)), what) };
  }
  return { handles: out, params: new Reader(Buffer.from(r.b.subarray(r.pos)), what) };
}

async function flush(c: TpmConnection, handle: number): Promise<void> {
  await run(c, 'FlushContext', [], [], u32(handle)).catch(() => undefined);
}

/** The RSA modulus of a TPM2B_PUBLIC made from the EK template (undefined for any other kind of key). */
function ekModulus(pubArea: Buffer, what: string): Buffer | undefined {
  const pub = new Reader(pubArea, what);
  const head = pub.take(2 + 2 + 4); // type, nameAlg, attributes
  if (head.readUInt16BE(0) !== ALG.RSA || head.readUInt32BE(4) !== 0x000300b2) return undefined;
  pub.tpm2b(); // authPolicy
  pub.take(2 + 2 + 2 + 2 + 2 + 4); // symmetric (alg, bits, mode), scheme, keyBits, exponent
  return pub.tpm2b();
}

/**
 * The EK: the platform's persistent one (0x81010001) when it is the key this host recorded (no
 * key generation: an RSA primary can take seconds on a hardware TPM), else made again from its
 * template (deterministic: the same key). `persistent`: not to be flushed.
 */
async function theEk(c: TpmConnection, expect: Buffer | undefined): Promise<{ handle: number; modulus: Buffer; persistent: boolean }> {
  if (expect) {
    const have = await run(c, 'ReadPublic', [PERSISTENT_EK], [], Buffer.alloc(0)).then(
      (x) => ekModulus(x.params.tpm2b(), 'ReadPublic'),
      () => undefined,
    );
    if (have?.equals(expect)) return { handle: PERSISTENT_EK, modulus: have, persistent: true };
  }
  const sensitive = tpm2b(Buffer.concat([tpm2b(Buffer.alloc(0)), tpm2b(Buffer.alloc(0))]));
  const params = Buffer.concat([sensitive, tpm2b(EK_TEMPLATE), tpm2b(Buffer.alloc(0)), u32(0)]);
  const { handles, params: r } = await run(c, 'CreatePrimary', [TPM_RH_ENDORSEMENT], [PW], params, 1);
  const modulus = ekModulus(r.tpm2b(), 'CreatePrimary');
  if (!modulus) throw new MlicError('TPM_FAILED', 'TPM2_CreatePrimary: the endorsement key made is not the RSA key of the template');
  return { handle: handles[0]!, modulus, persistent: false };
}

/** Sessions started on a connection: flushed when it is done (a command that fails leaves its session loaded). */
const started = new WeakMap<TpmConnection, number[]>();

/** A policy session that satisfies the EK's policy (PolicySecret with the endorsement hierarchy), used up by the next command. */
async function ekPolicySession(c: TpmConnection): Promise<Auth> {
  const start = Buffer.concat([tpm2b(randomBytes(32)), tpm2b(Buffer.alloc(0)), u8(0x01 /* TPM_SE_POLICY */), u16(ALG.NULL), u16(ALG.SHA256)]);
  const { handles } = await run(c, 'StartAuthSession', [TPM_RH_NULL, TPM_RH_NULL], [], start, 1);
  const session = handles[0]!;
  started.get(c)?.push(session);
  try {
    await run(c, 'PolicySecret', [TPM_RH_ENDORSEMENT, session], [PW], Buffer.concat([tpm2b(Buffer.alloc(0)), tpm2b(Buffer.alloc(0)), tpm2b(Buffer.alloc(0)), u32(0)]));
  } catch (e) {
    await flush(c, session);
    throw e;
  }
  return { handle: session, keep: false };
}

export interface EkAndAk {
  ekModulus: Buffer;
}

/**
 * With the AK (tpm2-tools' TPM2B_PUBLIC and TPM2B_PRIVATE files) loaded under a freshly made EK,
 * runs `fn`; everything loaded is flushed after, also on failure. `expectModulus`: the EK this
 * host recorded (another TPM's EK is TPM_FAILED).
 */
export async function withAkUnderEk<T>(
  tcti: string,
  ak: { akPublic: Uint8Array; akPrivate: Uint8Array },
  expectModulus: Buffer | undefined,
  fn: (c: TpmConnection, h: { ek: number; ak: number }) => Promise<T>,
  o: { answerMs?: number } = {},
): Promise<T> {
  const c = await connectTpm(tcti, o);
  const loaded: number[] = [];
  started.set(c, loaded);
  try {
    const ek = await theEk(c, expectModulus);
    if (!ek.persistent) loaded.push(ek.handle);
    if (expectModulus && !ek.modulus.equals(expectModulus)) throw new MlicError('TPM_FAILED', "this TPM's endorsement key is not the one the host's attestation key was made under");
    const s = await ekPolicySession(c);
    const { handles } = await run(c, 'Load', [ek.handle], [s], Buffer.concat([Buffer.from(ak.akPrivate), Buffer.from(ak.akPublic)]), 1);
    loaded.push(handles[0]!);
    return await fn(c, { ek: ek.handle, ak: handles[0]! });
  } finally {
    for (const h of loaded.reverse()) await flush(c, h);
    await c.close();
  }
}

/** TPM2_Quote by the loaded AK (its own signing scheme) over `qualifyingData` and the sha256 PCRs `pcrs`: the TPMS_ATTEST and TPMT_SIGNATURE. */
export async function quoteWith(c: TpmConnection, akHandle: number, qualifyingData: Uint8Array, pcrs: number[]): Promise<{ attest: Buffer; signature: Buffer }> {
  const select = Buffer.alloc(3);
  for (const p of pcrs) select[p >> 3]! |= 1 << (p & 7);
  const params = Buffer.concat([tpm2b(qualifyingData), u16(ALG.NULL), u32(1), u16(ALG.SHA256), u8(3), select]);
  const { params: r } = await run(c, 'Quote', [akHandle], [PW], params);
  const attest = r.tpm2b();
  const signature = Buffer.from(r.b.subarray(r.pos));
  return { attest, signature };
}

/** TPM2_ActivateCredential: the credential's secret, for the loaded AK, with the EK. */
export async function activateWith(c: TpmConnection, h: { ek: number; ak: number }, credentialBlob: Uint8Array, encryptedSecret: Uint8Array): Promise<Buffer> {
  const s = await ekPolicySession(c);
  const { params: r } = await run(c, 'ActivateCredential', [h.ak, h.ek], [PW, s], Buffer.concat([Buffer.from(credentialBlob), Buffer.from(encryptedSecret)]));
  return r.tpm2b();
}
