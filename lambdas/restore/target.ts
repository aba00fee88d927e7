import { createHash } from 'node:crypto';
import type { Client, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { dropDatabaseStatement, quoteIdent, quoteLiteral, reopenDatabaseStatement } from '../shared/postgres';
import { OperatorError, oneLine } from '../shared/errors';
import { countOf, formatBytes } from '../shared/format';
import { APPLICATION_NAME, PG_CONNECT_TIMEOUT_MS, PgConnection, connectTo, shortRead } from '../shared/pg-connection';
import { isQueryReadTimeout, isRefusedStatement, sqlState, UNDEFINED_OBJECT } from '../shared/pg-errors';
import { isOn, roleReadOnlyReset } from '../shared/read-only';
import type { DatabasePropertiesOfBackup } from './load';

// The connection helper lives with the connection settings (the backup uses it too); restore imports it from here.

/**
 * The target side of a restore: the guards (name, production, non-empty, open sessions), the
 * staging database beside the target, and the swap that puts the verified copy under the target
 * name. Statements run on a maintenance connection (`postgres`), never inside the target.
 */

export const PRODUCTION_GUARD_FLAG = '--i-understand-this-overwrites-production';
const DATABASE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export interface TargetGuards {
  /** Replace a non-empty target. */
  readonly force?: boolean;
  /** End the sessions connected to the target at swap time instead of refusing. */
  readonly terminateConnections?: boolean;
}

/**
 * `backedUp`: the database whose backup is restored, when known before the manifest is read
 * (latest's, or the one its manifest key names: backedUpDatabase). A backup accepts any name; a restore under a refused one goes through an accepted
 * one, and the rename is the operator's (docs/restore.md, "Swapping by hand").
 */
export function checkTargetName(target: string, backedUp?: string): void {
  if (!DATABASE_NAME.test(target)) {
    const accepted = target.toLowerCase().replace(/[^a-z0-9_]+/g, '_').replace(/^(?=\d)/, '_').slice(0, 63);
    const rename = target === backedUp ? `; to restore "${target}" under its own name, restore into an accepted one (e.g. --target-db ${accepted}), then ALTER DATABASE ${accepted} RENAME TO ${quoteIdent(target)} by hand (docs/restore.md)` : '';
    throw new OperatorError(`invalid --target-db "${target}": use ASCII letters, digits and underscores (at most 63, not starting with a digit)${rename}`, 2);
  }
}

export function guardProduction(target: string, protectedNames: readonly string[], allowed: boolean | undefined): void {
  if (!allowed && protectedNames.includes(target)) {
    throw new OperatorError(
      `refusing to restore over "${target}", the production/source database: restore replaces it; restore into a new name and swap (see docs/restore.md), or pass ${PRODUCTION_GUARD_FLAG} with --force (then type the database's name at the prompt, or add --yes)`,
      2,
    );
  }
}

/**
 * The database the restore connects to for CREATE/RENAME/DROP cannot be renamed while it is in use,
 * and template0/template1 are PostgreSQL's own: refused before any download, rather than failing
 * at swap time after a whole load.
 */
export function guardSystemDatabase(target: string, maintenance: string): void {
  if (target === maintenance || target === 'template0' || target === 'template1') {
    throw new OperatorError(
      `refusing --target-db "${target}": it is ${target === maintenance ? 'the maintenance database the restore works from' : 'a PostgreSQL template database'}; restore into another name (e.g. --target-db atmr_restored)`,
      2,
    );
  }
}

interface TargetState {
  readonly exists: boolean;
  /** What is in it, one `<n> <kind>` each (`3 relations`, `1 large object`): empty when nothing. */
  readonly contents: string[];
  /** `endable`: this role may end it with pg_terminate_backend (--terminate-connections); `superuser`: its role is one. */
  readonly sessions: { pid: number; application: string; role: string; endable: boolean; superuser: boolean }[];
}

/**
 * The sessions of a database that are somebody's: every backend but autovacuum workers. A rename or
 * drop of the database ends those itself (PostgreSQL signals them and waits up to 5 s), and a
 * freshly restored or busy database is where they run: counting one as a client refused a
 * `--force` restore with advice (maintenance, scale to 0) that could not help; terminating one is
 * refused to a role that is not a superuser. A role without pg_read_all_stats sees NULL as the
 * backend_type of other roles' sessions, but their role (usesysid) is shown to everybody, and an
 * autovacuum worker has none: without that second test, another role's client went unseen until the
 * swap, after the whole load.
 */
const CLIENT_SESSION = "backend_type IS DISTINCT FROM 'autovacuum worker' AND usesysid IS NOT NULL";

/**
 * Whether this role may end a session (pg_terminate_backend's own rule): a superuser ends any; any
 * other role no superuser's, and another role's only with the rights of that role or of
 * pg_signal_backend (has_privs_of_role: 'USAGE'). Membership alone ('MEMBER') is not enough: a
 * NOINHERIT member has no rights until it SET ROLEs, passed this check and was refused at the
 * swap, after the whole load.
 */
const ENDABLE_SESSION = `(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
   OR (NOT coalesce((SELECT rolsuper FROM pg_roles r WHERE r.oid = usesysid), false)
       AND (pg_has_role(current_user, usesysid, 'USAGE') OR pg_has_role(current_user, 'pg_signal_backend', 'USAGE')))`;

/**
 * Whatever a user created in a database, by kind: the swap drops all of it, so any of it makes
 * the target not empty. Tables alone were counted, and a target holding only a schema, functions
 * and large objects was replaced without --force. Parts of another object (a table's row type, an
 * array type, a range's constructors: an internal dependency) are not counted twice; objects
 * without a schema count by their oid: the ones initdb made, all that template0 holds, are below
 * 16384 (FirstNormalObjectId). Temporary schemas are sessions', not content.
 */
const CONTENTS_QUERY = `WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'),
  part AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'i')
SELECT kind, n FROM (VALUES
  ('relation', (SELECT count(*) FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f'))),
  ('schema', (SELECT count(*) FROM ns WHERE nspname <> 'public')),
  ('function', (SELECT count(*) FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM ns) AND (p.tableoid, p.oid) NOT IN (SELECT classid, objid FROM part))),
  ('type', (SELECT count(*) FROM pg_type t LEFT JOIN pg_class c ON c.oid = t.typrelid
             WHERE t.typnamespace IN (SELECT oid FROM ns) AND (t.typrelid = 0 OR c.relkind = 'c') AND (t.tableoid, t.oid) NOT IN (SELECT classid, objid FROM part))),
  ('large object', (SELECT count(*) FROM pg_largeobject_metadata)),
  ('extension', (SELECT count(*) FROM pg_extension WHERE oid >= 16384)),
  ('other object', (SELECT sum(n) FROM (
     SELECT count(*) AS n FROM pg_operator WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_opfamily WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_opclass WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_collation WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_conversion WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_cast WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_ts_config WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_ts_dict WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_ts_parser WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_ts_template WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_event_trigger WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_publication WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_foreign_data_wrapper WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_foreign_server WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_language WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_am WHERE oid >= 16384
     UNION ALL SELECT count(*) FROM pg_transform WHERE oid >= 16384 UNION ALL SELECT count(*) FROM pg_default_acl WHERE oid >= 16384) other))
) AS contents (kind, n)`;

async function inspectTarget(admin: Client, connection: PgConnection, target: string): Promise<TargetState> {
  const exists = (await boundedQuery(admin, 'SELECT 1 FROM pg_database WHERE datname = $1', GUARD_READ_BOUND_MS, [target])).rowCount === 1;
  if (!exists) return { exists, contents: [], sessions: [] };
  // Sessions first: our own short look inside the target below must not count as one.
  const sessions = await boundedQuery<{ pid: number; application: string; role: string; endable: boolean; superuser: boolean }>(
    admin,
    `SELECT pid, coalesce(nullif(application_name, ''), usename::text, '?') AS application, coalesce(usename::text, '?') AS role, ${ENDABLE_SESSION} AS endable,
            coalesce((SELECT rolsuper FROM pg_roles r WHERE r.oid = usesysid), false) AS superuser
       FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND ${CLIENT_SESSION}`,
    GUARD_READ_BOUND_MS,
    [target],
    `the read of the sessions in "${target}" (pg_stat_activity)`,
  );
  // Its lock waits bounded as the restore's own session's are: the server answers them.
  // After the restore's own session connected: a server not reached now went away.
  const client = await connectTo(connection, target, { lock_timeout: SWAP_LOCK_TIMEOUT_MS }, { answeredBefore: true });
  try {
    const result = await boundedQuery<{ kind: string; n: string }>(client, CONTENTS_QUERY, GUARD_READ_BOUND_MS, undefined, `the read of what "${target}" holds (its catalogs, on a connection to it)`);
    const contents = result.rows.filter((r) => Number(r.n) > 0).map((r) => countOf(Number(r.n), r.kind));
    return { exists, contents, sessions: sessions.rows };
  } finally {
    await client.end().catch(() => undefined);
  }
}

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
const SWAP_LOCK_TIMEOUT_MS = 10_000;

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
async function boundedQuery<R extends QueryResultRow = QueryResultRow>(client: Client, text: string, boundMs: number, values?: unknown[], what = text, { single = false } = {}): Promise<QueryResult<R>> {
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
async function isSuperuser(admin: Client, boundMs: number): Promise<boolean> {
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
 * Refuses a non-empty target without force, and a target with sessions without terminateConnections.
 * Each read is bounded (GUARD_READ_BOUND_MS): a server that accepts the connection but does not
 * answer (a failover half done, a network that drops the packets) ends it with one line, and `admin`
 * is ended, so that the session it belongs to connects again before its next statement, which
 * would otherwise wait behind the unanswered one.
 */
export async function checkTarget(admin: Client, connection: PgConnection, target: string, guards: TargetGuards): Promise<{ exists: boolean }> {
  return stopOnNoAnswer(
    admin,
    () => checkTargetReads(admin, connection, target, guards),
    (why) => `cannot check target database "${target}": ${why}, then rerun the restore; the check creates nothing: "${target}" untouched`,
  );
}

/**
 * `reads` on `admin`; one that got no answer (NoAnswer) ends `admin` (the session connects again
 * before its next statement, which would otherwise wait behind the unanswered one) and is the
 * one line `line` makes of it.
 */
async function stopOnNoAnswer<T>(admin: Client, reads: () => Promise<T>, line: (why: string) => string): Promise<T> {
  try {
    return await reads();
  } catch (error) {
    if (!(error instanceof NoAnswer)) throw error;
    await admin.end().catch(() => undefined);
    throw new OperatorError(line(unanswered(error)));
  }
}

async function checkTargetReads(admin: Client, connection: PgConnection, target: string, guards: TargetGuards): Promise<{ exists: boolean }> {
  const state = await inspectTarget(admin, connection, target);
  if (state.exists && state.contents.length > 0 && !guards.force) {
    throw new OperatorError(`target database "${target}" exists and is not empty (${state.contents.join(', ')}): pass --force to replace it, or restore into a new name`, 2);
  }
  if (state.sessions.length > 0 && !guards.terminateConnections) {
    const who = [...new Set(state.sessions.map((s) => s.application))].slice(0, 3).join(', ');
    throw new OperatorError(
      `target database "${target}" has ${state.sessions.length} open connection(s) (${who}): stop its clients (killswitch maintenance, scale the API/workers to 0), or pass --terminate-connections`,
      2,
    );
  }
  const unendable = state.sessions.filter((s) => !s.endable);
  if (unendable.length > 0) {
    const rolesOf = (sessions: typeof unendable): string[] => [...new Set(sessions.map((s) => s.role))];
    // Only a superuser may end a superuser's session: pg_signal_backend does not reach it, and
    // advising that GRANT sent the operator back to the same refusal.
    const superusers = rolesOf(unendable.filter((s) => s.superuser));
    // A member of pg_signal_backend without its rights has been granted it already: a plain GRANT
    // would change nothing. Up to PostgreSQL 15 that is a NOINHERIT role; from 16, a grant made
    // WITH INHERIT FALSE (a NOINHERIT role's default), whatever the role's INHERIT is now.
    const { role, version, noinherit } = (
      await boundedQuery<{ role: string; version: number; noinherit: boolean }>(
        admin,
        `SELECT current_user AS role, current_setting('server_version_num')::int AS version,
                pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')
                AND CASE WHEN current_setting('server_version_num')::int >= ${PER_GRANT_INHERIT_VERSION} THEN NOT pg_has_role(current_user, 'pg_signal_backend', 'USAGE')
                         ELSE NOT (SELECT rolinherit FROM pg_roles WHERE rolname = current_user) END AS noinherit`,
        GUARD_READ_BOUND_MS,
        undefined,
        "the read of the role's membership in pg_signal_backend (pg_roles)",
      )
    ).rows[0];
    const grant = signalBackendAdvice(version, noinherit, role);
    const way =
      superusers.length > 0
        ? `or connect as a superuser (${superusers.slice(0, 3).join(', ')} ${superusers.length === 1 ? 'is one' : 'are superusers'}, and only a superuser may end a superuser's session; on RDS no role you can connect as is one, the master user included)`
        : `connect as a role that may end them (a superuser; on RDS, the master user), or ${grant}`;
    throw new OperatorError(
      `target database "${target}" has ${unendable.length} open connection(s) of role(s) ${rolesOf(unendable).slice(0, 3).join(', ')} that role "${role}" may not end (--terminate-connections): stop those clients first (killswitch maintenance, scale the API/workers to 0), ${way}`,
      2,
    );
  }
  await checkPrivileges(admin, target, state.exists);
  return state;
}

/** The first server_version_num whose role memberships carry their own INHERIT option (PostgreSQL 16). */
const PER_GRANT_INHERIT_VERSION = 160000;

/**
 * What gives `role` the rights of pg_signal_backend (--terminate-connections), for a server of
 * `version` (server_version_num); `noinherit`: the role is a member already, without the rights.
 * Up to PostgreSQL 15, a member inherits by its role's INHERIT attribute: ALTER ROLE ... INHERIT
 * gives a NOINHERIT member the rights. From 16, each grant carries its own INHERIT option, set when
 * it is made (by default from the member's INHERIT then): ALTER ROLE ... INHERIT no longer changes a
 * grant that exists, a plain GRANT of a membership that exists changes nothing, and to a NOINHERIT
 * role a new one gives no rights; GRANT ... WITH INHERIT TRUE does it in every case.
 */
export function signalBackendAdvice(version: number, noinherit: boolean, role: string): string {
  if (version >= PER_GRANT_INHERIT_VERSION) {
    const why = noinherit ? ' (it is a member of pg_signal_backend, but its membership does not inherit, and from PostgreSQL 16 that is the grant\'s own INHERIT option, which ALTER ROLE ... INHERIT does not change)' : '';
    return `have an admin run GRANT pg_signal_backend TO ${quoteIdent(role)} WITH INHERIT TRUE${why}`;
  }
  return noinherit
    ? `have an admin run ALTER ROLE ${quoteIdent(role)} INHERIT (it is a member of pg_signal_backend, but NOINHERIT: the membership gives it no rights)`
    : `have an admin run GRANT pg_signal_backend TO ${quoteIdent(role)}`;
}

/**
 * What the restore will do as this role, checked before any download: create the staging database
 * (CREATEDB), and for an existing target rename it aside and drop it (its owner, or a member of its
 * owner's role). Found at swap time instead, the refusal would come after the whole load.
 */
async function checkPrivileges(admin: Client, target: string, targetExists: boolean): Promise<void> {
  const { rows } = await boundedQuery<{ role: string; createdb: boolean; owns: boolean | null }>(
    admin,
    `SELECT current_user AS role, (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user) AS createdb,
            (SELECT pg_has_role(current_user, datdba, 'USAGE') FROM pg_database WHERE datname = $1) AS owns`,
    GUARD_READ_BOUND_MS,
    [target],
    `the read of the role's CREATEDB and of who owns "${target}" (pg_roles, pg_database)`,
  );
  const { role, createdb, owns } = rows[0];
  if (!createdb) throw cannotCreateDatabases(role);
  if (targetExists && owns === false) {
    const owner = (await boundedQuery<{ owner: string }>(admin, 'SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = $1', GUARD_READ_BOUND_MS, [target])).rows[0]?.owner ?? '?';
    throw new OperatorError(
      `role "${role}" does not own target database "${target}" (owner "${owner}"), and replacing it means renaming it aside and dropping it: connect as "${owner}", have an admin run GRANT ${quoteIdent(owner)} TO ${quoteIdent(role)}, or restore into a new name`,
      2,
    );
  }
}

/** A role without CREATEDB: the same line wherever it is found (restore, restore-test's pre-flight). */
export function cannotCreateDatabases(role: string): OperatorError {
  return new OperatorError(
    `role "${role}" cannot create databases, and a restore loads into a new staging database before it swaps it in: have an admin run ALTER ROLE ${quoteIdent(role)} CREATEDB, or connect as a role that has it (on RDS, the master user)`,
    2,
  );
}

/** Length of a sibling's id: the last 8 base-36 digits of the time in milliseconds, and 2 random ones. */
const SIBLING_ID_LENGTH = 10;
/**
 * Length of a sibling's mark: hex digits of the sha256 of the whole target name. The name is cut
 * to fit 63 bytes, so two targets that begin alike (`..._daily`, `..._hourly`) would otherwise
 * give siblings that look the same, and a restore into one took the other's staging database (a
 * live restore's, which it dropped) or `_old_` (whose RENAME it advised) for its own.
 */
const SIBLING_MARK_LENGTH = 8;
/**
 * Ids that earlier versions gave, without a mark: all the base-36 digits of the time (8 today) and
 * a random number below 1296 unpadded (1 or 2 digits), the target cut to fit that length: 9 or 10
 * characters.
 */
const LEGACY_ID_LENGTHS = [9, SIBLING_ID_LENGTH] as const;
/**
 * An earlier version's id starts with the time it was made: one that decodes to a time before
 * atmr-dr existed, or in the future, is a name somebody chose (`shop_old_2026120211`, a database
 * set aside by hand), not a leftover. A day of slack for the clock of another host.
 */
const LEGACY_SINCE = Date.UTC(2020, 0, 1);
const CLOCK_SLACK_MS = 24 * 3600 * 1000;

type SiblingKind = 'restore' | 'old';

/**
 * A sibling name, unique per run, short enough for PostgreSQL's 63-byte limit:
 * `<target>_restore_<mark>_<id>` (the staging database) or `<target>_old_<mark>_<id>` (the target
 * set aside during the swap), the target cut to fit; the mark names the whole target.
 */
export function stagingName(target: string, kind: SiblingKind = 'restore'): string {
  const id = `${Date.now().toString(36).slice(-8)}${Math.floor(Math.random() * 1296).toString(36).padStart(2, '0')}`;
  return `${siblingPrefix(target, kind)}${id}`;
}

function siblingPrefix(target: string, kind: SiblingKind): string {
  const mark = createHash('sha256').update(target).digest('hex').slice(0, SIBLING_MARK_LENGTH);
  const marker = `_${kind}_${mark}_`;
  return `${target.slice(0, 63 - marker.length - SIBLING_ID_LENGTH)}${marker}`;
}

/** An earlier version's prefix: no mark, the target cut to fit an id of this length. */
function legacyPrefix(target: string, kind: SiblingKind, idLength: number): string {
  const marker = `_${kind}_`;
  return `${target.slice(0, 63 - marker.length - idLength)}${marker}`;
}

interface Sibling {
  readonly kind: SiblingKind;
  /** When its id was made (its first 8 base-36 digits): ids sort by it. */
  readonly time: number;
  /**
   * An earlier version's name with the target cut: it fits every target that begins with the same
   * characters, so it may be another's. Named, never taken for this target's data nor dropped.
   */
  readonly cutAt?: number;
}

const idTime = (id: string): number => parseInt(id.slice(0, 8), 36);

/** Whether `name` is a sibling of `target`, of which kind; an earlier version's names too. */
function siblingOf(name: string, target: string): Sibling | undefined {
  for (const kind of ['restore', 'old'] as const) {
    const prefix = siblingPrefix(target, kind);
    const id = name.slice(prefix.length);
    if (name.startsWith(prefix) && new RegExp(`^[0-9a-z]{${SIBLING_ID_LENGTH}}$`).test(id)) return { kind, time: idTime(id) };
  }
  for (const kind of ['restore', 'old'] as const) {
    for (const length of LEGACY_ID_LENGTHS) {
      const prefix = legacyPrefix(target, kind, length);
      const id = name.slice(prefix.length);
      if (!name.startsWith(prefix) || !new RegExp(`^[0-9a-z]{${length}}$`).test(id)) continue;
      const time = idTime(id);
      if (time < LEGACY_SINCE || time > Date.now() + CLOCK_SLACK_MS) continue;
      // A target as long as what was kept, or longer, was cut: longer targets give the same name.
      const kept = 63 - `_${kind}_`.length - length;
      return { kind, time, ...(target.length >= kept ? { cutAt: kept } : {}) };
    }
  }
  return undefined;
}

/**
 * What an earlier restore into `target` left behind: when it was killed (kill -9, a crashed runner)
 * before its own cleanup, and the database it replaced, which a restore keeps unless told to drop
 * it. Runs before any download, and creates or drops nothing but a killed load's staging database:
 * - the target is missing and `<target>_old_<mark>_<id>` exists: the restore died between the
 *   swap's two renames and that database holds the data (or a restore kept it and the target was
 *   dropped since). Refused (a new restore would hide it further), with the statements that put it
 *   back or drop it.
 * - the target exists but does not accept connections (the swap with --terminate-connections closes
 *   it first): refused, with the statement that reopens it.
 * - a staging database still loaded by atmr-dr sessions only: the pg_restore (or psql) of a killed
 *   restore, which goes on loading after a kill -9 of its CLI. The caller holds the target's lock,
 *   so no live restore into this target owns it: it is dropped WITH (FORCE), which ends those
 *   sessions (and only sessions of that database), as the killed restore's own cleanup would have.
 * - any other staging database, or `<target>_old_<mark>_<id>` beside the target (a replaced
 *   database kept on purpose, or one whose drop failed): a warning with the DROP to run, never
 *   dropped here (a finished load may be wanted, a kept copy is the way back; someone else is
 *   connected to it). The warning counts the sessions connected to it.
 * Names of earlier versions (no mark) are found too; one whose target was cut to fit may be
 * another target's (whose lock this restore does not hold): a warning only, whatever its sessions,
 * and never the data of a missing target.
 * Its reads have `boundMs` each for their answer (GUARD_READ_BOUND_MS; the tests' is shorter): a
 * server that accepts the connection but does not answer them ends it with one line, and `admin` is
 * ended, as checkTarget does (the session connects again before its next statement). Each
 * database left in place is named with its size (leftoverSizes, on a short session of its own to
 * `maintenance` of `connection`), so that the on-call knows what dropping it frees.
 */
export async function checkLeftovers(admin: Client, connection: PgConnection, maintenance: string, target: string, warn: (line: string) => void, boundMs = GUARD_READ_BOUND_MS): Promise<void> {
  await stopOnNoAnswer(
    admin,
    () => checkLeftoversReads(admin, connection, maintenance, target, warn, boundMs),
    (why) => `cannot look for what an earlier restore into "${target}" left behind: ${why}, then rerun the restore; nothing was created: "${target}" untouched`,
  );
}

async function checkLeftoversReads(admin: Client, connection: PgConnection, maintenance: string, target: string, warn: (line: string) => void, boundMs: number): Promise<void> {
  // Only under the lock of openAdminSession: without it, the staging database may be a live restore's.
  // Candidates by prefix (LIKE, with `_` and `%` escaped: target names contain `_`), then exact
  // names in code: the id must be base-36 digits, so `atmr_old_2024_11_30` is not taken for one.
  const prefixes = (['restore', 'old'] as const).flatMap((kind) => [siblingPrefix(target, kind), ...LEGACY_ID_LENGTHS.map((length) => legacyPrefix(target, kind, length))]);
  const { rows } = await boundedQuery<{ datname: string; datallowconn: boolean; sessions: number }>(
    admin,
    `SELECT datname, datallowconn, (SELECT count(*)::int FROM pg_stat_activity a WHERE a.datname = d.datname AND ${CLIENT_SESSION}) AS sessions
       FROM pg_database d WHERE datname = $1 OR datname LIKE ANY ($2::text[])
      ORDER BY datname`,
    boundMs,
    [target, prefixes.map((prefix) => `${prefix.replace(/[\\%_]/g, '\\$&')}%`)],
    `the read of the databases named after "${target}" (pg_database, pg_stat_activity)`,
  );
  const targetRow = rows.find((r) => r.datname === target);
  const targetExists = targetRow !== undefined;
  const leftovers = rows
    .filter((r) => r.datname !== target)
    .flatMap((r) => {
      const sibling = siblingOf(r.datname, target);
      return sibling ? [{ ...r, ...sibling, old: sibling.kind === 'old' }] : [];
    });
  // A restore with --terminate-connections killed during its swap leaves the target closed: the
  // application cannot connect to it, and the guards below could not look inside it either.
  if (targetRow && !targetRow.datallowconn) {
    throw new OperatorError(
      `target database "${target}" does not accept connections (ALLOW_CONNECTIONS false: a restore with --terminate-connections killed during its swap leaves it so, and its clients cannot connect either): reopen it with ${reopenDatabaseStatement(target)}, then rerun the restore`,
      2,
    );
  }
  // The newest `_old_` (by the time its id was made) is the last database the target was.
  const holder = leftovers.filter((r) => r.old && r.cutAt === undefined).sort((a, b) => a.time - b.time).at(-1);
  if (!targetExists && holder) {
    const reopen = holder.datallowconn ? '' : ` and ${reopenDatabaseStatement(target)}`;
    throw new OperatorError(
      `target database "${target}" is missing and its data is in "${holder.datname}", left by a restore stopped in the middle of its swap (or kept by a restore that replaced it, if "${target}" was dropped since): put it back with ALTER DATABASE ${quoteIdent(holder.datname)} RENAME TO ${quoteIdent(target)}${reopen}, or if it is not wanted DROP DATABASE ${quoteIdent(holder.datname)}; then rerun the restore`,
      2,
    );
  }
  const sizes = leftovers.length === 0 ? new Map<string, number>() : await leftoverSizes(connection, maintenance, leftovers.map((r) => r.datname), warn);
  for (const { datname, old, sessions, cutAt } of leftovers) {
    // How a line names a database it leaves in place: with its size when it was read.
    const size = sizes.get(datname);
    const named = `"${datname}"${size === undefined ? '' : ` (${formatBytes(size)})`}`;
    const what = old ? `holds what "${target}" was before an earlier restore replaced it` : `is the staging database of an earlier restore into "${target}"`;
    const clients =
      sessions === 0
        ? []
        : (
            await boundedQuery<{ pid: number; application: string }>(
              admin,
              `SELECT pid, application_name AS application FROM pg_stat_activity WHERE datname = $1 AND ${CLIENT_SESSION} ORDER BY pid`,
              boundMs,
              [datname],
              `the read of the sessions in "${datname}" (pg_stat_activity)`,
            )
          ).rows;
    // Read only when a line below gives a DROP for a database sessions are in (dropDatabaseStatement).
    const drop = async (): Promise<string> => dropDatabaseStatement(datname, await isSuperuser(admin, boundMs));
    if (cutAt !== undefined) {
      const whose = old ? `holds what "${target}" was before an earlier restore replaced it, or what another database was` : `is the staging database of an earlier restore into "${target}" or into another database`;
      const connected = clients.length === 0 ? '' : ` and ${clients.length} session(s) are connected to it (${[...new Set(clients.map((c) => c.application || '?'))].slice(0, 3).join(', ')})`;
      warn(
        `${named} ${whose} whose name begins with the same ${cutAt} characters (an earlier version of atmr-dr kept only those)${connected}; left in place: look inside it, and when it is not needed, ${clients.length === 0 ? `DROP DATABASE ${quoteIdent(datname)}` : await drop()}`,
      );
      continue;
    }
    if (clients.length === 0) {
      warn(`${named} ${what}${old ? '' : ' (no session is connected to it)'}; left in place: when it is not needed, DROP DATABASE ${quoteIdent(datname)}`);
      continue;
    }
    if (!old && clients.every((c) => c.application === APPLICATION_NAME)) {
      const pids = clients.map((c) => c.pid).join(', ');
      const dropped = await dropDatabase(admin, datname).then(
        (way) => ({ way }),
        (error: unknown) => ({ error: oneLine(error) }),
      );
      // The line names the statement that ran: WITH (FORCE) is refused to a role that is not a
      // superuser while an autovacuum worker is inside, and then its sessions were ended first.
      const how =
        'way' in dropped && dropped.way === 'plain'
          ? 'ended its sessions (pg_terminate_backend) and dropped it with a plain DROP DATABASE (WITH (FORCE) is refused to this role while an autovacuum worker is inside)'
          : 'dropped it WITH (FORCE)';
      warn(
        'way' in dropped
          ? `"${datname}" ${what} that was killed, and its load was still running (session(s) ${pids}): ${how}, which ended that load`
          : `${named} ${what} that was killed, and its load is still running (session(s) ${pids}); could not drop it (${dropped.error}): to stop that load and drop it, ${await drop()}`,
      );
      continue;
    }
    const who = old ? 'something still uses it' : `${[...new Set(clients.map((c) => c.application || '?'))].slice(0, 3).join(', ')}: not only a killed restore's`;
    warn(`${named} ${what} and ${clients.length} session(s) are connected to it (${who}); left in place: to stop them and drop it, ${await drop()}`);
  }
}

/**
 * The size on disk of each of `names` (pg_database_size), on a short session of its own
 * (shortRead): not on the restore's locked session, whose read given up would stop the restore,
 * for a walk of a large database's files that is only information. A database this role may not
 * size (no CONNECT on it, not a member of pg_read_all_stats) has none. Given up or failed: one
 * warning, and the lines name the databases without their sizes.
 */
async function leftoverSizes(connection: PgConnection, maintenance: string, names: readonly string[], warn: (line: string) => void): Promise<ReadonlyMap<string, number>> {
  try {
    const rows = await shortRead<{ datname: string; bytes: string | null }>(
      connection,
      maintenance,
      `the read of the size of ${names.map((n) => `"${n}"`).join(', ')} (pg_database_size)`,
      `SELECT datname, CASE WHEN has_database_privilege(oid, 'CONNECT') OR pg_has_role('pg_read_all_stats', 'USAGE') THEN pg_database_size(oid) END AS bytes
         FROM pg_database WHERE datname = ANY ($1::text[])`,
      [names],
    );
    return new Map(rows.flatMap((r): [string, number][] => (r.bytes === null ? [] : [[r.datname, Number(r.bytes)]])));
  } catch (error) {
    warn(`${oneLine(error)}; the databases an earlier restore left are named below without their sizes`);
    return new Map();
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
 * Settings whose value is a list of names, each quoted as an identifier where needed (GUC_LIST_QUOTE):
 * pg_dump's own list (variable_is_guc_list_quote), as the server does not say which they are.
 */
const LIST_SETTINGS = new Set(['local_preload_libraries', 'search_path', 'session_preload_libraries', 'shared_preload_libraries', 'temp_tablespaces', 'unix_socket_directories']);

/**
 * `SET <name> TO <value>` of a setting as pg_db_role_setting stores it (`name=value`), written as
 * pg_dump writes it (makeAlterConfigCommand). A list setting is stored as its names
 * (`"$user", public`): given back as one literal, search_path would name one schema called
 * `"$user", public`; so each name is a literal of its own (`'$user', 'public'`).
 */
export function setClause(entry: string): string {
  const at = entry.indexOf('=');
  const name = entry.slice(0, at);
  const value = entry.slice(at + 1);
  const names = LIST_SETTINGS.has(name.toLowerCase()) ? splitNameList(value) : undefined;
  return `SET ${quoteIdent(name)} TO ${names !== undefined && names.length > 0 ? names.map(quoteLiteral).join(', ') : quoteLiteral(value)}`;
}

/** The names of a stored list setting (the server's SplitGUCList): `"a ""b""", c` is `a "b"` and `c`; undefined when it is not such a list. */
function splitNameList(value: string): string[] | undefined {
  const names: string[] = [];
  const item = /\s*(?:"((?:[^"]|"")*)"|([^\s,"][^\s,]*))\s*(?:,|$)/y;
  while (value.slice(item.lastIndex).trim() !== '') {
    const match = item.exec(value);
    if (match === null) return undefined;
    names.push(match[1] === undefined ? match[2] : match[1].replaceAll('""', '"'));
  }
  return names;
}

interface DatabaseProperties {
  /** The statements that give the staging database all of them but the settings. */
  readonly statements: string[];
  /** Its settings, as pg_db_role_setting stores them (`name=value`). */
  readonly settings: string[];
  /** Settings of a role in that database (ALTER ROLE ... IN DATABASE), as stored. */
  readonly roleSettings: { role: string; entry: string }[];
  /** What the database was created with and the staging database was not, one phrase each. */
  readonly notCarried: string[];
  /** The statements the server refused, each as it would set it on the target once swapped, with why. */
  readonly refused?: string[];
}

/**
 * What a database has set on itself besides its owner, which pg_restore without --create does not
 * load (the archive's DATABASE PROPERTIES entry belongs to --create): its settings (ALTER DATABASE
 * ... SET: the application's time zone, search_path), its grants (a REVOKE CONNECT ... FROM PUBLIC
 * that locks it down), its connection limit and its comment. A restore over `target` gives them
 * to `staging` before the swap, as it keeps the owner: without it the restored copy had none of
 * them, exit 0 and no word. They are read after the load: the live target's are the current ones.
 * Grants are made as the owner (the restoring role is the owner, a member of it, or a superuser:
 * checkTarget), whoever granted them: the same rights. What cannot be given this way (a role's
 * settings in that database, which need rights over that role; what a database is created with)
 * is named in one warning line, with what it was: the old database is dropped after the swap with dropReplaced, and a kept one is renamed away.
 * Returns false, doing nothing, when `target` does not exist (a new name: giveBackupProperties
 * gives the backup's instead). A statement the server refuses (a superuser's setting, for a role
 * that is not one) is named in that warning with the statement that sets it on the target
 * afterwards: the restore of the data, which is what the worst day needs, is not thrown away after
 * its whole load for it (giveProperties).
 */
export async function keepDatabaseProperties(admin: Client, target: string, staging: string, warn: (line: string) => void): Promise<boolean> {
  const give = async (): Promise<DatabaseProperties | undefined> => {
    const found = (
      await boundedQuery<DatabaseProperties>(
        admin,
        `SELECT ARRAY(SELECT format('ALTER DATABASE %I CONNECTION LIMIT %s', $2::text, d.datconnlimit) WHERE d.datconnlimit <> -1)
                || CASE WHEN d.datacl IS NULL THEN '{}' ELSE format('REVOKE ALL ON DATABASE %I FROM PUBLIC, %I', $2::text, pg_get_userbyid(s.datdba))
                     || ARRAY(SELECT format('GRANT %s ON DATABASE %I TO %s%s', a.privilege_type, $2::text, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                                            CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
                                FROM aclexplode(d.datacl) a) END
                || ARRAY(SELECT format('COMMENT ON DATABASE %I IS %L', $2::text, c) FROM shobj_description(d.oid, 'pg_database') c WHERE c IS NOT NULL) AS statements,
                coalesce((SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0), '{}') AS settings,
                coalesce((SELECT json_agg(json_build_object('role', pg_get_userbyid(r.setrole), 'entry', e) ORDER BY pg_get_userbyid(r.setrole))
                            FROM pg_db_role_setting r, unnest(r.setconfig) e WHERE r.setdatabase = d.oid AND r.setrole <> 0), '[]') AS "roleSettings",
                array_remove(ARRAY[
                  CASE WHEN d.encoding <> s.encoding THEN format('ENCODING %s', pg_encoding_to_char(d.encoding)) END,
                  CASE WHEN (d.datcollate, d.datctype) <> (s.datcollate, s.datctype) THEN format('LC_COLLATE %s, LC_CTYPE %s', d.datcollate, d.datctype) END,
                  CASE WHEN d.dattablespace <> s.dattablespace THEN format('TABLESPACE %s', (SELECT spcname FROM pg_tablespace WHERE oid = d.dattablespace)) END,
                  CASE WHEN d.datistemplate THEN 'IS_TEMPLATE true' END,
                  CASE WHEN EXISTS (SELECT FROM pg_shseclabel l WHERE l.objoid = d.oid AND l.classoid = 'pg_database'::regclass) THEN 'its security labels' END
                ], NULL) AS "notCarried"
           FROM pg_database d, pg_database s WHERE d.datname = $1 AND s.datname = $2`,
        SWAP_STATEMENT_BOUND_MS,
        [target, staging],
        `the read of what "${target}" has set on itself (pg_database, pg_db_role_setting)`,
      )
    ).rows[0];
    if (found === undefined) return undefined;
    const refused = await giveProperties(
      admin,
      found.statements.map((sql) => ({ sql, named: sql })),
      found.settings.map((entry) => ({ sql: `ALTER DATABASE ${quoteIdent(staging)} ${setClause(entry)}`, named: `ALTER DATABASE ${quoteIdent(target)} ${setClause(entry)}` })),
      `what "${target}" has set on itself`,
      `restore as the owner of "${target}", a member of it, or a superuser`,
    );
    return { ...found, refused };
  };
  const found = await stopOnNoAnswer(admin, give, (why) => `cannot give the restored copy what "${target}" has set on itself: ${why}`);
  if (found === undefined) return false;
  warnNotCarried(warn, `the replaced "${target}" to its restored copy`, [
    ...(found.refused ?? []),
    ...found.roleSettings.map(({ role, entry }) => `ALTER ROLE ${quoteIdent(role)} IN DATABASE ${quoteIdent(target)} ${setClause(entry)}`),
    ...found.notCarried,
  ]);
  return true;
}

/** A statement that gives the staging database one of its properties, and how lines name it: as it sets that on the target once swapped in. */
interface PropertyStatement {
  readonly sql: string;
  readonly named: string;
}

/**
 * Runs on `admin` the statements that give the staging database its properties, whether they are
 * the replaced target's or the backup's, and returns those the server refused, each named with why.
 * The grants, connection limit and comment (`required`) first: one of them refused fails the
 * restore before the swap (staging dropped, the target untouched), since a copy swapped in without
 * its lockdown, or without its owner's CONNECT, is a hole or an outage; `advice` says what to do.
 * Except one refused because a role it names is not on this server (a backup restored on another
 * instance): it would grant to nobody and revoke from nobody here, so leaving it out opens nothing
 * (a REVOKE ... FROM PUBLIC names no role: it is always given); it is named with the refused. A
 * setting refused (a superuser's, for a role that is not one): named, not a restore thrown away
 * after its whole load. Any failure that is not the server refusing the statement (a lost
 * connection, a failover) stops the restore the same way.
 */
async function giveProperties(admin: Client, required: readonly PropertyStatement[], settings: readonly PropertyStatement[], what: string, advice: string): Promise<string[]> {
  const refused: string[] = [];
  const run = async ({ sql, named }: PropertyStatement, stop: boolean): Promise<void> => {
    await boundedQuery(admin, sql, SWAP_STATEMENT_BOUND_MS, undefined, sql, { single: true }).catch((error: unknown) => {
      if (!isRefusedStatement(error)) throw error;
      if (stop && sqlState(error) !== UNDEFINED_OBJECT) {
        throw new OperatorError(`cannot give the restored copy ${what}: ${sql} failed (${oneLine(error)}): ${sqlState(error) === '42501' ? advice : 'rerun the restore'}`);
      }
      refused.push(`${named} (refused: ${oneLine(error)})`);
    });
  };
  for (const statement of required) await run(statement, true);
  for (const statement of settings) await run(statement, false);
  return refused;
}

/**
 * One warning when the copy is read-only for the application: `default_transaction_read_only = on`
 * set on the database itself (the runbook's "DB Read-Only" mode, as the backed-up or replaced
 * database had it), or on a role in it (ALTER ROLE ... IN DATABASE, which the backup carries too),
 * which the copy was just given. The application's sessions then refuse every write, and the
 * restore said nothing of it: the worst day's restore looked done, the application down. Which role
 * the application connects as is not known here: each role's setting in the copy is named, with the
 * statement that lifts it, on the name the copy takes. A role's setting for every database (ALTER
 * ROLE ... SET, ALTER ROLE ALL SET) is the cluster's, which the restore neither gives nor changes,
 * and is often there on purpose (the backup runner's role, docs/backup-runner.md): not named.
 */
export async function warnIfReadOnly(admin: Client, staging: string, target: string, warn: (line: string) => void): Promise<void> {
  const check = `SELECT setrole::regrole AS role, setconfig FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = ${quoteLiteral(target)})`;
  // A warning only: a read that fails or is not answered must not stop the restore (the session's
  // own troubles show at the swap, which follows); the line then says how to look.
  // role: null for the database's own row.
  const rows = await boundedQuery<{ role: string | null; entry: string }>(
    admin,
    `SELECT r.rolname AS role, e AS entry
       FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) e
      WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = $1) AND lower(split_part(e, '=', 1)) = 'default_transaction_read_only'
      ORDER BY r.rolname COLLATE "C" NULLS FIRST`,
    SWAP_STATEMENT_BOUND_MS,
    [staging],
    `the read of whether the restored copy is read-only (pg_db_role_setting)`,
  ).then(
    (result) => result.rows,
    (error: unknown) => {
      warn(`could not read whether "${target}" will be read-only for the application (${oneLine(error)}): once the restore is done, look with ${check}; default_transaction_read_only=on there means every write is refused in it for that role (every role when "-")`);
      return [];
    },
  );
  const on = rows.filter((r) => isOn(r.entry.slice(r.entry.indexOf('=') + 1)));
  if (on.length === 0) return;
  const setting = 'default_transaction_read_only = on';
  const given = 'as the database it was given its settings from had it';
  const where = on.map(({ role }) => (role === null ? `it carries ${setting} at database level, ${given}` : `role "${role}" carries ${setting} in it (ALTER ROLE ... IN DATABASE), ${given}`));
  const resets = on.map(({ role }) =>
    role === null ? `ALTER DATABASE ${quoteIdent(target)} RESET default_transaction_read_only` : roleReadOnlyReset({ role, database: target, defaultSource: 'database user' }),
  );
  const roles = on.flatMap(({ role }) => (role === null ? [] : [`"${role}"`]));
  const everyone = on.some(({ role }) => role === null);
  warn(
    `"${target}" is read-only for the application${everyone ? '' : ` if it connects as ${roles.join(' or ')}`}: ${where.join(', and ')}, so ${everyone ? 'every session on it refuses' : `the sessions of ${roles.join(' and ')} on it refuse`} writes; to let the application write: ${resets.join('; ')}`,
  );
}

/** The one warning of what the restored copy was not given: `from` says whose and to which copy. */
function warnNotCarried(warn: (line: string) => void, from: string, lost: readonly string[]): void {
  if (lost.length > 0) warn(`not carried over from ${from}: ${lost.join('; ')}: set again by hand what is still needed`);
}

/**
 * The forms of pg_dump's statements of a database's own properties (dumpDatabase,
 * dumpDatabaseConfig, buildACLCommands), each as the text before the database's name and after it,
 * and whether a refusal stops the restore (giveProperties).
 */
const BACKUP_PROPERTY_FORMS: readonly { before: RegExp; after: RegExp; required: boolean }[] = [
  { before: /^COMMENT ON DATABASE /, after: /^ IS /, required: true },
  { before: /^ALTER DATABASE /, after: /^ CONNECTION LIMIT = -?\d+;$/, required: true },
  { before: /^(?:GRANT|REVOKE) [A-Z,]+ ON DATABASE /, after: /^ (?:TO|FROM) /, required: true },
  { before: /^ALTER DATABASE /, after: /^ SET /, required: false },
  { before: /^ALTER ROLE (?:"(?:[^"]|"")+"|[^\s";]+) IN DATABASE /, after: /^ SET /, required: false },
];

/**
 * A restore into a name that does not exist gives the staging database the backed-up database's
 * own properties, from the archive (archiveNeeds): its settings (the application's search_path and
 * time zone), its roles' settings in it, its comment, its grants (a REVOKE CONNECT ... FROM PUBLIC
 * that locks it down). Without it the copy had none of them, exit 0 and no word: another
 * search_path reads another schema's tables, and on the worst day production restored under its
 * own name is a new name. pg_dump names the database `source` as fmtId writes it: bare when a
 * lower-case name needs no quotes, else quoted; each statement is run on `staging` with exactly
 * that name replaced, and named on `target` in the lines. A statement of another form (IS_TEMPLATE)
 * is not run: it is named in the warning. Its SET SESSION AUTHORIZATION around a grant by another
 * grantor, which a role that is not a superuser may not run, is left out: the grant is made as the
 * owner (keepDatabaseProperties' rule), with the same rights. The policy is keepDatabaseProperties'
 * (giveProperties).
 */
export async function giveBackupProperties(admin: Client, properties: DatabasePropertiesOfBackup, source: string, target: string, staging: string, warn: (line: string) => void): Promise<void> {
  const { statements } = properties;
  const names = [quoteIdent(source), ...(/^[a-z_][a-z0-9_$]*$/.test(source) ? [source] : [])];
  const required: PropertyStatement[] = [];
  const settings: PropertyStatement[] = [];
  const notGiven: string[] = [];
  for (const statement of statements) {
    if (/^(?:SET|RESET) SESSION AUTHORIZATION\b/.test(statement)) continue;
    const given = BACKUP_PROPERTY_FORMS.flatMap(({ before, after, required: stop }) => {
      const head = before.exec(statement)?.[0];
      const rest = head === undefined ? '' : statement.slice(head.length);
      const name = names.find((n) => rest.startsWith(n) && after.test(rest.slice(n.length)));
      if (head === undefined || name === undefined) return [];
      const on = (database: string): string => `${head}${quoteIdent(database)}${rest.slice(name.length)}`;
      return [{ statement: { sql: on(staging), named: on(target).replace(/;$/, '') }, stop }];
    })[0];
    if (given === undefined) notGiven.push(`${statement.replace(/;$/, '')} (not given: not a form this restore knows)`);
    else (given.stop ? required : settings).push(given.statement);
  }
  for (const [i, cut] of (properties.unfinished ?? []).entries()) {
    const last = i === (properties.unfinished?.length ?? 0) - 1;
    const swallowed = last && properties.quoteLeftOpen ? `; it opens a quote the text never closes, so any property entry after it (a grant, a REVOKE ... FROM PUBLIC) was read as its text and not given either` : '';
    notGiven.push(`${cut}... (not given: it has no final ";", which pg_dump always writes: the archive is cut or odd${swallowed})`);
  }
  const give = async (): Promise<string[]> => {
    // The literals read as pg_dump wrote them: with the standard_conforming_strings its SQL says
    // (on since 9.1 by default; off on a server configured so, whose backslashes are escapes),
    // whatever this session was given by the server's, the role's or the database's settings. The
    // restore's own literals (quoteLiteral) read the same either way.
    await boundedQuery(admin, `SET standard_conforming_strings = ${properties.conformingStrings ? 'on' : 'off'}`, SWAP_STATEMENT_BOUND_MS, undefined, undefined, { single: true });
    return giveProperties(admin, required, settings, `what the backed-up "${source}" had set on itself`, 'restore as a superuser');
  };
  const refused = await stopOnNoAnswer(admin, give, (why) => `cannot give the restored copy what the backed-up "${source}" had set on itself: ${why}`);
  warnNotCarried(warn, `the backed-up "${source}" to its restored copy "${target}"`, [...refused, ...notGiven]);
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

/** Whether `from` was renamed `to`, read from what exists: undefined when both or neither do. */
function renamed(seen: Seen, from: string, to: string): boolean | undefined {
  if (seen.has(to) && !seen.has(from)) return true;
  if (seen.has(from) && !seen.has(to)) return false;
  return undefined;
}

/** What the swap does beyond the guards. */
export interface SwapOptions extends TargetGuards {
  /** Drop the database it replaced. By default it is kept under its `_old_` name (swapIn). */
  readonly dropReplaced?: boolean;
}

/** What the swap did: `kept`, the database that holds what the target was before it (undefined when none is left). */
export interface Swapped {
  readonly replaced: boolean;
  readonly kept?: string;
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
 * A statement whose answer is lost is looked at (runLooking): carried out, the swap goes on.
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
  const state = await checkTarget(await session.client(), connection, target, guards);
  const previous = state.exists ? stagingName(target, 'old') : undefined;
  const reopenToo = guards.terminateConnections ? ` and ${reopenDatabaseStatement(target)}` : '';
  // What an operator is told when a lost answer leaves the state unread: where each copy may be.
  const unknown = (lost: string): string =>
    previous === undefined
      ? `${lost}: look with SELECT datname FROM pg_database WHERE datname IN ('${target}', '${staging}'): if "${target}" exists and "${staging}" does not, the restored copy is in place; if "${staging}" still exists, it was not swapped in: ALTER DATABASE ${quoteIdent(staging)} RENAME TO ${quoteIdent(target)} puts it in; nothing was dropped`
      : `${lost}: look with SELECT datname FROM pg_database WHERE datname IN ('${target}', '${previous}', '${staging}'): if "${target}" is missing, its data is in "${previous}": put it back with ALTER DATABASE ${quoteIdent(previous)} RENAME TO ${quoteIdent(target)}${reopenToo}, or put the restored copy "${staging}" in its place with ALTER DATABASE ${quoteIdent(staging)} RENAME TO ${quoteIdent(target)}; if "${target}" exists and "${staging}" does not, the restored copy is in place and "${previous}" is what "${target}" was; if "${target}" and "${staging}" both exist, nothing was swapped: ${guards.terminateConnections ? `${reopenDatabaseStatement(target)} reopens "${target}" to its clients, and ` : ''}${dropDatabaseStatement(staging, session.superuser)} removes the restored copy; nothing was dropped`;
  const rename = (from: string, to: string): Promise<void> => {
    const sql = `ALTER DATABASE ${quoteIdent(from)} RENAME TO ${quoteIdent(to)}`;
    const names = [target, staging, ...(previous === undefined ? [] : [previous])];
    return runLooking(session, { sql, names, done: (seen) => renamed(seen, from, to), unknown }, (client) => boundedQuery(client, sql, SWAP_STATEMENT_BOUND_MS), warn);
  };
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
  // next, it must be reopened under the target name, or the application cannot connect.
  const reopen = async (): Promise<string> =>
    !guards.terminateConnections
      ? ''
      : query(reopenDatabaseStatement(target)).then(
          () => {
            hooks.onClosed?.(false);
            return '';
          },
          (error: unknown) => `; it could not be reopened (${oneLine(error)}): run ${reopenDatabaseStatement(target)}`,
        );
  try {
    if (guards.terminateConnections) {
      // Block reconnects, then end the sessions: the rename needs a database nobody is in.
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
    // Closing the target or ending its sessions unanswered (the rename aside is looked at): no
    // rename was sent, but the target may be closed, and the session cannot reopen it.
    if (error instanceof NoAnswer) {
      throw new Unsettled(
        `cannot take "${target}" out of the way: ${oneLine(error)} (the server may still be running it); "${target}" was not renamed: look with SELECT datname, datallowconn FROM pg_database WHERE datname IN ('${target}', '${staging}'): if "${target}" does not accept connections, ${reopenDatabaseStatement(target)} reopens it; the restored copy "${staging}" was kept: ${dropDatabaseStatement(staging, session.superuser)} removes it; nothing was dropped`,
      );
    }
    throw new OperatorError(`cannot take "${target}" out of the way (${oneLine(error)}); target "${target}" untouched${await reopen()}: stop its clients and retry`);
  }
  try {
    await rename(staging, target);
  } catch (error) {
    if (error instanceof Unsettled) throw error;
    const why = oneLine(error);
    const back = await rename(previous, target).then(
      () => undefined,
      (backError: unknown) => backError,
    );
    if (back instanceof Unsettled) throw back;
    if (back !== undefined) {
      throw new Unsettled(
        `cannot rename the restored database to "${target}" (${why}), nor put the previous one back (${oneLine(back)}): "${target}" is missing and its data is in "${previous}": ALTER DATABASE ${quoteIdent(previous)} RENAME TO ${quoteIdent(target)}${reopenToo}; the restored copy "${staging}" was kept: ALTER DATABASE ${quoteIdent(staging)} RENAME TO ${quoteIdent(target)} puts it in instead`,
      );
    }
    throw new OperatorError(`cannot rename the restored database to "${target}" (${why}); the previous database was put back, target "${target}" untouched${await reopen()}`);
  }
  // The restored copy, created open, has the target name now.
  hooks.onClosed?.(false);
  // The restored copy is in place: a failure now is not the restore's, only a kept copy closed or
  // space left behind. The session may need a new connection here (after a lost answer, or a server
  // that restarted), and taking the lock again may fail: that too is not a failed swap.
  if (!guards.dropReplaced) {
    if (guards.terminateConnections) {
      await query(reopenDatabaseStatement(previous)).catch((error: unknown) =>
        warn(`could not reopen "${previous}", what "${target}" was before this restore, to connections (${oneLine(error)}): to read it, ${reopenDatabaseStatement(previous)}`),
      );
    }
    return { replaced: true, kept: previous };
  }
  const dropped = await session
    .client()
    .then((client) => dropDatabase(client, previous))
    .then(
      () => true,
      (error: unknown) => {
        warn(`could not drop "${previous}", what "${target}" was before this restore (${oneLine(error)}): when it is not needed, ${dropDatabaseStatement(previous, session.superuser)}`);
        return false;
      },
    );
  return { replaced: true, kept: dropped ? undefined : previous };
}

async function waitForNoSessions(admin: Client, database: string): Promise<void> {
  for (let i = 0; i < 50; i += 1) {
    const r = await boundedQuery(admin, `SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND ${CLIENT_SESSION}`, SWAP_STATEMENT_BOUND_MS, [database]);
    if (r.rowCount === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
