/**
 * The restore's steps (restore.ts): catalog -> guards and leftovers -> download -> archive -> load
 * -> check -> properties -> swap. This module is none of them but what the steps on the
 * server run on: the restore's session to the maintenance database, with the lock on the target's
 * name, each statement's bound on its answer, the look after an answer lost, and CREATE and DROP
 * DATABASE. It decides nothing about the target: what is refused is guards.ts' and leftovers.ts',
 * what is given properties.ts', what is swapped swap.ts'.
 *
 * The target side of a restore: the guards (name, production, non-empty, open sessions), the
 * staging database beside the target, and the swap that puts the verified copy under the target
 * name. Statements run on a maintenance connection (`postgres`), never inside the target.
 */

import type { Client, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { quoteIdent } from '../shared/postgres';
import { OperatorError, oneLine } from '../shared/errors';
import { APPLICATION_NAME, PG_CONNECT_TIMEOUT_MS, PgConnection, connectTo } from '../shared/pg-connection';
import { isQueryReadTimeout, isRefusedStatement, sqlState } from '../shared/pg-errors';

// The connection helper lives with the connection settings (the backup uses it too); restore imports it from here.

/** First key of the advisory lock a restore holds on its target's name (the second is hashtext(target)). */
export const RESTORE_LOCK_KEY = 0x61746d72; // "atmr"

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
   * After a statement whose answer never came: ends the session that sent it (in the server too,
   * so that the statement has been carried out or not, for good), then reads on a new connection
   * which of `names` exist. The next `client()` connects again and takes the lock again.
   */
  look(names: readonly string[]): Promise<Seen>;
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

/** How long a look waits for the session that lost its answer to end. */
const LOOK_SESSION_END_MS = 10_000;

/**
 * How long the server works on one of the look's queries (statement_timeout): each reads a few rows
 * of pg_stat_activity or pg_database, milliseconds; only a lock on pg_database (LOCK TABLE, VACUUM
 * FULL pg_database) or a server that no longer works makes one wait. Over it, the look has failed
 * and the line says how to look by hand.
 */
const LOOK_QUERY_TIMEOUT_MS = 5_000;

/**
 * What node-postgres waits for an answer beyond the server's own bound (query_timeout), so that the
 * server's cancel, which says what happened, comes first: a server that accepted the connection but
 * no longer answers (a failover in progress, a network that drops the packets) never sends one.
 */
const ANSWER_SLACK_MS = 2_000;

/** The longest wait for the answer to one of the look's queries. */
const LOOK_QUERY_BOUND_MS = LOOK_QUERY_TIMEOUT_MS + ANSWER_SLACK_MS;

/**
 * How long one look takes at the most: a new connection, the pg_terminate_backend of the lost
 * session, the wait for that session to end (its last poll included), and the read of pg_database.
 * The Lambda restore's deadline margin is derived from it.
 */
export const LOOK_BOUND_MS = PG_CONNECT_TIMEOUT_MS + LOOK_SESSION_END_MS + 3 * LOOK_QUERY_BOUND_MS;

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
const DROP_BOUND_MS = 10 * 60_000;

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
 * A statement that got no answer within its bound: the server may still be running it, or have
 * carried it out and lost the answer. What it did is unknown, as for a lost answer.
 */
export class NoAnswer extends Error {}

/**
 * `text` on `client`, waiting for its answer at most `boundMs`: over it, NoAnswer. node-postgres
 * gives up on the answer but not on the connection, whose next statements would wait behind it:
 * the caller ends the session (look, end) before it sends another. `what`: how the line names the
 * statement (default its text; a long query's is named by what it reads).
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
    if (isQueryReadTimeout(error)) throw new NoAnswer(`${what} got no answer within ${boundMs / 1000} s`);
    throw error;
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
 * lock unanswered. The line says which, and the caller adds what it leaves (the staging database,
 * the target), which only it knows.
 */
export class SessionNotBack extends OperatorError {}

/** The databases found under some names, and whether each accepts connections. */
export type Seen = ReadonlyMap<string, { readonly allowConnections: boolean }>;

/**
 * Opens the session and takes the target's lock. Its reads (the lock, who holds it, the role) have
 * `boundMs` each for their answer (GUARD_READ_BOUND_MS; the tests' is shorter): a server that
 * accepts the connection but does not answer them (a failover half done, a network that drops the
 * packets) ends the restore with one line, when the session opens (nothing created yet) and when it
 * connects again after its connection was lost (the caller says what it leaves).
 */
export async function openAdminSession(connection: PgConnection, maintenance: string, target: string, boundMs = GUARD_READ_BOUND_MS): Promise<AdminSession> {
  const open = async (again: boolean): Promise<{ client: Client; pid: number; alive: boolean; superuser: boolean }> => {
    // Every statement of the session, the swap's included, waits for another session's lock at most SWAP_LOCK_TIMEOUT_MS.
    // Again: the same settings worked when the session opened, so a server not reached went away.
    const client = await connectTo(connection, maintenance, { lock_timeout: SWAP_LOCK_TIMEOUT_MS }, { answeredBefore: again }).catch((error: unknown) => {
      throw again && error instanceof OperatorError ? new SessionNotBack(error.message, error.exitCode) : error;
    });
    const session = { client, pid: 0, alive: true, superuser: false };
    client.on('error', () => (session.alive = false)).on('end', () => (session.alive = false));
    try {
      session.pid = await lockTarget(client, target, boundMs);
      session.superuser = await isSuperuser(client, boundMs);
      return session;
    } catch (error) {
      await client.end().catch(() => undefined);
      if (!(error instanceof NoAnswer)) throw error;
      if (again) throw new SessionNotBack(`cannot connect the restore's session to "${maintenance}" again (its connection was lost): ${unanswered(error)}`);
      throw new OperatorError(`cannot open the restore's session to "${maintenance}": ${unanswered(error)}, then rerun the restore; nothing was created: "${target}" untouched`);
    }
  };
  let current = await open(false);
  return {
    async client() {
      if (!current.alive) current = await open(true);
      return current.client;
    },
    async look(names) {
      current.alive = false;
      await current.client.end().catch(() => undefined);
      const lost = current.pid;
      // Each query bounded by the server (statement_timeout) and by node-postgres (boundedQuery):
      // a look that waited for ever would hang the restore where it must say what it left.
      const client = await connectTo(connection, maintenance, { statement_timeout: LOOK_QUERY_TIMEOUT_MS }, { answeredBefore: true });
      const query = <R extends QueryResultRow>(text: string, values: unknown[]): Promise<QueryResult<R>> => boundedQuery<R>(client, text, LOOK_QUERY_BOUND_MS, values);
      try {
        // A server that has not seen the cut yet still runs the statement (a rename waits up to 5 s
        // for the database's sessions, or for a lock): until that session has ended, what is read
        // below may still change.
        await query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND application_name = $2', [lost, APPLICATION_NAME]);
        const endBy = Date.now() + LOOK_SESSION_END_MS;
        while ((await query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [lost])).rowCount !== 0) {
          if (Date.now() >= endBy) throw new Error(`its session ${lost} is still running after ${LOOK_SESSION_END_MS / 1000} s`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        const { rows } = await query<{ datname: string; datallowconn: boolean }>('SELECT datname, datallowconn FROM pg_database WHERE datname = ANY ($1::text[])', [names]);
        return new Map(rows.map((r) => [r.datname, { allowConnections: r.datallowconn }]));
      } finally {
        await client.end().catch(() => undefined);
      }
    },
    async fresh() {
      current.alive = false;
      await current.client.end().catch(() => undefined);
      current = await open(true);
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

/**
 * Takes the target's lock; returns the session's server process id. pg_try_advisory_lock does not
 * wait for a lock another restore holds (it answers false at once, and that restore is named), so
 * its answer is bounded as a guard's read.
 */
async function lockTarget(admin: Client, target: string, boundMs: number): Promise<number> {
  const { rows } = await boundedQuery<{ locked: boolean; pid: number }>(
    admin,
    'SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked, pg_backend_pid() AS pid',
    boundMs,
    [RESTORE_LOCK_KEY, target],
    `the lock on "${target}" that keeps a second restore out (pg_try_advisory_lock)`,
  );
  if (rows[0].locked) return rows[0].pid;
  const holder = await boundedQuery<{ pid: number; client: string | null; since: string | null }>(
    admin,
    `SELECT a.pid, host(a.client_addr) AS client, to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') AS since
       FROM pg_locks l JOIN pg_stat_activity a USING (pid)
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid AND l.objid = hashtext($2)::oid AND l.objsubid = 2`,
    boundMs,
    [RESTORE_LOCK_KEY, target],
    `the read of the restore that holds the lock on "${target}" (pg_locks, pg_stat_activity)`,
  );
  const who = holder.rows[0] ? ` (its session ${holder.rows[0].pid}${holder.rows[0].client ? ` from ${holder.rows[0].client}` : ''}, since ${holder.rows[0].since})` : '';
  throw new OperatorError(`another restore into "${target}" is running${who}: wait for it to end (or stop it), then check "${target}" before restoring again; nothing was done`, 3);
}

/**
 * `reads` on `admin`; one that got no answer (NoAnswer) ends `admin` (the session connects again
 * before its next statement, which would otherwise wait behind the unanswered one) and is the
 * one line `line` makes of it.
 */
export async function stopOnNoAnswer<T>(admin: Client, reads: () => Promise<T>, line: (why: string) => string): Promise<T> {
  try {
    return await reads();
  } catch (error) {
    if (!(error instanceof NoAnswer)) throw error;
    await admin.end().catch(() => undefined);
    throw new OperatorError(line(unanswered(error)));
  }
}

/**
 * `owner`: a role other than this one (which must be a member of it); default this role. An answer
 * that does not come within `boundMs` (CREATE_DATABASE_BOUND_MS; the tests' is shorter) is NoAnswer:
 * run it with runLooking, which looks whether the database was created.
 */
export async function createDatabase(admin: Client, name: string, owner?: string, boundMs = CREATE_DATABASE_BOUND_MS): Promise<void> {
  await boundedQuery(admin, `CREATE DATABASE ${quoteIdent(name)}${owner === undefined ? '' : ` OWNER ${quoteIdent(owner)}`} TEMPLATE template0`, boundMs);
}

/**
 * `owner` when the restoring role may create a database for it and then rename or drop it as the
 * swap and the cleanup do (CREATE DATABASE ... OWNER needs a member of that role, RENAME and DROP
 * its rights: USAGE, which a superuser has), else undefined; also for a role this server lacks.
 */
export async function backupOwnerToGive(admin: Client, owner: string | undefined): Promise<string | undefined> {
  if (owner === undefined) return undefined;
  const { rows } = await admin.query<{ may: boolean }>(
    "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1) AND pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = $1), 'USAGE') AS may",
    [owner],
  );
  return rows[0]?.may ? owner : undefined;
}

/** The role that owns `name`; undefined when there is no such database. */
export async function databaseOwner(admin: Client, name: string): Promise<string | undefined> {
  const { rows } = await admin.query<{ owner: string }>('SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1', [name]);
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
 * A failure that leaves what the caller must not touch: a statement whose answer was lost and whose
 * outcome a look could not read, or a swap that stopped with the target missing and its data aside.
 * The message says what may be where and the statements that fix it. The caller drops nothing: the
 * staging database may be the restored copy the target needs.
 */
export class Unsettled extends OperatorError {}

/** A statement for runLooking. */
export interface LookedAtStatement {
  /** The statement, as lines name it. */
  readonly sql: string;
  /** The databases whose presence tells whether it was carried out. */
  readonly names: readonly string[];
  /** From the databases found: whether it was carried out; undefined when they cannot tell. */
  readonly done: (seen: Seen) => boolean | undefined;
  /** The line when its outcome stays unknown; `lost` says what happened and what the look found. */
  readonly unknown: (lost: string) => string;
}

/**
 * Runs a statement on the admin session, and looks before speaking when its answer is lost. The
 * server's own error is thrown as it is, a cancelled statement's too (statement_timeout,
 * pg_cancel_backend: the server rolled it back and said so). An answer that never came (the
 * connection cut once the statement had left, the server gone, the session terminated) says
 * nothing of what the server did: the session is ended and a new connection reads pg_database. Carried out: returns as if the answer had come (and
 * warns). Not carried out: throws, saying so, as a refusal would. Otherwise: Unsettled.
 */
export async function runLooking(session: AdminSession, statement: LookedAtStatement, run: (client: Client) => Promise<unknown>, warn: (line: string) => void): Promise<void> {
  const client = await session.client();
  try {
    await run(client);
    return;
  } catch (error) {
    if (isRefusedStatement(error)) throw error;
    const lost = error instanceof NoAnswer ? `${oneLine(error)} (the server may still be running it)` : `the connection was lost before the server answered ${statement.sql} (${oneLine(error)})`;
    let seen: Seen;
    try {
      seen = await session.look(statement.names);
    } catch (lookError) {
      throw new Unsettled(statement.unknown(`${lost}, and a new connection failed too (${oneLine(lookError)})`));
    }
    const done = statement.done(seen);
    if (done === true) {
      warn(`${lost}; a new connection shows that it was carried out: going on`);
      return;
    }
    if (done === false) throw new Error(`${lost}; a new connection shows that it was not carried out`);
    const found = statement.names.map((name) => `"${name}" ${seen.has(name) ? 'exists' : 'missing'}`).join(', ');
    throw new Unsettled(statement.unknown(`${lost}, and a new connection shows ${found}`));
  }
}
