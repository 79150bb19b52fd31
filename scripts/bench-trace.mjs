#!/usr/bin/env node
// Part of npm run bench: leak tracing on a 1 GiB model. A safetensors file of 64 float32 matrices
// of 2048 x 2048 (268 million weights) is packed; 1,000 licences for marked bundles are issued;
// `mlic mark` makes the bundle marked for one of them (decrypt, mark, pack again), timed beside
// `mlic pack` of the same model (its peer: mark does a pack and a little more); then the marked
// weights (a leak) are traced with `mlic trace` against the common bundle and the 1,000 licences.
//
//   node scripts/bench-trace.mjs [--mib 1024]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, openSync, writeSync, closeSync, writeFileSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

const args = process.argv.slice(2);
const mib = Number(args.includes('--mib') ? args[args.indexOf('--mib') + 1] : 1024);
const root = process.cwd();
const dir = join(root, '.bench-trace');
rmSync(dir, { recursive: true, force: true });
mkdirSync(join(dir, 'issued'), { recursive: true });
const bin = join(root, 'bin/mlic.js');
const env = { ...process.env, MLIC_HOME: join(dir, 'home') };
const { issueLicense } = await import(join(root, 'dist/license/issue.js'));
const { serializeLicense } = await import(join(root, 'dist/format/license.js'));
const { loadSecretKey } = await import(join(root, 'dist/keys/load.js'));
const { markModel } = await import(join(root, 'dist/mark/mark.js'));
const { licenceMarkKey } = await import(join(root, 'dist/mark/pattern.js'));

function timed(argv) {
  spawnSync('sync');
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M %U %S', ...argv], { env, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const [secs, kb, u, s] = r.stderr.trim().split('\n').pop().split(' ').map(Number);
  return { secs, rssMB: kb / 1024, cpu: u + s, stdout: r.stdout };
}

// the model: n matrices of 2048 x 2048 float32, values ~ U(-0.05, 0.05)
const n = Math.max(1, Math.round(mib / 16));
const header = {};
for (let i = 0; i < n; i++) header[`model.layers.${i}.mlp.weight`] = { dtype: 'F32', shape: [2048, 2048], data_offsets: [i * 2048 * 2048 * 4, (i + 1) * 2048 * 2048 * 4] };
let json = Buffer.from(JSON.stringify(header));
json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
const model = join(dir, 'model.safetensors');
const fd = openSync(model, 'w');
const len = Buffer.alloc(8);
len.writeBigUInt64LE(BigInt(json.length));
writeSync(fd, len);
writeSync(fd, json);
const block = new Float32Array(2048 * 2048);
for (let i = 0; i < n; i++) {
  const r = randomBytes(block.length * 2);
  for (let j = 0; j < block.length; j++) block[j] = (r.readInt16LE(j * 2) / 32768) * 0.05;
  writeSync(fd, Buffer.from(block.buffer));
}
closeSync(fd);
const bytes = statSync(model).size;

execFileSync(process.execPath, [bin, 'keygen', '-o', dir, '--name', 'v', '--unencrypted', '--json'], { env, stdio: 'ignore' });
const keyFile = join(dir, 'v.key');
const key = await loadSecretKey({ keyFile, passphrase: async () => '' });
const ids = [];
for (let i = 0; i < 1000; i++) {
  const { license, payload } = issueLicense({ key, model: 'big', versions: { policy: 'range', range: '^1' }, perpetual: true, marked: true, customer: `customer-${i}` });
  writeFileSync(join(dir, 'issued', `${i}.lic`), serializeLicense(license));
  ids.push(payload.licenseId);
}

const pack = timed([process.execPath, bin, 'pack', model, '--name', 'big', '--version', '1.0.0', '--key', keyFile, '-o', join(dir, 'big.mlb'), '--json']);
const cp = timed(['cp', model, join(dir, 'copy.safetensors')]);
rmSync(join(dir, 'copy.safetensors'));
const mark = timed([process.execPath, bin, 'mark', join(dir, 'big.mlb'), '--license', join(dir, 'issued', '7.lic'), '--key', keyFile, '-o', join(dir, 'big-7.mlb'), '--json']);
rmSync(join(dir, 'big-7.mlb'));
// the leak: the weights marked for licence 7 (the same bytes as the marked bundle holds)
const leak = join(dir, 'leak.safetensors');
const t0 = performance.now();
await markModel(model, leak, { markKey: licenceMarkKey(key.master, ids[7]) });
const markLib = (performance.now() - t0) / 1000;
const trace = timed([process.execPath, bin, 'trace', leak, '--original', join(dir, 'big.mlb'), '--key', keyFile, '--licenses', join(dir, 'issued'), '--json']);
const named = JSON.parse(trace.stdout).result.implicated.map((x) => x.licenseId);
if (named.length !== 1 || named[0] !== ids[7]) throw new Error(`trace named ${JSON.stringify(named)}, expected ${ids[7]}`);
const tracePlain = timed([process.execPath, bin, 'trace', leak, '--original', model, '--key', keyFile, '--licenses', join(dir, 'issued'), '--json']);
rmSync(dir, { recursive: true, force: true });

const mb = bytes / 1e6;
console.log(`\nleak tracing, ${(bytes / 2 ** 30).toFixed(2)} GiB model (${n} float32 matrices of 2048 x 2048, ${(n * 2048 * 2048 / 1e6).toFixed(0)} M weights), 1,000 candidate licences\n`);
console.log('| operation | wall s | CPU s | MB/s | peak RSS MB | ratio |');
console.log('| --- | ---: | ---: | ---: | ---: | --- |');
console.log(`| cp | ${cp.secs.toFixed(2)} | ${cp.cpu.toFixed(2)} | ${(mb / cp.secs).toFixed(0)} | ${cp.rssMB.toFixed(0)} | |`);
console.log(`| mlic pack | ${pack.secs.toFixed(2)} | ${pack.cpu.toFixed(2)} | ${(mb / pack.secs).toFixed(0)} | ${pack.rssMB.toFixed(0)} | |`);
console.log(`| mlic mark (decrypt, mark, pack) | ${mark.secs.toFixed(2)} | ${mark.cpu.toFixed(2)} | ${(mb / mark.secs).toFixed(0)} | ${mark.rssMB.toFixed(0)} | ${(mark.secs / pack.secs).toFixed(2)} x mlic pack |`);
console.log(`| markModel (library, plain file to plain file) | ${markLib.toFixed(2)} | | ${(mb / markLib).toFixed(0)} | | ${(markLib / cp.secs).toFixed(2)} x cp |`);
console.log(`| mlic trace, original = the bundle | ${trace.secs.toFixed(2)} | ${trace.cpu.toFixed(2)} | | ${trace.rssMB.toFixed(0)} | |`);
console.log(`| mlic trace, original = the plain model | ${tracePlain.secs.toFixed(2)} | ${tracePlain.cpu.toFixed(2)} | | ${tracePlain.rssMB.toFixed(0)} | |`);
console.log('');
