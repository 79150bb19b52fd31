/**
 * OpenSSF Model Signing v1.0: the reference vectors (sigstore/model-transparency, ossf/model-signing-spec),
 * tampering, and round trips cross-checked by a second implementation (WebCrypto ECDSA over raw r||s,
 * @noble/hashes SHA-256, PAE and statement written out here by hand) instead of node:crypto's path.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { cp, mkdir, readFile, rm, symlink, writeFile, chmod, readdir } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPairSync } from 'node:crypto';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { tmp } from '../helpers.js';
import { sh, tool } from '../interop/tools.js';
import { MlicError } from '../../src/errors.js';
import { omsSign, omsKeyHint } from '../../src/oms/sign.js';
import { omsVerify } from '../../src/oms/verify.js';
import { generateEcdsaKeyPair, loadEcPrivateKey, loadEcPublicKey, sha256File, type EcCurve } from '../../src/crypto/ecdsa.js';
import {
  assertOmsBundle,
  buildStatement,
  compareResourceNames,
  pae,
  parseOmsBundle,
  OMS_PREDICATE_TYPE,
} from '../../src/format/oms.js';

const VEC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'fixtures', 'vectors', 'oms');
const PUB_PEM = await readFile(join(VEC, 'signing-key-pub.pem'), 'utf8');
const REF_HINT = 'e8450dec4eb99dae995da9af1bc2cc9f76ed669ee2e744f57abba763df3e3f8e';
const ROOT_TWO_FILES = '92745110b1ab4368471cbe31664e10174e954b113a3df333db860317b2c6dec4';
const ROOT_ONE_FILE = 'afa48c8674afe334b8a7dea34f7b46ab256e9255edf8da2132792341b667a45b';

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof MlicError) return e.code;
    throw e;
  }
  return 'no error';
}

async function rejection(p: Promise<unknown>): Promise<MlicError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof MlicError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

/** A writable copy of a vector directory. */
async function copyVector(name: string): Promise<string> {
  const d = join(await tmp('mlic-oms-'), name);
  await cp(join(VEC, name), d, { recursive: true });
  for (const f of await readdir(d)) await chmod(join(d, f), 0o644);
  return d;
}

interface Vector {
  dir: string;
  /** the model path handed to the verifier, relative to the vector dir ('' = the dir itself) */
  model: string;
  files: string[];
  root: string;
}

const VECTORS: Vector[] = [
  { dir: 'v1.0.0-elliptic-key', model: 'signme-1', files: ['.'], root: ROOT_ONE_FILE },
  { dir: 'v1.0.1-elliptic-key', model: '', files: ['signme-1', 'signme-2'], root: ROOT_TWO_FILES },
  { dir: 'v1.1.0-elliptic-key', model: '', files: ['signme-1', 'signme-2'], root: ROOT_TWO_FILES },
];

function verifyVector(d: string, v: Vector, sig?: string, pub = PUB_PEM) {
  return (async () =>
    omsVerify(join(d, v.model), sig ?? (await readFile(join(d, 'model.sig'), 'utf8')), {
      publicKeyPem: pub,
      ignore: [join(d, 'ignore-me'), join(d, 'model.sig')],
    }))();
}

// ---------------------------------------------------------------------------------------------
// Independent implementation used to cross-check (no node:crypto sign/verify/hash on this path)

const subtle = globalThis.crypto.subtle;
const CURVE_BYTES: Record<EcCurve, number> = { 'P-256': 32, 'P-384': 48, 'P-521': 66 };
const CURVE_HASH: Record<EcCurve, string> = { 'P-256': 'SHA-256', 'P-384': 'SHA-384', 'P-521': 'SHA-512' };

function pemToDer(pem: string): Uint8Array {
  const m = /-----BEGIN PUBLIC KEY-----([\s\S]+?)-----END PUBLIC KEY-----/.exec(pem);
  if (!m) throw new Error('no public key PEM block');
  return new Uint8Array(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
}

function derToPem(der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN PUBLIC KEY-----\n${b64.match(/.{1,64}/g)!.join('\n')}\n-----END PUBLIC KEY-----\n`;
}

/** DER ECDSA-Sig-Value -> raw r||s (each left-padded to the curve size), by hand. */
function derToRaw(der: Uint8Array, n: number): Uint8Array {
  let i = 0;
  const len = (): number => {
    let l = der[i++]!;
    if (l & 0x80) {
      const k = l & 0x7f;
      l = 0;
      for (let j = 0; j < k; j++) l = (l << 8) | der[i++]!;
    }
    return l;
  };
  if (der[i++] !== 0x30) throw new Error('not a SEQUENCE');
  len();
  const int = (): Uint8Array => {
    if (der[i++] !== 0x02) throw new Error('not an INTEGER');
    const l = len();
    let v = der.subarray(i, i + l);
    i += l;
    while (v.length > n && v[0] === 0) v = v.subarray(1);
    const out = new Uint8Array(n);
    out.set(v, n - v.length);
    return out;
  };
  const r = int();
  const s = int();
  const raw = new Uint8Array(2 * n);
  raw.set(r, 0);
  raw.set(s, n);
  return raw;
}

/** raw r||s -> DER, by hand. */
function rawToDer(raw: Uint8Array): Uint8Array {
  const n = raw.length / 2;
  const enc = (x: Uint8Array): number[] => {
    let v = Array.from(x);
    while (v.length > 1 && v[0] === 0) v = v.slice(1);
    if (v[0]! & 0x80) v = [0, ...v];
    return [0x02, v.length, ...v];
  };
  const body = [...enc(raw.subarray(0, n)), ...enc(raw.subarray(n))];
  const lenBytes = body.length < 0x80 ? [body.length] : [0x81, body.length];
  return new Uint8Array([0x30, ...lenBytes, ...body]);
}

function handPae(type: string, payload: Uint8Array): Uint8Array {
  const head = new TextEncoder().encode(`DSSEv1 ${new TextEncoder().encode(type).length} ${type} ${payload.length} `);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head, 0);
  out.set(payload, head.length);
  return out;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Verifies an OMS bundle's DSSE signature with WebCrypto; returns the decoded statement. */
async function independentVerify(bundleJson: string, publicKeyPem: string, curve: EcCurve): Promise<{ ok: boolean; statement: Record<string, unknown> }> {
  const b = JSON.parse(bundleJson) as { dsseEnvelope: { payload: string; payloadType: string; signatures: { sig: string }[] } };
  const payload = new Uint8Array(Buffer.from(b.dsseEnvelope.payload, 'base64'));
  const key = await subtle.importKey('spki', pemToDer(publicKeyPem), { name: 'ECDSA', namedCurve: curve }, false, ['verify']);
  const raw = derToRaw(new Uint8Array(Buffer.from(b.dsseEnvelope.signatures[0]!.sig, 'base64')), CURVE_BYTES[curve]);
  const ok = await subtle.verify({ name: 'ECDSA', hash: CURVE_HASH[curve] }, key, raw, handPae(b.dsseEnvelope.payloadType, payload));
  return { ok, statement: JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown> };
}

// ---------------------------------------------------------------------------------------------

describe('OMS reference vectors (model_signing 1.0.0, 1.0.1, 1.1.0; ECDSA P-384 key)', () => {
  it('the key hint is the hex sha256 of the canonical SPKI PEM (the .pem file has text before the block)', () => {
    expect(omsKeyHint(PUB_PEM)).toBe(REF_HINT);
    expect(loadEcPublicKey(PUB_PEM).curve).toBe('P-384');
    const b = JSON.parse(readFileSync(join(VEC, 'v1.1.0-elliptic-key', 'model.sig'), 'utf8')) as { verificationMaterial: { publicKey: { hint: string } } };
    expect(b.verificationMaterial.publicKey.hint).toBe(REF_HINT);
    // and independently: sha256 (noble) of the PEM block as OpenSSL writes it
    const block = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----\n/.exec(PUB_PEM)![0];
    expect(hex(nobleSha256(new TextEncoder().encode(block)))).toBe(REF_HINT);
  });

  for (const v of VECTORS) {
    it(`${v.dir} verifies (model path ${v.model || 'the directory'})`, async () => {
      const d = join(VEC, v.dir);
      const r = await verifyVector(d, v);
      expect(r).toEqual({ ok: true, files: v.files, mismatched: [], missing: [], uncovered: [], statementDigest: v.root });
      // the second implementation agrees that the signature is good
      const ind = await independentVerify(await readFile(join(d, 'model.sig'), 'utf8'), PUB_PEM, 'P-384');
      expect(ind.ok).toBe(true);
    });

    it(`${v.dir}: one changed byte is reported as mismatched`, async () => {
      const d = await copyVector(v.dir);
      const f = join(d, 'signme-1');
      const b = await readFile(f);
      b[3] = b[3]! ^ 0x01;
      await writeFile(f, b);
      const r = await verifyVector(d, v);
      expect(r.ok).toBe(false);
      expect(r.mismatched).toEqual([v.model ? '.' : 'signme-1']);
      expect(r.missing).toEqual([]);
      expect(r.uncovered).toEqual([]);
    });

    it(`${v.dir}: an altered payload or signature fails the signature check`, async () => {
      const d = await copyVector(v.dir);
      const text = await readFile(join(d, 'model.sig'), 'utf8');
      // swap the two resource digests' first hex digit in the payload and keep it a consistent statement
      const b = JSON.parse(text) as { dsseEnvelope: { payload: string; signatures: { sig: string }[] } };
      const st = JSON.parse(Buffer.from(b.dsseEnvelope.payload, 'base64').toString('utf8')) as {
        subject: { name: string; digest: { sha256: string } }[];
        predicate: { resources: { digest: string }[] };
      };
      const r0 = st.predicate.resources[0]!;
      r0.digest = (r0.digest[0] === '0' ? '1' : '0') + r0.digest.slice(1);
      st.subject[0]!.digest.sha256 = hex(nobleSha256(Buffer.concat(st.predicate.resources.map((r) => Buffer.from(r.digest, 'hex')))));
      const forged = { ...b, dsseEnvelope: { ...b.dsseEnvelope, payload: Buffer.from(JSON.stringify(st, null, 2)).toString('base64') } };
      const e = await rejection(verifyVector(d, v, JSON.stringify(forged)));
      expect(e.code).toBe('OMS_VERIFY_FAILED');
      expect(e.message).toMatch(/does not verify/);
      // a renamed subject (informative field, still covered by the signature)
      st.subject[0]!.name = 'other';
      const renamed = { ...b, dsseEnvelope: { ...b.dsseEnvelope, payload: Buffer.from(JSON.stringify(st, null, 2)).toString('base64') } };
      expect(await code(verifyVector(d, v, JSON.stringify(renamed)))).toBe('OMS_VERIFY_FAILED');
      // one flipped bit in the signature
      const sig = Buffer.from(b.dsseEnvelope.signatures[0]!.sig, 'base64');
      sig[sig.length - 5] = sig[sig.length - 5]! ^ 0x10;
      const badSig = { ...b, dsseEnvelope: { ...b.dsseEnvelope, signatures: [{ ...b.dsseEnvelope.signatures[0], sig: sig.toString('base64') }] } };
      expect(await code(verifyVector(d, v, JSON.stringify(badSig)))).toBe('OMS_VERIFY_FAILED');
    });

    it(`${v.dir}: another public key is refused`, async () => {
      const other = generateEcdsaKeyPair('P-384').publicKeyPem;
      const e = await rejection(verifyVector(join(VEC, v.dir), v, undefined, other));
      expect(e.code).toBe('OMS_VERIFY_FAILED');
      // 1.1.0 bundles carry a key hint, so the message can say it was another key
      if (v.dir.startsWith('v1.1')) expect(e.message).toMatch(/different key/);
    });
  }

  it('a deleted file is missing, an added one uncovered (directory vectors)', async () => {
    for (const v of VECTORS.filter((x) => x.model === '')) {
      const d = await copyVector(v.dir);
      await rm(join(d, 'signme-2'));
      let r = await verifyVector(d, v);
      expect(r).toMatchObject({ ok: false, files: ['signme-1'], mismatched: [], missing: ['signme-2'], uncovered: [] });

      const d2 = await copyVector(v.dir);
      await mkdir(join(d2, 'sub'));
      await writeFile(join(d2, 'sub', 'extra.bin'), 'x');
      await writeFile(join(d2, 'added'), '');
      r = await verifyVector(d2, v);
      expect(r).toMatchObject({ ok: false, files: ['signme-1', 'signme-2'], mismatched: [], missing: [], uncovered: ['added', 'sub/extra.bin'] });
    }
  });

  it('v1.0.0 (one-file model): a deleted model file is IO_NOT_FOUND; files beside it are not part of the model', async () => {
    const v = VECTORS[0]!;
    const d = await copyVector(v.dir);
    await writeFile(join(d, 'neighbour'), 'not part of a one-file model');
    expect((await verifyVector(d, v)).ok).toBe(true);
    await rm(join(d, 'signme-1'));
    expect(await code(verifyVector(d, v))).toBe('IO_NOT_FOUND');
  });

  it('ignore_paths recorded in a 1.1.0 statement are honoured; a 1.0.1 statement has none, so ignore-me must be passed', async () => {
    for (const name of ['v1.0.1-elliptic-key', 'v1.1.0-elliptic-key']) {
      const d = join(VEC, name);
      const r = await omsVerify(d, await readFile(join(d, 'model.sig'), 'utf8'), { publicKeyPem: PUB_PEM, ignore: [join(d, 'model.sig')] });
      if (name.startsWith('v1.1')) expect(r.ok).toBe(true);
      else expect(r).toMatchObject({ ok: false, uncovered: ['ignore-me'], mismatched: [], missing: [] });
    }
  });

  it('a model path that does not exist is IO_NOT_FOUND', async () => {
    const sig = await readFile(join(VEC, 'v1.1.0-elliptic-key', 'model.sig'), 'utf8');
    expect(await code(omsVerify(join(VEC, 'no-such-model'), sig, { publicKeyPem: PUB_PEM }))).toBe('IO_NOT_FOUND');
  });
});

describe('OMS spec test vectors (ossf/model-signing-spec v1.0)', () => {
  const spec = join(VEC, 'spec-v1.0');
  const twoFileModel = async (): Promise<string> => {
    // the spec's "model": the same signme-1 / signme-2 / ignore-me as the 1.0.1 vector
    const d = join(await tmp('mlic-oms-spec-'), 'model');
    await cp(join(VEC, 'v1.0.1-elliptic-key'), d, { recursive: true });
    await rm(join(d, 'model.sig'));
    return d;
  };

  const invalid: [string, RegExp][] = [
    ['invalid/empty.bundle.json', /empty/],
    ['invalid/missing-envelope.bundle.json', /dsseEnvelope: must be an object, is missing/],
    ['invalid/missing-verification-material.bundle.json', /verificationMaterial: must be an object, is missing/],
    ['invalid/missing-tlog-entries.bundle.json', /verificationMaterial\.tlogEntries: is missing/],
    ['invalid-payload/wrong-predicate.bundle.json', /statement\.predicateType: must be "https:\/\/model_signing\/signature\/v1\.0", is "https:\/\/example\.com\/wrong-predicate\/v1\.0"/],
  ];
  for (const [file, why] of invalid) {
    it(`${file} is rejected as FORMAT_INVALID with the reason`, async () => {
      const text = await readFile(join(spec, file), 'utf8');
      const e = await rejection(omsVerify(await twoFileModel(), text, { publicKeyPem: PUB_PEM }));
      expect(e.code).toBe('FORMAT_INVALID');
      expect(e.message).toMatch(why);
      expect(() => parseOmsBundle(text)).toThrow(MlicError);
    });
  }

  it('valid/key.bundle.json passes assertOmsBundle and verifies with the reference key against the spec model', async () => {
    const text = await readFile(join(spec, 'valid', 'key.bundle.json'), 'utf8');
    expect(() => assertOmsBundle(JSON.parse(text))).not.toThrow();
    expect(parseOmsBundle(text).method).toBe('publicKey');
    // its statement's ignore_paths list ignore-me, so nothing needs passing
    const r = await omsVerify(await twoFileModel(), text, { publicKeyPem: PUB_PEM });
    expect(r).toEqual({ ok: true, files: ['signme-1', 'signme-2'], mismatched: [], missing: [], uncovered: [], statementDigest: ROOT_TWO_FILES });
  });

  it('valid/certificate.bundle.json parses; verify checks only its DSSE signature against the given key (chain not validated), as `model_signing verify key` does', async () => {
    const text = await readFile(join(spec, 'valid', 'certificate.bundle.json'), 'utf8');
    expect(parseOmsBundle(text).method).toBe('x509CertificateChain');
    // the leaf certificate holds the same P-384 key as signing-key-pub.pem
    const r = await omsVerify(await twoFileModel(), text, { publicKeyPem: PUB_PEM });
    expect(r.ok).toBe(true);
  });

  it('valid/sigstore.bundle.json parses; it was signed by a Sigstore (Fulcio) key, so key verification does not apply and fails', async () => {
    const text = await readFile(join(spec, 'valid', 'sigstore.bundle.json'), 'utf8');
    const p = parseOmsBundle(text);
    expect(p.method).toBe('certificate');
    expect(p.statement.predicateType).toBe(OMS_PREDICATE_TYPE);
    expect(await code(omsVerify(await twoFileModel(), text, { publicKeyPem: PUB_PEM }))).toBe('OMS_VERIFY_FAILED');
  });
});

describe('assertOmsBundle', () => {
  it('collects every bad field path', () => {
    const bad = {
      mediaType: 'application/json',
      verificationMaterial: { publicKey: { hint: 7 }, tlogEntries: {} },
      dsseEnvelope: { payload: 'not base64!', payloadType: 'text/plain', signatures: [] },
    };
    let err: MlicError | undefined;
    try {
      assertOmsBundle(bad);
    } catch (e) {
      err = e as MlicError;
    }
    expect(err?.code).toBe('FORMAT_INVALID');
    const problems = (err?.details?.problems ?? []) as string[];
    for (const path of ['mediaType', 'verificationMaterial.publicKey.hint', 'verificationMaterial.tlogEntries', 'dsseEnvelope.payload', 'dsseEnvelope.payloadType', 'dsseEnvelope.signatures']) {
      expect(problems.some((p) => p.startsWith(`${path}:`))).toBe(true);
    }
    expect(problems.length).toBe(6);
  });

  it('checks the statement inside the payload, field by field', () => {
    const statement = {
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ name: 'm', digest: { sha256: 'zz' } }],
      predicateType: OMS_PREDICATE_TYPE,
      predicate: {
        serialization: { method: 'shards', hash_type: 'blake2', allow_symlinks: 'no', ignore_paths: ['../etc'] },
        resources: [
          { name: '../x', algorithm: 'sha256', digest: '00'.repeat(32) },
          { name: 'a', algorithm: 'md5', digest: 'xyz' },
          { name: 'a', algorithm: 'sha256', digest: '00'.repeat(32) },
        ],
      },
    };
    const bundle = {
      mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      verificationMaterial: { publicKey: { hint: '' }, tlogEntries: [] },
      dsseEnvelope: { payload: Buffer.from(JSON.stringify(statement)).toString('base64'), payloadType: 'application/vnd.in-toto+json', signatures: [{ sig: 'AAAA', keyid: '' }] },
    };
    let problems: string[] = [];
    try {
      assertOmsBundle(bundle);
    } catch (e) {
      problems = (e as MlicError).details!.problems as string[];
    }
    const paths = problems.map((p) => p.slice(0, p.indexOf(':')));
    expect(paths).toEqual([
      'statement.subject[0].digest.sha256',
      'statement.predicate.serialization.method',
      'statement.predicate.serialization.hash_type',
      'statement.predicate.serialization.allow_symlinks',
      'statement.predicate.serialization.ignore_paths[0]',
      'statement.predicate.resources[0].name',
      'statement.predicate.resources[1].algorithm',
      'statement.predicate.resources[1].digest',
      'statement.predicate.resources[2].name',
    ]);
  });

  it('malformed JSON is FORMAT_INVALID with a clear message', async () => {
    const e = await rejection(omsVerify(VEC, '{"mediaType": ', { publicKeyPem: PUB_PEM }));
    expect(e.code).toBe('FORMAT_INVALID');
    expect(e.message).toMatch(/not JSON/);
  });
});

describe('OMS format helpers', () => {
  it('PAE matches the DSSE specification example', () => {
    expect(pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString()).toBe('DSSEv1 29 http://example.com/HelloWorld 11 hello world');
  });

  it('resource order is Python PurePosixPath order (by component), not plain string order', () => {
    const names = ['a-b/x', 'a/b', 'B', 'a', 'a/b/c', '\u{1F600}', '\uFFFD'];
    expect([...names].sort(compareResourceNames)).toEqual(['B', 'a', 'a/b', 'a/b/c', 'a-b/x', '\uFFFD', '\u{1F600}']);
    expect(['a-b/x', 'a/b'].sort()).toEqual(['a-b/x', 'a/b']); // what a string sort would do
  });

  it('buildStatement reproduces the reference root digest', () => {
    const st = buildStatement(
      [
        { name: 'signme-2', digest: Buffer.from('32dcb1f8e1ae52d5963e56a6ba06ab58b424c15ed2a6b70d2feca1d089370028', 'hex') },
        { name: 'signme-1', digest: Buffer.from('bc9a717db6064a32cbe9eae6fc40651dd6d36ef1757183f590eff2b1765d7ebc', 'hex') },
      ],
      { allow_symlinks: false },
      'v1.0.1-elliptic-key',
    );
    expect(st.subject[0].digest.sha256).toBe(ROOT_TWO_FILES);
    expect(st.predicate.resources.map((r) => r.name)).toEqual(['signme-1', 'signme-2']);
    expect(() => buildStatement([], { allow_symlinks: false })).toThrow(/at least one file/);
  });

  it('sha256File streams files larger than its buffer', async () => {
    const d = await tmp('mlic-oms-hash-');
    const data = Buffer.alloc(3 * (1 << 20) + 5);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 9)) & 0xff;
    await writeFile(join(d, 'big'), data);
    await writeFile(join(d, 'empty'), '');
    expect(hex(await sha256File(join(d, 'big')))).toBe(hex(nobleSha256(data)));
    expect(hex(await sha256File(join(d, 'empty')))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(await code(sha256File(join(d, 'nope')))).toBe('IO_NOT_FOUND');
  });
});

describe('ECDSA keys', () => {
  it('generates P-256 PKCS#8 / SPKI PEM that load back', () => {
    const k = generateEcdsaKeyPair();
    expect(k.curve).toBe('P-256');
    expect(k.privateKeyPem.startsWith('-----BEGIN PRIVATE KEY-----\n')).toBe(true);
    expect(k.publicKeyPem.startsWith('-----BEGIN PUBLIC KEY-----\n')).toBe(true);
    expect(loadEcPrivateKey(k.privateKeyPem).curve).toBe('P-256');
    expect(loadEcPublicKey(k.publicKeyPem).curve).toBe('P-256');
  });

  it('accepts SEC1 "EC PRIVATE KEY" PEM', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const sec1 = privateKey.export({ type: 'sec1', format: 'pem' }).toString();
    expect(sec1).toMatch(/BEGIN EC PRIVATE KEY/);
    expect(loadEcPrivateKey(sec1).curve).toBe('P-256');
  });

  it('encrypted PKCS#8: needs its passphrase, rejects a wrong one', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const enc = privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'open sesame' }).toString();
    expect(loadEcPrivateKey(enc, 'open sesame').curve).toBe('P-384');
    expect(() => loadEcPrivateKey(enc)).toThrow(expect.objectContaining({ code: 'PASSPHRASE_REQUIRED' }));
    expect(() => loadEcPrivateKey(enc, 'wrong')).toThrow(expect.objectContaining({ code: 'PASSPHRASE_WRONG' }));
  });

  it('rejects Ed25519 saying OMS needs ECDSA, and other curves, types and garbage', () => {
    const ed = generateKeyPairSync('ed25519');
    const edPriv = ed.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const edPub = ed.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const expectKeyInvalid = (f: () => unknown, msg: RegExp): void => {
      try {
        f();
      } catch (e) {
        expect((e as MlicError).code).toBe('KEY_INVALID');
        expect((e as MlicError).message).toMatch(msg);
        return;
      }
      throw new Error('expected KEY_INVALID');
    };
    expectKeyInvalid(() => loadEcPrivateKey(edPriv), /Ed25519 key, but .*ECDSA/);
    expectKeyInvalid(() => loadEcPublicKey(edPub), /Ed25519 key, but .*ECDSA/);
    expectKeyInvalid(() => loadEcPrivateKey(k1), /curve secp256k1/);
    expectKeyInvalid(() => loadEcPrivateKey('hello'), /not PEM/);
    expectKeyInvalid(() => loadEcPrivateKey('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'), /could not be read/);
    expectKeyInvalid(() => loadEcPublicKey('-----BEGIN PUBLIC KEY-----\nZZZZ\n-----END PUBLIC KEY-----\n'), /could not be read/);
    expectKeyInvalid(() => loadEcPrivateKey(PUB_PEM), /is a public key/);
    expectKeyInvalid(() => loadEcPublicKey(generateEcdsaKeyPair().privateKeyPem), /is a private key/);
  });

  it('omsSign refuses an Ed25519 key before reading the model', async () => {
    const edPriv = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expect(await code(omsSign(join(VEC, 'no-such-model'), { privateKeyPem: edPriv }))).toBe('KEY_INVALID');
  });
});

describe('OMS round trip', () => {
  async function makeModel(): Promise<string> {
    const d = join(await tmp('mlic-oms-rt-'), 'my-model');
    await mkdir(join(d, 'a', 'b'), { recursive: true });
    await mkdir(join(d, 'a-b'));
    await mkdir(join(d, 'empty-dir'));
    await mkdir(join(d, '.git', 'objects'), { recursive: true });
    await mkdir(join(d, 'sub'));
    await writeFile(join(d, 'config.json'), '{"layers": 2}\n');
    await writeFile(join(d, 'a', 'b', 'weights.bin'), Buffer.alloc(70_000, 7));
    await writeFile(join(d, 'a', 'b2'), 'x');
    await writeFile(join(d, 'a-b', 'x'), 'y');
    await writeFile(join(d, 'empty'), '');
    await writeFile(join(d, '.git', 'objects', 'pack'), 'git data');
    await writeFile(join(d, '.gitattributes'), '*.bin filter=lfs');
    await writeFile(join(d, 'sub', '.gitignore'), 'nested git files are covered, as in the reference');
    return d;
  }
  // PurePosixPath order: 'a-b/x' after everything under 'a/' (a string sort would put it first);
  // .git/ and .gitattributes are left out by default, a nested .gitignore is not.
  const SIGNED = ['a/b/weights.bin', 'a/b2', 'a-b/x', 'config.json', 'empty', 'sub/.gitignore'];

  for (const curve of ['P-256', 'P-384', 'P-521'] as const) {
    it(`${curve}: sign a nested directory, verify ok; another key fails; a second implementation agrees`, async () => {
      const d = await makeModel();
      const k = generateEcdsaKeyPair(curve);
      const sigPath = join(d, 'model.sig');
      const s = await omsSign(d, { privateKeyPem: k.privateKeyPem, ignore: [sigPath] });
      await writeFile(sigPath, s.bundleJson);
      expect(s.files).toEqual(SIGNED);

      const r = await omsVerify(d, s.bundleJson, { publicKeyPem: k.publicKeyPem, ignore: [sigPath] });
      expect(r).toMatchObject({ ok: true, files: SIGNED, mismatched: [], missing: [], uncovered: [] });

      const other = generateEcdsaKeyPair(curve);
      const e = await rejection(omsVerify(d, s.bundleJson, { publicKeyPem: other.publicKeyPem, ignore: [sigPath] }));
      expect(e.code).toBe('OMS_VERIFY_FAILED');
      expect(await code(omsVerify(d, s.bundleJson, { publicKeyPem: generateEcdsaKeyPair('P-256' === curve ? 'P-384' : 'P-256').publicKeyPem, ignore: [sigPath] }))).toBe('OMS_VERIFY_FAILED');

      // Independent check: WebCrypto verifies the DER signature over a hand-made PAE,
      // @noble/hashes recomputes every file digest and the root.
      const ind = await independentVerify(s.bundleJson, k.publicKeyPem, curve);
      expect(ind.ok).toBe(true);
      const st = ind.statement as {
        _type: string;
        subject: { name: string; digest: { sha256: string } }[];
        predicateType: string;
        predicate: { serialization: Record<string, unknown>; resources: { name: string; algorithm: string; digest: string }[] };
      };
      expect(st._type).toBe('https://in-toto.io/Statement/v1');
      expect(st.predicateType).toBe('https://model_signing/signature/v1.0');
      expect(st.subject[0]!.name).toBe('my-model');
      expect(st.predicate.serialization).toEqual({
        method: 'files',
        hash_type: 'sha256',
        allow_symlinks: false,
        ignore_paths: ['.git', '.gitattributes', '.github', '.gitignore', 'model.sig'],
      });
      for (const res of st.predicate.resources) {
        expect(res.algorithm).toBe('sha256');
        expect(res.digest).toBe(hex(nobleSha256(await readFile(join(d, ...res.name.split('/'))))));
      }
      const root = nobleSha256(Buffer.concat(st.predicate.resources.map((x) => Buffer.from(x.digest, 'hex'))));
      expect(st.subject[0]!.digest.sha256).toBe(hex(root));
      expect(r.statementDigest).toBe(hex(root));
      const b = JSON.parse(s.bundleJson) as Record<string, unknown>;
      expect(b.mediaType).toBe('application/vnd.dev.sigstore.bundle.v0.3+json');
      expect(b.verificationMaterial).toEqual({ publicKey: { hint: hex(nobleSha256(new TextEncoder().encode(k.publicKeyPem))) }, tlogEntries: [] });
    });
  }

  it('verifies a bundle made entirely by the second implementation (WebCrypto key, hand-written statement)', async () => {
    const d = await makeModel();
    const kp = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const pubPem = derToPem(await subtle.exportKey('spki', kp.publicKey));
    const resources = [];
    for (const name of SIGNED) resources.push({ name, algorithm: 'sha256', digest: hex(nobleSha256(await readFile(join(d, ...name.split('/'))))) });
    const root = hex(nobleSha256(Buffer.concat(resources.map((x) => Buffer.from(x.digest, 'hex')))));
    const payload = new TextEncoder().encode(
      JSON.stringify({
        _type: 'https://in-toto.io/Statement/v1',
        subject: [{ name: 'my-model', digest: { sha256: root } }],
        predicateType: 'https://model_signing/signature/v1.0',
        predicate: { resources, serialization: { allow_symlinks: false, method: 'files', hash_type: 'sha256', ignore_paths: ['model.sig'] } },
      }),
    );
    const raw = new Uint8Array(await subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, kp.privateKey, handPae('application/vnd.in-toto+json', payload)));
    const bundle = JSON.stringify({
      mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      verificationMaterial: { publicKey: { hint: hex(nobleSha256(new TextEncoder().encode(pubPem))) }, tlogEntries: [] },
      dsseEnvelope: { payload: Buffer.from(payload).toString('base64'), payloadType: 'application/vnd.in-toto+json', signatures: [{ sig: Buffer.from(rawToDer(raw)).toString('base64'), keyid: '' }] },
    });
    await writeFile(join(d, 'model.sig'), bundle);
    expect(await omsVerify(d, bundle, { publicKeyPem: pubPem })).toMatchObject({ ok: true, files: SIGNED, statementDigest: root });
    // flipping one bit of the raw signature before DER-encoding it must fail
    raw[10] = raw[10]! ^ 1;
    const bad = bundle.replace(/"sig":"[^"]+"/, `"sig":"${Buffer.from(rawToDer(raw)).toString('base64')}"`);
    expect(await code(omsVerify(d, bad, { publicKeyPem: pubPem }))).toBe('OMS_VERIFY_FAILED');
  });

  it('a one-file model has one resource "." named after the file', async () => {
    const d = await tmp('mlic-oms-one-');
    const f = join(d, 'model.gguf');
    await writeFile(f, 'GGUF....');
    const k = generateEcdsaKeyPair();
    const s = await omsSign(f, { privateKeyPem: k.privateKeyPem });
    expect(s.files).toEqual(['.']);
    const p = parseOmsBundle(s.bundleJson);
    expect(p.statement.subject[0].name).toBe('model.gguf');
    expect((await omsVerify(f, s.bundleJson, { publicKeyPem: k.publicKeyPem })).ok).toBe(true);
    await writeFile(f, 'GGUF...!');
    expect(await omsVerify(f, s.bundleJson, { publicKeyPem: k.publicKeyPem })).toMatchObject({ ok: false, mismatched: ['.'] });
  });

  it('refuses symlinks (allow_symlinks false) unless ignored; refuses an empty model; IO_NOT_FOUND for a missing path', async () => {
    const d = await makeModel();
    const k = generateEcdsaKeyPair();
    await symlink(join(d, 'config.json'), join(d, 'link.json'));
    const e = await rejection(omsSign(d, { privateKeyPem: k.privateKeyPem }));
    expect(e.code).toBe('IO_UNSAFE_PATH');
    expect(e.message).toMatch(/link\.json is a symbolic link/);
    const s = await omsSign(d, { privateKeyPem: k.privateKeyPem, ignore: [join(d, 'link.json')] });
    expect(s.files).not.toContain('link.json');
    // the signed statement records link.json among its ignore_paths, so verification skips it too
    expect(parseOmsBundle(s.bundleJson).statement.predicate.serialization.ignore_paths).toContain('link.json');
    expect((await omsVerify(d, s.bundleJson, { publicKeyPem: k.publicKeyPem })).ok).toBe(true);
    // a symlink appearing after signing makes verification refuse
    await symlink(join(d, 'a'), join(d, 'sub', 'dir-link'));
    const e2 = await rejection(omsVerify(d, s.bundleJson, { publicKeyPem: k.publicKeyPem }));
    expect(e2.code).toBe('IO_UNSAFE_PATH');
    expect(e2.message).toMatch(/dir-link is a symbolic link/);

    const linkDir = join(await tmp('mlic-oms-ln-'), 'model-link');
    await symlink(d, linkDir);
    expect(await code(omsSign(linkDir, { privateKeyPem: k.privateKeyPem }))).toBe('IO_UNSAFE_PATH');

    const empty = await tmp('mlic-oms-empty-');
    await mkdir(join(empty, 'only-dirs', 'x'), { recursive: true });
    expect(await code(omsSign(empty, { privateKeyPem: k.privateKeyPem }))).toBe('MODEL_INVALID');
    expect(await code(omsSign(join(empty, 'missing'), { privateKeyPem: k.privateKeyPem }))).toBe('IO_NOT_FOUND');
  });

  it('ignored directories leave out their whole subtree and are recorded relative to the model', async () => {
    const d = await makeModel();
    const k = generateEcdsaKeyPair();
    const s = await omsSign(d, { privateKeyPem: k.privateKeyPem, ignore: [join(d, 'a'), join(d, '..', 'elsewhere.sig')], ignoreGitPaths: false });
    expect(s.files).toEqual(['.git/objects/pack', '.gitattributes', 'a-b/x', 'config.json', 'empty', 'sub/.gitignore']);
    expect(parseOmsBundle(s.bundleJson).statement.predicate.serialization.ignore_paths).toEqual(['a']);
    expect((await omsVerify(d, s.bundleJson, { publicKeyPem: k.publicKeyPem, ignoreGitPaths: false })).ok).toBe(true);
  });
});

describe.skipIf(!tool('openssl'))('OMS with OpenSSL as the other party', () => {
  it('signs with a key made by `openssl ecparam -genkey` (EC PARAMETERS + SEC1 blocks); `openssl dgst -verify` accepts the DSSE signature', async () => {
    const d = await tmp('mlic-oms-ossl-');
    const keyPath = join(d, 'key.pem');
    const pubPath = join(d, 'pub.pem');
    expect(sh('openssl', ['ecparam', '-name', 'secp384r1', '-genkey', '-out', keyPath]).code).toBe(0);
    expect(sh('openssl', ['pkey', '-in', keyPath, '-pubout', '-out', pubPath]).code).toBe(0);
    const model = join(d, 'model');
    await mkdir(model);
    await writeFile(join(model, 'w.bin'), 'weights');
    const s = await omsSign(model, { privateKeyPem: await readFile(keyPath, 'utf8') });
    const b = JSON.parse(s.bundleJson) as { dsseEnvelope: { payload: string; payloadType: string; signatures: { sig: string }[] } };
    await writeFile(join(d, 'pae.bin'), handPae(b.dsseEnvelope.payloadType, Buffer.from(b.dsseEnvelope.payload, 'base64')));
    await writeFile(join(d, 'sig.der'), Buffer.from(b.dsseEnvelope.signatures[0]!.sig, 'base64'));
    const ok = sh('openssl', ['dgst', '-sha384', '-verify', pubPath, '-signature', join(d, 'sig.der'), join(d, 'pae.bin')]);
    expect(ok.stdout).toMatch(/Verified OK/);
    // and rejects it over a payload missing its first byte
    await writeFile(join(d, 'pae.bin'), handPae(b.dsseEnvelope.payloadType, Buffer.from(b.dsseEnvelope.payload, 'base64').subarray(1)));
    const bad = sh('openssl', ['dgst', '-sha384', '-verify', pubPath, '-signature', join(d, 'sig.der'), join(d, 'pae.bin')]);
    expect(bad.code).not.toBe(0);
    expect((await omsVerify(model, s.bundleJson, { publicKeyPem: await readFile(pubPath, 'utf8') })).ok).toBe(true);
  });
});
