import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HostProbe, RawComponent } from '../../src/hardware/probe.js';
import { StateDir } from '../../src/state/home.js';
import { tmp } from '../helpers.js';

export interface FakeHost {
  name: string;
  stateDir: string;
  state: StateDir;
  components: RawComponent[];
  probe(): HostProbe;
  /** replace a component's value (a hardware swap) */
  swap(kind: string, value: string): void;
}

export async function fakeHost(name: string, opts: { gpus?: number } = {}): Promise<FakeHost> {
  const stateDir = join(await tmp(`mlic-host-${name}-`), 'state');
  const components: RawComponent[] = [];
  for (let i = 0; i < (opts.gpus ?? 2); i++) components.push({ kind: 'gpu', value: `GPU-${name}-${i}-0000-0000-0000`, label: `GPU ${i} (NVIDIA H100)` });
  components.push({ kind: 'machine-id', value: `${name}machineid`, label: '/etc/machine-id' });
  components.push({ kind: 'mac', value: `02:00:00:00:00:${name.length.toString(16).padStart(2, '0')}`, label: 'NIC eth0' });
  const h: FakeHost = {
    name,
    stateDir,
    state: new StateDir(stateDir),
    components,
    probe: () => ({ components: h.components.map((c) => ({ ...c })), gpus: [], container: false, vm: false, missing: {}, hostname: name }),
    swap(kind, value) {
      const c = h.components.find((x) => x.kind === kind);
      if (!c) throw new Error(`no ${kind}`);
      c.value = value;
    },
  };
  return h;
}

/** A fake machine root for the CLI probe (MLIC_PROBE_ROOT) and a fake nvidia-smi on PATH. */
export async function fakeRoot(name: string, gpuUuids: string[]): Promise<{ root: string; binDir: string }> {
  const root = await tmp(`mlic-root-${name}-`);
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(join(root, 'etc/machine-id'), `${name.padEnd(32, '0').slice(0, 32)}\n`);
  await writeFile(join(root, 'etc/hostname'), `${name}\n`);
  await mkdir(join(root, 'proc'), { recursive: true });
  await writeFile(join(root, 'proc/cpuinfo'), 'processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\nflags\t\t: fpu sse\n');
  await mkdir(join(root, 'sys/class/net/eth0/device'), { recursive: true });
  await writeFile(join(root, 'sys/class/net/eth0/address'), '0a:1b:2c:3d:4e:5f\n');
  await mkdir(join(root, 'sys/class/net/lo'), { recursive: true });
  await writeFile(join(root, 'sys/class/net/lo/address'), '00:00:00:00:00:00\n');
  const binDir = join(root, 'bin');
  await mkdir(binDir);
  const csv = gpuUuids.map((u, i) => `${u}, NVIDIA H100 80GB HBM3, 00000000:${(0x18 + i).toString(16).toUpperCase()}:00.0, 165${i}0000000`).join('\n');
  await writeFile(join(binDir, 'nvidia-smi'), `#!/bin/sh\ncase "$*" in *--query-gpu=*) printf '%s\\n' '${csv.split('\n').join("' '")}' ;; *) exit 9 ;; esac\n`, { mode: 0o755 });
  return { root, binDir };
}
