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
  // Every temp directory of the run (the tests' own, their children's that inherit TMPDIR, the
  // cluster's) goes under one directory that the teardown removes: a run used to leave about 2,000
  // directories in /tmp, which every later CLI run that sweeps its temp parent then read.
  // 0755: the cluster's server runs as another user and must reach its data directory below it.
  const runTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-jest-'));
  fs.chmodSync(runTmp, 0o755);
  process.env.TMPDIR = runTmp;
  process.env.ATMR_TEST_RUN_TMP = runTmp;
  const cluster = await startPostgres();
  fs.writeFileSync(CLUSTER_STATE_FILE, JSON.stringify(cluster));
  process.env.ATMR_TEST_PG_STATE = CLUSTER_STATE_FILE;
  process.env.ATMR_TEST_PGHOST = cluster.host;
  process.env.ATMR_TEST_PGPORT = String(cluster.port);
  process.env.ATMR_TEST_PGUSER = cluster.user;
  process.env.ATMR_TEST_PGDATADIR = cluster.dataDir;
}
