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

/** Ends the process with `code` once what it wrote to stdout and stderr has been handed to the OS (process.exit alone may drop a write still queued). */
export function exitOnceWritten(code: number): void {
  let pending = 2;
  const done = (): void => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}
