import { open, readFile } from 'node:fs/promises';

const FRESH_HOSTS = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n';

/**
 * Rewrites a hosts file in place with `edit` (a missing file starts from the loopback lines). In place, not by
 * rename: `ip netns exec` (and a pod's /etc/hosts) bind-mounts the file into the processes' view, and a bind mount
 * keeps pointing at the old inode after a rename, so a renamed file would never reach a running app.
 * Resolves whether the content changed.
 */
export async function rewriteHostsFile(file: string, edit: (existing: string) => string): Promise<boolean> {
  let existing: string;
  try {
    existing = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    existing = FRESH_HOSTS;
  }
  const next = edit(existing);
  if (next === existing) return false;
  const fh = await open(file, 'a+');
  try {
    // The whole text in one write after the truncation: a resolver reading in between sees an empty file for the
    // length of one write call, never a half-written one.
    await fh.truncate(0);
    await fh.write(next, 0, 'utf8');
  } finally {
    await fh.close();
  }
  return true;
}
