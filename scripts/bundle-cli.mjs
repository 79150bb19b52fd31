#!/usr/bin/env node
// Bundles the CLI (src/cli/main.ts and what it imports, dependencies included) into
// dist/cli-bundle/: one entry and one chunk per lazily imported command, so that starting mlic
// resolves and compiles a few files instead of ~80 modules (README: start-up). The library
// (dist/index.js, for `import 'mlic'`) stays tsc's per-module output.
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

// Chunk names carry a content hash: start clean so that old chunks do not pile up.
rmSync('dist/cli-bundle', { recursive: true, force: true });

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
