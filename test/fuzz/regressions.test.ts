/**
 * One regression test per distinct crash the fuzzers found (and the inputs the issue named), each
 * as the smallest input that showed it. Known crashes outside the parsers (src/host/) are pinned
 * with `it.fails`: they pass while the bug is there, and fail (so that someone flips them to `it`)
 * once it is fixed.
 */
import { describe, it, beforeAll, expect } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pack } from '../../src/bundle/pack.js';
import { inspectBundle } from '../../src/bundle/inspect.js';
import { verifyBundle } from '../../src/bundle/verify.js';
import { unpack } from '../../src/host/unpack.js';
import { activateLicense } from '../../src/host/licences.js';
import { parseAndVerifyRequest } from '../../src/license/sign.js';
import { parseReport } from '../../src/usage/report.js';
import { decodeSecretKey, SECRET_KEY_BEGIN, SECRET_KEY_END } from '../../src/keys/vendor.js';
import { assertManifest, type Manifest } from '../../src/format/manifest.js';
import type { VendorKey } from '../../src/keys/vendor.js';
import { codeOf } from '../helpers.js';
import { NOW, armor, deterministicNacl, fastTmp, host, licence, resetHost, vectorKey, vendorPublicKey, type Host } from './fixtures.js';
import { signedBundle } from './bundles.js';

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
});
