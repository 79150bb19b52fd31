/** Test helpers for tar archives as pack inputs: hand-made archives (any header a hostile one may carry) and GNU tar. */
import { spawnSync } from 'node:child_process';
import { Header } from 'tar/header';

export interface TarSpec {
  path: string;
  /** node-tar type name: 'File' (default), 'Directory', 'SymbolicLink', 'Link', 'FIFO', 'CharacterDevice', ... */
  type?: string;
  data?: Buffer | string;
  linkpath?: string;
  /** pax records written in an 'x' header before this one */
  pax?: Record<string, string>;
  /** overrides the size written in the header (default: the data's length) */
  size?: number;
}

function block(h: Header): Buffer {
  h.encode();
  return h.block!;
}

function pad(n: number): Buffer {
  return Buffer.alloc((512 - (n % 512)) % 512);
}

/** One pax record, with its self-including length. */
export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

/** A ustar archive with exactly these members (names are written as given, even unsafe ones), then the end-of-archive marker. */
export function makeTar(entries: TarSpec[], { end = true } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.pax) {
      const data = Buffer.from(Object.entries(e.pax).map(([k, v]) => paxRecord(k, v)).join(''));
      parts.push(block(new Header({ path: 'PaxHeader', type: 'ExtendedHeader', size: data.length, mode: 0o644, mtime: new Date(0) })), data, pad(data.length));
    }
    const data = typeof e.data === 'string' ? Buffer.from(e.data) : (e.data ?? Buffer.alloc(0));
    const type = e.type ?? 'File';
    const h = new Header({ path: e.path, type: type as never, size: e.size ?? data.length, mode: 0o644, uid: 0, gid: 0, mtime: new Date(0), uname: 'u', gname: 'g', ...(e.linkpath !== undefined ? { linkpath: e.linkpath } : {}) });
    parts.push(block(h), data, pad(data.length));
  }
  if (end) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** Runs the system's GNU tar; throws with its stderr on failure. */
export function gnuTar(args: string[], cwd?: string): void {
  const r = spawnSync('tar', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar ${args.join(' ')}: ${r.stderr}`);
}
