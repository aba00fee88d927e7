/** SQLSTATE query_canceled: a statement_timeout, or a cancel request (pg_cancel_backend, Ctrl-C in psql). */
export const QUERY_CANCELED = '57014';

/** SQLSTATE lock_not_available: a wait for another session's lock that lock_timeout ended (or a NOWAIT refused). */
export const LOCK_NOT_AVAILABLE = '55P03';

/** SQLSTATE read_only_sql_transaction: a write refused by a read-only transaction (a standby, default_transaction_read_only). */
export const READ_ONLY_SQL_TRANSACTION = '25006';

/** SQLSTATE insufficient_privilege: a statement the role may not run ("must be owner of database ...", "permission denied for table ..."). */
export const INSUFFICIENT_PRIVILEGE = '42501';

/** SQLSTATE invalid_password: the login refused on its password (PostgreSQL answers an unknown role alike, not to tell who exists). */
export const INVALID_PASSWORD = '28P01';

/** SQLSTATE undefined_table: a statement names a table (or view) the database does not have. */
export const UNDEFINED_TABLE = '42P01';

/** SQLSTATE undefined_object: among others, a role a statement names that the server does not have. */
export const UNDEFINED_OBJECT = '42704';

/**
 * SQLSTATE too_many_connections: the server refused a session, its slots full ("remaining connection
 * slots are reserved ...", "sorry, too many clients already") or a role's or database's CONNECTION LIMIT reached.
 */
export const TOO_MANY_CONNECTIONS = '53300';

/**
 * The SQLSTATE of an error the server sent, undefined for any other error. Told by its shape
 * (node-postgres' DatabaseError carries the server's severity and a five-character SQLSTATE), not by
 * `instanceof`: importing node-postgres here would load it in every CLI command whose code imports
 * this file, before the command knows it will connect (test/cli/concerns.test.ts). A socket error
 * (EPIPE, ECONNRESET) carries a code too, but no severity: it is not the server's answer.
 */
export function sqlState(error: unknown): string | undefined {
  const e = error as { severity?: unknown; code?: unknown } | null | undefined;
  return typeof e?.severity === 'string' && typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
}

/**
 * node-postgres gave up waiting for a statement's answer (its query_timeout): a plain Error told by
 * its message alone, with no code and no SQLSTATE, since the server never answered. Compared here
 * only, and checked against the real driver (test/integration/pg-errors.test.ts): a driver that
 * rewords it fails that test, instead of turning every bounded wait into an ordinary error.
 */
export function isQueryReadTimeout(error: unknown): boolean {
  return error instanceof Error && sqlState(error) === undefined && error.message === 'Query read timeout';
}

/**
 * A PostgreSQL error of the statement itself, not of the connection or the server going away: the
 * server's own error (sqlState), whose SQLSTATE is neither class 08 (connection) nor class 57
 * (operator intervention: the session terminated, the server shutting down), except
 * query_canceled. A cancelled statement is the server's answer: it stopped that statement and
 * rolled it back, and the session goes on.
 */
export function isRefusedStatement(error: unknown): boolean {
  const code = sqlState(error);
  if (code === undefined) return false;
  if (code === QUERY_CANCELED) return true;
  return !code.startsWith('08') && !code.startsWith('57');
}
