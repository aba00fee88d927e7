/**
 * A PostgreSQL error of the statement itself, not of the connection or the server going away: the
 * server's own error, whose SQLSTATE is neither class 08 nor 57. A socket error (EPIPE, ECONNRESET)
 * carries a code too, but is not the server's answer. Told by its shape (node-postgres'
 * DatabaseError carries the server's severity and a five-character SQLSTATE), not by `instanceof`:
 * importing node-postgres here would load it in every CLI command whose code imports this file,
 * before the command knows it will connect (test/cli/concerns.test.ts).
 */
export function isRefusedStatement(error: unknown): boolean {
  const e = error as { severity?: unknown; code?: unknown } | null | undefined;
  if (typeof e?.severity !== 'string' || typeof e.code !== 'string' || !/^[0-9A-Z]{5}$/.test(e.code)) return false;
  return !e.code.startsWith('08') && !e.code.startsWith('57');
}
