import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

describe('the package as a library', () => {
  it('another Node program can import it by name (package.json exports and types)', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', "import * as m from 'mlic'; console.log(Object.keys(m).sort().join(','))"], { cwd: ROOT, encoding: 'utf8' });
    for (const name of ['pack', 'verifyBundle', 'inspectBundle', 'openBundle', 'loadLicense', 'issueLicense', 'activateLicense', 'signFile', 'omsSign', 'omsVerify', 'generateVendorKey', 'MlicError'])
      expect(out.split(',').map((s) => s.trim()), name).toContain(name);
    const pkg = JSON.parse(execFileSync(process.execPath, ['-p', 'JSON.stringify(require("./package.json"))'], { cwd: ROOT, encoding: 'utf8' }));
    expect(pkg.exports['.'].types).toBe('./dist/index.d.ts');
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
    visit(join(ROOT, 'dist/index.js'));
    expect(seen.size).toBeGreaterThan(30);
    expect(bad).toEqual([]);
  });
});
