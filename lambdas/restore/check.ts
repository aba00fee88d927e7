import { Client } from 'pg';
import { LIST_COUNTED_TABLES_SQL, buildRowCountQueries, type TableRef } from '../backup/pg-tools';
import { OperatorError } from '../shared/errors';
import type { BackupManifest } from '../shared/manifest';

/**
 * The restored copy against its manifest: every table the manifest lists exists and has exactly
 * the row count taken in the dump's snapshot. Returns the total rows; throws one line naming the
 * first differences otherwise.
 */
export async function checkRowCounts(client: Client, manifest: BackupManifest, manifestKey: string): Promise<number> {
  const present = new Set((await client.query<TableRef>(LIST_COUNTED_TABLES_SQL)).rows.map((t) => `${t.schema}.${t.name}`));
  const differences: string[] = [];
  const counted = manifest.tables.filter((t) => {
    if (present.has(`${t.schema}.${t.name}`)) return true;
    differences.push(`${t.schema}.${t.name} is missing`);
    return false;
  });
  let rows = 0;
  for (const query of buildRowCountQueries(counted)) {
    for (const row of (await client.query<{ idx: number; rows: string }>(query)).rows) {
      const table = counted[row.idx];
      const actual = Number(row.rows);
      rows += actual;
      if (actual !== table.rows) differences.push(`${table.schema}.${table.name} has ${actual} rows, manifest ${table.rows}`);
    }
  }
  if (differences.length > 0) {
    differences.sort();
    const more = differences.length > 3 ? ` and ${differences.length - 3} more` : '';
    throw new OperatorError(`restored data differs from manifest ${manifestKey}: ${differences.slice(0, 3).join('; ')}${more}; the target was not touched`);
  }
  return rows;
}
