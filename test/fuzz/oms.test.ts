/**
 * Fuzz: OpenSSF Model Signing signature files, through what `mlic verify --oms MODEL --sig S --pub P`
 * calls (omsVerify, which parses with parseOmsBundle): the reference tool's and the spec's vectors,
 * and our own signature, mutated as text, as JSON, and in the in-toto statement the DSSE payload
 * carries (re-signed with the key, subject digest recomputed, so that the model walk sees hostile
 * resource names and ignore paths).
 */
import { describe, it, beforeAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { parseOmsBundle, pae, IN_TOTO_PAYLOAD_TYPE } from '../../src/format/oms.js';
import { omsVerify } from '../../src/oms/verify.js';
import { omsSign } from '../../src/oms/sign.js';
import { ecPublicFromPrivate, ecPublicKeyPem, ecdsaSign, loadEcPrivateKey, loadEcPublicKey } from '../../src/crypto/ecdsa.js';
import { cases, fuzz, mutateJson, mutateText, serialize, type Rng } from './lib.js';
import { VECTORS, fastTmp } from './fixtures.js';

/** A fixed P-256 test key (made for these tests; signs nothing else). */
const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg5mZfrMMS5/CeYHzh
G3SGBroWY5f0kAwn+2iRqZE8u8WhRANCAATetNmdKVV1l1U+iM9J5xwBR05q1/u1
7aprPdr6Zt3plYPiIN0mu5wkKPGIrgUhXJA8kaj/1HtIjGHc4ragGpli
-----END PRIVATE KEY-----
`;
const KEYS = ['mediaType', 'verificationMaterial', 'publicKey', 'hint', 'rawBytes', 'keyDetails', 'certificate', 'x509CertificateChain', 'certificates', 'tlogEntries', 'timestampVerificationData', 'dsseEnvelope', 'payload', 'payloadType', 'signatures', 'sig', 'keyid', 'messageSignature'];
const ST_KEYS = ['_type', 'subject', 'name', 'digest', 'sha256', 'predicateType', 'predicate', 'serialization', 'method', 'hash_type', 'allow_symlinks', 'ignore_paths', 'resources', 'algorithm'];
const NAMES = ['.', '..', '../x', '/etc/passwd', 'a//b', 'a/./b', 'a\u0000b', 'a\\b', '', 'sub', 'sub/', 'a.bin/x', '\u202e', 'a'.repeat(5000), `${'a/'.repeat(2000)}x`, 'model.sig', '.git/config', 'C:/x'];

describe('fuzz: OMS signature bundles', () => {
  const docs: { name: string; text: string }[] = [];
  let model: string;
  let sigPath: string;
  let pubPem: string;
  let refPub: string;
  let priv: ReturnType<typeof loadEcPrivateKey>;

  beforeAll(async () => {
    const OMS = `${VECTORS}oms/`;
    for (const f of ['spec-v1.0/valid/key.bundle.json', 'spec-v1.0/valid/certificate.bundle.json', 'spec-v1.0/valid/sigstore.bundle.json', 'v1.0.1-elliptic-key/model.sig', 'v1.1.0-elliptic-key/model.sig', 'spec-v1.0/invalid-payload/wrong-predicate.bundle.json'])
      docs.push({ name: f, text: readFileSync(OMS + f, 'utf8') });
    refPub = readFileSync(`${OMS}signing-key-pub.pem`, 'utf8');
    model = join(await fastTmp('mlic-fuzz-oms-'), 'model');
    await mkdir(join(model, 'sub'), { recursive: true });
    await writeFile(join(model, 'a.bin'), 'weights');
    await writeFile(join(model, 'sub', 'b.txt'), 'tokens');
    sigPath = join(model, 'model.sig');
    priv = loadEcPrivateKey(TEST_KEY);
    pubPem = ecPublicKeyPem(ecPublicFromPrivate(priv));
    const ours = await omsSign(model, { privateKeyPem: TEST_KEY, ignore: [sigPath] });
    docs.push({ name: 'ours', text: ours.bundleJson });
  });

  /** The statement mutated, its subject digest recomputed when it can be, signed again with our key. */
  function statementMutant(r: Rng, text: string): { desc: string; text: string } {
    const b = JSON.parse(text) as { dsseEnvelope: { payload: string; signatures: { sig: string }[] } };
    const st = JSON.parse(Buffer.from(b.dsseEnvelope.payload, 'base64').toString('utf8')) as { predicate?: { resources?: { name?: unknown; digest?: unknown }[]; serialization?: { ignore_paths?: unknown } }; subject?: { digest?: { sha256?: unknown } }[] };
    let desc: string;
    let payload: Buffer;
    if (r.chance(0.4) && st.predicate?.resources) {
      // hostile names and ignore paths that the validator may let through to the model walk
      const res = st.predicate.resources;
      if (r.chance(0.5) && res.length) res[r.int(res.length)]!.name = r.pick(NAMES);
      else st.predicate.serialization = { ...(st.predicate.serialization ?? {}), ignore_paths: [r.pick(NAMES), r.pick(['a.bin', 'sub', '.', 'sub/b.txt'])] };
      desc = 'statement: hostile name or ignore path';
      payload = Buffer.from(JSON.stringify(st, null, 2));
    } else {
      const m = mutateJson(r, st, [], ST_KEYS);
      desc = `statement: ${m.desc}`;
      payload = Buffer.from(serialize(m.ast, { indent: r.chance(0.7) }));
    }
    try {
      // a consistent subject digest, so that verification reaches the walk
      const s = JSON.parse(payload.toString('utf8')) as typeof st;
      const digests = (s.predicate?.resources ?? []).map((x) => Buffer.from(String(x.digest), 'hex'));
      if (r.chance(0.8) && s.subject?.[0]?.digest) {
        s.subject[0].digest.sha256 = createHash('sha256').update(Buffer.concat(digests)).digest('hex');
        payload = Buffer.from(JSON.stringify(s, null, 2));
      }
    } catch {
      // not JSON any more
    }
    b.dsseEnvelope.payload = payload.toString('base64');
    if (b.dsseEnvelope.signatures?.[0]) b.dsseEnvelope.signatures[0].sig = ecdsaSign(priv, pae(IN_TOTO_PAYLOAD_TYPE, payload)).toString('base64');
    return { desc, text: JSON.stringify(b) };
  }

  /** PEM-level damage: the label, the base64 body (re-encoded DER with a byte changed, cut or grown), text around it. */
  function pemMutation(r: Rng, pem: string): { desc: string; text: string } {
    const m = /-----BEGIN ([A-Z ]+)-----\n([\s\S]*?)\n-----END [A-Z ]+-----/.exec(pem)!;
    const der = Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64');
    const label = r.chance(0.2) ? r.pick(['PUBLIC KEY', 'PRIVATE KEY', 'EC PRIVATE KEY', 'ENCRYPTED PRIVATE KEY', 'CERTIFICATE', 'RSA PUBLIC KEY', 'X']) : m[1]!;
    let body = der;
    const op = r.int(5);
    if (op === 0) {
      body = Buffer.from(der);
      const i = r.int(body.length);
      body[i] = body[i]! ^ (1 << r.int(8));
    } else if (op === 1) body = der.subarray(0, r.int(der.length));
    else if (op === 2) body = Buffer.concat([der, Buffer.alloc(1 + r.int(64), r.int(256))]);
    else if (op === 3) {
      // a DER length byte made huge
      body = Buffer.from(der);
      body[1] = 0x84;
    }
    const b64 = body.toString('base64').replace(/(.{64})/g, '$1\n');
    const around = r.chance(0.2) ? r.pick(['junk\n', '-----BEGIN PUBLIC KEY-----\n', '\ufeff', '\r\n']) : '';
    return { desc: `pem: label ${label}, op ${op}`, text: `${around}-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n${r.chance(0.1) ? pem : ''}` };
  }

  function mutant(r: Rng): { desc: string; text: string; doc: string } {
    const d = r.pick(docs);
    const level = r.int(10);
    if (level < 3) {
      const m = mutateText(r, d.text);
      return { desc: `text: ${m.desc}`, text: m.text, doc: d.name };
    }
    if (level < 6) {
      const m = mutateJson(r, JSON.parse(d.text), [JSON.parse(r.pick(docs).text)], KEYS);
      return { desc: `json: ${m.desc}`, text: serialize(m.ast), doc: d.name };
    }
    const m = statementMutant(r, d.text);
    return { ...m, doc: d.name };
  }

  it('parseOmsBundle', async () => {
    const t = await fuzz('OMS bundle (parse)', 0x0e51, cases(3000), 10_000, (r) => {
      const m = mutant(r);
      return { desc: `${m.doc}: ${m.desc}`, run: () => parseOmsBundle(m.text) };
    });
    t.report();
  }, 180_000);

  it('PEM keys: loadEcPublicKey (verify --oms --pub) and loadEcPrivateKey (sign --oms --key)', async () => {
    const pems = [pubPem, refPub, TEST_KEY];
    const t = await fuzz('OMS PEM key', 0x0e53, cases(2000), 10_000, (r) => {
      const base = r.pick(pems);
      const m = r.chance(0.5) ? mutateText(r, base) : pemMutation(r, base);
      return { desc: m.desc, run: () => (base === TEST_KEY ? loadEcPrivateKey(m.text, r.chance(0.3) ? 'pw' : undefined) : loadEcPublicKey(m.text)) };
    });
    t.report();
  }, 180_000);

  it('omsVerify against a model directory (our key, and the reference key for its vectors)', async () => {
    const t = await fuzz('OMS bundle (verify)', 0x0e52, cases(1000), 10_000, (r) => {
      const m = mutant(r);
      const pem = m.doc === 'ours' || m.desc.startsWith('statement') ? pubPem : refPub;
      return { desc: `${m.doc}: ${m.desc}`, run: () => omsVerify(model, m.text, { publicKeyPem: pem, ignore: [sigPath] }) };
    });
    t.report();
  }, 180_000);
});
