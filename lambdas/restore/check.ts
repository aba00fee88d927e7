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
 */
export async function checkRowCounts(
  connect: () => Promise<Client>,
  manifest: BackupManifest,
  manifestKey: string,
  connections = os.availableParallelism(),
): Promise<number> {
  const clients: Client[] = [];
  try {
    clients.push(await connect());
    const present = new Set((await clients[0].query<TableRef>(LIST_COUNTED_TABLES_SQL)).rows.map((t) => `${t.schema}.${t.name}`));
    const differences: string[] = [];
    const counted = manifest.tables.filter((t) => {
      if (present.has(`${t.schema}.${t.name}`)) return true;
      differences.push(`${t.schema}.${t.name} is missing`);
      return false;
    });
    const queries = buildRowCountQueries(counted, 1);
    while (clients.length < Math.min(Math.max(1, connections), queries.length)) clients.push(await connect());
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
    );
    if (differences.length > 0) {
      differences.sort();
      const more = differences.length > 3 ? ` and ${differences.length - 3} more` : '';
      throw new OperatorError(`restored data differs from manifest ${manifestKey}: ${differences.slice(0, 3).join('; ')}${more}; the target was not touched`);
    }
    return rows;
  } finally {
    await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
  }
}
