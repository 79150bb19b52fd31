#!/usr/bin/env node
// Part of npm run bench: what binding a host to its TPM costs, on a real software TPM (Debian's
// swtpm, with an EK and no certificate, on loopback) through tpm2-tools. Two hosts (two MLIC_HOME
// state directories): one with the host key in a file, one bound to the TPM (`activate --request
// --tpm`, MLIC_TPM naming the swtpm). For each: `activate --request` (a fresh state directory each
// run), `unpack` of a 64 MiB bundle and `meter consume`, wall time, median of 5 runs after one
// warm-up. Then single tpm2-tools commands on the same swtpm, to explain the difference, and (when
// strace works here) how many tpm2_* commands each mlic operation runs.
//
//   node scripts/bench-tpm.mjs [--runs 5] [--mib 64]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, openSync, writeSync, closeSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createServer, connect } from 'node:net';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const runs = Number(opt('--runs', 5));
const mib = Number(opt('--mib', 64));

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const tools = ['swtpm', 'swtpm_setup', 'tpm2_createek', 'tpm2_createak', 'tpm2_createprimary', 'tpm2_getcap', 'tpm2_flushcontext'];
const missing = tools.filter((t) => !has(t));
if (missing.length) {
  console.log(`TPM bench skipped: ${missing.join(', ')} not installed (apt-get install swtpm swtpm-tools tpm2-tools)`);
  process.exit(0);
}

const root = process.cwd();
const bin = join(root, 'bin/mlic.js');
const dir = mkdtempSync(join(tmpdir(), 'mlic-bench-tpm-'));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A free TCP port on loopback whose next port is free too (swtpm's control channel). */
async function freePort() {
  const tryListen = (port) =>
    new Promise((resolve) => {
      const s = createServer();
      s.on('error', () => resolve(undefined));
      s.listen(port, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
  for (;;) {
    const port = await tryListen(0);
    if (port && port < 65535 && (await tryListen(port + 1))) return port;
  }
}

let swtpm;
const running = () => swtpm && swtpm.exitCode === null && swtpm.signalCode === null;
/** Stops swtpm (and waits for it, up to 5 s), then removes the temporary directory. */
async function cleanUp() {
  if (running()) {
    const exited = new Promise((resolve) => swtpm.once('exit', resolve));
    swtpm.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
  }
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}
// On an interrupt, or an exit that skips the finally below: best effort, synchronously.
process.on('exit', () => {
  if (running()) swtpm.kill('SIGKILL');
  try {
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    // left in the temporary directory
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

try {
  // The software TPM: a fresh state with an RSA EK (no certificate), on a free loopback port pair.
  const state = join(dir, 'st');
  mkdirSync(state);
  const setup = spawnSync('swtpm_setup', ['--tpm2', '--tpmstate', state, '--createek', '--overwrite'], {
    encoding: 'utf8',
    env: { ...process.env, XDG_CONFIG_HOME: dir, HOME: dir },
    timeout: 120_000,
  });
  if (setup.status !== 0) throw new Error(`swtpm_setup failed (${setup.status}): ${setup.stderr}${setup.stdout}`);
  const port = await freePort();
  swtpm = spawn('swtpm', ['socket', '--tpm2', '--tpmstate', `dir=${state}`, '--server', `type=tcp,port=${port},bindaddr=127.0.0.1`, '--ctrl', `type=tcp,port=${port + 1},bindaddr=127.0.0.1`, '--flags', 'not-need-init,startup-clear'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let swtpmErr = '';
  swtpm.stderr.on('data', (d) => (swtpmErr += d));
  const deadline = Date.now() + 20_000;
  for (;;) {
    const up = await new Promise((resolve) => {
      const c = connect(port, '127.0.0.1', () => {
        c.destroy();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (up) break;
    if (swtpm.exitCode !== null || Date.now() > deadline) throw new Error(`swtpm did not start: ${swtpmErr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const tcti = `swtpm:host=127.0.0.1,port=${port}`;

  // The vendor: a key and a 64 MiB bundle (random bytes).
  const vendor = join(dir, 'vendor');
  const modelDir = join(dir, 'model');
  mkdirSync(vendor);
  mkdirSync(modelDir);
  const fd = openSync(join(modelDir, 'weights.bin'), 'w');
  for (let i = 0; i < mib; i++) writeSync(fd, randomBytes(1 << 20));
  closeSync(fd);
  const baseEnv = { ...process.env };
  delete baseEnv.MLIC_TPM;
  delete baseEnv.MLIC_HOME;
  const mlic = (env, ...a) => execFileSync(process.execPath, [bin, ...a], { env, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
  const vendorEnv = { ...baseEnv, MLIC_HOME: join(dir, 'vendor-home') };
  mlic(vendorEnv, 'keygen', '-o', vendor, '--name', 'acme', '--unencrypted', '--json');
  const key = join(vendor, 'acme.key');
  const bundle = join(dir, 'm.mlb');
  mlic(vendorEnv, 'pack', modelDir, '--name', 'm', '--version', '2.0.0', '--key', key, '-o', bundle, '--json');
  rmSync(modelDir, { recursive: true, force: true });

  /** Wall ms of one command (spawned, not under a shell); throws with its stderr when it fails. */
  const wall = (argv, env) => {
    const t0 = performance.now();
    const r = spawnSync(argv[0], argv.slice(1), { env, encoding: 'utf8', maxBuffer: 1 << 26 });
    const ms = performance.now() - t0;
    if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout).slice(-2000)}`);
    return ms;
  };
  /** Median of `runs` timed runs after one warm-up; `before` (untimed) runs before each. */
  const bench = (argv, env, before = () => {}) => {
    const xs = [];
    for (let i = 0; i <= runs; i++) {
      const a = before(i) ?? argv;
      spawnSync('sync');
      const ms = wall(a, env);
      if (i > 0) xs.push(ms);
    }
    return median(xs);
  };

  const kinds = { file: { env: baseEnv, flag: [] }, tpm: { env: { ...baseEnv, MLIC_TPM: tcti }, flag: ['--tpm'] } };
  const res = { file: {}, tpm: {} };
  const counts = { file: {}, tpm: {} };
  // strace, when it works here (ptrace may be denied in a container), counts tpm2_* commands.
  const straceOk = has('strace') && spawnSync('strace', ['-f', '-qq', '-e', 'trace=execve', '-o', '/dev/null', 'true']).status === 0;
  const countTpm2 = (argv, env) => {
    if (!straceOk) return undefined;
    const log = join(dir, 'strace.txt');
    const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=execve', '-o', log, ...argv], { env, encoding: 'utf8', maxBuffer: 1 << 26 });
    if (r.status !== 0) return undefined;
    const ran = readFileSync(log, 'utf8').split('\n').filter((l) => /execve\("[^"]*\/tpm2_[a-z_]+"/.test(l) && /= 0$/.test(l));
    rmSync(log, { force: true });
    return { all: ran.length, flush: ran.filter((l) => l.includes('/tpm2_flushcontext"')).length };
  };

  for (const [kind, { env: kenv, flag }] of Object.entries(kinds)) {
    // activate --request: a fresh state directory each run (a new host key, in a file or in the TPM)
    const reqDir = join(dir, `${kind}-requests`);
    mkdirSync(reqDir);
    let n = 0;
    const freshHome = () => {
      n++;
      return join(reqDir, `home-${n}`);
    };
    const reqArgv = (home) => [process.execPath, bin, 'activate', '--request', ...flag, '--home', home, '-o', join(home, 'r.json'), '--json'];
    res[kind].activate = bench(null, kenv, () => reqArgv(freshHome()));
    counts[kind].activate = countTpm2(reqArgv(freshHome()), kenv);
    rmSync(reqDir, { recursive: true, force: true });

    // the host: a request, a licence for it, the vendor trusted, the licence installed
    const home = join(dir, `${kind}-home`);
    const env = { ...kenv, MLIC_HOME: home };
    const req = join(dir, `${kind}-r.json`);
    const lic = join(dir, `${kind}-k.lic`);
    mlic(env, 'activate', '--request', ...flag, '-o', req, '--json');
    mlic(vendorEnv, 'license', 'issue', '--key', key, '--request', req, '--model', 'm', '--versions', '^2', '--days', '30', '--meter', 'inferences=100000/month', '-o', lic, '--json');
    mlic(env, 'trust', 'add', join(vendor, 'acme.pub'), '--json');
    mlic(env, 'activate', lic, '--json');

    // unpack: a new output directory each run (the previous one removed, untimed)
    const out = join(dir, `${kind}-out`);
    const unpackArgv = [process.execPath, bin, 'unpack', bundle, '-o', out, '--json'];
    res[kind].unpack = bench(unpackArgv, env, () => {
      rmSync(out, { recursive: true, force: true });
      execFileSync('cat', [bundle], { stdio: ['ignore', 'ignore', 'inherit'] });
    });
    rmSync(out, { recursive: true, force: true });
    counts[kind].unpack = countTpm2(unpackArgv, env);
    rmSync(out, { recursive: true, force: true });

    const consumeArgv = [process.execPath, bin, 'meter', 'consume', '--model', 'm', '--metric', 'inferences', '--quantity', '1', '--json'];
    res[kind].consume = bench(consumeArgv, env);
    counts[kind].consume = countTpm2(consumeArgv, env);
  }
  const nodeMs = bench([process.execPath, '-e', '0'], baseEnv);

  // Single tpm2-tools commands on the swtpm (transient objects flushed, untimed, before each).
  const tEnv = { ...baseEnv, TPM2TOOLS_TCTI: tcti };
  const flush = () => {
    spawnSync('tpm2_flushcontext', ['-t'], { env: tEnv });
    spawnSync('tpm2_flushcontext', ['-s'], { env: tEnv });
  };
  const f = (name) => join(dir, name);
  const single = [
    ['tpm2_getcap properties-fixed', ['tpm2_getcap', 'properties-fixed']],
    ['tpm2_flushcontext -t', ['tpm2_flushcontext', '-t']],
    ['tpm2_createprimary -C o -G ecc (the SRK)', ['tpm2_createprimary', '-C', 'o', '-G', 'ecc', '-g', 'sha256', '-c', f('srk.ctx'), '-Q']],
    ['tpm2_createprimary -C o -G rsa', ['tpm2_createprimary', '-C', 'o', '-G', 'rsa', '-g', 'sha256', '-c', f('rsa.ctx'), '-Q']],
    ['tpm2_createek -G rsa (the EK)', ['tpm2_createek', '-c', f('ek.ctx'), '-G', 'rsa', '-u', f('ek.pub'), '-Q']],
  ];
  const singleMs = single.map(([label, argv]) => [label, bench(argv, tEnv, () => void flush())]);
  // tpm2_createak under the EK: a new RSA 2048 key (a prime search), the EK made before it (untimed)
  const akArgv = ['tpm2_createak', '-C', f('ek.ctx'), '-c', f('ak.ctx'), '-G', 'rsa', '-g', 'sha256', '-s', 'rsassa', '-u', f('ak.pub'), '-r', f('ak.priv'), '-Q'];
  singleMs.push([
    'tpm2_createak -G rsa (the AK, under the EK)',
    bench(akArgv, tEnv, () => {
      flush();
      execFileSync('tpm2_createek', ['-c', f('ek.ctx'), '-G', 'rsa', '-u', f('ek.pub'), '-Q'], { env: tEnv });
      spawnSync('tpm2_flushcontext', ['-t'], { env: tEnv });
    }),
  ]);
  flush();

  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
  const swtpmVersion = spawnSync('swtpm', ['--version'], { encoding: 'utf8' }).stdout.trim().split(',')[0];
  const toolsVersion = (spawnSync('tpm2_getcap', ['-v'], { encoding: 'utf8' }).stdout.match(/version="([^"]+)"/) ?? [])[1] ?? '?';
  console.log(`\nTPM binding, ${new Date().toISOString().slice(0, 10)}: ${cpu}, ${availableParallelism()} cores, node ${process.version}; ${swtpmVersion} (socket, loopback), tpm2-tools ${toolsVersion}`);
  console.log(`wall ms, median of ${runs} runs after one warm-up; a ${mib} MiB bundle; \`node -e 0\` takes ${nodeMs.toFixed(0)} ms here\n`);
  const ops = [
    ['activate', 'activate --request (fresh state dir)'],
    ['unpack', `unpack, ${mib} MiB`],
    ['consume', 'meter consume --quantity 1'],
  ];
  console.log('| operation | key file | TPM (swtpm) | added by the TPM (ms) |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const [k, label] of ops) {
    const a = res.file[k];
    const b = res.tpm[k];
    console.log(`| ${label} | ${a.toFixed(0)} | ${b.toFixed(0)} | ${(b - a).toFixed(0)} |`);
  }
  console.log('\nsingle tpm2-tools commands on the swtpm (transient objects flushed before each)\n');
  console.log('| command | wall ms |');
  console.log('| --- | ---: |');
  for (const [label, ms] of singleMs) console.log(`| ${label} | ${ms.toFixed(0)} |`);
  if (straceOk) {
    const c = (k) => (counts.tpm[k] ? `${counts.tpm[k].all} (${counts.tpm[k].flush} of them tpm2_flushcontext)` : '?');
    const cf = (k) => counts.file[k]?.all ?? '?';
    console.log(`\ntpm2_* commands run by one operation on the TPM-bound host (strace): activate --request ${c('activate')}, unpack ${c('unpack')}, meter consume ${c('consume')}; on the file-key host: ${cf('activate')}, ${cf('unpack')}, ${cf('consume')}`);
  }
  console.log('');
} finally {
  await cleanUp();
}
