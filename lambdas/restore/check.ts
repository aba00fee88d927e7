import * as os from 'node:os';
import type { Client } from 'pg';
import { LIST_COUNTED_TABLES_SQL, buildRowCountQueries, type TableRef } from '../backup/pg-tools';
import { OperatorError } from '../shared/errors';
import type { BackupManifest } from '../shared/manifest';

/**
 * The restored copy against its manifest: every table the manifest lists exists and has exactly
 * the row count taken in the dump's snapshot. Returns the total rows; throws one line naming the
 * first differences otherwise.
 *
 * Each count is a full scan of a freshly loaded table (which also sets its hint bits), so the
 * tables are counted one statement each over `connections` sessions (default: one per core),
 * each session taking the next table when it is done.
 *
 * An abort (Ctrl-C, SIGTERM, a deadline) ends the sessions at once: a count of a large table, or
 * one waiting on a lock, would otherwise outlast ECS's stop timeout or the Lambda's deadline, and
 * the process would be killed before it drops the staging database. The server may go on with a
 * count whose client is gone; the caller's DROP DATABASE ... WITH (FORCE) ends it.
 */
export async function checkRowCounts(
  connect: () => Promise<Client>,
  manifest: BackupManifest,
  manifestKey: string,
  connections = os.availableParallelism(),
  signal?: AbortSignal,
): Promise<number> {
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
    const present = new Set((await clients[0].query<TableRef>(LIST_COUNTED_TABLES_SQL)).rows.map((t) => `${t.schema}.${t.name}`));
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
          for (const row of (await client.query<{ idx: number; rows: string }>(queries[next++])).rows) {
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
  } finally {
    signal?.removeEventListener('abort', endAll);
    await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
  }
}
