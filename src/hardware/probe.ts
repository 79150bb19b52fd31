/**
 * Probing what identifies this host. Reads from an injectable root (option `root`, or
 * MLIC_PROBE_ROOT) so tests can present any machine, and finds `nvidia-smi` on PATH. A missing
 * source is reported, never fatal.
 */
import { execFile } from 'node:child_process';
import { readFile, readdir, access } from 'node:fs/promises';
import { join } from 'node:path';

export interface RawComponent {
  kind: string;
  /** the raw identifier; never leaves the host (only its salted hash does) */
  value: string;
  /** short label for people, without the identifier */
  label: string;
}

export interface GpuInfo {
  index: number;
  uuid: string;
  name: string;
  pciBusId?: string;
  serial?: string;
  source: 'nvidia-smi' | 'procfs';
}

export interface HostProbe {
  components: RawComponent[];
  gpus: GpuInfo[];
  cpuModel?: string;
  hostname?: string;
  container: boolean;
  vm: boolean;
  /** source -> why it was not read */
  missing: Record<string, string>;
}

export interface ProbeOptions {
  root?: string;
  env?: NodeJS.ProcessEnv;
  /** timeout for nvidia-smi, ms */
  timeoutMs?: number;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

const usable = (s: string | undefined): s is string =>
  s !== undefined && s !== '' && !/^(none|n\/a|not specified|to be filled by o\.e\.m\.|default string|0+|[0-]+|ffffffff-ffff-ffff-ffff-ffffffffffff|\[n\/a\])$/i.test(s);

export function parseNvidiaSmiCsv(text: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const [uuid, name, bus, serial] = line.split(',').map((s) => s.trim());
    if (!uuid || !/^GPU-[0-9a-fA-F-]{8,}$/.test(uuid)) continue;
    gpus.push({
      index: gpus.length,
      uuid,
      name: name ?? 'NVIDIA GPU',
      ...(usable(bus) ? { pciBusId: bus } : {}),
      ...(usable(serial) ? { serial } : {}),
      source: 'nvidia-smi',
    });
  }
  return gpus;
}

function runNvidiaSmi(env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ ok: true; stdout: string } | { ok: false; why: string }> {
  return new Promise((resolve) => {
    execFile(
      'nvidia-smi',
      ['--query-gpu=uuid,name,pci.bus_id,serial', '--format=csv,noheader'],
      { env, timeout: timeoutMs, maxBuffer: 1 << 20 },
      (err, stdout) => {
        if (err) {
          const code = (err as NodeJS.ErrnoException).code;
          resolve({ ok: false, why: code === 'ENOENT' ? 'nvidia-smi not found on PATH' : `nvidia-smi failed: ${String(err.message).split('\n')[0]}` });
        } else resolve({ ok: true, stdout });
      },
    );
  });
}

async function procGpus(root: string): Promise<GpuInfo[]> {
  const base = join(root, 'proc/driver/nvidia/gpus');
  let dirs: string[];
  try {
    dirs = (await readdir(base)).sort();
  } catch {
    return [];
  }
  const gpus: GpuInfo[] = [];
  for (const d of dirs) {
    const info = await readText(join(base, d, 'information'));
    if (!info) continue;
    const field = (k: string) => new RegExp(`^${k}:\\s*(.+)$`, 'mi').exec(info)?.[1]?.trim();
    const uuid = field('GPU UUID');
    if (!uuid) continue;
    gpus.push({ index: gpus.length, uuid, name: field('Model') ?? 'NVIDIA GPU', pciBusId: field('Bus Location') ?? d, source: 'procfs' });
  }
  return gpus;
}

export async function probeHost(opts: ProbeOptions = {}): Promise<HostProbe> {
  const env = opts.env ?? process.env;
  const root = opts.root ?? env.MLIC_PROBE_ROOT ?? '/';
  const missing: Record<string, string> = {};
  const components: RawComponent[] = [];

  // GPUs: nvidia-smi first, /proc/driver/nvidia as the fallback.
  let gpus: GpuInfo[] = [];
  const smi = await runNvidiaSmi(env, opts.timeoutMs ?? 10_000);
  if (smi.ok) {
    gpus = parseNvidiaSmiCsv(smi.stdout);
    if (gpus.length === 0) missing['nvidia-smi'] = 'nvidia-smi listed no GPUs';
  } else missing['nvidia-smi'] = smi.why;
  if (gpus.length === 0) {
    gpus = await procGpus(root);
    if (gpus.length === 0) missing['/proc/driver/nvidia/gpus'] = 'no NVIDIA GPU found';
  }
  for (const g of gpus) components.push({ kind: 'gpu', value: g.uuid.toUpperCase(), label: `GPU ${g.index} (${g.name})` });

  const machineId = await readText(join(root, 'etc/machine-id'));
  if (usable(machineId)) components.push({ kind: 'machine-id', value: machineId.toLowerCase(), label: '/etc/machine-id' });
  else missing['/etc/machine-id'] = 'not readable';

  const productUuid = await readText(join(root, 'sys/class/dmi/id/product_uuid'));
  if (usable(productUuid)) components.push({ kind: 'dmi-uuid', value: productUuid.toLowerCase(), label: 'DMI product UUID' });
  else missing['/sys/class/dmi/id/product_uuid'] = 'not readable (needs root) or absent';

  const boardSerial = await readText(join(root, 'sys/class/dmi/id/board_serial'));
  if (usable(boardSerial)) components.push({ kind: 'board-serial', value: boardSerial, label: 'board serial' });
  else missing['/sys/class/dmi/id/board_serial'] = 'not readable (needs root) or absent';

  const cpuinfo = await readText(join(root, 'proc/cpuinfo'));
  const cpuModel = cpuinfo ? /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() : undefined;
  if (cpuModel) components.push({ kind: 'cpu', value: cpuModel, label: `CPU (${cpuModel})` });
  else missing['/proc/cpuinfo'] = 'no CPU model';

  // Physical NICs: those with a backing device (virtual ones like lo, docker0, veth have none).
  const netBase = join(root, 'sys/class/net');
  try {
    for (const ifc of (await readdir(netBase)).sort()) {
      const hasDevice = await access(join(netBase, ifc, 'device')).then(
        () => true,
        () => false,
      );
      if (!hasDevice) continue;
      const mac = (await readText(join(netBase, ifc, 'address')))?.toLowerCase();
      if (mac && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac) && mac !== '00:00:00:00:00:00') components.push({ kind: 'mac', value: mac, label: `NIC ${ifc}` });
    }
  } catch {
    missing['/sys/class/net'] = 'not readable';
  }
  if (!components.some((c) => c.kind === 'mac') && !missing['/sys/class/net']) missing['/sys/class/net'] = 'no physical NIC';

  const hostname = await readText(join(root, 'etc/hostname'));

  // Container and VM hints.
  const cgroup = (await readText(join(root, 'proc/1/cgroup'))) ?? '';
  const container =
    (await access(join(root, '.dockerenv')).then(() => true, () => false)) ||
    (await access(join(root, 'run/.containerenv')).then(() => true, () => false)) ||
    /docker|kubepods|containerd|lxc|libpod/.test(cgroup) ||
    env.container !== undefined;
  const vendor = `${(await readText(join(root, 'sys/class/dmi/id/sys_vendor'))) ?? ''} ${(await readText(join(root, 'sys/class/dmi/id/product_name'))) ?? ''}`;
  const vm = /qemu|kvm|vmware|virtualbox|xen|microsoft corporation virtual|amazon ec2|google compute|bochs|parallels|openstack/i.test(vendor) || /^flags\s*:.*\bhypervisor\b/m.test(cpuinfo ?? '');

  return { components, gpus, ...(cpuModel ? { cpuModel } : {}), ...(hostname ? { hostname } : {}), container, vm, missing };
}
