import { oneLine } from './errors';

/**
 * Ends a command-line process that failed, once what it wrote to stdout and stderr has been handed
 * to the OS. A failed run has nothing left to do, but what it abandoned can still hold node's event
 * loop: a request to an S3 that stopped answering waits out its socket timeout on every retry, which
 * kept a backup stopped by SIGTERM alive for minutes after it had printed its line. A run that
 * succeeded ends as node ends it, when nothing is left.
 */
export function exitWhenFailed(code: number): void {
  process.exitCode = code;
  if (code === 0) return;
  exitOnceWritten(code);
}

/**
 * Ends the process with `code` once what it wrote to stdout and stderr has been handed to the OS
 * (process.exit alone may drop a write still queued). A stdout that failed on the way (a full disk:
 * `atmr-dr backup --json > result.json`) ends it 1 with its line, whatever the command's result: a
 * script must not read an empty file and exit 0 as a success. The stream's own 'error' event can come
 * after this exit, so the failure is read from the stream here. A closed pipe (`| head -1`) is not
 * one: the reader has what it wanted.
 */
export function exitOnceWritten(code: number): void {
  let pending = 2;
  let failed: NodeJS.ErrnoException | null | undefined;
  const done = (): void => {
    if (--pending > 0) return;
    if (failed && failed.code !== 'EPIPE') reportStdoutFailure(failed, code === 0 ? 1 : code);
    else process.exit(code);
  };
  // The write's callback is given the stream's error (a file's write fails at once); the stream
  // clears it by the time a later tick could read it.
  process.stdout.write('', (error) => {
    failed = error ?? (process.stdout.errored as NodeJS.ErrnoException | null);
    done();
  });
  process.stderr.write('', done);
}

let stdoutFailureReported = false;

/**
 * One line on stderr for a stdout the command could not write to, then the exit with `code`. Once:
 * the stream's 'error' event and the end of the command can both come to it.
 */
export function reportStdoutFailure(error: Error, code = 1): void {
  if (stdoutFailureReported) return;
  stdoutFailureReported = true;
  process.stderr.write(`atmr-dr: cannot write to stdout: ${oneLine(error)}\n`, () => process.exit(code));
}

/**
 * Node ends a process whose event loop has nothing left to run even while main() still awaits a
 * promise nothing can settle any more (a wait on an unref'd timer, an event no open handle can
 * emit), and it ends it with exit 0, the result never written: a backup that stopped halfway would
 * read as one that succeeded. Until `finished()` is called, that end is a failure instead: `line`
 * on stderr, exit 1.
 */
export function failIfStranded(line: string): { finished(): void } {
  let done = false;
  const onBeforeExit = (): void => {
    if (done) return;
    done = true;
    process.stderr.write(`${line}\n`, () => process.exit(1));
  };
  process.on('beforeExit', onBeforeExit);
  return {
    finished: () => {
      done = true;
      process.off('beforeExit', onBeforeExit);
    },
  };
}
