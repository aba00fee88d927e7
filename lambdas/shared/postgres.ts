import * as path from 'node:path';
import type { Client, QueryConfig, QueryResultRow } from 'pg';
import { oneLine } from './errors';

/** What every caller of PostgreSQL's client programs (pg_dump, pg_restore, psql) shares. */

/** SQL identifier quoting (PostgreSQL's rules: double quotes, inner quotes doubled). */
export function quoteIdent(name: string): string {
  if (name.includes('\0')) throw new Error('an identifier cannot contain NUL');
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * SQL string literal (PostgreSQL's quote_literal): inner quotes doubled, and the E'' form with
 * backslashes doubled when it holds one, so that it reads the same whatever standard_conforming_strings.
 */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new Error('a literal cannot contain NUL');
  const quoted = `'${value.replaceAll("'", "''")}'`;
  return value.includes('\\') ? `E${quoted.replaceAll('\\', '\\\\')}` : quoted;
}

/** A possibly schema-qualified name (`schema.table`), each dot-separated part quoted on its own. */
export function quoteQualifiedName(name: string): string {
  return name.split('.').map(quoteIdent).join('.');
}

/**
 * The statement that reopens a database closed to connections (what a restore killed during its
 * --terminate-connections swap leaves): every message that advises it spells it the same way.
 */
export function reopenDatabaseStatement(database: string): string {
  return `ALTER DATABASE ${quoteIdent(database)} ALLOW_CONNECTIONS true`;
}

/**
 * The statement an operator is told to run to drop a database sessions may still be in: every
 * message that advises it spells it the same way. WITH (FORCE) ends them first, but PostgreSQL
 * refuses the whole statement to a role that is not a superuser while any of them is not the role's
 * own, autovacuum workers included (a restored database is where they run). A plain DROP ends
 * autovacuum workers itself (it signals them and waits up to 5 s); such a role may end its own
 * sessions (a killed load's) before it, and another role's must end first.
 */
export function dropDatabaseStatement(database: string, superuser: boolean): string {
  if (superuser) return `DROP DATABASE ${quoteIdent(database)} WITH (FORCE)`;
  return `DROP DATABASE ${quoteIdent(database)} once no session is in it (end this role's with SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${quoteLiteral(database)} AND usename = current_user)`;
}

/**
 * Runs one configured query (a critical query of the restore test or of a recovery's verification)
 * as exactly one statement in a READ ONLY transaction, always rolled back. The extended protocol
 * takes one statement: "SELECT 1; COMMIT; DELETE FROM booking" fails (cannot insert multiple
 * commands into a prepared statement) instead of ending the read-only transaction and writing.
 */
export async function queryOneStatementReadOnly<R extends QueryResultRow = Record<string, unknown>>(client: Client, sql: string): Promise<R[]> {
  await client.query('BEGIN READ ONLY');
  // queryMode is node-postgres' own option; @types/pg does not list it.
  const oneStatement = { text: sql, queryMode: 'extended' } as QueryConfig;
  let rows: R[];
  try {
    rows = (await client.query<R>(oneStatement)).rows;
  } catch (error) {
    // The statement's own error says why (a session ended by the server fails the ROLLBACK too,
    // with a bare "Connection terminated unexpectedly" that would hide it).
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
  await client.query('ROLLBACK');
  return rows;
}

/**
 * Proves the server takes writes: a temporary table created and written in a transaction that is
 * rolled back, so nothing is left on the database. A temporary table needs only TEMP on the
 * database, which PUBLIC has by default, where a table in the default schema needs CREATE on it:
 * since PostgreSQL 15 `public` no longer grants that to PUBLIC, so a role that does not own the
 * database (an RDS master user, the application's database owned by the application's role) would
 * be refused a writable server. A read-only transaction (default_transaction_read_only, a role's
 * setting) still refuses it ("cannot execute CREATE TABLE in a read-only transaction"), and so does
 * a server in recovery: its transactions are all read-only, and hot standby refuses DDL on
 * temporary tables too (it would write the system catalogs). Throws the server's error as it is;
 * the caller names what refused.
 */
export async function proveWriteRolledBack(client: Client): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query('CREATE TEMPORARY TABLE atmr_dr_write_check (checked_at timestamptz) ON COMMIT DROP');
    await client.query('INSERT INTO atmr_dr_write_check VALUES (now())');
  } finally {
    // The statement's own error says why (a session ended by the server fails the ROLLBACK too,
    // with a bare "Connection terminated unexpectedly" that would hide it); and an uncommitted
    // transaction is rolled back anyway when its session ends.
    await client.query('ROLLBACK').catch(() => undefined);
  }
}

/** Path of a PostgreSQL client program: in `binDir` when given, else the bare name (found on PATH). */
export function pgToolPath(tool: 'pg_dump' | 'pg_restore' | 'psql', binDir?: string): string {
  return binDir ? path.join(binDir, tool) : tool;
}

/**
 * A stderr line that means the run failed even if the exit code says otherwise: the client programs
 * prefix their errors with "<tool>: error:"; server errors appear as ERROR/FATAL/PANIC.
 */
export function isErrorLine(line: string): boolean {
  return /^\s*(pg_dump|pg_restore|psql|gzip|igzip)?:?\s*(error|fatal|panic):/i.test(line) || /\b(ERROR|FATAL|PANIC):/.test(line);
}

/** The line of a client program's stderr that says what went wrong, for a one-line error. */
export function firstError(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  return oneLine(lines.find(isErrorLine) ?? lines[0] ?? 'no message').slice(0, 300);
}
