import * as os from 'node:os';
import type { Client, QueryResultRow } from 'pg';
import { LIST_COUNTED_TABLES_SQL, buildRowCountQueries, type TableRef } from '../backup/pg-tools';
import { OperatorError } from '../shared/errors';
import type { BackupManifest } from '../shared/manifest';
import { connectTo, type PgConnection, type ReadBounds, ReadGivenUp, shortQuery } from '../shared/pg-connection';

/**
 * The bounds of each statement of the row counts, whatever the server's, the role's or the
 * database's settings say: `countSeconds` for one table's count (its statement_timeout; node-postgres
 * waits 20 s more for the server's own answer), a minute for a lock. Nothing legitimate locks a table
 * of the staging copy against a read once pg_restore has ended (autovacuum's locks do not conflict
 * with it): a minute's wait is someone's LOCK TABLE or ALTER TABLE in an open transaction, which
 * does not end by itself. Without them, such a lock, or a server that stopped answering, held the
 * restore with no line, its staging database never dropped.
 */
export function rowCountBounds(countSeconds: number): ReadBounds {
  return { lock_timeout: 60_000, statement_timeout: countSeconds * 1000, query_timeout: countSeconds * 1000 + 20_000 };
}

/**
 * The default: an hour per table. A count is a full scan of a freshly loaded table, which also
 * writes its hint bits: an hour reads and writes some 200 GB at gp3's baseline 125 MB/s, with the
 * whole throughput for one table; counts run `jobs` at a time and share it, so a database with
 * several large tables needs more (`restore --count-timeout`, docs/restore.md).
 */
export const ROW_COUNT_BOUNDS: ReadBounds = rowCountBounds(3600);

/**
 * The restored copy against its manifest: every table the manifest lists exists and has exactly
 * the row count taken in the dump's snapshot. Returns the total rows; throws one line naming the
 * first differences otherwise.
 *
 * Each count is a full scan of a freshly loaded table (which also sets its hint bits), so the
 * tables are counted one statement each over `connections` sessions (default: one per core),
 * each session taking the next table when it is done. Each session is bounded by `bounds`
 * (ROW_COUNT_BOUNDS): a bound that ends a count is one line naming the table, the bound and the
 * server (and `longerAdvice`, how to give the counts longer, when it is statement_timeout), and the
 * caller drops the staging copy as after any failure.
 *
 * An abort (Ctrl-C, SIGTERM, a deadline) ends the sessions at once: a count of a large table, or
 * one waiting on a lock, would otherwise outlast ECS's stop timeout or the Lambda's deadline, and
 * the process would be killed before it drops the staging database. The server may go on with a
 * count whose client is gone; the caller's DROP DATABASE ... WITH (FORCE) ends it.
 *
 * `staging`: the connection to the copy (its `database` the staging database's name). `connect`
 * opens one session to it (tests count or refuse them).
 */
export async function checkRowCounts(
  staging: PgConnection,
  manifest: BackupManifest,
  manifestKey: string,
  connections = os.availableParallelism(),
  signal?: AbortSignal,
  {
    bounds = ROW_COUNT_BOUNDS,
    connect = () => connectTo(staging, staging.database, bounds, { answeredBefore: true }),
    longerAdvice,
  }: { readonly bounds?: ReadBounds; readonly connect?: () => Promise<Client>; readonly longerAdvice?: string } = {},
): Promise<number> {
  const read = <R extends QueryResultRow>(client: Client, what: string, text: string): Promise<R[]> => shortQuery<R>(client, staging, staging.database, what, text, undefined, bounds);
  let unanswered = false;
  const clients: Client[] = [];
  const endAll = (): void => {
    for (const client of clients) client.end().catch(() => undefined);
  };
  signal?.addEventListener('abort', endAll, { once: true });
  const connectUnlessAborted = async (): Promise<void> => {
    signal?.throwIfAborted();
    const client = await connect();
    clients.push(client);
    // Aborted while this session was connecting: endAll ran without it.
    if (signal?.aborted) endAll();
    signal?.throwIfAborted();
  };
  try {
    // All the sessions at once (a connection is a round trip, and TLS and authentication on RDS),
    // not one after the other behind the list below: one per core, none beyond the manifest's tables.
    // Each one opened is in `clients`, and so ended below, even when another failed.
    const opened = await Promise.allSettled(Array.from({ length: Math.min(Math.max(1, connections), Math.max(1, manifest.tables.length)) }, connectUnlessAborted));
    const failed = opened.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason as Error;
    const present = new Set((await read<TableRef>(clients[0], 'the list of the tables', LIST_COUNTED_TABLES_SQL)).map((t) => `${t.schema}.${t.name}`));
    const differences: string[] = [];
    const counted = manifest.tables.filter((t) => {
      if (present.has(`${t.schema}.${t.name}`)) return true;
      differences.push(`${t.schema}.${t.name} is missing`);
      return false;
    });
    const queries = buildRowCountQueries(counted, 1);
    let next = 0;
    let rows = 0;
    await Promise.all(
      clients.map(async (client) => {
        while (next < queries.length) {
          const i = next++;
          for (const row of await read<{ idx: number; rows: string }>(client, `the row count of ${counted[i].schema}.${counted[i].name} (count(*))`, queries[i])) {
            const table = counted[row.idx];
            const actual = Number(row.rows);
            rows += actual;
            if (actual !== table.rows) differences.push(`${table.schema}.${table.name} has ${actual} rows, manifest ${table.rows}`);
          }
        }
      }),
    ).catch((error: unknown) => {
      // The sessions' "Connection terminated" is the abort's doing: say the abort.
      signal?.throwIfAborted();
      throw error;
    });
    if (differences.length > 0) {
      differences.sort();
      const more = differences.length > 3 ? ` and ${differences.length - 3} more` : '';
      throw new OperatorError(`restored data differs from manifest ${manifestKey}: ${differences.slice(0, 3).join('; ')}${more}; the target was not touched`);
    }
    return rows;
  } catch (error) {
    if (!(error instanceof ReadGivenUp)) throw error;
    unanswered = error.unanswered;
    // Only a count its statement_timeout ended wants a longer bound: a lock or a silent server does not.
    const advice = error.bound === 'statement_timeout' && longerAdvice !== undefined ? `; ${longerAdvice}` : '';
    throw new OperatorError(`${error.message}${advice}; the target was not touched`);
  } finally {
    signal?.removeEventListener('abort', endAll);
    // A server that sends nothing may not answer the end either: not waited for.
    const ending = Promise.all(clients.map((client) => client.end().catch(() => undefined)));
    if (!unanswered) await ending;
  }
}
