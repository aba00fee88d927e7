import { formatBytes } from '../../lambdas/shared/format';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A real filesystem of a few MiB (tmpfs) for a TMPDIR that fills up: a write into it ends in ENOSPC. */
export interface SmallDisk {
  readonly path: string;
  /** Takes every free byte, as another process would: the next write fails with ENOSPC. */
  fill(): void;
  unmount(): void;
}

/**
 * Why this machine cannot mount a tmpfs for the tests (root with CAP_SYS_ADMIN can: CI and the
 * runner image's build run so), or undefined when it can: checked once, by mounting one.
 */
const smallDiskUnavailable: string | undefined = (() => {
  try {
    mountSmallDisk(64 * 1024).unmount();
    return undefined;
  } catch (error) {
    return String((error as Error).message).split('\n')[0];
  }
})();

/**
 * `it` for a test that needs a small disk. Where none can be mounted the test is reported skipped,
 * with a warning saying why, instead of passing without having run.
 */
export const itWithSmallDisk: jest.It = (() => {
  if (smallDiskUnavailable === undefined) return it;
  // eslint-disable-next-line no-console
  console.warn(`skipping the small-disk (ENOSPC) tests: cannot mount a tmpfs here (${smallDiskUnavailable}); run them as root`);
  return it.skip;
})();

export function mountSmallDisk(bytes: number): SmallDisk {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-small-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0755`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (error) {
    fs.rmdirSync(dir);
    throw error;
  }
  return {
    path: dir,
    fill() {
      const fd = fs.openSync(path.join(dir, 'filler'), 'w');
      const block = Buffer.alloc(64 * 1024);
      try {
        // The last write that fits only in part writes what fits; the next one fails.
        for (;;) fs.writeSync(fd, block);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      } finally {
        fs.closeSync(fd);
      }
    },
    unmount() {
      execFileSync('umount', [dir], { stdio: 'pipe' });
      fs.rmdirSync(dir);
    },
  };
}

/**
 * The first file under `dir` (recursively, relative to it) whose name ends with `suffix`, once it
 * appears: a download's file. Polls without blocking this process, which serves S3 to the CLI.
 */
export async function waitForFile(dir: string, suffix: string): Promise<string> {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 20))) {
    const found = (fs.readdirSync(dir, { recursive: true }) as string[]).find((name) => name.endsWith(suffix));
    if (found !== undefined) return found;
  }
  throw new Error(`no file *${suffix} under ${dir} within 30 s`);
}

/**
 * The one line a download into a TMPDIR that filled up ends with (after `atmr-dr: ` and any prefix
 * of the command): `dir` the download's directory, `key` and `bytes` the object's, none of it written.
 */
export function fullDiskLine(dir: string, key: string, bytes: number): string {
  return (
    `the local disk is full: TMPDIR (${dir}) ran out of space for ${key} after 0 B (ENOSPC): ` +
    `0 B free, ${formatBytes(Math.ceil(bytes * 1.1))} needed (object ${formatBytes(bytes)} x 1.1); the backup is not at fault: point TMPDIR at a larger disk (or free space there, or raise the Lambda ephemeral storage) and retry`
  );
}

/**
 * Lets `running` (a command downloading a .dump into `disk`, whose bytes `release` holds back)
 * reach its download, takes the rest of the disk as another writer would, then lets the bytes come:
 * the download's first write fails with ENOSPC. The command's result, and the .dump's directory.
 */
export async function downloadOntoFullDisk<T>(disk: SmallDisk, release: () => void, running: Promise<T>): Promise<{ run: T; dir: string }> {
  const file = await waitForFile(disk.path, '.dump');
  disk.fill();
  release();
  return { run: await running, dir: path.join(disk.path, path.dirname(file)) };
}
