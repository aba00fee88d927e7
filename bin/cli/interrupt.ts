import { OPERATOR_CLI } from '../../lambdas/shared/constants';
import { OperatorError, oneLine } from '../../lambdas/shared/errors';
import { exitOnceWritten } from '../../lambdas/shared/exit';
/** The command's download directory (its `swept`, the killed runs' it removed, named with removedTempDirLine). */
export { runTempDir as commandTempDir } from '../../lambdas/shared/temp-dir';

/** The shell's exit code for a process ended by `signal` (128 + its number). */
export function exitCodeOf(signal: NodeJS.Signals): number {
  return signal === 'SIGTERM' ? 143 : signal === 'SIGHUP' ? 129 : 130;
}

/**
 * What stops a long command: Ctrl-C, SIGTERM (ECS, systemd, kill), and SIGHUP, which an SSH session
 * that drops sends: node's default for SIGHUP is to die on the spot, which would leave pg_restore
 * loading into the staging database and the downloaded dump in TMPDIR.
 */
export const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * After a hangup the terminal is gone: a write to it fails (EIO), and an unhandled stream error would
 * end the process before its cleanup. The cleanup matters more than the line nobody reads.
 */
export function ignoreGoneTerminal(signal: NodeJS.Signals): void {
  if (signal === 'SIGHUP') process.stderr.on('error', () => undefined);
}

/**
 * From the start of the process to the moment a long command takes the stop signals over
 * (interruptible()), node's default would end the process on a Ctrl-C or SIGTERM with no line at all:
 * up to a second or more (the bundle, the command's code, the bucket and connection lookups).
 * Nothing is created in that window, so the handler below says so in one line and
 * exits at once, 130/143/129. `main` installs it first; interruptible() replaces it; for a command
 * that does not take the signals over (ownsStopSignals) it stays, and says what a stop then means
 * (stopWhileRunning).
 */
let startingLine = (signal: NodeJS.Signals): string => startingDefault('', signal);

function startingDefault(command: string, signal: NodeJS.Signals): string {
  return `${command ? `${command} ` : ''}interrupted (received ${signal}) while starting, before it did anything: nothing done`;
}

const onStartingSignal = (signal: NodeJS.Signals): void => {
  ignoreGoneTerminal(signal);
  process.stderr.write(`atmr-dr: ${startingLine(signal)}\n`);
  process.exit(exitCodeOf(signal));
};

/** Installs the handler of the start (above); `command`, the words of the command line that name it (`backups verify`). */
export function stopWhileStarting(command = ''): void {
  startingLine = (signal) => startingDefault(command, signal);
  for (const name of STOP_SIGNALS) if (!process.listeners(name).includes(onStartingSignal)) process.on(name, onStartingSignal);
}

/**
 * What the start's handler says from now on, while it is installed: a command states what the
 * operator needs to hear before it takes the signals over (restore: which target is untouched).
 */
export function sayWhileStarting(line: (signal: NodeJS.Signals) => string): void {
  startingLine = line;
}

/** The commands that only read: stopped anywhere, they changed nothing. */
export const READ_ONLY_COMMANDS: readonly string[] = ['backups list', 'db revision', 'incident list', 'incident timeline', 'killswitch status', 'recover status', 'rollback status'];

/**
 * Where the operator sees what a stopped command had done, by the command's first word: every
 * command that writes and does not take the stop signals over (ownsStopSignals) has one
 * (test/cli/interrupt.test.ts walks the CLI's commands).
 */
export const CHECK_WITH: Readonly<Record<string, string>> = {
  killswitch: `\`${OPERATOR_CLI} killswitch status\``,
  rollback: `\`${OPERATOR_CLI} rollback status\` (a lock it took: \`${OPERATOR_CLI} rollback unlock\`)`,
  recover: `\`${OPERATOR_CLI} recover status\``,
  incident: `\`${OPERATOR_CLI} incident list\``,
  scale: '`aws ecs describe-services`',
  osrm: '`aws ecs describe-services`',
  db: `\`${OPERATOR_CLI} db read-write\` (it shows the setting before it asks)`,
};

/**
 * From the start of its action, a command that does not take the signals over (ownsStopSignals) is
 * stopped by the first one where it stands, as node's default would stop it, but with one line
 * saying what that means. The start's handler stays installed for it: node delivers a signal caught
 * while the bundle loaded (synchronous work) only at the next turn of its event loop, which comes
 * after the action has started; a handler removed there dropped that signal, and the command (a
 * killswitch enable, a rollback) ran to its end, exit 0, as if nobody had pressed Ctrl-C.
 */
export function stopWhileRunning(command: string): void {
  sayWhileStarting((signal) => {
    if (READ_ONLY_COMMANDS.includes(command)) return `${command} interrupted (received ${signal}): it only reads, nothing changed`;
    const check = checkBeforeRetry(command);
    return `${command} interrupted (received ${signal}) while it ran: what it had sent may have taken effect${check ? `; ${check}` : ''}`;
  });
}

/** What to do before running `command` again once what it sent may have taken effect (stopped, or not answered), else undefined. */
export function checkBeforeRetry(command: string): string | undefined {
  const check = CHECK_WITH[command.split(' ')[0]];
  return check && `check with ${check} before running it again`;
}

/** Removes the start's handler (node's default again, unless a command installed its own). */
export function endStarting(): void {
  for (const name of STOP_SIGNALS) process.off(name, onStartingSignal);
}

const STOP_OWNERS = new WeakSet<object>();

/** Marks `command` as one whose action takes the stop signals over with interruptible(): the start's handler stays until then. */
export function ownsStopSignals<T extends object>(command: T): T {
  STOP_OWNERS.add(command);
  return command;
}

/** Whether `command` was marked by ownsStopSignals. */
export function takesStopSignals(command: object): boolean {
  return STOP_OWNERS.has(command);
}

export interface Interrupt {
  /** Aborted by the first Ctrl-C / SIGTERM / SIGHUP: the command stops, cleans up and says so. */
  readonly signal: AbortSignal;
  /** The error a command ended with; after an interrupt, as one line with exit 130 (SIGINT), 143 (SIGTERM) or 129 (SIGHUP). */
  interrupted(error: unknown): unknown;
  /** The first Ctrl-C / SIGTERM / SIGHUP received, if one was. */
  readonly received: NodeJS.Signals | undefined;
  /**
   * While set, the command is in a step it finishes before it stops (the restore's swap: cut
   * half-way, it leaves the target missing): the first signal then says so at once, with this line
   * on stderr, instead of stoppingLine. Undefined: back to stoppingLine.
   */
  finishing(line: ((signal: NodeJS.Signals) => string) | undefined): void;
  /** Removes the handlers, leaving the stop signals to the handler of a command whose work is over (releaseStopSignals). */
  done(): void;
}

/**
 * How long after the first stop signal a second one counts as a second (quit at once, skipping the
 * cleanup): `timeout -s INT` and some process managers send one stop twice within milliseconds (to
 * the process, then to its group), and that must not cost the cleanup; a human pressing Ctrl-C
 * again takes longer than this.
 */
export const SECOND_SIGNAL_AFTER_MS = 500;

/**
 * Whether `name`, a stop signal received now after a first one received at `firstAt`
 * (performance.now()), is a second one (SECOND_SIGNAL_AFTER_MS). Sooner, it is the same stop, and
 * one line says so: ignored without a word, it left whoever pressed Ctrl-C twice quickly unable to
 * tell whether it was heard, nor that pressing again quits at once.
 */
export function isSecondSignal(firstAt: number, name: NodeJS.Signals): boolean {
  if (performance.now() - firstAt >= SECOND_SIGNAL_AFTER_MS) return true;
  process.stderr.write(`atmr-dr: second ${name} within ${SECOND_SIGNAL_AFTER_MS} ms: taken as the same stop; press Ctrl-C again to quit at once\n`);
  return false;
}

/**
 * What the first stop signal says at once when the command is in no step it finishes first
 * (Interrupt.finishing): the stop is heard, and the cleanup may take a while. Without it a restore
 * whose database server had stopped answering said nothing for as long as the server did (pg_restore
 * ending, then the DROP of the staging database, both wait for it) while its progress line went on
 * counting, and the operator could not tell whether Ctrl-C was heard, nor that a second one quits.
 */
export function stoppingLine(signal: NodeJS.Signals): string {
  return `stopping (received ${signal}): cleaning up before it exits, which waits for what it was using to answer (the database server, S3, AWS); press Ctrl-C again to quit at once`;
}

/**
 * A line of the stop handlers, written on stderr at once. At a terminal it first clears the line the
 * cursor is on: a progress status (a download meter, the load's time) is left open there, without
 * its line end, and the stop's line would be glued to it.
 */
function sayNow(line: string): void {
  process.stderr.write(`${process.stderr.isTTY ? '\r\u001b[K' : ''}atmr-dr: ${line}\n`);
}

/**
 * Ctrl-C / SIGTERM / SIGHUP for the long commands (backup, restore, restore-test, backups verify, recover cutover). The first aborts
 * `signal`, and says so at once (the `finishing` line, else stoppingLine); a second, SECOND_SIGNAL_AFTER_MS or more later, quits at once,
 * with one line on stderr: `onSecond` (synchronous, must not throw: nothing else runs any more) removes what it can and returns what it
 * removed or what is left.
 */
export function interruptible(onSecond?: () => string): Interrupt {
  const aborter = new AbortController();
  let first: NodeJS.Signals | undefined;
  let firstAt = 0;
  let finishingLine: ((signal: NodeJS.Signals) => string) | undefined;
  const onSignal = (name: NodeJS.Signals): void => {
    if (first === undefined) {
      first = name;
      firstAt = performance.now();
      ignoreGoneTerminal(name);
      sayNow((finishingLine ?? stoppingLine)(name));
      aborter.abort(new Error(`received ${name}`));
      return;
    }
    // The same stop delivered twice: the first one's cleanup goes on.
    if (!isSecondSignal(firstAt, name)) return;
    sayNow(`second ${name}, quitting at once${onSecond ? `; ${onSecond()}` : ''}`);
    process.exit(exitCodeOf(name));
  };
  for (const name of STOP_SIGNALS) process.on(name, onSignal);
  // Its own handlers first, then the start's removed: no moment with node's default in between.
  endStarting();
  return {
    signal: aborter.signal,
    interrupted: (error) => (first === undefined ? error : new OperatorError(oneLine(error), exitCodeOf(first))),
    get received() {
      return first;
    },
    finishing: (line) => {
      finishingLine = line;
    },
    done: () => releaseStopSignals(onSignal),
  };
}

/**
 * Once a command's work is over (done or failed, its cleanup finished), while it writes its result
 * and the process ends: a stop signal then has nothing left to stop, and node's default would end
 * the process 143 (130, 129) with no line, which a supervisor (ECS, systemd, `timeout`, a script)
 * reads as a failed command: a wrapper would retry a backup that succeeded. The handler below says
 * so in one line and ends the process with the result's own exit code once stdout and stderr are
 * out; until main() knows that code (the result is still being written), it only says so, and
 * main() ends the process with it (commandEnded). Every command comes here: those that take the
 * signals over hand them to it as they release them (releaseStopSignals), the others when main()
 * removes the start's handler. A handler runs between two turns of the event loop, never in the
 * middle of the result's write.
 */
let resultCode: number | undefined;
let stoppedAfterWork = false;

const onStopAfterWork = (signal: NodeJS.Signals): void => {
  ignoreGoneTerminal(signal);
  process.stderr.write(`atmr-dr: received ${signal} after the command had finished its work: nothing left to stop\n`);
  stoppedAfterWork = true;
  if (resultCode !== undefined) exitOnceWritten(resultCode);
};

function stopAfterWork(): void {
  for (const name of STOP_SIGNALS) if (!process.listeners(name).includes(onStopAfterWork)) process.on(name, onStopAfterWork);
}

/**
 * Removes a command's own stop handler `handler` once its work is over, the handler of the end
 * (above) installed first: no moment with node's default in between.
 */
export function releaseStopSignals(handler: (signal: NodeJS.Signals) => void): void {
  stopAfterWork();
  for (const name of STOP_SIGNALS) process.off(name, handler);
}

/**
 * TEST ONLY: ATMR_DR_TEST_HOLD_AFTER_RESULT_MS, set by the tests of a stop after the result and by
 * nothing else, keeps the process that long after its result (ended early by a stop signal), so that
 * the test's signal, sent once it has read the result, surely reaches a live process: without it a
 * process that ended first would pass the test by luck.
 */
export const TEST_HOLD_AFTER_RESULT = 'ATMR_DR_TEST_HOLD_AFTER_RESULT_MS';

/**
 * Called by main() once the command has returned or thrown, its result (or its error's line) written,
 * with the exit code it ends with: from here a stop signal ends the process with that code (above).
 * When one came while the result was being written, the process ends now with that code.
 */
export async function commandEnded(exitCode: number): Promise<void> {
  resultCode = exitCode;
  stopAfterWork();
  endStarting();
  if (stoppedAfterWork) {
    exitOnceWritten(exitCode);
    return;
  }
  const hold = Number(process.env[TEST_HOLD_AFTER_RESULT] ?? 0);
  if (hold > 0) await new Promise((resolve) => setTimeout(resolve, hold));
}

/**
 * Runs `command` under interruptible(): its signal aborts on the first Ctrl-C / SIGTERM / SIGHUP,
 * and its error then exits 130 / 143 / 129 as one line; the handlers are removed at the end.
 */
export async function interruptibly<T>(command: (signal: AbortSignal) => Promise<T>, onSecond?: () => string): Promise<T> {
  const interrupt = interruptible(onSecond);
  try {
    return await command(interrupt.signal);
  } catch (error) {
    throw interrupt.interrupted(error);
  } finally {
    interrupt.done();
  }
}
