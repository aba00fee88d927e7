import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { OperatorError, oneLine } from './errors';

/** What a failed mkdtemp means to an operator, by its code. */
const REASONS: Readonly<Record<string, string>> = {
  ENOENT: 'no such directory',
  ENOTDIR: 'not a directory',
  EACCES: 'not writable',
  EPERM: 'not writable',
  EROFS: 'read-only file system',
};

/**
 * Makes `<parent>/<prefix>XXXXXX`, the directory a backup is downloaded into (restore, restore-test,
 * backups verify). A parent that is missing or not writable is a bad setting (TMPDIR), said in one
 * line with the fix, exit 2, before anything is downloaded or created; fs's own line
 * (`ENOENT: no such file or directory, mkdtemp '/x/atmr-dr-restore-XXXXXX'`) says neither what the
 * directory is for nor which setting to change.
 */
export function makeDownloadDir(parent: string, prefix: string): string {
  try {
    return fs.mkdtempSync(path.join(parent, prefix));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === undefined ? oneLine(error) : `${code}${REASONS[code] ? `: ${REASONS[code]}` : ''}`;
    throw new OperatorError(downloadDirFailure(parent, why), 2);
  }
}

/** The line of a download directory that cannot be made in `parent`, `why` being the reason (`ENOENT: no such directory`). */
export function downloadDirFailure(parent: string, why: string): string {
  return `cannot create the download directory in TMPDIR ${parent} (${why}): the backup is downloaded there; export TMPDIR=<an existing, writable directory with room for the backup> and retry; nothing was done`;
}

/**
 * A directory of the run's own under TMPDIR for what it downloads: the run's cleanup removes what
 * it wrote there, and `remove` (for a second Ctrl-C, or the end) the directory itself.
 *
 * A run killed outright (kill -9, the OOM killer, the function's process ended at its time limit)
 * cannot remove it, and what it holds is a whole backup, so the name carries the host and the
 * process id (`atmr-dr-<host>-<pid>-XXXXXX`): the next run removes the directories of this host
 * whose process is gone (`swept`, for the caller to say so with removedTempDirLine) before making
 * its own, instead of TMPDIR (the CLI's host, the function's /tmp) found full.
 *
 * `pidReused`: the function's. Lambda starts a new process for the next invocation in the same
 * /tmp after it ended one (its time limit, a crash), under the same process id as often as not, and
 * runs one invocation at a time: a directory of its own process id is then a dead run's too.
 */
export function runTempDir(parent = os.tmpdir(), { pidReused = false } = {}): { readonly path: string; readonly swept: readonly string[]; remove(): string } {
  const prefix = `atmr-dr-${os.hostname().replace(/[^A-Za-z0-9.]/g, '_')}-`;
  const swept = sweepDeadRuns(parent, prefix, pidReused);
  const dir = makeDownloadDir(parent, `${prefix}${process.pid}-`);
  return {
    path: dir,
    swept,
    remove: () => {
      try {
        fs.rmSync(dir, { recursive: true, force: true });
        return `temp directory ${dir} removed`;
      } catch (error) {
        return `could not remove temp directory ${dir} (${oneLine(error)}): remove it by hand`;
      }
    },
  };
}

/** What runTempDir removed (`swept`): where the disk space came back from. */
export function removedTempDirLine(dir: string): string {
  return `removed temp directory ${dir}, left by an earlier run that was killed`;
}

/** Removes `<prefix><pid>-XXXXXX` directories whose process no longer runs (or is this one, `pidReused`); returns their paths. */
function sweepDeadRuns(parent: string, prefix: string, pidReused: boolean): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return [];
  }
  const swept: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const match = /^(\d+)-[A-Za-z0-9]{6}$/.exec(name.slice(prefix.length));
    if (!match) continue;
    const pid = Number(match[1]);
    if (!(pidReused && pid === process.pid) && isRunning(pid)) continue;
    const dir = path.join(parent, name);
    try {
      fs.rmSync(dir, { recursive: true, force: true });
      swept.push(dir);
    } catch {
      // Someone else's or unreadable: left as it is.
    }
  }
  return swept;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
