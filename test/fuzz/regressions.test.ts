/**
 * One regression test per distinct crash the fuzzers found (and the inputs the issue named), each
 * as the smallest input that showed it. Known crashes outside the parsers (src/host/) are pinned
 * with `it.fails`: they pass while the bug is there, and fail (so that someone flips them to `it`)
 * once it is fixed.
 */
import { describe, it, beforeAll, expect } from 'vitest';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pack } from '../../src/bundle/pack.js';
import { inspectBundle } from '../../src/bundle/inspect.js';
import { verifyBundle } from '../../src/bundle/verify.js';
import { unpack } from '../../src/host/unpack.js';
import { openBundle } from '../../src/host/open.js';
import { computeLayout, mtimeOf } from '../../src/bundle/layout.js';
import { activateLicense } from '../../src/host/licences.js';
import { parseAndVerifyRequest } from '../../src/license/sign.js';
import { parseReport } from '../../src/usage/report.js';
import { decodeSecretKey, SECRET_KEY_BEGIN, SECRET_KEY_END } from '../../src/keys/vendor.js';
import { assertManifest, type Manifest } from '../../src/format/manifest.js';
import { MlicError } from '../../src/errors.js';
import type { VendorKey } from '../../src/keys/vendor.js';
import { codeOf } from '../helpers.js';
import { NOW, armor, deterministicNacl, fastTmp, host, licence, resetHost, vectorKey, vendorPublicKey, type Host } from './fixtures.js';
import { longPath, manifestSignature, materialize, signedBundle } from './bundles.js';
import { HAVE_PROC_FD, removeDeep, writeDeep } from './paths.js';

/** The code every step (inspect, verify, unpack) gives; any other error fails the test. */
async function codes(p: string, vendor: VendorKey, A: Host, out: string): Promise<string[]> {
  return [
    await codeOf(inspectBundle(p)),
    await codeOf(verifyBundle(p, vendorPublicKey(vendor))),
    await codeOf(unpack(p, out, { stateDir: A.fake.stateDir, hostProbe: A.fake.probe(), now: NOW })),
  ];
}

describe('regressions from the fuzzers', () => {
  let vendor: VendorKey;
  let A: Host;
  let dir: string;
  let manifest: Manifest;
  let n = 0;

  beforeAll(async () => {
    vendor = await vectorKey();
    dir = await fastTmp('mlic-fuzz-reg-');
    await writeFile(join(dir, 'config.json'), '{"hidden":4}\n');
    await writeFile(join(dir, 'weights.bin'), Buffer.alloc(3000, 7));
    manifest = (await pack({ input: join(dir, 'config.json'), name: 'vector-model', version: '2.1.0', key: vendor, out: join(dir, 'g.mlb'), now: NOW, bundleId: '00112233445566778899aabbccddeeff' })).manifest;
    A = await host('fuzzrega', vendor);
    await resetHost(A);
    const lic = await deterministicNacl('regression licence', () => licence(vendor, { request: A.request }, 'regression'));
    await activateLicense(lic.text, { stateDir: A.fake.stateDir, hostProbe: A.fake.probe(), now: NOW });
  });

  const bundle = async (m: unknown, fixup = true) => {
    const p = join(dir, `r${n++}.mlb`);
    await writeFile(p, signedBundle(m, vendor, fixup));
    return p;
  };

  it('a signed manifest whose createdAt the tar mtime cannot hold (after 2242, before 1970) is MANIFEST_INVALID, not RangeError "tar octal field overflow"', async () => {
    for (const createdAt of ['2242-03-16T12:56:32Z', '9999-12-31T23:59:59Z', '1969-12-31T23:59:59Z', '0000-01-01T00:00:00Z']) {
      const p = await bundle({ ...structuredClone(manifest), createdAt });
      expect(await codes(p, vendor, A, join(dir, `o${n}`)), createdAt).toEqual(['MANIFEST_INVALID', 'MANIFEST_INVALID', 'MANIFEST_INVALID']);
    }
    // the bounds themselves are fine
    for (const createdAt of ['1970-01-01T00:00:00Z', '2242-03-16T12:56:31Z']) expect(() => assertManifest({ ...structuredClone(manifest), createdAt })).not.toThrow();
  });

  it('a file size near 2^53 (its ciphertextSize is no safe integer) is MANIFEST_INVALID, not RangeError "tar entry size"', async () => {
    for (const size of [2 ** 53 - 1, 2 ** 53 - 16]) {
      const m = structuredClone(manifest);
      m.files[0]!.size = size;
      m.files[0]!.chunkSize = 64 << 20;
      const p = await bundle(m);
      expect(await codes(p, vendor, A, join(dir, `o${n}`)), String(size)).toEqual(['MANIFEST_INVALID', 'MANIFEST_INVALID', 'MANIFEST_INVALID']);
    }
    // a large file that fits is not refused by the manifest (the layout check then finds the file short)
    const m = structuredClone(manifest);
    m.files[0]!.size = 2 ** 40;
    expect((await codes(await bundle(m), vendor, A, join(dir, `o${n}`)))[1]).toBe('BUNDLE_TRUNCATED');
  });

  it('a version that is no positive integer (2.5, 1e400, -1) is an invalid field (FORMAT_INVALID), not "version 2.5 is not supported"; version 1 is UNSUPPORTED_VERSION', async () => {
    const req = JSON.parse(JSON.stringify(A.request)) as { payload: Record<string, unknown>; signature: string };
    const reqCode = (v: string) => codeOf(Promise.resolve().then(() => parseAndVerifyRequest(JSON.stringify(req).replace('"v":2', `"v":${v}`))));
    expect([await reqCode('2.5'), await reqCode('1e400'), await reqCode('-1'), await reqCode('1')]).toEqual(['FORMAT_INVALID', 'FORMAT_INVALID', 'FORMAT_INVALID', 'UNSUPPORTED_VERSION']);
    const m = (formatVersion: unknown) => codeOf(Promise.resolve().then(() => assertManifest({ ...structuredClone(manifest), formatVersion })));
    expect([await m(2.5), await m(Infinity), await m(1)]).toEqual(['MANIFEST_INVALID', 'MANIFEST_INVALID', 'UNSUPPORTED_VERSION']);
    const keyText = (v: string) => armor(SECRET_KEY_BEGIN, SECRET_KEY_END, `{"kind":"mlic-vendor-secret-key","v":${v}}`);
    expect([await codeOf(decodeSecretKey(keyText('1.5'), () => '')), await codeOf(decodeSecretKey(keyText('2'), () => ''))]).toEqual(['KEY_INVALID', 'UNSUPPORTED_VERSION']);
    const report = (v: string) => codeOf(Promise.resolve().then(() => parseReport(`{"payload":{"kind":"mlic-usage-report","v":${v}},"signature":"${Buffer.alloc(64).toString('base64')}"}`)));
    expect([await report('2.5'), await report('1')]).toEqual(['FORMAT_INVALID', 'UNSUPPORTED_VERSION']);
  });

  it('the inputs the issue named are refused with a code: non-integer numbers and deep nesting in a request or report, a key file without a string protection.nonce', async () => {
    const req = JSON.parse(JSON.stringify(A.request)) as { payload: Record<string, unknown>; signature: string };
    for (const text of [
      JSON.stringify({ ...req, payload: { ...req.payload, v: 2.5 } }),
      JSON.stringify({ ...req, payload: { ...req.payload, fingerprint: { ...(req.payload.fingerprint as object), container: 1.5 } } }),
      '{"payload":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}',
      JSON.stringify(req).replace('"v":2', '"v":1e400'),
    ])
      expect(['FORMAT_INVALID', 'SIGNATURE_INVALID']).toContain(await codeOf(Promise.resolve().then(() => parseAndVerifyRequest(text))));
    for (const text of ['{"payload":{"v":2.5},"signature":"x"}', '['.repeat(50_000), '{"payload":' + '{"a":'.repeat(1000) + '1' + '}'.repeat(1001)])
      expect(await codeOf(Promise.resolve().then(() => parseReport(text)))).toBe('FORMAT_INVALID');
    const body = { v: 1, kind: 'mlic-vendor-secret-key', keyId: '59AD1026DBF29AF0', publicKey: vendor.publicKey.toString('base64'), protection: { kdf: 'scrypt', logN: 12, r: 8, p: 1, salt: Buffer.alloc(32).toString('base64'), aead: 'xchacha20poly1305' } as Record<string, unknown>, secret: Buffer.alloc(80).toString('base64') };
    for (const nonce of [undefined, 24, null, ['x'], Buffer.alloc(23).toString('base64')]) {
      const text = armor(SECRET_KEY_BEGIN, SECRET_KEY_END, JSON.stringify({ ...body, protection: { ...body.protection, ...(nonce === undefined ? {} : { nonce }) } }));
      const e = await decodeSecretKey(text, () => 'pw').catch((x: unknown) => x);
      expect(e).toBeInstanceOf(MlicError);
      expect((e as MlicError).code).toBe('KEY_INVALID');
    }
  });

  // ---- known, outside the parsers (src/host/): pinned, see the report ----

  it.skipIf(!HAVE_PROC_FD)('when unpack fails after writing a file deeper than PATH_MAX, its clean-up removes it and the MlicError stands (was: ENAMETOOLONG from fs.rm)', async () => {
    const m = structuredClone(manifest);
    m.files = [
      { ...m.files[0]!, index: 0, path: longPath(4096, 3) },
      { ...m.files[0]!, index: 1, path: 'z.json' },
    ];
    // z.json's plaintext digest is wrong: unpack writes the deep file, then fails on z.json
    const built = JSON.parse((await readFile(await bundle(m))).subarray(512).toString('utf8').split('\0')[0]!) as Manifest;
    built.files[1]!.sha256 = '0'.repeat(64);
    const p = await bundle(built, false);
    const out = join(dir, `deep${n}`);
    try {
      expect(await codeOf(unpack(p, out, { stateDir: A.fake.stateDir, hostProbe: A.fake.probe(), now: NOW }))).toBe('DIGEST_MISMATCH');
    } finally {
      removeDeep(out);
    }
  });

  it('concurrent first decisions on a fresh state directory agree on one host key (was: each made one, and the audit log was LEDGER_TAMPERED for good)', async () => {
    const fresh = join(dir, `fresh${n++}`);
    const { StateDir } = await import('../../src/state/home.js');
    await new StateDir(fresh).trustAdd((await import('../../src/keys/vendor.js')).publicKeyFileText(vendor));
    const o = { stateDir: fresh, hostProbe: A.fake.probe(), now: NOW };
    // every one is refused for what it is: not a licence
    expect(await Promise.all([1, 2, 3, 4].map(() => codeOf(activateLicense('not a licence', o))))).toEqual(['FORMAT_INVALID', 'FORMAT_INVALID', 'FORMAT_INVALID', 'FORMAT_INVALID']);
    // and the state directory still works afterwards
    expect(await codeOf(activateLicense('not a licence', o))).toBe('FORMAT_INVALID');
  });

  it('openBundle of a bundle with a file over 4 GiB is USAGE pointing to createReadStream (was: RangeError from Buffer.allocUnsafe on Node 20, a 4 GiB allocation on Node 24)', async () => {
    // a sparse bundle: headers where the layout puts them, zeros (holes) everywhere else
    const m = structuredClone(manifest);
    m.files[0]!.size = 2 ** 32 + 1;
    m.files[0]!.chunkSize = 64 << 20;
    const mat = materialize(m, vendor, true);
    const sig = manifestSignature(vendor, mat.manifestBytes, manifest.bundleId, manifest.createdAt);
    const layout = computeLayout(mtimeOf(manifest.createdAt), mat.manifestBytes.length, sig.length, [(mat.manifest as Manifest).files[0]!.ciphertextSize]);
    const p = join(dir, `big${n++}.mlb`);
    const fh = await open(p, 'w');
    try {
      for (const [at, b] of [[layout.manifest.headerOffset, layout.manifest.header], [layout.manifest.dataOffset, mat.manifestBytes], [layout.signature.headerOffset, layout.signature.header], [layout.signature.dataOffset, sig], [layout.files[0]!.headerOffset, layout.files[0]!.header]] as const) await fh.write(b, 0, b.length, at);
      await fh.truncate(layout.totalSize);
    } finally {
      await fh.close();
    }
    const i = await inspectBundle(p);
    expect(i.size).toBe(i.expectedSize);
    const opts = { stateDir: A.fake.stateDir, hostProbe: A.fake.probe(), now: NOW };
    const e = await openBundle(p, opts).then((b) => b.close(), (x: unknown) => x);
    expect(e).toBeInstanceOf(MlicError);
    expect((e as MlicError).code).toBe('USAGE');
    expect((e as MlicError).hint).toMatch(/createReadStream/);
    // without preload it opens, readFile refuses the same way, and a stream is the way to read it
    const b = await openBundle(p, { ...opts, preload: false });
    try {
      expect(await codeOf(b.readFile(m.files[0]!.path))).toBe('USAGE');
      const s = b.createReadStream(m.files[0]!.path);
      expect(await codeOf(new Promise((res, rej) => s.once('data', res).once('error', rej)))).toBe('CHUNK_AUTH_FAILED');
      s.destroy();
    } finally {
      await b.close();
    }
  });

  it.skipIf(!HAVE_PROC_FD)('a file name of 238..255 bytes packs and unpacks (temporary names have a fixed length; was: IO_ERROR ENAMETOOLONG)', async () => {
    const src = join(dir, 'long-name');
    await (await import('node:fs/promises')).mkdir(src);
    writeDeep(src, 'a'.repeat(250), 'x');
    const p = join(dir, 'long-name.mlb');
    await pack({ input: src, name: 'vector-model', version: '2.1.0', key: vendor, out: p, now: NOW });
    const out = join(dir, `ln${n++}`);
    try {
      expect(await codeOf(unpack(p, out, { stateDir: A.fake.stateDir, hostProbe: A.fake.probe(), now: NOW }))).toBe('OK');
    } finally {
      removeDeep(out);
    }
  });
});
