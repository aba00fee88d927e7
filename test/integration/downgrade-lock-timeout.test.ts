import { spawn } from 'node:child_process';
import type { Client } from 'pg';
import { downgradeEnvironment, failedDowngradeNextSteps, LOCK_HOLDERS_SQL } from '../../lambdas/backout/migration';
import { settings } from '../lambdas/backout/fixtures';
import { testClient, testCluster, uniqueDatabaseName } from '../support/cluster';
import { waitFor, waitOf } from '../support/held-pg-dump';
import { psql } from '../support/postgres';

// The downgrade task's lock wait bound against the suite's real PostgreSQL: the task's PGOPTIONS
// (downgradeEnvironment), given to psql as ECS gives it to the container, where libpq reads it as
// it does under psycopg2 (`flask db downgrade`). The other session does what a backup's pg_dump does
// first: a repeatable-read transaction holding ACCESS SHARE on the table until the dump ends.

const cluster = testCluster();
let database: string;
let holder: Client;
let watcher: Client;

interface PsqlRun {
  readonly code: number | null;
  readonly stderr: string;
  readonly ms: number;
}

/** psql running `sql` in the scratch database with `pgOptions` as its PGOPTIONS (none if undefined). */
function psqlWith(pgOptions: string | undefined, sql: string): { done: Promise<PsqlRun>; kill: () => void } {
  const env: NodeJS.ProcessEnv = { ...process.env, ...cluster.env, PGDATABASE: database, PGSSLMODE: 'disable', PGAPPNAME: 'downgrade-under-test' };
  delete env.PGOPTIONS;
  if (pgOptions !== undefined) env.PGOPTIONS = pgOptions;
  const start = Date.now();
  // VERBOSITY verbose: psql prints the SQLSTATE before the message, as the task's log would carry psycopg2's pgcode.
  const child = spawn('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', '-c', sql], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.resume();
  const done = new Promise<PsqlRun>((resolve) => child.on('close', (code) => resolve({ code, stderr, ms: Date.now() - start })));
  return { done, kill: () => child.kill('SIGKILL') };
}

/** The pid of the downgrade's session once it waits on a lock, else null. */
async function waitingDowngrade(): Promise<number | null> {
  const { rows } = await watcher.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'downgrade-under-test' AND wait_event_type = 'Lock'", [database]);
  return rows[0]?.pid ?? null;
}

const columns = () => psql(cluster, database, "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'rides'::regclass AND attnum > 0 AND NOT attisdropped");

beforeEach(async () => {
  database = uniqueDatabaseName('downgrade_lock');
  psql(cluster, 'postgres', `CREATE DATABASE ${database}`);
  psql(cluster, database, 'CREATE TABLE rides (id int PRIMARY KEY, added_by_release text); INSERT INTO rides SELECT g, NULL FROM generate_series(1, 1000) g');
  // What a backup's pg_dump holds for its whole dump: ACCESS SHARE on every table, in one transaction, as atmr-dr.
  holder = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database, application_name: 'atmr-dr' });
  await holder.connect();
  await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; LOCK TABLE public.rides IN ACCESS SHARE MODE');
  watcher = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' });
  await watcher.connect();
});

afterEach(async () => {
  await holder.end().catch(() => undefined);
  await watcher.end().catch(() => undefined);
  psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
});

describe('the downgrade task\'s PGOPTIONS (lock_timeout) against a real PostgreSQL', () => {
  it('makes the DROP COLUMN behind a held ACCESS SHARE fail with SQLSTATE 55P03 after the bound, the column kept and the holder untouched', async () => {
    // Arrange
    const [pgOptions] = downgradeEnvironment(settings({ downgradeLockTimeoutSeconds: 2 }));
    expect(pgOptions).toEqual({ name: 'PGOPTIONS', value: '-c lock_timeout=2s' });

    // Act
    const run = await psqlWith(pgOptions.value, 'ALTER TABLE rides DROP COLUMN added_by_release').done;

    // Assert: it gave up after about the bound, not at once, and said why with its SQLSTATE
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/ERROR: {2}55P03: canceling statement due to lock timeout/);
    expect(run.ms).toBeGreaterThanOrEqual(1900);
    expect(run.ms).toBeLessThan(10_000);
    expect(columns()).toBe('id,added_by_release');
    // The backup's session is neither cancelled nor ended: its transaction still reads.
    expect((await holder.query<{ n: string }>('SELECT count(*) AS n FROM rides')).rows[0].n).toBe('1000');
  });

  it('without it, the DROP COLUMN waits past the bound, queues a plain SELECT of the table behind it, and runs only once the holder ends', async () => {
    // Arrange
    const downgrade = psqlWith(undefined, 'ALTER TABLE rides DROP COLUMN added_by_release');
    try {
      await waitFor('the downgrade to wait on the lock', async () => (await waitingDowngrade()) !== null, 10_000);

      // Act: well past the 2 s the bounded run took
      await new Promise((resolve) => setTimeout(resolve, 4000));

      // Assert: still waiting on the lock...
      const pid = await waitingDowngrade();
      expect(pid).not.toBeNull();
      expect(await waitOf(watcher, pid as number)).toBe('Lock');
      // ...and an API's read of the table now queues behind its ACCESS EXCLUSIVE request
      const read = await psqlWith('-c statement_timeout=1000', 'SELECT count(*) FROM rides').done;
      expect(read.stderr).toMatch(/57014: canceling statement due to statement timeout/);
      expect(columns()).toBe('id,added_by_release');
      await holder.end();
      const finished = await downgrade.done;
      expect(finished.code).toBe(0);
      expect(columns()).toBe('id');
    } finally {
      downgrade.kill();
    }
  });

  it('the page\'s query lists the session holding the table, named atmr-dr as a backup\'s pg_dump is, and the hint it is printed in runs as written', async () => {
    // Arrange
    const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;

    // Act
    const listed = psql(cluster, database, LOCK_HOLDERS_SQL);

    // Assert
    const rows = listed.split('\n').map((line) => line.split('|'));
    expect(rows).toContainEqual(expect.arrayContaining([String(holderPid), 'atmr-dr', 'idle in transaction']));
    // The command the page prints is that query, whole, between double quotes a shell keeps.
    const line = failedDowngradeNextSteps(settings(), 'atmr-api', 'aaa111', 'atmr-api:42', { snapshotId: 's1', pitr: null, killswitchSet: null, startedAt: '2026-06-01T10:00:00.000Z' }, new Date('2026-06-01T10:01:00.000Z'));
    expect(line).toContain(`psql -c "${LOCK_HOLDERS_SQL}"`);
    expect(LOCK_HOLDERS_SQL).not.toMatch(/["$`\\]/);
  });
});
