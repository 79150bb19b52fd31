/** Deep directory trees past PATH_MAX, made and removed through directory handles (Linux: /proc/self/fd). */
import { closeSync, constants, existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export const HAVE_PROC_FD = existsSync('/proc/self/fd');

/**
 * Writes `content` at `root/rel`, creating the directories one at a time through an open handle
 * of the parent, so that `rel` may be longer than PATH_MAX allows for one path.
 */
export function writeDeep(root: string, rel: string, content: string | Buffer): void {
  const parts = rel.split('/');
  let fd = openSync(root, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    for (const p of parts.slice(0, -1)) {
      const at = `/proc/self/fd/${fd}/${p}`;
      if (!existsSync(at)) mkdirSync(at);
      const next = openSync(at, constants.O_RDONLY | constants.O_DIRECTORY);
      closeSync(fd);
      fd = next;
    }
    writeFileSync(`/proc/self/fd/${fd}/${parts.at(-1)}`, content);
  } finally {
    closeSync(fd);
  }
}

/** rm -rf: GNU rm walks with directory handles, where fs.rm's full paths fail past PATH_MAX. */
export function removeDeep(dir: string): void {
  execFileSync('rm', ['-rf', '--', dir]);
}

export { join };
