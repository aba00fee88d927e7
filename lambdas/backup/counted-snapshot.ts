import type { Client } from 'pg';
import { OperatorError, oneLine } from '../shared/errors';
import { INSUFFICIENT_PRIVILEGE, LOCK_NOT_AVAILABLE, sqlState, UNDEFINED_TABLE } from '../shared/pg-errors';
import { quoteIdent } from '../shared/postgres';
import { buildLockTablesSql, LIST_COUNTED_TABLES_SQL, LOCKED_TABLE_SQL, type TableRef } from './pg-tools';

export interface CountedSnapshot {
  /** pg_export_snapshot(): what pg_dump --snapshot imports. */
  readonly snapshot: string;
  /** txid_current_snapshot() of the same snapshot, so that a reader can place the backup in time. */
  readonly txids: string;
  /** Every table the snapshot holds (LIST_COUNTED_TABLES_SQL), each held ACCESS SHARE by its transaction. */
  readonly tables: TableRef[];
}

export const LOCKED_TABLE_FIX =
  '; another session holds a table locked (a migration, VACUUM FULL, LOCK TABLE, a transaction left open): find it in pg_locks / pg_stat_activity, end it or wait for it, then run the backup again';

/** What a LOCK TABLE waiting on a table of a schema that DROP SCHEMA ... CASCADE removed ends with. */
const INVALID_SCHEMA_NAME = '3F000';
/** A table (or its schema) dropped between the list and its lock: listed again, once. */
const DROPPED = new Set([UNDEFINED_TABLE, INVALID_SCHEMA_NAME]);

/**
 * The fix of a table or sequence the backup role may not read, refused to the row counts or to
 * pg_dump: the grant docs/backup-runner.md gives the role, which covers every table and sequence,
 * today's and tomorrow's. A permission: a retry fails the same way (exit 2, privilegeRefused).
 */
export function privilegeFix(role: string): string {
  return `; the backup role "${role}" may not read it: have an admin run GRANT pg_read_all_data TO ${quoteIdent(role)} (docs/backup-runner.md, "The runner's database role"), then run the backup again`;
}

/** A refusal of the backup role's rights as the run's one line: a setting to change, not a failure to retry (exit 2). */
export function privilegeRefused(message: string, role: string): OperatorError {
  return new OperatorError(`${message}${privilegeFix(role)}`, 2);
}

/**
 * The fix of a table whose row-level security policy applies to the backup role: pg_dump runs with
 * row_security off and refuses the table ("query would be affected by row-level security policy")
 * rather than dump only the rows the policy shows, and a grant does not change that.
 */
export function rowSecurityFix(role: string): string {
  return `; the backup role "${role}" is subject to that table's row-level security, and pg_dump will not dump only the rows a policy shows it: have an admin run ALTER ROLE ${quoteIdent(role)} BYPASSRLS, or back up as the table's owner`;
}

/** A lock or a row count the server refused (pg_dump needs the same rights), as one line with its fix. */
export function countFailure(error: unknown, role: string, detail = ''): OperatorError {
  const message = `counting rows in the dump's snapshot failed: ${oneLine(error)}${detail}`;
  const code = sqlState(error);
  if (code === INSUFFICIENT_PRIVILEGE) return privilegeRefused(message, role);
  return new OperatorError(`${message}${code === LOCK_NOT_AVAILABLE ? LOCKED_TABLE_FIX : ''}`);
}

/**
 * Opens, on `client`, the REPEATABLE READ READ ONLY transaction whose snapshot pg_dump imports,
 * with every table to count already locked ACCESS SHARE, and keeps it open (the caller commits
 * once pg_dump has ended and the counts are in).
 *
 * Why the locks come first: TRUNCATE and the table-rewriting ALTER TABLEs are not MVCC-safe, once
 * committed the table is empty to older snapshots too. Counted under locks taken one batch at a
 * time while pg_dump ran, a TRUNCATE queued behind pg_dump's lock ran as soon as pg_dump ended and
 * before a later batch reached its table: the manifest said 0 rows of a table the dump holds, and
 * the restore check refused a good backup. Here, ACCESS SHARE (the only mode those commands wait
 * for) is held on every table before pg_dump starts and until both readers are done: such a
 * command committed before a lock is seen by pg_dump and the counts alike (both read after it), one
 * that comes later waits for this transaction's end. The first locks are taken before the snapshot
 * (LOCK TABLE takes none; the export is the first statement that does), so a migration waited for
 * is inside the snapshot, not a table its rewrite left empty.
 *
 * The tables are listed before BEGIN, then again in the snapshot: one created in between is in the
 * dump, so it is locked then (still before pg_dump starts) and counted. One dropped between the
 * list and its lock (or whose schema was) makes LOCK TABLE fail: the whole is done again once, with a new list.
 *
 * The session's lock_timeout bounds each LOCK TABLE; one that gives up names the table it waited
 * for (the server's message names none) and the fix, as pg_dump's own line did.
 */
export async function openCountedSnapshot(client: Client, role: string): Promise<CountedSnapshot> {
  for (let attempt = 1; ; attempt += 1) {
    let locking = (await client.query<TableRef>(LIST_COUNTED_TABLES_SQL)).rows;
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      if (locking.length > 0) await client.query(buildLockTablesSql(locking));
      const snapshot = (await client.query<{ snapshot: string }>('SELECT pg_export_snapshot() AS snapshot')).rows[0].snapshot;
      const txids = (await client.query<{ txids: string }>('SELECT txid_current_snapshot()::text AS txids')).rows[0].txids;
      const tables = (await client.query<TableRef>(LIST_COUNTED_TABLES_SQL)).rows;
      const locked = new Set(locking.map(tableKey));
      locking = tables.filter((t) => !locked.has(tableKey(t)));
      if (locking.length > 0) await client.query(buildLockTablesSql(locking));
      return { snapshot, txids, tables };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (DROPPED.has(sqlState(error) ?? '') && attempt === 1) continue;
      throw await lockFailure(client, error, locking, role);
    }
  }
}

/** A failure the server answered becomes one line with its fix; anything else (a lost connection, an abort) is the caller's. */
async function lockFailure(client: Client, error: unknown, locking: readonly TableRef[], role: string): Promise<unknown> {
  const code = sqlState(error);
  if (code === undefined) return error;
  let detail = '';
  if (code === LOCK_NOT_AVAILABLE) {
    const table = await client
      .query<{ table: string }>(LOCKED_TABLE_SQL, [locking.map((t) => t.schema), locking.map((t) => t.name)])
      .then((result) => result.rows[0]?.table)
      .catch(() => undefined);
    detail = table ? ` on LOCK TABLE ${table} IN ACCESS SHARE MODE` : ` on LOCK TABLE of the ${locking.length} tables to count`;
  } else if (DROPPED.has(code)) {
    detail = ' (dropped while the backup locked the tables to count, on two tries: let the schema change finish, then run the backup again)';
  }
  return countFailure(error, role, detail);
}

function tableKey(t: TableRef): string {
  return `${t.schema}\0${t.name}`;
}
