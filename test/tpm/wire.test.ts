/**
 * The TPM commands mlic sends itself (src/tpm/wire.ts), against a hostile "TPM": a loopback server
 * speaking swtpm's framing that answers each command with a truncated, oversized, garbled or
 * wrongly sized response, a response code, or nothing at all. Every case ends in an MlicError
 * with a code (never a crash, never a hang), and the real swtpm's answers, relayed unchanged,
 * still work.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { MlicError } from '../../src/errors.js';
import { createAttestationKey, hasResourceManager, type AttestationKey } from '../../src/tpm/host.js';
import { quoteWith, withAkUnderEk } from '../../src/tpm/wire.js';
import { tpm2 } from '../../src/tpm/tools.js';
import { startSwtpm, type Swtpm } from './swtpm.js';

type Mangle = (resp: Buffer, n: number) => Buffer | 'silent' | 'close';

/** A proxy to the real swtpm that passes commands through and lets `mangle` change the n-th response. */
async function proxy(real: { host: string; port: number }, mangle: Mangle, commands: number[] = []): Promise<{ tcti: string; close: () => Promise<void> }> {
  let n = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    const upstream = connect(real);
    sockets.add(upstream);
    let cbuf = Buffer.alloc(0);
    client.on('data', (d: Buffer) => {
      upstream.write(d);
      // note each command's code (framing: u32 8, u8 locality, u32 length, the command)
      cbuf = Buffer.concat([cbuf, d]);
      while (cbuf.length >= 9 && cbuf.length >= 9 + cbuf.readUInt32BE(5)) {
        const len = cbuf.readUInt32BE(5);
        if (len >= 10) commands.push(cbuf.readUInt32BE(9 + 6));
        cbuf = cbuf.subarray(9 + len);
      }
    });
    let buf = Buffer.alloc(0);
    upstream.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 8 + buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0);
        const resp = buf.subarray(4, 4 + len);
        buf = buf.subarray(8 + len);
        const out = mangle(Buffer.from(resp), n++);
        if (out === 'close') {
          client.destroy();
          return;
        }
        if (out === 'silent') return;
        const head = Buffer.alloc(4);
        head.writeUInt32BE(out.length);
        client.write(Buffer.concat([head, out, Buffer.alloc(4)]));
      }
    });
    client.on('close', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    tcti: `swtpm:host=127.0.0.1,port=${port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe('TPM commands sent directly, against hostile responses', () => {
  let t: Swtpm;
  let ak: AttestationKey;
  let real: { host: string; port: number };
  beforeAll(async () => {
    t = await startSwtpm('wire');
    ak = await createAttestationKey({ tcti: t.tcti });
    const m = /host=([^,]+),port=(\d+)/.exec(t.tcti)!;
    real = { host: m[1]!, port: Number(m[2]) };
  }, 180_000);
  afterAll(async () => {
    await t?.stop();
  });

  const quoteThrough = async (mangle: Mangle) => {
    // what a failed case left loaded in the real TPM (it has no resource manager), flushed first
    await tpm2('flushcontext', ['-t'], { tcti: t.tcti });
    await tpm2('flushcontext', ['-l'], { tcti: t.tcti });
    const p = await proxy(real, mangle);
    try {
      return await withAkUnderEk(p.tcti, ak, undefined, (c, h) => quoteWith(c, h.ak, Buffer.alloc(32, 7), [0, 7]), { answerMs: 1500 });
    } finally {
      await p.close();
    }
  };

  it('relayed unchanged, the quote works; each hostile response is an MlicError with a code', async () => {
    const ok = await quoteThrough((r) => r);
    expect(ok.attest.length).toBeGreaterThan(50);
    const kinds: [string, Mangle][] = [];
    // the quote's commands: CreatePrimary (the EK), StartAuthSession, PolicySecret, Load (the AK), Quote
    for (const at of [0, 1, 2, 3, 4]) {
      kinds.push([`response ${at} truncated`, (r, n) => (n === at ? r.subarray(0, Math.max(0, r.length - 5)) : r)]);
      kinds.push([`response ${at} empty`, (r, n) => (n === at ? Buffer.alloc(0) : r)]);
      kinds.push([`response ${at} size field wrong`, (r, n) => (n === at && r.length >= 6 ? (r.writeUInt32BE(r.length + 3, 2), r) : r)]);
      kinds.push([`response ${at} with an error code`, (r, n) => (n === at && r.length >= 10 ? (r.writeUInt32BE(0x98e, 6), r) : r)]);
      kinds.push([`response ${at} in lockout`, (r, n) => (n === at && r.length >= 10 ? (r.writeUInt32BE(0x921, 6), r) : r)]);
      kinds.push([`response ${at} random bytes`, (r, n) => (n === at ? randomBytes(r.length) : r)]);
      kinds.push([`response ${at} a byte flipped`, (r, n) => (n === at && r.length > 10 ? ((r[10 + (r.length % (r.length - 10))]! ^= 0x40), r) : r)]);
      kinds.push([`response ${at} with an inner size too large`, (r, n) => (n === at && r.length >= 16 ? (r.writeUInt16BE(0xffff, 14), r) : r)]);
      kinds.push([`response ${at} never comes`, (r, n) => (n === at ? 'silent' : r)]);
      kinds.push([`connection closed at ${at}`, (r, n) => (n === at ? 'close' : r)]);
    }
    kinds.push(['a 100 KiB response', () => randomBytes(100 << 10)]);
    // a TPM that keeps answering "retry" (another program keeps it busy): retried a while, then TPM_BUSY
    kinds.push(['the quote answered "retry" again and again', (r, n) => (n >= 4 && r.length >= 10 ? (r.writeUInt32BE(0x922, 6), r) : r)]);
    // the flushes after the quote are best effort: garbage there does not undo a good quote
    const afterwards = await quoteThrough((r, n) => (n >= 5 ? randomBytes(r.length) : r));
    expect(afterwards.attest.length).toBeGreaterThan(50);
    const outcomes = new Map<string, number>();
    for (const [what, m] of kinds) {
      let code: string;
      try {
        await quoteThrough(m);
        code = 'OK';
      } catch (e) {
        if (!(e instanceof MlicError)) throw new Error(`${what}: not an MlicError: ${(e as Error).stack}`);
        code = e.code;
      }
      // a changed byte or inner size may land in a field mlic does not read (a session's nonce), or in the quote itself, which the vendor then checks: OK is allowed there only
      if (code === 'OK') expect(what, 'only a change inside a response may pass unnoticed here').toMatch(/flipped|inner size/);
      outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
    }
    console.log(`[wire] ${kinds.length} hostile responses: ${[...outcomes].map(([k, v]) => `${k} ${v}`).join(', ')}`);
    expect([...outcomes.keys()].every((k) => ['OK', 'TPM_FAILED', 'TPM_LOCKOUT', 'TPM_BUSY'].includes(k))).toBe(true);
    // each command's lockout answer is seen as such (those before the quote's end: CreatePrimary, StartAuthSession, PolicySecret, Load, Quote)
    expect(outcomes.get('TPM_LOCKOUT')).toBe(5);
    expect(outcomes.get('TPM_BUSY')).toBe(1);
  }, 240_000);

  it('explicit flushes only where no resource manager does them', () => {
    expect(['device:/dev/tpmrm0', 'device:/dev/tpmrm1', 'tabrmd', 'tabrmd:bus_type=session'].map(hasResourceManager)).toEqual([true, true, true, true]);
    expect(['device:/dev/tpm0', 'swtpm:host=127.0.0.1,port=2321', 'mssim', 'device:/dev/tpmrm0x'].map(hasResourceManager)).toEqual([false, false, false, false]);
  });

  it("uses the platform's persistent EK (0x81010001) when it is the recorded one, instead of generating it again", async () => {
    const { createPublicKey } = await import('node:crypto');
    const recorded = Buffer.from(createPublicKey(ak.ekPublic).export({ format: 'jwk' }).n!, 'base64url');
    const through = async (expect: Buffer | undefined) => {
      await tpm2('flushcontext', ['-t'], { tcti: t.tcti });
      const commands: number[] = [];
      const p = await proxy(real, (r) => r, commands);
      try {
        const q = await withAkUnderEk(p.tcti, ak, expect, (c, h) => quoteWith(c, h.ak, Buffer.alloc(32, 1), [7]), { answerMs: 5000 });
        return { q, commands };
      } finally {
        await p.close();
      }
    };
    const CREATE_PRIMARY = 0x131;
    const READ_PUBLIC = 0x173;
    // swtpm_setup keeps the EK persistent, as platforms do: used as it is
    const persisted = await through(recorded);
    expect(persisted.commands).toContain(READ_PUBLIC);
    expect(persisted.commands).not.toContain(CREATE_PRIMARY);
    // none persistent: generated
    await tpm2('evictcontrol', ['-C', 'o', '-c', '0x81010001'], { tcti: t.tcti });
    const before = await through(recorded);
    expect(before.commands).toContain(CREATE_PRIMARY);
    // made persistent where platforms keep it: read, not generated
    const { join } = await import('node:path');
    const { tmp } = await import('../helpers.js');
    await tpm2('createek', ['-c', '0x81010001', '-G', 'rsa', '-u', join(await tmp(), 'ek.pub'), '-Q'], { tcti: t.tcti });
    const after = await through(recorded);
    expect(after.commands).toContain(READ_PUBLIC);
    expect(after.commands).not.toContain(CREATE_PRIMARY);
    expect(after.q.attest.length).toBeGreaterThan(50);
    // a persistent key that is not the recorded EK is not used: generated, and then found to differ
    const other = randomBytes(256);
    await expect(through(other)).rejects.toMatchObject({ code: 'TPM_FAILED' });
  }, 120_000);
});
