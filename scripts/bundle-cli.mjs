#!/usr/bin/env node
// Bundles the CLI (src/cli/main.ts and what it imports, dependencies included) into
// dist/cli-bundle/: one entry and one chunk per lazily imported command, so that starting mlic
// resolves and compiles a few files instead of ~80 modules (README: start-up). The library
// (dist/index.js, for `import 'mlic'`) stays tsc's per-module output.
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

// Chunk names carry a content hash: start clean so that old chunks do not pile up.
rmSync('dist/cli-bundle', { recursive: true, force: true });

/**
 * commander requires node:child_process at load time, for executable subcommands that mlic does
 * not use; loading it (and net, dgram and the streams it pulls in) cost every command ~10 ms.
 * commander gets a stand-in that loads it on first use.
 */
const lazyChildProcessForCommander = {
  name: 'lazy-child-process-for-commander',
  setup(b) {
    b.onResolve({ filter: /^(node:)?child_process$/ }, (a) =>
      a.importer.includes('node_modules/commander/') ? { path: 'child_process', namespace: 'lazy-builtin' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, () => ({
      contents: "let m; module.exports = new Proxy({}, { get: (_, k) => (m ??= require('node:child_process'))[k] });",
      loader: 'js',
    }));
  },
};

/**
 * Node's built-in modules through require() (the banner's createRequire), not `import`: an ESM
 * import of a built-in makes Node build a facade that reads every export, which loads what the
 * lazy getters hide (node:crypto's webcrypto, node:fs's streams); require() hands over the
 * module object, and the bundle reads only the properties the code uses.
 */
const builtinsThroughRequire = {
  name: 'builtins-through-require',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (a) => (a.namespace === 'builtin' ? { path: a.path, external: true } : { path: a.path, namespace: 'builtin' }));
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, (a) => ({ contents: `module.exports = require(${JSON.stringify(a.path)});`, loader: 'js' }));
  },
};

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
  plugins: [lazyChildProcessForCommander, builtinsThroughRequire],
  // Loaded from node_modules at run time: a native addon (found through its own path) and the
  // server's libraries (only the server commands load them).
  external: ['better-sqlite3', 'pg', 'fastify', 'sharp'],
});
