import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startPostgres } from './postgres';

/** File through which the teardown (a separate module instance) finds the cluster to stop. */
export const CLUSTER_STATE_FILE = path.join(os.tmpdir(), `atmr-dr-jest-pg-${process.pid}.json`);

/**
 * One throwaway PostgreSQL cluster for the whole run. Its libpq settings are exported as
 * ATMR_TEST_PG* variables (not PG*: tests must pass connection settings explicitly, so that a
 * "missing PGHOST" test means what it says). Workers inherit them.
 */
export default async function globalSetup(): Promise<void> {
  const cluster = await startPostgres();
  fs.writeFileSync(CLUSTER_STATE_FILE, JSON.stringify(cluster));
  process.env.ATMR_TEST_PG_STATE = CLUSTER_STATE_FILE;
  process.env.ATMR_TEST_PGHOST = cluster.host;
  process.env.ATMR_TEST_PGPORT = String(cluster.port);
  process.env.ATMR_TEST_PGUSER = cluster.user;
  process.env.ATMR_TEST_PGDATADIR = cluster.dataDir;
}
