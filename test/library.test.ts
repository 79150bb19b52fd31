import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

describe('the package as a library', () => {
  const keysOf = (entry: string) =>
    execFileSync(process.execPath, ['--input-type=module', '-e', `import * as m from '${entry}'; console.log(Object.keys(m).sort().join(','))`], { cwd: ROOT, encoding: 'utf8' })
      .trim()
      .split(',');

  it('another Node program can import it by name (package.json exports and types): a small main entry, vendor tools and signing beside it', () => {
    const main = keysOf('mlic');
    for (const name of ['verifyBundle', 'inspectBundle', 'openBundle', 'unpack', 'runWithBundle', 'loadLicense', 'activateLicense', 'createActivationRequest', 'listLicenses', 'MlicError']) expect(main, name).toContain(name);
    expect(main.length).toBeLessThanOrEqual(16);
    // Internals stay internal: no raw keys, no decision internals, no state classes.
    for (const name of ['authorizeBundle', 'decryptChunks', 'bundleKeyFromMaster', 'decide', 'StateDir', 'ChainLog', 'fileKey']) expect(main, name).not.toContain(name);
    const vendor = keysOf('mlic/vendor');
    for (const name of ['pack', 'issueLicense', 'generateVendorKey', 'loadSecretKey', 'verifyUsageReport']) expect(vendor, name).toContain(name);
    const signing = keysOf('mlic/signing');
    for (const name of ['signFile', 'verifyFileSignature', 'omsSign', 'omsVerify']) expect(signing, name).toContain(name);
    const pkg = JSON.parse(execFileSync(process.execPath, ['-p', 'JSON.stringify(require("./package.json"))'], { cwd: ROOT, encoding: 'utf8' }));
    expect(pkg.exports['.'].types).toBe('./dist/index.d.ts');
    expect(pkg.exports['./vendor'].types).toBe('./dist/vendor.d.ts');
  });

  it('the library never imports the CLI or its dependencies (walks the import graph from dist/index.js)', () => {
    const seen = new Set<string>();
    const bad: string[] = [];
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const src = readFileSync(file, 'utf8');
      for (const m of src.matchAll(/(?:import|export)[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
        const spec = (m[1] ?? m[2])!;
        if (/^(commander|chalk|ora)$/.test(spec) || spec.includes('/cli/')) bad.push(`${file} -> ${spec}`);
        if (spec.startsWith('.')) visit(resolve(dirname(file), spec));
      }
    };
    for (const entry of ['index', 'vendor', 'signing']) visit(join(ROOT, `dist/${entry}.js`));
    expect(seen.size).toBeGreaterThan(30);
    expect(bad).toEqual([]);
  });
});
