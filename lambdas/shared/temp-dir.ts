import * as fs from 'node:fs';
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
