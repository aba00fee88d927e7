/**
 * The restore's steps (restore.ts): catalog -> guards and leftovers -> download -> archive -> load
 * -> check -> properties -> swap. This module is none of them but what the steps on the
 * server run on: the restore's session to the maintenance database, with the lock on the target's
 * name, each statement's bound on its answer, the stop after an answer lost, and CREATE and DROP
 * DATABASE. It decides nothing about the target: what is refused is guards.ts' and leftovers.ts',
 * what is given properties.ts', what is swapped swap.ts'. Statements run on a maintenance
 * connection (`postgres`), never inside the target.
 */

import type { Client, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { quoteIdent } from '../shared/postgres';
import { OperatorError, oneLine } from '../shared/errors';
import { APPLICATION_NAME, PG_CONNECT_TIMEOUT_MS, PgConnection, connectTo } from '../shared/pg-connection';
import { isQueryReadTimeout, isRefusedStatement, LOCK_NOT_AVAILABLE, sqlState } from '../shared/pg-errors';

/** First key of the advisory lock a restore holds on its target's name (the second is hashtext(target)). */
export const RESTORE_LOCK_KEY = 0x61746d72; // "atmr"

/** Takes the target's lock ($1 RESTORE_LOCK_KEY, $2 the target) if it is free: `locked` says whether it is this session's. */
const TRY_LOCK = 'pg_try_advisory_lock($1, hashtext($2)) AS locked';

/** The pg_locks row (`l`) of the target's lock ($1 RESTORE_LOCK_KEY, $2 the target) held by a backend. */
const HOLDS_LOCK = "l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid AND l.objid = hashtext($2)::oid AND l.objsubid = 2";

/**
 * The restore's session to the maintenance database. It holds an advisory lock on the target's
 * name for the whole restore, so that a second restore into the same target, started by another
 * operator, is refused (exit 3) instead of both swapping in and the first one's copy being dropped.
 * A server that restarts, or a network that drops the idle session during a long download or
 * load, ends the session and its lock: `client()` then connects again and takes the lock again
 * (refused if another restore took it meanwhile), so the restore goes on, and its cleanup can still
 * drop what it created.
 */
export interface AdminSession {
  client(): Promise<Client>;
  /**
   * A new session in place of the current one, which a statement found gone before the driver
   * said so (cut by pg_terminate_backend or a failover: client() would still hand it out). It takes
   * the lock again; one that cannot connect fails as client() does after a lost connection.
   */
  fresh(): Promise<Client>;
  end(): Promise<void>;
  /** Whether the role is a superuser: the DROP DATABASE an operator is told to run depends on it (dropDatabaseStatement). */
  readonly superuser: boolean;
}

/**
 * What node-postgres waits for an answer beyond the server's own bound (query_timeout), so that the
 * server's cancel, which says what happened, comes first: a server that accepted the connection but
 * no longer answers (a failover in progress, a network that drops the packets) never sends one.
 */
const ANSWER_SLACK_MS = 2_000;

/**
 * How long a statement of the restore's own session waits for a lock another session holds
 * (lock_timeout): a RENAME waits for the database's lock while another session holds it (an ALTER
 * DATABASE or a COMMENT ON DATABASE in an open transaction, a CREATE DATABASE copying it as its
 * template), and nothing else ends that wait. Long enough for another operator's statement to
 * commit; a holder that stays is stopped by hand, and the swap refused with the server's "canceling
 * statement due to lock timeout" leaves the target as it was.
 */
export const SWAP_LOCK_TIMEOUT_MS = 10_000;

/** How long PostgreSQL itself waits for the sessions of a database to leave before a RENAME or DROP of it fails ("being accessed by other users"). */
const DATABASE_SESSIONS_WAIT_MS = 5_000;

/**
 * The longest wait for the answer to a statement of the swap (a RENAME, closing or reopening the
 * target, ending its sessions): its lock wait, PostgreSQL's wait for the database's sessions, and
 * the slack for the server's own answer. The work itself is a catalog row: milliseconds.
 */
export const SWAP_STATEMENT_BOUND_MS = SWAP_LOCK_TIMEOUT_MS + DATABASE_SESSIONS_WAIT_MS + ANSWER_SLACK_MS;

/**
 * The longest wait for the answer to a DROP DATABASE. Its lock wait is bounded on the restore's
 * own session (SWAP_LOCK_TIMEOUT_MS), but not its work, which a legitimate DROP must be given whole: it asks
 * for an immediate checkpoint of the whole server and waits for it, then removes every file of the
 * database. After a restore's load, that checkpoint may write up to shared_buffers of dirty pages:
 * 32 GB on a 128 GB RDS instance (a quarter of its memory by default) take 4.4 minutes at gp3's
 * baseline 125 MB/s; twice that, for the files and a server busy with its clients, is 10 minutes.
 */
export const DROP_BOUND_MS = 10 * 60_000;

/**
 * The longest wait for the answer to a CREATE DATABASE (of the staging database, from template0).
 * Its lock wait is the session's (SWAP_LOCK_TIMEOUT_MS), but its work must be given whole, and it
 * may be the same as a DROP's: before PostgreSQL 15 (and with STRATEGY FILE_COPY since) it asks for
 * an immediate checkpoint of the whole server, waits for it, copies the template's files and
 * checkpoints again; from 15 on, it writes the template's blocks (about 8 MB) to the WAL and waits
 * for them to be flushed. So the DROP's bound (a checkpoint after a large load of another database
 * of the server, or of its busy clients), and not a few seconds that a legitimate creation on a
 * busy server could exceed, cancelling the restore before anything is loaded.
 */
const CREATE_DATABASE_BOUND_MS = DROP_BOUND_MS;

/**
 * The longest wait for the answer to one of the guards' reads (checkTarget): the catalogs or
 * pg_stat_activity, milliseconds, a second or two for a target of many thousands of objects
 * (CONTENTS_QUERY). A lock on a catalog (a LOCK TABLE, a VACUUM FULL) makes one wait up to the
 * session's lock_timeout, which the server answers. Beyond that and the slack for the server's
 * answer, the server accepted the connection but is not answering.
 */
export const GUARD_READ_BOUND_MS = SWAP_LOCK_TIMEOUT_MS + 8_000 + ANSWER_SLACK_MS;

/**
 * The longest the session takes to come back after its connection was lost between two
 * statements (client()): a new connection, then the lock and the role read (openAdminSession).
 */
export const RECONNECT_BOUND_MS = PG_CONNECT_TIMEOUT_MS + 2 * GUARD_READ_BOUND_MS;

/**
 * A statement that got no answer within its bound: the server may still be running it, or have
 * carried it out and lost the answer. What it did is unknown, as for a lost answer.
 */
export class NoAnswer extends Error {}

/**
 * `text` on `client`, waiting for its answer at most `boundMs`: over it, NoAnswer, and `client` is
 * ended. node-postgres gives up on the answer but not on the connection, whose next statement would
 * wait behind the unanswered one: that connection is unusable whoever sent it, so it ends here, and
 * a statement sent on it afterwards fails at once ("Client was closed"). The restore's session
 * (openAdminSession) hears the end and connects again before its next statement. Ending does not
 * wait for the server: node-postgres destroys the socket of a client whose statement is still out.
 * `what`: how the line names the statement (default its text; a long query's is named by what it
 * reads).
 */
export async function boundedQuery<R extends QueryResultRow = QueryResultRow>(client: Client, text: string, boundMs: number, values?: unknown[], what = text, { single = false } = {}): Promise<QueryResult<R>> {
  // query_timeout and queryMode are node-postgres' own per-query settings, which its types do not
  // declare. queryMode 'extended' (`single`): the server runs exactly one statement, whatever the text
  // holds: a statement read from a backup whose literal ends elsewhere than its reader thought is
  // refused, never run as two.
  const config: QueryConfig & { query_timeout: number; queryMode?: 'extended' } = { text, values, query_timeout: boundMs, ...(single ? { queryMode: 'extended' as const } : {}) };
  try {
    return await client.query<R>(config);
  } catch (error) {
    if (!isQueryReadTimeout(error)) throw error;
    await client.end().catch(() => undefined);
    throw new NoAnswer(`${what} got no answer within ${boundMs / 1000} s`);
  }
}

/**
 * What a read given up without an answer (NoAnswer) is, and what to check: the same words wherever
 * the restore stops on one before it has created anything (the guards, the session's lock).
 */
function unanswered(error: NoAnswer): string {
  return `${oneLine(error)} (the server accepts connections but does not answer: a failover in progress, a network that drops the packets, a server overloaded): check that it answers (psql -c 'SELECT 1')`;
}

/**
 * The restore's session could not connect again after its connection was lost (openAdminSession):
 * the server went away (the connection refused or timed out: a restart, a failover) or left its
 * lock unanswered, or another restore into the target took the lock meanwhile (exit 3). The line
 * says which, and the caller adds what it leaves (the staging database, the target), which only it
 * knows.
 */
export class SessionNotBack extends OperatorError {}

/**
 * Opens the session and takes the target's lock. Its reads (the lock, who holds it, the role) have
 * `boundMs` each for their answer (GUARD_READ_BOUND_MS; the tests' is shorter): a server that
 * accepts the connection but does not answer them (a failover half done, a network that drops the
 * packets) ends the restore with one line, when the session opens (nothing created yet) and when it
 * connects again after its connection was lost (the caller says what it leaves).
 */
export async function openAdminSession(connection: PgConnection, maintenance: string, target: string, boundMs = GUARD_READ_BOUND_MS): Promise<AdminSession> {
  // `previous`: the backend of the connection it replaces (connecting again), which may still hold the lock.
  const open = async (previous?: Backend): Promise<{ client: Client; alive: boolean; superuser: boolean; backend?: Backend }> => {
    const again = previous !== undefined;
    // Every statement of the session, the swap's included, waits for another session's lock at most SWAP_LOCK_TIMEOUT_MS.
    // Again: the same settings worked when the session opened, so a server not reached went away.
    const client = await connectTo(connection, maintenance, { lock_timeout: SWAP_LOCK_TIMEOUT_MS }, { answeredBefore: again }).catch((error: unknown) => {
      throw again && error instanceof OperatorError ? new SessionNotBack(error.message, error.exitCode) : error;
    });
    const session: { client: Client; alive: boolean; superuser: boolean; backend?: Backend } = { client, alive: true, superuser: false };
    client.on('error', () => (session.alive = false)).on('end', () => (session.alive = false));
    try {
      session.backend = await lockTarget(client, target, boundMs, previous);
      session.superuser = await isSuperuser(client, boundMs);
      return session;
    } catch (error) {
      await client.end().catch(() => undefined);
      if (!(error instanceof NoAnswer)) throw error;
      if (again) throw new SessionNotBack(`cannot connect the restore's session to "${maintenance}" again (its connection was lost): ${unanswered(error)}`);
      throw new OperatorError(`cannot open the restore's session to "${maintenance}": ${unanswered(error)}, then rerun the restore; nothing was created: "${target}" untouched`);
    }
  };
  let current = await open();
  return {
    async client() {
      if (!current.alive) current = await open(current.backend);
      return current.client;
    },
    async fresh() {
      current.alive = false;
      await current.client.end().catch(() => undefined);
      current = await open(current.backend);
      return current.client;
    },
    end: () => current.client.end().catch(() => undefined),
    // Read when the session opened: the lines that need it are written when the server may be gone.
    get superuser() {
      return current.superuser;
    },
  };
}

/** Whether the session's role is a superuser; the answer bounded as the guards' reads (NoAnswer). */
export async function isSuperuser(admin: Client, boundMs: number): Promise<boolean> {
  return (
    await boundedQuery<{ superuser: boolean }>(admin, 'SELECT rolsuper AS superuser FROM pg_roles WHERE rolname = current_user', boundMs, undefined, 'the read of whether the role is a superuser (pg_roles)')
  ).rows[0].superuser;
}

/** A server process of the restore's session, as pg_stat_activity names it: its pid alone may be reused. */
interface Backend {
  readonly pid: number;
  readonly since: string;
}

/**
 * Takes the target's lock. pg_try_advisory_lock does not wait for a lock another restore holds (it
 * answers false at once, and that restore is named), so its answer is bounded as a guard's read.
 * `previous`: the session's connection this one replaces. Ended after a statement on it got no
 * answer (boundedQuery), its server process keeps the lock until that statement is over (it does
 * not notice the closed connection before): it is ended on the server too, and its lock taken over
 * (pg_advisory_lock waits for it to go, within lock_timeout), not taken for another restore's.
 */
async function lockTarget(admin: Client, target: string, boundMs: number, previous?: Backend): Promise<Backend> {
  const { rows } = await boundedQuery<{ locked: boolean; pid: number; since: string }>(
    admin,
    `SELECT ${TRY_LOCK}, pid, backend_start::text AS since FROM pg_stat_activity WHERE pid = pg_backend_pid()`,
    boundMs,
    [RESTORE_LOCK_KEY, target],
    `the lock on "${target}" that keeps a second restore out (pg_try_advisory_lock)`,
  );
  const self = { pid: rows[0].pid, since: rows[0].since };
  if (rows[0].locked) return self;
  if (previous !== undefined && (await takeOverLock(admin, target, boundMs, previous))) return self;
  const holder = (
    await boundedQuery<{ pid: number; client: string | null; since: string | null; started: string }>(
      admin,
      `SELECT a.pid, host(a.client_addr) AS client, to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') AS since, a.backend_start::text AS started
         FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE ${HOLDS_LOCK}`,
      boundMs,
      [RESTORE_LOCK_KEY, target],
      `the read of the restore that holds the lock on "${target}" (pg_locks, pg_stat_activity)`,
    )
  ).rows[0];
  if (previous !== undefined && holder?.pid === previous.pid && holder.started === previous.since) {
    throw new SessionNotBack(
      `the restore's previous session ${previous.pid} (started ${previous.since}) still holds the lock on "${target}" ${SWAP_LOCK_TIMEOUT_MS / 1000} s after it was ended (pg_terminate_backend): look with SELECT pid, state, query FROM pg_stat_activity WHERE pid = ${previous.pid}`,
    );
  }
  const who = holder ? ` (its session ${holder.pid}${holder.client ? ` from ${holder.client}` : ''}, since ${holder.since})` : '';
  const running = `another restore into "${target}" is running${who}: wait for it to end (or stop it), then check "${target}" before restoring again`;
  // Connecting again, the restore may have created its staging database: its caller says what is left.
  if (previous !== undefined) throw new SessionNotBack(running, 3);
  throw new OperatorError(`${running}; nothing was done`, 3);
}

/**
 * Connecting again: ends the session's previous server process if it still holds the target's lock
 * (matched on pid, start time and that lock, so that no other session can be ended: a pid may be
 * reused, a pooler may hand the same server process to another client), then waits for the lock
 * within lock_timeout. True once the lock is this connection's. Not there any more (its statement
 * over, it saw its closed connection meanwhile), the lock may be free: tried once more. False when
 * the lock is not this connection's: another restore may have taken it between the previous
 * process's end and this wait, or that process does not go; lockTarget reads which.
 */
async function takeOverLock(admin: Client, target: string, boundMs: number, previous: Backend): Promise<boolean> {
  const ended = await boundedQuery(
    admin,
    `SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
      WHERE ${HOLDS_LOCK} AND a.pid = $3 AND a.backend_start::text = $4`,
    boundMs,
    [RESTORE_LOCK_KEY, target, previous.pid, previous.since],
    `the end of the restore's previous session ${previous.pid} (pg_terminate_backend)`,
  );
  if (ended.rowCount === 0) {
    const again = await boundedQuery<{ locked: boolean }>(admin, `SELECT ${TRY_LOCK}`, boundMs, [RESTORE_LOCK_KEY, target]);
    return again.rows[0].locked;
  }
  try {
    await boundedQuery(admin, 'SELECT pg_advisory_lock($1, hashtext($2))', boundMs, [RESTORE_LOCK_KEY, target], `the lock on "${target}" its previous session held (pg_advisory_lock)`);
    return true;
  } catch (error) {
    if (sqlState(error) !== LOCK_NOT_AVAILABLE) throw error;
    return false;
  }
}

/** `reads`; one that got no answer (NoAnswer, which ended its connection) is the one line `line` makes of it. */
export async function stopOnNoAnswer<T>(reads: () => Promise<T>, line: (why: string) => string): Promise<T> {
  try {
    return await reads();
  } catch (error) {
    if (!(error instanceof NoAnswer)) throw error;
    throw new OperatorError(line(unanswered(error)));
  }
}

/**
 * `owner`: a role other than this one (which must be a member of it); default this role. An answer
 * that does not come within `boundMs` (CREATE_DATABASE_BOUND_MS; the tests' is shorter) is NoAnswer:
 * run it with runOrUnsettled, which stops the restore then.
 */
export async function createDatabase(admin: Client, name: string, owner?: string, boundMs = CREATE_DATABASE_BOUND_MS): Promise<void> {
  await boundedQuery(admin, `CREATE DATABASE ${quoteIdent(name)}${owner === undefined ? '' : ` OWNER ${quoteIdent(owner)}`} TEMPLATE template0`, boundMs);
}

/**
 * `owner` when the restoring role may create a database for it and then rename or drop it as the
 * swap and the cleanup do (CREATE DATABASE ... OWNER needs a member of that role, RENAME and DROP
 * its rights: USAGE, which a superuser has), else undefined; also for a role this server lacks.
 * Its answer bounded as the guards' reads (NoAnswer).
 */
export async function backupOwnerToGive(admin: Client, owner: string | undefined): Promise<string | undefined> {
  if (owner === undefined) return undefined;
  const { rows } = await boundedQuery<{ may: boolean }>(
    admin,
    "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1) AND pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = $1), 'USAGE') AS may",
    GUARD_READ_BOUND_MS,
    [owner],
    `the read of whether the role may give a database to "${owner}" (pg_roles)`,
  );
  return rows[0]?.may ? owner : undefined;
}

/** The role that owns `name`; undefined when there is no such database. Its answer bounded as the guards' reads (NoAnswer). */
export async function databaseOwner(admin: Client, name: string): Promise<string | undefined> {
  const { rows } = await boundedQuery<{ owner: string }>(
    admin,
    'SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1',
    GUARD_READ_BOUND_MS,
    [name],
    `the read of who owns "${name}" (pg_database)`,
  );
  return rows[0]?.owner;
}

/**
 * Drops a database and ends its sessions. WITH (FORCE) first terminates every other backend in it,
 * and for a role that is neither a superuser nor in pg_signal_backend (the CREATEDB role an operator
 * restores with) PostgreSQL refuses the whole statement when one of them is not the role's own,
 * autovacuum workers included (42501); a freshly restored database is where they run. A plain DROP
 * ends autovacuum workers itself (it signals them and waits up to 5 s for every backend to go), so
 * after that refusal the role's own sessions (a killed load's) are terminated and a plain DROP
 * follows; another role's session still connected then fails it with "being accessed by other users".
 * Returns which of the two dropped it, for the lines that say what was done.
 */
export async function dropDatabase(admin: Client, name: string): Promise<'force' | 'plain'> {
  try {
    await boundedQuery(admin, `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`, DROP_BOUND_MS);
    return 'force';
  } catch (error) {
    if (sqlState(error) !== '42501') throw error;
    await boundedQuery(admin, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND usename = current_user AND pid <> pg_backend_pid()', SWAP_STATEMENT_BOUND_MS, [name]);
    await boundedQuery(admin, `DROP DATABASE IF EXISTS ${quoteIdent(name)}`, DROP_BOUND_MS);
    return 'plain';
  }
}

/**
 * A failure that leaves what the caller must not touch: a statement whose answer was lost, or a
 * swap that stopped with the target missing and its data aside. The message says what may be where
 * and the statements that fix it. The caller drops nothing: the staging database may be the
 * restored copy the target needs.
 */
export class Unsettled extends OperatorError {}

/**
 * Runs a statement whose outcome says where the copies are (the staging database's CREATE, the
 * swap's RENAMEs) on the restore's session. The server's own error is thrown as it is, a cancelled
 * statement's too (statement_timeout, pg_cancel_backend: the server rolled it back and said so). An
 * answer that never came (NoAnswer, the connection cut once the statement had left, the server
 * gone) says nothing of what the server did, and it may still be doing it: Unsettled, with
 * `unknown`'s line of where each copy may be and what puts it right, to be read once the statement
 * has ended. The restore does not look by itself: only ending its session on the server and waiting
 * for it would make what it reads final, for an event this rare (a cut exactly while one of these
 * statements is in flight), and the replaced database is always kept under its `_old_` name.
 */
export async function runOrUnsettled(session: AdminSession, sql: string, unknown: (lost: string) => string, run: (client: Client) => Promise<unknown>): Promise<void> {
  const client = await session.client();
  try {
    await run(client);
  } catch (error) {
    if (isRefusedStatement(error)) throw error;
    const lost = error instanceof NoAnswer ? oneLine(error) : `the connection was lost before the server answered ${sql} (${oneLine(error)})`;
    throw new Unsettled(unknown(`${lost}; the server may still be running it, in the restore's session (application_name '${APPLICATION_NAME}' in pg_stat_activity)`));
  }
}
