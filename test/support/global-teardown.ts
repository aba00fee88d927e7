import * as fs from 'node:fs';
import { stopPostgres, PostgresCluster } from './postgres';

export default async function globalTeardown(): Promise<void> {
  const stateFile = process.env.ATMR_TEST_PG_STATE;
  if (!stateFile || !fs.existsSync(stateFile)) return;
  const cluster = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as PostgresCluster;
  fs.rmSync(stateFile, { force: true });
  stopPostgres(cluster);
}
