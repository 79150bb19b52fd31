#!/usr/bin/env node
// npm run bench: mlic pack/verify against age and cp on the same 1 GiB file, in the same run,
// plus peak RSS on a 4 GiB sparse file. Usage: node scripts/bench.mjs [--size MiB] [--runs N] [--no-sparse]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, openSync, writeSync, closeSync, statSync, ftruncateSync, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const sizeMiB = opt('--size', 1024);
const runs = opt('--runs', 3);
const sparse = !args.includes('--no-sparse');
const dir = join(process.cwd(), '.bench');
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const bin = ['bin/mlic.js'];
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

function timed(cmd, argv, env = {}) {
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', cmd, ...argv], { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed: ${r.stderr}`);
  const last = r.stderr.trim().split('\n').pop().split(' ');
  return { secs: Number(last[0]), rssMB: Number(last[1]) / 1024 };
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
function bench(label, fn) {
  const rs = [];
  for (let i = 0; i < runs; i++) rs.push(fn(i));
  return { label, secs: median(rs.map((r) => r.secs)), rssMB: Math.max(...rs.map((r) => r.rssMB)) };
}

// Input: random bytes (incompressible), page-cached by one read before timing.
const src = join(dir, 'model.bin');
{
  const fd = openSync(src, 'w');
  const block = randomBytes(1 << 20);
  for (let i = 0; i < sizeMiB; i++) writeSync(fd, block.map((b) => b ^ (i & 0xff)));
  closeSync(fd);
}
execFileSync('cat', [src], { stdio: ['ignore', 'ignore', 'inherit'] });
const bytes = statSync(src).size;
execFileSync(process.execPath, [...bin, 'keygen', '-o', dir, '--name', 'bench', '--unencrypted', '--json'], { stdio: 'ignore' });
const key = join(dir, 'bench.key');
const pub = join(dir, 'bench.pub');
const out = join(dir, 'model.mlb');

const results = [];
results.push(bench('cp', () => timed('cp', [src, join(dir, 'copy.bin')])));
rmSync(join(dir, 'copy.bin'), { force: true });
results.push(bench('mlic pack', () => timed(process.execPath, [...bin, 'pack', src, '--name', 'bench', '--version', '1.0.0', '--key', key, '-o', out, '--force', '--json'])));
results.push(bench('mlic verify', () => timed(process.execPath, [...bin, 'verify', out, '--pub', pub, '--json'])));
let ageEnc, ageDec;
if (has('age') && has('age-keygen')) {
  const id = join(dir, 'age.txt');
  execFileSync('age-keygen', ['-o', id], { stdio: 'ignore' });
  const recip = execFileSync('age-keygen', ['-y', id], { encoding: 'utf8' }).trim();
  ageEnc = bench('age -r (encrypt)', () => timed('age', ['-r', recip, '-o', join(dir, 'model.age'), src]));
  ageDec = bench('age -d (decrypt)', () => timed('age', ['-d', '-i', id, '-o', join(dir, 'model.dec'), join(dir, 'model.age')]));
  results.push(ageEnc, ageDec);
} else {
  console.error('bench: age is not installed (apt-get install age); skipping the age comparison');
}

const mb = bytes / 1e6;
console.log(`\nmlic bench: ${sizeMiB} MiB random file, median of ${runs} runs, page-cached, ${new Date().toISOString()}`);
console.log(`node ${process.version}, ${(await import('node:os')).cpus().length} cores\n`);
console.log('| operation | wall s | MB/s | peak RSS MB | ratio to age |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const r of results) {
  const peer = r.label === 'mlic pack' ? ageEnc : r.label === 'mlic verify' ? ageDec : undefined;
  console.log(`| ${r.label} | ${r.secs.toFixed(2)} | ${(mb / r.secs).toFixed(0)} | ${r.rssMB.toFixed(0)} | ${peer ? (r.secs / peer.secs).toFixed(2) : ''} |`);
}
rmSync(join(dir, 'model.age'), { force: true });
rmSync(join(dir, 'model.dec'), { force: true });
rmSync(out, { force: true });

if (sparse) {
  const big = join(dir, 'sparse.bin');
  const fd = openSync(big, 'w');
  ftruncateSync(fd, 4 * 2 ** 30 + 12345);
  closeSync(fd);
  const bigOut = join(dir, 'sparse.mlb');
  const p = timed(process.execPath, [...bin, 'pack', big, '--name', 'sparse', '--version', '1.0.0', '--key', key, '-o', bigOut, '--json']);
  const v = timed(process.execPath, [...bin, 'verify', bigOut, '--pub', pub, '--json']);
  console.log(`\n4 GiB sparse file (${statSync(big).size} bytes): pack ${p.secs.toFixed(1)} s, peak RSS ${p.rssMB.toFixed(0)} MB; verify ${v.secs.toFixed(1)} s, peak RSS ${v.rssMB.toFixed(0)} MB`);
}
if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });

// Metering throughput (issue: validate() >= 200,000/s, metered batched >= 50,000/s, socket >= 10,000/s).
execFileSync(process.execPath, ['scripts/bench-meter.mjs'], { stdio: 'inherit' });
