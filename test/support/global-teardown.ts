import * as fs from 'node:fs';
import * as path from 'node:path';
import { stopPostgres, PostgresCluster } from './postgres';

export default async function globalTeardown(): Promise<void> {
  const stateFile = process.env.ATMR_TEST_PG_STATE;
  if (stateFile && fs.existsSync(stateFile)) {
    const cluster = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as PostgresCluster;
    fs.rmSync(stateFile, { force: true });
    stopPostgres(cluster);
  }
  // The run's temp directory (global-setup.ts), once the cluster that lives in it has stopped.
  const runTmp = process.env.ATMR_TEST_RUN_TMP;
  if (runTmp && path.basename(runTmp).startsWith('atmr-dr-jest-')) fs.rmSync(runTmp, { recursive: true, force: true });
}
