import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { OperatorError, oneLine } from '../../lambdas/shared/errors';

/** The shell's exit code for a process ended by `signal` (128 + its number). */
function exitCodeOf(signal: NodeJS.Signals): number {
  return signal === 'SIGTERM' ? 143 : 130;
}

export interface Interrupt {
  /** Aborted by the first Ctrl-C / SIGTERM: the command stops, cleans up and says so. */
  readonly signal: AbortSignal;
  /** The error a command ended with; after an interrupt, as one line with exit 130 (SIGINT) or 143 (SIGTERM). */
  interrupted(error: unknown): unknown;
  /** Removes the handlers. */
  done(): void;
}

/**
 * Ctrl-C / SIGTERM for the long commands (backup, restore, restore-test). The first aborts
 * `signal`; a second quits at once, with one line on stderr: `onSecond` (synchronous, must not
 * throw: nothing else runs any more) removes what it can and returns what it removed or what is left.
 */
export function interruptible(onSecond?: () => string): Interrupt {
  const aborter = new AbortController();
  let first: NodeJS.Signals | undefined;
  const onSignal = (name: NodeJS.Signals): void => {
    if (first === undefined) {
      first = name;
      aborter.abort(new Error(`received ${name}`));
      return;
    }
    process.stderr.write(`atmr-dr: second ${name}, quitting at once${onSecond ? `; ${onSecond()}` : ''}\n`);
    process.exit(exitCodeOf(name));
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  return {
    signal: aborter.signal,
    interrupted: (error) => (first === undefined ? error : new OperatorError(oneLine(error), exitCodeOf(first))),
    done: () => process.off('SIGINT', onSignal).off('SIGTERM', onSignal),
  };
}

/**
 * A directory of the command's own under TMPDIR for what it downloads: the command's cleanup
 * removes what it wrote there, and `remove` (for a second Ctrl-C, or the end) the directory itself.
 */
export function commandTempDir(): { readonly path: string; remove(): string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-'));
  return {
    path: dir,
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
