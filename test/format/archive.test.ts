import { describe, it, expect } from 'vitest';
import { Header } from 'tar/header';
import { TarWalker, type ForwardStream, type TarEntry } from '../../src/format/archive.js';
import { StreamedMember } from '../../src/bundle/archive.js';
import { MlicError } from '../../src/errors.js';
import { prng } from '../helpers.js';
import { makeTar, paxRecord } from '../archive-helpers.js';

/** An in-memory forward stream that hands out at most `step` bytes per read (to shake out short reads). */
class MemStream implements ForwardStream {
  position = 0;
  closed = false;
  constructor(
    private readonly b: Buffer,
    private readonly step = 7,
  ) {}
  async read(buf: Buffer, off: number, len: number): Promise<number> {
    const n = Math.min(len, this.step, this.b.length - this.position);
    this.b.copy(buf, off, this.position, this.position + n);
    this.position += n;
    return n;
  }
  async skip(n: number): Promise<number> {
    const k = Math.min(n, this.b.length - this.position);
    this.position += k;
    return k;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

async function walk(b: Buffer, step = 7): Promise<TarEntry[]> {
  const w = new TarWalker(new MemStream(b, step), 'test.tar');
  const out: TarEntry[] = [];
  for (let e = await w.nextEntry(); e; e = await w.nextEntry()) out.push(e);
  return out;
}

async function walkError(b: Buffer): Promise<string> {
  try {
    await walk(b, 512);
    return 'OK';
  } catch (e) {
    if (e instanceof MlicError) return `${e.code}: ${e.message}`;
    throw e;
  }
}

describe('TarWalker', () => {
  it('lists members with their offsets; pax path, GNU long name and long link apply to the next member only', async () => {
    const long = 'l'.repeat(300);
    const b = makeTar([
      { path: 'dir/', type: 'Directory' },
      { path: 'dir/a.bin', data: 'hello' },
      { path: 'short', pax: { path: long, mtime: '12.5' }, data: 'x'.repeat(600) },
      { path: '././@LongLink', type: 'NextFileHasLongPath', data: `gnu/${long}\0` },
      { path: 'cut', data: '' },
      { path: '././@LongLink', type: 'NextFileHasLongLinkpath', data: `target/${long}\0` },
      { path: 'sym', type: 'SymbolicLink', linkpath: 'cut-short' },
      { path: 'after', data: 'z' },
    ]);
    for (const step of [1, 7, 512, 1 << 20]) {
      const es = await walk(b, step);
      expect(es.map((e) => [e.name, e.type, e.size])).toEqual([
        ['dir/', 'directory', 0],
        ['dir/a.bin', 'file', 5],
        [long, 'file', 600],
        [`gnu/${long}`, 'file', 0],
        ['sym', 'symlink', 0],
        ['after', 'file', 1],
      ]);
      expect(es[4]!.linkName).toBe(`target/${long}`);
      for (const e of es) if (e.size > 0) expect(b.toString('latin1', e.dataOffset, e.dataOffset + 1)).toBe(e.name === 'dir/a.bin' ? 'h' : e.name === 'after' ? 'z' : 'x');
    }
  });

  it('sizes over 8 GiB: base-256 (GNU) and pax size; the missing data is a truncated archive', async () => {
    const big = 9 * 2 ** 30 + 3;
    const h = new Header({ path: 'huge.bin', type: 'File', size: big, mode: 0o644, mtime: new Date(0) });
    h.encode();
    expect(h.block![124]! & 0x80).toBe(0x80);
    const w = new TarWalker(new MemStream(Buffer.concat([h.block!, Buffer.alloc(1024)]), 512), 't.tar');
    const e = await w.nextEntry();
    expect(e).toMatchObject({ name: 'huge.bin', size: big, dataOffset: 512 });
    await expect(w.nextEntry()).rejects.toMatchObject({ code: 'FORMAT_INVALID', message: expect.stringContaining('truncated') });
    const w2 = new TarWalker(new MemStream(makeTar([{ path: 'p.bin', pax: { size: String(big) }, data: '' }]), 512), 't.tar');
    expect(await w2.nextEntry()).toMatchObject({ size: big });
  });

  it('refuses, with FORMAT_INVALID: bad magic, checksum, truncation, lone zero block, trailing data, bad pax records, unsupported types', async () => {
    const good = makeTar([{ path: 'a', data: 'abc' }]);
    expect(await walkError(good)).toBe('OK');
    expect(await walkError(Buffer.concat([good, Buffer.alloc(10240)]))).toBe('OK'); // record padding
    const cases: [string, Buffer, RegExp][] = [
      ['not tar', Buffer.alloc(512, 0x41), /not a tar archive/],
      ['short', Buffer.alloc(100, 0x41), /not a tar archive/],
      ['checksum', (() => { const b = Buffer.from(good); b[0] = 0x62; return b; })(), /checksum/],
      ['no end marker', good.subarray(0, 1024), /end-of-archive/],
      ['lone zero block', good.subarray(0, 1536), /end-of-archive/],
      ['inside data', good.subarray(0, 514), /truncated/],
      ['trailing data', Buffer.concat([good, Buffer.from([1])]), /after the end-of-archive/],
      ['zero block then a header', Buffer.concat([good.subarray(0, 1536), good]), /followed by more data/],
      ['pax length', Buffer.concat([makeTar([{ path: 'x', type: 'ExtendedHeader', data: '5 path=abc\n' }], { end: false }), good]), /malformed pax/],
      ['pax no key', Buffer.concat([makeTar([{ path: 'x', type: 'ExtendedHeader', data: '6 =ab\n' }], { end: false }), good]), /malformed pax/],
      ['pax size', makeTar([{ path: 'a', pax: { size: '-1' }, data: '' }]), /invalid pax size/],
      ['global path', makeTar([{ path: 'g', type: 'GlobalExtendedHeader', data: paxRecord('path', 'ab') }, { path: 'a', data: '' }]), /global header/],
      ['pax before the end', makeTar([{ path: 'x', type: 'ExtendedHeader', data: paxRecord('path', 'ab') }]), /not by a member/],
      ['sparse', makeTar([{ path: 's', type: 'SparseFile', data: '' }]), /sparse/],
      ['volume label', makeTar([{ path: 'v', type: 'TapeVolumeHeader', data: '' }]), /volume label/],
      ['directory with data', makeTar([{ path: 'd', type: 'Directory', size: 5, data: 'abcde' }]), /has data/],
      ['meta too big', makeTar([{ path: 'x', type: 'ExtendedHeader', size: 2 << 20 }]), /more than the/],
    ];
    for (const [what, b, re] of cases) {
      const r = await walkError(b);
      expect(r, what).toMatch(/^FORMAT_INVALID: /);
      expect(r, what).toMatch(re);
    }
  });
});

describe('StreamedMember: a member read from a forward-only stream', () => {
  const data = prng(300_000, 5);
  const lead = 1536; // the member starts here in the stream
  const stream = () => new MemStream(Buffer.concat([Buffer.alloc(lead, 0xee), data, Buffer.alloc(2048, 0xee)]), 4096);
  const member = () => {
    const opened: MemStream[] = [];
    const main = stream();
    main.position = lead;
    const m = new StreamedMember(main, data.length, lead, () => {
      const s = stream();
      opened.push(s);
      return s;
    }, 64 << 10, 'm');
    return { m, opened, main };
  };
  const get = async (m: StreamedMember, pos: number, len: number) => {
    const b = Buffer.alloc(len);
    const { bytesRead } = await m.read(b, 0, len, pos);
    return b.subarray(0, bytesRead);
  };

  it('reads forwards, skips forwards, and looks back into its first 64 KiB without a new stream', async () => {
    const { m, opened } = member();
    expect((await get(m, 0, 4096)).equals(data.subarray(0, 4096))).toBe(true);
    expect((await get(m, 0, 10)).equals(data.subarray(0, 10))).toBe(true);
    expect((await get(m, 8, 70_000)).equals(data.subarray(8, 70_008))).toBe(true); // 8..4096 kept, then it continues (keeping up to 64 KiB)
    expect((await get(m, 100_000, 30_000)).equals(data.subarray(100_000, 130_000))).toBe(true); // skips 70008..100000
    expect((await get(m, 60_000, 5000)).equals(data.subarray(60_000, 65_000))).toBe(true); // within the kept start
    expect((await get(m, 299_990, 100)).equals(data.subarray(299_990))).toBe(true); // clamped at the end
    expect((await get(m, 300_000, 10)).length).toBe(0);
    expect(opened).toHaveLength(0);
    expect(m.complete).toBe(true);
    await m.close();
  });

  it('a read back beyond the kept start opens a new stream and is still right', async () => {
    const { m, opened, main } = member();
    await get(m, 0, 200_000);
    expect((await get(m, 70_000, 1000)).equals(data.subarray(70_000, 71_000))).toBe(true);
    expect(m.restreams).toBe(1);
    expect(opened).toHaveLength(1);
    expect((await get(m, 71_000, 229_000)).equals(data.subarray(71_000))).toBe(true); // on from there
    expect((await get(m, 0, 1000)).equals(data.subarray(0, 1000))).toBe(true); // the start is still kept
    expect(m.restreams).toBe(1);
    expect((await get(m, 0, 300_000)).equals(data)).toBe(true); // back again: a second new stream
    expect(m.restreams).toBe(2);
    expect(main.position).toBe(lead + 200_000); // the walker's stream is left where the member left it
    await m.close();
    expect(opened.map((o) => o.closed)).toEqual([true, true]);
  });

  it('serves reads issued before the previous ones settled, in order', async () => {
    const { m } = member();
    const bufs = [0, 1, 2, 3].map(() => Buffer.alloc(75_000));
    const rs = await Promise.all(bufs.map((b, i) => m.read(b, 0, b.length, i * 75_000)));
    expect(rs.map((r) => r.bytesRead)).toEqual([75_000, 75_000, 75_000, 75_000]);
    expect(Buffer.concat(bufs).equals(data)).toBe(true);
  });

  it('a stream that ends inside the member is FORMAT_INVALID, and recorded as the archive\'s failure', async () => {
    const short = new MemStream(data.subarray(0, 1000), 512);
    const m = new StreamedMember(short, data.length, 0, () => short, 0, 'cut.tgz: "a"');
    await expect(get(m, 0, 5000)).rejects.toMatchObject({ code: 'FORMAT_INVALID' });
    expect((m.failure as MlicError).code).toBe('FORMAT_INVALID');
  });
});
