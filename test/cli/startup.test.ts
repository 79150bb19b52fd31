/**
 * Start-up stays light: the quick commands do not load what they do not use. Time is measured by
 * `npm run bench` (README: start-up); this checks what can be checked exactly, which of Node's
 * built-in modules a command loads (each of these cost milliseconds at every start).
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN } from './run.js';
import { tmp } from '../helpers.js';

const GOOD = fileURLToPath(new URL('../../fixtures/vectors/bundles/good.mlb', import.meta.url));
// Loaded only by the commands that need them: processes (nvidia-smi, run), HTTP,
// worker threads (bulk crypto), WebCrypto (never). (net is loaded whenever stdout is a pipe.)
const HEAVY = ['child_process', 'dgram', 'worker_threads', 'internal/crypto/webcrypto', 'zlib', 'http'];

describe('start-up', () => {
  let dir: string;
  let hook: string;
  beforeAll(async () => {
    dir = await tmp();
    hook = join(dir, 'hook.cjs');
    writeFileSync(hook, 'process.on("exit", () => require("node:fs").writeFileSync(process.env.MLIC_TEST_MODULES, JSON.stringify(process.moduleLoadList)));\n');
  });

  for (const args of [['--version'], ['licenses'], ['inspect', GOOD], ['license', 'inspect', '--help']]) {
    it(`mlic ${args.join(' ').replace(GOOD, 'good.mlb')} loads none of ${HEAVY.join(', ')}`, () => {
      const out = join(dir, `${args[0]}.json`);
      const r = spawnSync(process.execPath, ['-r', hook, BIN, ...args], { env: { PATH: process.env.PATH, MLIC_HOME: join(dir, 'home'), MLIC_TEST_MODULES: out }, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const loaded = new Set((JSON.parse(readFileSync(out, 'utf8')) as string[]).filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)));
      expect(HEAVY.filter((m) => loaded.has(m))).toEqual([]);
      // the CLI is one bundle: a handful of files, not the ~100 modules of dist/
      expect(loaded.has('crypto') || args[0] === '--version' || args[0] === 'license').toBe(true);
    });
  }
});
