/**
 * The built binary on mutated input files: every run ends with exit 0, or 1 / 2 with an error code
 * (in --json, and as "[CODE]" on stderr without it); never 70 (INTERNAL), never a stack trace.
 * Commands: license issue --request, fingerprint --compare, usage verify, license inspect, inspect,
 * verify (bundles and minisign signatures), activate, sign with mutated key files, trust add.
 */
import { describe, it, beforeAll, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pack } from '../../src/bundle/pack.js';
import { buildReport, REPORT_SIG_DOMAIN } from '../../src/usage/report.js';
import { LICENSE_BEGIN, LICENSE_END, LICENSE_SIG_DOMAIN, REQUEST_SIG_DOMAIN } from '../../src/format/license.js';
import { SECRET_KEY_BEGIN, SECRET_KEY_END, publicKeyFileText, type VendorKey } from '../../src/keys/vendor.js';
import { keyIdHex } from '../../src/format/minisign.js';
import { signFile } from '../../src/signing/files.js';
import { mlic, type RunResult } from '../cli/run.js';
import { cases, mutateBytes, mutateJson, mutateText, rng, serialize, type Ast, type Rng } from '../fuzz/lib.js';
import { NOW, VECTORS, armor, canonicalOf, det, deterministicNacl, fastTmp, host, licence, signOver, vectorKey } from '../fuzz/fixtures.js';
import { longPath, signedBundle } from '../fuzz/bundles.js';
import { removeDeep } from '../fuzz/paths.js';
import { hostile } from '../fuzz/bundle-env.js';
import type { Manifest } from '../../src/format/manifest.js';

interface Case {
  cmd: string;
  args: string[];
  desc: string;
  env?: Record<string, string>;
}

describe('fuzz: the mlic binary on mutated files', () => {
  let vendor: VendorKey;
  let dir: string;
  let home: string;
  const f: Record<string, string> = {};
  const text: Record<string, string> = {};
  let reqDoc: { payload: unknown };
  let licPayload: unknown;
  let reportDoc: { payload: unknown };
  let manifest: unknown;
  let signSeed: Uint8Array;
  let bundle: Buffer;

  beforeAll(async () => {
    vendor = await vectorKey();
    dir = await fastTmp('mlic-fuzz-cli-');
    home = join(dir, 'home');
    const A = await host('fuzzclia', vendor);
    signSeed = A.id.signSeed;
    f.key = `${VECTORS}bundles/test-vendor.key`;
    f.pub = join(dir, 'vendor.pub');
    await writeFile(f.pub, publicKeyFileText(vendor));
    text.key = readFileSync(f.key, 'utf8');
    text.pub = publicKeyFileText(vendor);
    // trusted on this (real) host's state directory, so that activate reaches the licence checks;
    // one decision first, so that the host key exists before runs go in parallel (creating it
    // concurrently is a known race: see regressions.test.ts)
    expect((await mlic(['trust', 'add', f.pub, '--home', home])).code).toBe(0);
    await writeFile(join(dir, 'empty.lic'), '');
    expect((await mlic(['activate', join(dir, 'empty.lic'), '--home', home])).code).toBe(2);
    reqDoc = A.request;
    text.request = A.requestText;
    const bound = await deterministicNacl('cli licence', () => licence(vendor, { request: A.request, meters: [{ metric: 'inferences', limit: 10, period: 'month' }] }, 'cli'));
    const unbound = await deterministicNacl('cli unbound', () => licence(vendor, {}, 'cli-unbound'));
    licPayload = unbound.payload;
    text.licence = unbound.text;
    text.bound = bound.text;
    f.bound = join(dir, 'bound.lic');
    await writeFile(f.bound, bound.text);
    const r = buildReport({ records: [], period: '2026-11', license: bound.payload, hostSignSeed: A.id.signSeed, hostSignPublic: A.id.signPublic, hostBoxPublic: A.id.boxPublic, auditSeq: 3, now: NOW });
    const payload = { ...r.payload, reportId: det('cli report', 16).toString('hex') };
    reportDoc = { payload };
    text.report = JSON.stringify({ payload, signature: signOver(A.id.signSeed, REPORT_SIG_DOMAIN, { t: 'raw', s: JSON.stringify(payload) }) }, null, 2) + '\n';
    const src = join(dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'config.json'), '{"a":1}\n');
    f.bundle = join(dir, 'good.mlb');
    manifest = (await pack({ input: src, name: 'vector-model', version: '2.1.0', key: vendor, out: f.bundle, now: NOW, bundleId: '00112233445566778899aabbccddeeff' })).manifest;
    bundle = await readFile(f.bundle);
    f.data = join(dir, 'data.txt');
    await writeFile(f.data, 'signed data\n');
    await signFile(f.data, { signer: { seed: vendor.seed, keyId: vendor.keyId }, sigPath: join(dir, 'data.txt.minisig'), now: NOW });
    text.sig = readFileSync(join(dir, 'data.txt.minisig'), 'utf8');
    // the unmutated inputs work
    for (const [args, want] of [
      [['license', 'inspect', f.bound, '--pub', f.pub], 0],
      [['verify', f.bundle, '--pub', f.pub], 0],
      [['verify', f.data, '--pub', f.pub], 0],
    ] as const) {
      const res = await mlic([...args, '--json']);
      expect(res.code, res.stdout + res.stderr).toBe(want);
    }
  });

  const jsonText = (r: Rng, doc: unknown, base: string, seed?: Uint8Array, domain?: string): { desc: string; text: string } => {
    const level = r.int(3);
    if (level === 0) {
      const m = mutateText(r, base);
      return { desc: `text: ${m.desc}`, text: m.text };
    }
    const d = doc as { payload: unknown };
    if (level === 1 || !seed || !domain) {
      const m = mutateJson(r, JSON.parse(base));
      return { desc: `json: ${m.desc}`, text: serialize(m.ast, { indent: true }) };
    }
    const m = mutateJson(r, d.payload);
    const doc2: Ast = { t: 'obj', e: [['payload', m.ast], ['signature', { t: 'raw', s: JSON.stringify(signOver(seed, domain, m.ast)) }]] };
    return { desc: `signed: ${m.desc}`, text: serialize(doc2, { indent: true }) };
  };

  const licenceText = (r: Rng): { desc: string; text: string } => {
    if (r.chance(0.4)) {
      const m = mutateText(r, r.chance(0.5) ? text.licence! : text.bound!);
      return { desc: `text: ${m.desc}`, text: m.text };
    }
    const m = mutateJson(r, licPayload);
    const sig: Ast = { t: 'obj', e: [['alg', { t: 'raw', s: '"ed25519"' }], ['keyId', { t: 'raw', s: JSON.stringify(keyIdHex(vendor.keyId)) }], ['sig', { t: 'raw', s: JSON.stringify(signOver(vendor.seed, LICENSE_SIG_DOMAIN, m.ast)) }]] };
    return { desc: `signed: ${m.desc}`, text: armor(LICENSE_BEGIN, LICENSE_END, canonicalOf({ t: 'obj', e: [['payload', m.ast], ['signature', sig]] })) };
  };

  const keyText = (r: Rng): { desc: string; text: string } => {
    if (r.chance(0.4)) {
      const m = mutateText(r, text.key!);
      return { desc: `text: ${m.desc}`, text: m.text };
    }
    const body = JSON.parse(Buffer.from(text.key!.trim().split('\n').slice(1, -1).join(''), 'base64').toString('utf8')) as unknown;
    const m = mutateJson(r, body, [], ['nonce', 'salt', 'logN', 'r', 'p', 'aead', 'kdf']);
    return { desc: `body: ${m.desc}`, text: armor(SECRET_KEY_BEGIN, SECRET_KEY_END, canonicalOf(m.ast)) };
  };

  /** The cases, each with the file it reads written under its own name. */
  async function makeCases(): Promise<Case[]> {
    const out: Case[] = [];
    let n = 0;
    const file = async (name: string, content: string | Buffer) => {
      const p = join(dir, `${n++}-${name}`);
      await writeFile(p, content);
      return p;
    };
    const add = async (cmd: string, count: number, make: (r: Rng) => Promise<Omit<Case, 'cmd'>>) => {
      for (let i = 0; i < cases(count); i++) out.push({ cmd, ...(await make(rng(0xc11 + out.length * 7919))) });
    };
    await add('license issue --request', 30, async (r) => {
      const m = jsonText(r, reqDoc, text.request!, signSeed, REQUEST_SIG_DOMAIN);
      return { desc: m.desc, args: ['license', 'issue', '--key', f.key!, '--request', await file('request.json', m.text), '--model', 'vector-model', '--versions', '^2', '--days', '30', '-o', join(dir, `${n}.lic`)] };
    });
    await add('fingerprint --compare', 12, async (r) => {
      const m = r.chance(0.5) ? jsonText(r, reqDoc, text.request!, signSeed, REQUEST_SIG_DOMAIN) : licenceText(r);
      return { desc: m.desc, args: ['fingerprint', '--compare', await file('compare', m.text), '--home', home] };
    });
    await add('usage verify', 25, async (r) => {
      const m = jsonText(r, reportDoc, text.report!, signSeed, REPORT_SIG_DOMAIN);
      const prev = r.chance(0.3) ? ['--previous', await file('prev.json', text.report!)] : [];
      return { desc: m.desc, args: ['usage', 'verify', await file('report.json', m.text), '--license', f.bound!, ...prev, ...(r.chance(0.5) ? ['--pub', f.pub!] : [])] };
    });
    await add('license inspect', 25, async (r) => {
      const m = licenceText(r);
      return { desc: m.desc, args: ['license', 'inspect', await file('x.lic', m.text), '--pub', f.pub!, '--home', home] };
    });
    await add('activate', 15, async (r) => {
      const m = licenceText(r);
      return { desc: m.desc, args: ['activate', await file('a.lic', m.text), '--home', home] };
    });
    const bundleMutant = (r: Rng) => {
      if (r.chance(0.3)) {
        // the hostile values of the signed-manifest fuzzer: dates past the tar range, sizes near 2^53, long paths
        const h = hostile(r, manifest as Manifest);
        return { desc: `signed hostile: ${h.desc}`, bytes: signedBundle(h.manifest, vendor, true) };
      }
      if (r.chance(0.5)) {
        const m = mutateBytes(r, bundle.subarray(0, 3072));
        return { desc: `bytes: ${m.desc}`, bytes: Buffer.concat([m.bytes, bundle.subarray(3072)]) };
      }
      const m = mutateJson(r, manifest);
      return { desc: `signed: ${m.desc}`, bytes: signedBundle({ ast: m.ast }, vendor, r.chance(0.7)) };
    };
    await add('inspect', 20, async (r) => {
      const m = bundleMutant(r);
      return { desc: m.desc, args: ['inspect', await file('b.mlb', m.bytes)] };
    });
    await add('verify (bundle)', 20, async (r) => {
      const m = bundleMutant(r);
      return { desc: m.desc, args: ['verify', await file('b.mlb', m.bytes), '--pub', f.pub!] };
    });
    await add('verify (minisign)', 15, async (r) => {
      const sig = mutateText(r, text.sig!);
      const pub = r.chance(0.3) ? mutateText(r, text.pub!) : { text: text.pub!, desc: 'good key' };
      return { desc: `sig ${sig.desc}; pub ${pub.desc}`, args: ['verify', f.data!, '--sig', await file('d.minisig', sig.text), '--pub', await file('k.pub', pub.text)] };
    });
    await add('sign (mutated key)', 25, async (r) => {
      const m = keyText(r);
      return { desc: m.desc, args: ['sign', f.data!, '--key', await file('v.key', m.text), '-o', join(dir, `${n}.minisig`), '--force'], env: { MLIC_PASSPHRASE: 'pw' } };
    });
    await add('trust add', 13, async (r) => {
      const m = mutateText(r, text.pub!);
      return { desc: m.desc, args: ['trust', 'add', await file('t.pub', m.text), '--home', join(dir, `home-${n}`)] };
    });
    return out;
  }

  it('exit 0, 1 or 2 with a code, never 70', async () => {
    const all = await makeCases();
    const results: { c: Case; json: boolean; r: RunResult }[] = [];
    // two at a time (two cores)
    let next = 0;
    await Promise.all(
      [0, 1].map(async () => {
        while (next < all.length) {
          const i = next++;
          const c = all[i]!;
          const json = i % 3 !== 0;
          results.push({ c, json, r: await mlic(json ? [...c.args, '--json'] : c.args, { env: c.env ?? {} }) });
        }
      }),
    );
    const tally = new Map<string, Map<string, number>>();
    const bad: string[] = [];
    for (const { c, json, r } of results) {
      let outcome: string;
      if (r.code === 0) outcome = 'ok';
      else if (json) outcome = typeof r.json?.error?.code === 'string' ? r.json.error.code : `no JSON error (${r.stdout.slice(0, 80)})`;
      else outcome = /\[([A-Z_]+)\]\n/.exec(r.stderr)?.[1] ?? `no [CODE] on stderr (${r.stderr.slice(0, 80)})`;
      const ok = r.code === 0 || ((r.code === 1 || r.code === 2) && /^[A-Z_]+$/.test(outcome) && !/\n\s+at /.test(r.stderr));
      if (!ok || outcome === 'INTERNAL') bad.push(`${c.cmd} (exit ${r.code}, ${outcome}): ${c.desc.slice(0, 200)}\n  ${r.stdout.slice(0, 300)}${r.stderr.slice(0, 300)}`);
      const m = tally.get(c.cmd) ?? new Map<string, number>();
      m.set(outcome, (m.get(outcome) ?? 0) + 1);
      tally.set(c.cmd, m);
    }
    for (const [cmd, m] of tally) console.log(`[fuzz] cli ${cmd}: ${[...m.values()].reduce((a, b) => a + b, 0)} runs, ${[...m.entries()].map(([k, v]) => `${k} ${v}`).join(', ')}`);
    expect(bad, bad.slice(0, 5).join('\n')).toEqual([]);
  }, 240_000);

  it('`mlic run` of a signed bundle with a 4,096-byte path (1,365 directories) wipes its directory (was: ENAMETOOLONG, unhandled, plaintext left in /dev/shm)', async () => {
    const lic = join(dir, 'run.lic');
    await writeFile(lic, text.licence!);
    expect((await mlic(['activate', lic, '--home', home])).code).toBe(0);
    const m = structuredClone(manifest) as { files: { path: string }[] };
    m.files[0]!.path = longPath(4096, 3);
    const b = join(dir, 'deep.mlb');
    await writeFile(b, signedBundle(m, vendor, true));
    const r = await mlic(['run', b, '--home', home, '--', 'true']);
    // what the crash leaves behind is removed here, whatever happens below
    const left = /'(\/[^']*?\/mlic-run-[A-Za-z0-9]+)\//.exec(r.stderr)?.[1];
    if (left) removeDeep(left);
    expect(r.stderr).not.toMatch(/\n\s+at |triggerUncaughtException/);
    expect(r.code).toBe(0);
    expect(left).toBeUndefined();
  }, 60_000);
});
