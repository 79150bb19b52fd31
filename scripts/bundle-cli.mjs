#!/usr/bin/env node
// Bundles the CLI (src/cli/main.ts and what it imports, dependencies included) into
// dist/cli-bundle/: one entry and one chunk per lazily imported command, so that starting mlic
// resolves and compiles a few files instead of ~80 modules (README: start-up). The library
// (dist/index.js, for `import 'mlic'`) stays tsc's per-module output.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli/main.ts'],
  outdir: 'dist/cli-bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  // CommonJS dependencies bundled into ESM still call require() for Node's built-ins.
  banner: { js: "import { createRequire as __mlicRequire } from 'node:module'; const require = __mlicRequire(import.meta.url);" },
  logLevel: 'warning',
});
