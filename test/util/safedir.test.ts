/**
 * The unpack symlink race: another local user swaps an output subdirectory for a symbolic link
 * between mlic's check and its write. SafeDir writes through the directory it opened and checked,
 * so the swap cannot redirect the file (Linux: /proc/self/fd).
 */
import { describe, it, expect } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { SafeDir } from '../../src/util/safedir.js';
import { MlicError } from '../../src/errors.js';
import { tmp } from '../helpers.js';

describe.runIf(existsSync('/proc/self/fd'))('SafeDir: writes go where the checked directory is, not where a name points now', () => {
  it('a subdirectory swapped for a symlink after it was opened still receives the file; the symlink target gets nothing', async () => {
    const base = await tmp();
    const out = join(base, 'out');
    const victim = join(base, 'victim');
    await mkdir(out);
    await mkdir(victim);
    const root = await SafeDir.open(out);
    const sub = await root.sub('models');
    // The swap: the checked directory moves away and a symlink to the victim takes its name.
    await rename(join(out, 'models'), join(base, 'moved'));
    await symlink(victim, join(out, 'models'));
    const { fh, temp } = await sub.createTemp('w.bin');
    await fh.write(Buffer.from('secret weights'));
    await fh.close();
    await sub.commit(temp, 'w.bin', false);
    expect(await readdir(victim)).toEqual([]);
    expect(await readFile(join(base, 'moved', 'w.bin'), 'utf8')).toBe('secret weights');
    // Opening through the symlink now is refused.
    await expect(root.sub('models')).rejects.toThrow(MlicError);
    await sub.close();
    await root.close();
  });

  it('a symlinked output directory, or a file where a directory should be, is IO_UNSAFE_PATH', async () => {
    const base = await tmp();
    await mkdir(join(base, 'real'));
    await symlink(join(base, 'real'), join(base, 'link'));
    const code = (p: Promise<unknown>) => p.then(() => 'OK', (e) => (e as MlicError).code);
    expect(await code(SafeDir.open(join(base, 'link')))).toBe('IO_UNSAFE_PATH');
    const root = await SafeDir.open(join(base, 'real'));
    await symlink('/etc', join(base, 'real', 'etc'));
    expect(await code(root.sub('etc'))).toBe('IO_UNSAFE_PATH');
    const { fh, temp } = await root.createTemp('f');
    await fh.close();
    await root.commit(temp, 'f', false);
    expect(await code(root.sub('f'))).toBe('IO_UNSAFE_PATH');
    await root.close();
  });
});
