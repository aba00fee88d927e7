import { Client, type ClientConfig } from 'pg';
import { PostgresCluster } from './postgres';

/** The run's shared cluster (started by global-setup.ts), for use inside test files. */
export function testCluster(): PostgresCluster {
  const host = process.env.ATMR_TEST_PGHOST;
  const port = process.env.ATMR_TEST_PGPORT;
  const dataDir = process.env.ATMR_TEST_PGDATADIR;
  if (!host || !port || !dataDir) throw new Error('the jest globalSetup did not start PostgreSQL (test/support/global-setup.ts)');
  const user = process.env.ATMR_TEST_PGUSER ?? 'postgres';
  return { host, port: Number(port), user, dataDir, env: { PGHOST: host, PGPORT: port, PGUSER: user, PGDATABASE: 'postgres' } };
}

/**
 * A test's own client (not yet connected) that answers its 'error' event. On a 2-core CI jest runs
 * every file in one process: a session ended while its client is idle (DROP DATABASE WITH (FORCE)
 * in a teardown, a restore's --terminate-connections, pg_terminate_backend) emits 'error' on the
 * client, and an unanswered one kills the whole run, every later file with it. Tests that expect
 * the error add their own listener.
 */
export function testClient(config: ClientConfig): Client {
  const client = new Client(config);
  client.on('error', () => undefined);
  return client;
}

let counter = 0;
/** A database name unique to this worker and call, so test files never collide. */
export function uniqueDatabaseName(prefix: string): string {
  counter += 1;
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${counter}`.toLowerCase();
}

/** A lock another session holds until it ends. */
export interface HeldLock {
  release(): Promise<void>;
}

/**
 * Another session (a migration, say) holding `tables` (one, or a comma list) of `database` ACCESS
 * EXCLUSIVE in its open transaction: a backup's row count and pg_dump, or a recovery's verification,
 * queue behind it until `release()` ends that session.
 */
export async function holdTableLock(database: string, tables: string): Promise<HeldLock> {
  const cluster = testCluster();
  const holder = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database });
  await holder.connect();
  try {
    await holder.query(`BEGIN; LOCK TABLE ${tables} IN ACCESS EXCLUSIVE MODE`);
  } catch (error) {
    await holder.end();
    throw error;
  }
  return { release: () => holder.end() };
}
