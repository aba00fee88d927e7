import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Writes `dir`/pg_restore, a stand-in for the load's pg_restore: a read of the archive's table of
 * contents (--list, -L: `backups verify`'s, no server) runs the real pg_restore at once, and every
 * other run (the load's: --use-list of schema public's grants when the archive has some, then
 * --section=pre-data, then --section=data --section=post-data) runs `body`, shell lines in which
 * "$real" is the real pg_restore. Returns `dir`: the PostgreSQL bin
 * directory to give, or put on PATH.
 */
export function writeFakePgRestore(dir: string, body: string): string {
  const real = execFileSync('sh', ['-c', 'command -v pg_restore'], { encoding: 'utf8' }).trim();
  fs.writeFileSync(
    path.join(dir, 'pg_restore'),
    `#!/bin/sh\nreal='${real.replaceAll("'", "'\\''")}'\ncase " $* " in *" --list "*|*" -L "*) exec "$real" "$@";; esac\n${body}`,
    { mode: 0o755 },
  );
  return dir;
}
