/**
 * The restore's steps (restore.ts): catalog -> guards and leftovers -> download -> archive -> load
 * -> check -> properties -> swap. This is the swap, the last: the verified staging
 * database put under the target's name, the target's guards checked again first. It does not
 * create, load or check the staging database, nor drop it after a failure: those are restore.ts'.
 */

import type { Client } from 'pg';
import { dropDatabaseStatement, quoteIdent, reopenDatabaseStatement } from '../shared/postgres';
import { OperatorError, oneLine } from '../shared/errors';
import { countOf } from '../shared/format';
import type { PgConnection } from '../shared/pg-connection';
import { checkTarget, CLIENT_SESSION, sessionsRefusal, sessionsWho, TargetGuards } from './guards';
import { stagingName } from './leftovers';
import { isRefusedStatement } from '../shared/pg-errors';
import { AdminSession, boundedQuery, dropDatabase, NoAnswer, runOrUnsettled, SessionNotBack, SWAP_STATEMENT_BOUND_MS, Unsettled } from './session';

/**
 * What a caller that may quit in the middle of the swap (a second Ctrl-C) needs to say what it left.
 * Each is called before the statement it announces is sent: a statement on its way when the caller
 * quits may still be carried out by the server.
 */
export interface SwapHooks {
  /** The name the target's data takes while it is out of the way. */
  readonly onAside?: (previous: string) => void;
  /**
   * true just before the target is closed to connections (--terminate-connections), false once a
   * database that accepts connections is under the target name again. The flag travels with the
   * database through its renames: the target put back by hand is still closed.
   */
  readonly onClosed?: (closed: boolean) => void;
  /**
   * dropReplaced: the database being dropped and the statement that drops it for the restoring
   * role, once the restored copy is in place and just before the drop, which may take minutes: a
   * caller that quits meanwhile must say the restored copy is in place and what is left to drop.
   */
  readonly onDropping?: (previous: string, drop: string) => void;
  /**
   * The operator's lines: once the restored copy has the target name, that it is in place, then the
   * drop of the database it replaced (dropReplaced, which may take minutes) and its end. A run
   * killed during that drop has then said that the restored copy is in place.
   */
  readonly log?: (line: string) => void;
}

/** What the swap does beyond the guards. */
export interface SwapOptions extends TargetGuards {
  /** Drop the database it replaced. By default it is kept under its `_old_` name (swapIn). */
  readonly dropReplaced?: boolean;
  /**
   * The restore's stop (Ctrl-C, the Lambda's deadline): heard once the guards have run again,
   * before the swap's first change, and not after it (stopped half-way, it would leave the target
   * aside). The guards' reads may take a while on a server slow to answer: a stop that came
   * meanwhile must not start a swap the Lambda's stop margin does not hold.
   */
  readonly signal?: AbortSignal;
  /**
   * Without terminateConnections, the sessions found in the target now (`who`: sessionsWho), after
   * the whole load, are asked about instead of refused: true ends them as terminateConnections
   * does, false refuses as the guards would. A stray client costs the operator who is watching a
   * question, not the load. Absent (the Lambda, a script): refused. Sessions this role may not end
   * are refused either way (asking would not help).
   */
  readonly askEndSessions?: (who: string, count: number) => Promise<boolean>;
}

/** What the swap did: `kept`, the database that holds what the target was before it (undefined when none is left). */
export interface Swapped {
  readonly replaced: boolean;
  readonly kept?: string;
  /** dropReplaced: the database replaced is known dropped (its DROP answered); not when the answer was lost (a warning says it may have been). */
  readonly dropped?: boolean;
}

/**
 * Puts `staging` under the target name: a rename when the target does not exist; otherwise the
 * target is renamed aside and the staging database takes its name. The database replaced is kept
 * under its `_old_` name unless `dropReplaced`: on the worst day it is the only copy of what was
 * written since the backup (a restore over a corrupted production), and dropping it at once left
 * no way back; keeping it costs no more room than the swap already needed (the staging copy and the
 * target coexist during the load). A copy kept with --terminate-connections is reopened, so that it
 * can be read (the flag went with it when the target was closed). The guards run again first (a
 * session may have connected during the restore). A failure says in which state it left the
 * target; the staging database is the caller's to drop, unless the failure is Unsettled.
 * A rename whose answer is lost stops the swap (Unsettled, runOrUnsettled): nothing is dropped.
 */
export async function swapIn(
  session: AdminSession,
  connection: PgConnection,
  staging: string,
  target: string,
  guards: SwapOptions,
  warn: (line: string) => void,
  hooks: SwapHooks = {},
): Promise<Swapped> {
  // A run that may ask has the guards let through the sessions this role may end (those it may not
  // end are still refused): the answer ends them, or refuses them as the guards would have.
  const ask = guards.terminateConnections ? undefined : guards.askEndSessions;
  let state = await checkTarget(await session.client(), connection, target, { ...guards, terminateConnections: guards.terminateConnections || ask !== undefined });
  let terminate = guards.terminateConnections === true;
  if (ask !== undefined && state.sessions.length > 0) {
    if (!(await ask(sessionsWho(state.sessions), state.sessions.length))) throw sessionsRefusal(target, state.sessions);
    terminate = true;
    // The answer may have taken minutes, and clients may have connected meanwhile: the target is read
    // again, so that the warning names every session the swap ends, and one this role may not end
    // is refused before the target is closed or any session ended.
    state = await checkTarget(await session.client(), connection, target, { ...guards, terminateConnections: true });
  }
  guards.signal?.throwIfAborted();
  const previous = state.exists ? stagingName(target, 'old') : undefined;
  const reopenToo = terminate ? ` and ${reopenDatabaseStatement(target)}` : '';
  // What an operator is told when a rename's answer is lost: where each copy may be, once it has ended.
  const unknown = (lost: string): string =>
    previous === undefined
      ? `${lost}: once it has ended there, look with SELECT datname FROM pg_database WHERE datname IN ('${target}', '${staging}'): if "${target}" exists and "${staging}" does not, the restored copy is in place; if "${staging}" still exists, it was not swapped in: ALTER DATABASE ${quoteIdent(staging)} RENAME TO ${quoteIdent(target)} puts it in; nothing was dropped`
      : `${lost}: once it has ended there, look with SELECT datname FROM pg_database WHERE datname IN ('${target}', '${previous}', '${staging}'): if "${target}" is missing, its data is in "${previous}": put it back with ALTER DATABASE ${quoteIdent(previous)} RENAME TO ${quoteIdent(target)}${reopenToo}, or put the restored copy "${staging}" in its place with ALTER DATABASE ${quoteIdent(staging)} RENAME TO ${quoteIdent(target)}; if "${target}" exists and "${staging}" does not, the restored copy is in place and "${previous}" is what "${target}" was; if "${target}" and "${staging}" both exist, nothing was swapped: ${terminate ? `${reopenDatabaseStatement(target)} reopens "${target}" to its clients, and ` : ''}${dropDatabaseStatement(staging, session.superuser)} removes the restored copy${terminate ? `; "${previous}" keeps the target's closed flag: ${reopenDatabaseStatement(previous)} reopens it to be read` : ''}; nothing was dropped`;
  const rename = (from: string, to: string): Promise<void> => {
    const sql = `ALTER DATABASE ${quoteIdent(from)} RENAME TO ${quoteIdent(to)}`;
    return runOrUnsettled(session, sql, unknown, (client) => boundedQuery(client, sql, SWAP_STATEMENT_BOUND_MS));
  };
  // On the session's current connection: one that went unanswered was ended (boundedQuery), and
  // the next statement, the caller's drop of the staging database included, runs on a new one.
  const query = async (sql: string, values?: unknown[]): Promise<unknown> => boundedQuery(await session.client(), sql, SWAP_STATEMENT_BOUND_MS, values);

  if (previous === undefined) {
    try {
      await rename(staging, target);
    } catch (error) {
      if (error instanceof Unsettled) throw error;
      throw new OperatorError(`cannot rename the restored database to "${target}" (${oneLine(error)}); target "${target}" untouched`);
    }
    return { replaced: false };
  }
  // With --terminate-connections the target is closed to connections first: whatever happens
  // next, it must be reopened under the target name, or the application cannot connect. The line
  // says it was: the operator saw its sessions ended, and a target left closed is an outage.
  const reopen = async (): Promise<string> =>
    !terminate
      ? ''
      : query(reopenDatabaseStatement(target)).then(
          () => {
            hooks.onClosed?.(false);
            return ', open to connections again';
          },
          (error: unknown) => `; it could not be reopened (${oneLine(error)}): run ${reopenDatabaseStatement(target)}`,
        );
  try {
    if (terminate) {
      // Block reconnects, then end the sessions: the rename needs a database nobody is in. Who is
      // cut off goes to `warn`, not the progress log: ending other people's sessions on production
      // is kept for the audit after the incident (stderr off a terminal, the result's warnings,
      // logger.warn in Lambda), whether or not anyone watches the progress.
      if (state.sessions.length > 0) warn(`swap: ending ${countOf(state.sessions.length, 'session')} in ${target} (${guards.terminateConnections ? '--terminate-connections' : 'answered yes at the question'}): ${sessionsWho(state.sessions)}`);
      hooks.onClosed?.(true);
      await query(`ALTER DATABASE ${quoteIdent(target)} ALLOW_CONNECTIONS false`);
      // Not autovacuum workers: the rename ends those, and terminating one is refused to a role that is not a superuser.
      await query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND ${CLIENT_SESSION}`, [target]);
      await waitForNoSessions(await session.client(), target);
    }
    hooks.onAside?.(previous);
    await rename(target, previous);
  } catch (error) {
    if (error instanceof Unsettled) throw error;
    // Closing the target or ending its sessions unanswered (the rename aside's is Unsettled above):
    // no rename was sent, but the target may be closed, and the session cannot reopen it.
    if (error instanceof NoAnswer) {
      throw new Unsettled(
        `cannot take "${target}" out of the way: ${oneLine(error)} (the server may still be running it); "${target}" was not renamed: look with SELECT datname, datallowconn FROM pg_database WHERE datname IN ('${target}', '${staging}'): if "${target}" does not accept connections, ${reopenDatabaseStatement(target)} reopens it; the restored copy "${staging}" was kept: ${dropDatabaseStatement(staging, session.superuser)} removes it; nothing was dropped`,
      );
    }
    // A refusal (a lock held, sessions still in it) is the clients'; a lost connection is not.
    const retry = isRefusedStatement(error) ? 'stop its clients and retry' : 'retry';
    throw new OperatorError(`cannot take "${target}" out of the way (${oneLine(error)}); target "${target}" untouched${await reopen()}: ${retry}`);
  }
  try {
    await rename(staging, target);
  } catch (error) {
    if (error instanceof Unsettled) throw error;
    const why = oneLine(error);
    // A session that could not connect again sent no rename: trying the way back would only wait
    // for another connection (time the Lambda's stop margin does not hold) to fail the same way.
    const back =
      error instanceof SessionNotBack
        ? error
        : await rename(previous, target).then(
            () => undefined,
            (backError: unknown) => backError,
          );
    if (back instanceof Unsettled) throw back;
    if (back !== undefined) {
      throw new Unsettled(
        `cannot rename the restored database to "${target}" (${why}), nor put the previous one back (${back === error ? 'not tried: the same session' : oneLine(back)}): "${target}" is missing and its data is in "${previous}": ALTER DATABASE ${quoteIdent(previous)} RENAME TO ${quoteIdent(target)}${reopenToo}; the restored copy "${staging}" was kept: ALTER DATABASE ${quoteIdent(staging)} RENAME TO ${quoteIdent(target)} puts it in instead`,
      );
    }
    throw new OperatorError(`cannot rename the restored database to "${target}" (${why}); the previous database was put back, target "${target}" untouched${await reopen()}`);
  }
  // The restored copy, created open, has the target name now.
  hooks.onClosed?.(false);
  hooks.log?.(`swap: the restored copy is in place as ${target}`);
  // The restored copy is in place: a failure now is not the restore's, only a kept copy closed or
  // space left behind. The session may need a new connection here (after a lost answer, or a server
  // that restarted), and taking the lock again may fail: that too is not a failed swap.
  if (!guards.dropReplaced) {
    if (terminate) {
      await query(reopenDatabaseStatement(previous)).catch((error: unknown) =>
        warn(`could not reopen "${previous}", what "${target}" was before this restore, to connections (${oneLine(error)}): to read it, ${reopenDatabaseStatement(previous)}`),
      );
    }
    return { replaced: true, kept: previous };
  }
  hooks.onDropping?.(previous, dropDatabaseStatement(previous, session.superuser));
  hooks.log?.(
    `swap: dropping ${previous}, what ${target} was before this restore (if no "swap: dropped" line follows, it may have been dropped: look with SELECT datname FROM pg_database WHERE datname = '${previous}')`,
  );
  // 'dropped', 'kept' (refused, or never sent), or 'unknown' (sent, its answer lost): only a database
  // known to be left is reported as kept, a way back the operator may count on.
  const dropped = await session
    .client()
    .then((client) => dropDatabase(client, previous))
    .then(
      () => {
        hooks.log?.(`swap: dropped ${previous}`);
        return 'dropped' as const;
      },
      (error: unknown) => {
        // Sent, its answer lost (not a refusal, nor a session that could not connect to send it):
        // the server may have dropped it, and the way back it was may be gone.
        const sentUnanswered = error instanceof NoAnswer || (!(error instanceof OperatorError) && !isRefusedStatement(error));
        warn(
          sentUnanswered
            ? `the drop of "${previous}", what "${target}" was before this restore, got no answer (${oneLine(error)}): it may have been dropped; look with SELECT datname FROM pg_database WHERE datname = '${previous}', and if it is there and not needed, ${dropDatabaseStatement(previous, session.superuser)}`
            : `could not drop "${previous}", what "${target}" was before this restore (${oneLine(error)}): when it is not needed, ${dropDatabaseStatement(previous, session.superuser)}`,
        );
        return sentUnanswered ? ('unknown' as const) : ('kept' as const);
      },
    );
  return { replaced: true, kept: dropped === 'kept' ? previous : undefined, ...(dropped === 'dropped' && { dropped: true }) };
}

/**
 * Polls until the target's ended sessions are gone (milliseconds), 50 times at most and for one
 * swap statement's bound in all (what the Lambda's stop margin gives it); the rename then refuses
 * any still there.
 */
async function waitForNoSessions(admin: Client, database: string): Promise<void> {
  const until = Date.now() + SWAP_STATEMENT_BOUND_MS;
  for (let i = 0; i < 50 && Date.now() < until; i += 1) {
    const r = await boundedQuery(admin, `SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND ${CLIENT_SESSION}`, Math.max(1, until - Date.now()), [database]);
    if (r.rowCount === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
