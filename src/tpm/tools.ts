/**
 * Talking to a TPM 2.0 through Debian's tpm2-tools (docs/SECURITY.md, "The TPM"). Each operation
 * is one tpm2_* command, run from the system's own directories (never from PATH), against the
 * TCTI that MLIC_TPM names in tpm2-tools' syntax (default `device:/dev/tpmrm0`, the kernel's
 * resource manager; `swtpm:host=127.0.0.1,port=2321` for a software TPM). Why the tools and not
 * TPM commands sent by hand: they are the well-kept, widely audited path, they speak every TCTI
 * (the kernel device, swtpm's socket, the tabrmd broker), and nothing has to compile. The two
 * operations that need a policy session across commands (a quote, credential activation) are the
 * exception: the kernel's resource manager flushes a tool's session when it exits, so wire.ts
 * sends those as TPM commands over one connection.
 *
 * Failures have their own codes, with a hint: TPM_UNAVAILABLE (no TPM, no tools, or the TCTI
 * cannot be opened), TPM_BUSY (the TPM kept answering "retry"), TPM_LOCKOUT (dictionary-attack
 * lockout).
 */
import { access } from 'node:fs/promises';
import { MlicError } from '../errors.js';

export const DEFAULT_TCTI = 'device:/dev/tpmrm0';
const TOOL_DIRS = ['/usr/bin', '/usr/local/bin', '/usr/sbin'];

/** The TCTI to use: MLIC_TPM, else the kernel's resource manager. */
export function tctiOf(env: NodeJS.ProcessEnv = process.env): string {
  const t = env.MLIC_TPM?.trim();
  return t ? t : DEFAULT_TCTI;
}

/** Is a TPM worth asking for: MLIC_TPM set, or /dev/tpmrm0 present. */
export async function tpmLikely(env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  if (env.MLIC_TPM?.trim()) return true;
  return access('/dev/tpmrm0').then(
    () => true,
    () => false,
  );
}

async function findTool(name: string): Promise<string | undefined> {
  for (const d of TOOL_DIRS) {
    const p = `${d}/${name}`;
    if (await access(p).then(() => true, () => false)) return p;
  }
  return undefined;
}

export interface TpmOptions {
  tcti?: string;
  timeoutMs?: number;
}

/** Runs tpm2_<tool> with `args`; stdout as bytes. Throws TPM_UNAVAILABLE, TPM_BUSY or TPM_LOCKOUT with a hint, or TPM_FAILED with the tool's message. */
export async function tpm2(tool: string, args: string[], o: TpmOptions = {}): Promise<Buffer> {
  const tcti = o.tcti ?? tctiOf();
  const bin = await findTool(`tpm2_${tool}`);
  if (!bin)
    throw new MlicError('TPM_UNAVAILABLE', `tpm2_${tool} is not installed (looked in ${TOOL_DIRS.join(', ')})`, {
      hint: "install Debian's tpm2-tools (apt-get install tpm2-tools)",
    });
  const { execFile } = process.getBuiltinModule('node:child_process');
  for (let attempt = 0; ; attempt++) {
    const r = await new Promise<{ stdout: Buffer; stderr: string; err: (Error & { code?: unknown }) | null }>((resolve) => {
      execFile(bin, args, { env: { PATH: '/usr/bin:/bin', TPM2TOOLS_TCTI: tcti }, encoding: 'buffer', timeout: o.timeoutMs ?? 30_000, maxBuffer: 8 << 20 }, (err, stdout, stderr) =>
        resolve({ stdout, stderr: stderr.toString('utf8'), err }),
      );
    });
    if (!r.err) return r.stdout;
    const why = r.stderr.split('\n').map((l) => l.trim()).filter(Boolean).slice(-3).join('; ').slice(0, 400) || r.err.message.split('\n')[0]!;
    if (/TPM_RC_LOCKOUT|lockout/i.test(r.stderr))
      throw new MlicError('TPM_LOCKOUT', `the TPM is in dictionary-attack lockout (tpm2_${tool}: ${why})`, {
        hint: 'wait for the lockout to end (its recovery time), or have the owner reset it: tpm2_dictionarylockout --clear-lockout',
      });
    if (/TPM_RC_RETRY|TPM_RC_YIELDED|TPM_RC_TESTING|Device or resource busy|EBUSY/i.test(r.stderr)) {
      if (attempt < 4) {
        await new Promise((res) => setTimeout(res, 100 * 2 ** attempt));
        continue;
      }
      throw new MlicError('TPM_BUSY', `the TPM stayed busy (tpm2_${tool}: ${why})`, { hint: 'another program is using it; try again' });
    }
    if (/tcti|Could not (load|open)|No such file or directory|Connection refused|Failed to initialize|ESYS_CONTEXT|dlopen|Permission denied/i.test(r.stderr) || r.err.code === 'ETIMEDOUT')
      throw new MlicError('TPM_UNAVAILABLE', `no TPM at ${tcti} (tpm2_${tool}: ${why})`, {
        hint: tcti === DEFAULT_TCTI ? 'this host has no TPM 2.0 at /dev/tpmrm0, or this user may not use it (the tss group); set MLIC_TPM to another TCTI' : 'check MLIC_TPM (a TCTI such as swtpm:host=127.0.0.1,port=2321) and that the TPM there is running',
      });
    throw new MlicError('TPM_FAILED', `tpm2_${tool} failed: ${why}`);
  }
}
