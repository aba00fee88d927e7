import { DatabaseError } from 'pg';

/**
 * A PostgreSQL error of the statement itself, not of the connection or the server going away: the
 * server's own error (node-postgres' DatabaseError), whose SQLSTATE is neither class 08 nor 57. A
 * socket error (EPIPE, ECONNRESET) carries a code too, but is not the server's answer.
 */
export function isRefusedStatement(error: unknown): boolean {
  if (!(error instanceof DatabaseError)) return false;
  const code = error.code ?? '';
  return !code.startsWith('08') && !code.startsWith('57');
}
