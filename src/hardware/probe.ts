/**
 * Probing what identifies this host. A missing source is reported, never fatal. The library
 * accepts another root and another nvidia-smi (tests present any machine that way); the CLI
 * always probes the real host: nvidia-smi and tpm2-tools are run only from the system's own
 * directories, never from PATH. One environment variable changes what is probed: MLIC_TPM names
 * the TPM to read (docs/SECURITY.md says why that is safe: a TPM proves itself only through its
 * manufacturer's endorsement key certificate, which another TPM does not have).
 */
import { readFile, readdir, access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import type { FingerprintComponent } from '../format/license.js';
import { tpmLikely, type TpmOptions } from '../tpm/tools.js';

export interface RawComponent {
  kind: FingerprintComponent['kind'];
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
  /** the TPM 2.0, when one answered */
  tpm?: { manufacturer: string; vendor: string; firmware: string; ekHash: string; ekCertificate: boolean; tcti: string };
  /** source -> why it was not read */
  missing: Record<string, string>;
}

export interface ProbeOptions {
  /** read /etc, /proc and /sys under this root instead of / (library callers and tests) */
  root?: string;
  /** the nvidia-smi to run instead of the system's (library callers and tests) */
  nvidiaSmi?: string;
  /** timeout for nvidia-smi, ms */
  timeoutMs?: number;
  /**
   * the TPM to read (its TCTI), or false for none. Default: on the real root, the TPM that
   * MLIC_TPM names, else /dev/tpmrm0 when present (src/tpm/tools.ts); under another root, none.
   */
  tpm?: TpmOptions | false;
}

/** Where NVIDIA's driver installs nvidia-smi (distribution packages, the .run installer, the container toolkit). */
const NVIDIA_SMI_PATHS = ['/usr/bin/nvidia-smi', '/usr/local/bin/nvidia-smi', '/usr/local/nvidia/bin/nvidia-smi', '/usr/lib/wsl/lib/nvidia-smi', '/opt/nvidia/bin/nvidia-smi'];

async function findNvidiaSmi(): Promise<string | undefined> {
  for (const p of NVIDIA_SMI_PATHS) if (await access(p, constants.X_OK).then(() => true, () => false)) return p;
  return undefined;
}

/** Labels leave the host in requests and licences: short printable ASCII, never an identifier. */
function label(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 96);
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

async function runNvidiaSmi(path: string | undefined, timeoutMs: number): Promise<{ ok: true; stdout: string } | { ok: false; why: string }> {
  const bin = path ?? (await findNvidiaSmi());
  if (!bin) return { ok: false, why: `nvidia-smi not found (looked in ${NVIDIA_SMI_PATHS.map((p) => p.replace(/\/nvidia-smi$/, '')).join(', ')})` };
  return new Promise((resolve) => {
    process.getBuiltinModule('node:child_process').execFile(
      bin,
      ['--query-gpu=uuid,name,pci.bus_id,serial', '--format=csv,noheader'],
      { timeout: timeoutMs, maxBuffer: 1 << 20 },
      (err, stdout) => {
        if (err) {
          const code = (err as NodeJS.ErrnoException).code;
          resolve({ ok: false, why: code === 'ENOENT' ? `${bin} not found` : `nvidia-smi failed: ${String(err.message).split('\n')[0]}` });
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
  const root = opts.root ?? '/';
  const missing: Record<string, string> = {};
  const components: RawComponent[] = [];

  // GPUs: nvidia-smi first, /proc/driver/nvidia as the fallback.
  let gpus: GpuInfo[] = [];
  const smi = await runNvidiaSmi(opts.nvidiaSmi, opts.timeoutMs ?? 10_000);
  if (smi.ok) {
    gpus = parseNvidiaSmiCsv(smi.stdout);
    if (gpus.length === 0) missing['nvidia-smi'] = 'nvidia-smi listed no GPUs';
  } else missing['nvidia-smi'] = smi.why;
  if (gpus.length === 0) {
    gpus = await procGpus(root);
    if (gpus.length === 0) missing['/proc/driver/nvidia/gpus'] = 'no NVIDIA GPU found';
  }
  for (const g of gpus) components.push({ kind: 'gpu', value: g.uuid.toUpperCase(), label: label(`GPU ${g.index} (${g.name})`) });

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
  if (cpuModel) components.push({ kind: 'cpu', value: cpuModel, label: label(`CPU (${cpuModel})`) });
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
      if (mac && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac) && mac !== '00:00:00:00:00:00') components.push({ kind: 'mac', value: mac, label: label(`NIC ${ifc}`) });
    }
  } catch {
    missing['/sys/class/net'] = 'not readable';
  }
  if (!components.some((c) => c.kind === 'mac') && !missing['/sys/class/net']) missing['/sys/class/net'] = 'no physical NIC';

  // The TPM: its endorsement key names the chip for good (the hash of its public key).
  let tpm: HostProbe['tpm'];
  const tpmOpt = opts.tpm ?? (root === '/' && (await tpmLikely()) ? {} : false);
  if (tpmOpt !== false) {
    try {
      const { readTpmInfo } = await import('../tpm/info.js');
      const t = await readTpmInfo(tpmOpt);
      tpm = { manufacturer: t.manufacturer, vendor: t.vendor, firmware: t.firmware, ekHash: t.ekHash, ekCertificate: t.ekCertificate !== undefined, tcti: t.tcti };
      components.push({ kind: 'tpm', value: t.ekHash, label: label(`TPM (${[t.manufacturer, t.vendor].filter(Boolean).join(' ')}, firmware ${t.firmware})`) });
    } catch (e) {
      missing.tpm = e instanceof Error ? e.message.slice(0, 300) : String(e);
    }
  }

  const hostname = await readText(join(root, 'etc/hostname'));

  // Container and VM hints.
  const cgroup = (await readText(join(root, 'proc/1/cgroup'))) ?? '';
  const container =
    (await access(join(root, '.dockerenv')).then(() => true, () => false)) ||
    (await access(join(root, 'run/.containerenv')).then(() => true, () => false)) ||
    /docker|kubepods|containerd|lxc|libpod/.test(cgroup) ||
    process.env.container !== undefined;
  const vendor = `${(await readText(join(root, 'sys/class/dmi/id/sys_vendor'))) ?? ''} ${(await readText(join(root, 'sys/class/dmi/id/product_name'))) ?? ''}`;
  const vm = /qemu|kvm|vmware|virtualbox|xen|microsoft corporation virtual|amazon ec2|google compute|bochs|parallels|openstack/i.test(vendor) || /^flags\s*:.*\bhypervisor\b/m.test(cpuinfo ?? '');

  return { components, gpus, ...(cpuModel ? { cpuModel } : {}), ...(hostname ? { hostname } : {}), container, vm, ...(tpm ? { tpm } : {}), missing };
}
