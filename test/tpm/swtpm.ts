/**
 * A real software TPM for the tests: Debian's swtpm with a fresh state and its own local CA
 * (swtpm_setup writes an endorsement key certificate into NV, issued by swtpm_localca's
 * intermediate CA under its root CA), listening on loopback. Each startSwtpm() is another TPM:
 * another EK, another CA.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { tmp } from '../helpers.js';

export interface Swtpm {
  /** the TCTI for MLIC_TPM / tpm2-tools */
  tcti: string;
  /** swtpm_localca's directory: its root and intermediate CA certificates (and keys) */
  caDir: string;
  stateDir: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.on('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    // swtpm wants the next port too (its control channel)
    const next = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.on('error', () => resolve(false));
      s.listen(port + 1, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (next && port < 65535) return port;
  }
}

const LOCALCA = ['/usr/bin/swtpm_localca', '/usr/share/swtpm/swtpm-localca'].find((p) => spawnSync('test', ['-x', p]).status === 0) ?? 'swtpm_localca';

export async function startSwtpm(name = 'tpm'): Promise<Swtpm> {
  const dir = await tmp(`mlic-swtpm-${name}-`);
  const stateDir = join(dir, 'state');
  const caDir = join(dir, 'ca');
  await mkdir(stateDir, { recursive: true });
  await mkdir(caDir, { recursive: true });
  await writeFile(join(dir, 'swtpm-localca.conf'), `statedir = ${caDir}\nsigningkey = ${caDir}/signkey.pem\nissuercert = ${caDir}/issuercert.pem\ncertserial = ${caDir}/certserial\n`);
  await writeFile(join(dir, 'swtpm-localca.options'), '--platform-manufacturer mlic\n--platform-version 1.0\n--platform-model test\n');
  await writeFile(join(dir, 'swtpm_setup.conf'), `create_certs_tool = ${LOCALCA}\ncreate_certs_tool_config = ${dir}/swtpm-localca.conf\ncreate_certs_tool_options = ${dir}/swtpm-localca.options\n`);
  const setup = spawnSync('swtpm_setup', ['--tpm2', '--tpmstate', stateDir, '--create-ek-cert', '--create-platform-cert', '--lock-nvram', '--overwrite', '--config', join(dir, 'swtpm_setup.conf')], {
    encoding: 'utf8',
    env: { ...process.env, XDG_CONFIG_HOME: dir, HOME: dir },
    timeout: 120_000,
  });
  if (setup.status !== 0) throw new Error(`swtpm_setup failed (${setup.status}): ${setup.stderr}${setup.stdout}`);
  const port = await freePort();
  const child: ChildProcess = spawn('swtpm', ['socket', '--tpm2', '--tpmstate', `dir=${stateDir}`, '--server', `type=tcp,port=${port},bindaddr=127.0.0.1`, '--ctrl', `type=tcp,port=${port + 1},bindaddr=127.0.0.1`, '--flags', 'not-need-init,startup-clear'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const deadline = Date.now() + 20_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1', () => {
        c.destroy();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (up) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`swtpm did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    tcti: `swtpm:host=127.0.0.1,port=${port}`,
    caDir,
    stateDir,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
