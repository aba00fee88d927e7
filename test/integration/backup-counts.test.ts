import { Client } from 'pg';
import { gunzipSync } from 'node:zlib';
import { runBackup, type BackupProgress } from '../../lambdas/backup/backup';
import { createS3Client } from '../../lambdas/shared/aws';
import { testCluster, uniqueDatabaseName } from '../support/cluster';
import { LocalS3, startLocalS3 } from '../support/s3';
import { createDatabase, dropDatabase, getBytes, runBackends } from './backup-support';

jest.setTimeout(120_000);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Rows of `table` in the plain SQL of a backup: the lines of its COPY block. */
function dumpedRows(sql: string, table: string): number {
  const lines = sql.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`COPY ${table} `));
  if (start < 0) throw new Error(`no COPY of ${table} in the dump`);
  return lines.indexOf('\\.', start) - start - 1;
}

// The manifest's row counts are what the restore check holds the restored copy to: each must be
// the count of the rows the dump holds, whatever other sessions do to the tables meanwhile.
describe('backup row counts and the dump agree (integration)', () => {
  let s3: LocalS3;

  beforeAll(async () => {
    s3 = await startLocalS3();
  });
  afterAll(async () => {
    await s3.stop();
  });

  const connect = async (database: string, applicationName = 'migration'): Promise<Client> => {
    const cluster = testCluster();
    const client = new Client({ host: cluster.host, port: cluster.port, user: cluster.user, database, application_name: applicationName });
    await client.connect();
    return client;
  };
  const backup = (database: string, extra: { log?: (line: string) => void; onProgress?: (p: BackupProgress) => void } = {}) => {
    const cluster = testCluster();
    return runBackup(
      { s3: createS3Client(s3.env), bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database }, ...extra },
      { tier: 'hourly', lockWaitTimeoutMs: 30_000 },
    );
  };
  /** The session's wait_event_type ('Lock' while it queues behind another session's lock). */
  const waitOf = async (watcher: Client, pid: number): Promise<string | null> =>
    (await watcher.query<{ wait: string | null }>('SELECT wait_event_type AS wait FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0]?.wait ?? null;

  it('a TRUNCATE queued during the dump that runs before the count reaches its table: the manifest still counts the rows the dump holds', async () => {
    // Arrange: 200 tables before "t" in the count order (a first batch of counts), the first with an
    // index; a REINDEX holds that index, so the counts stand still on it while pg_dump, which reads
    // no index, dumps everything.
    const database = uniqueDatabaseName('bkc_truncate');
    createDatabase(
      database,
      `DO $$ BEGIN FOR i IN 0..199 LOOP EXECUTE format('CREATE TABLE a_%s (id int)', lpad(i::text, 3, '0')); END LOOP; END $$;
       CREATE INDEX a_000_idx ON a_000 (id);
       CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);`,
    );
    const reindex = await connect(database);
    const truncate = await connect(database);
    const watcher = await connect(database, 'watcher');
    let truncated: Promise<unknown> | undefined;
    try {
      await reindex.query('BEGIN; REINDEX INDEX a_000_idx');
      const lines: string[] = [];
      const run = backup(database, { log: (line) => lines.push(line) });
      run.catch(() => undefined);
      const deadline = Date.now() + 30_000;
      while (!lines.some((l) => l.includes('pg_dump finished')) && Date.now() < deadline) await sleep(50);
      expect(lines.some((l) => l.includes('pg_dump finished'))).toBe(true);

      // Act: an application truncates t once the dump is done, while the counts still wait
      const truncatePid = (await truncate.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      let settled = false;
      truncated = truncate.query('TRUNCATE t').finally(() => (settled = true));
      truncated.catch(() => undefined);
      // Done at once (nothing holds t), or queued behind the backup's lock on t
      while (!settled && (await waitOf(watcher, truncatePid)) !== 'Lock' && Date.now() < deadline) await sleep(50);
      await reindex.query('COMMIT');
      const { manifest } = await run;

      // Assert: the count is the dump's own, not the table as the TRUNCATE left it
      const plain = gunzipSync(await getBytes(createS3Client(s3.env), s3.bucket, manifest.objects.find((o) => o.format === 'plain')!.key)).toString('utf8');
      expect(dumpedRows(plain, 'public.t')).toBe(1000);
      expect(manifest.tables.find((table) => table.name === 't')).toEqual({ schema: 'public', name: 't', rows: 1000 });
    } finally {
      await reindex.end().catch(() => undefined);
      await truncated?.catch(() => undefined);
      await Promise.all([truncate.end(), watcher.end()]);
      dropDatabase(database);
    }
  });

  /**
   * A backup of a database made by `schema`, run while a migration holds `table` ACCESS EXCLUSIVE:
   * once the run's LOCK TABLE of the tables to count queues behind it, the migration runs
   * `migrationSql` and commits. The run's manifest, and the rows of each table in its plain SQL.
   */
  const backupBehindMigration = async (prefix: string, schema: string, table: string, migrationSql: string) => {
    const database = uniqueDatabaseName(prefix);
    createDatabase(database, schema);
    const migration = await connect(database);
    const watcher = await connect(database, 'watcher');
    try {
      await migration.query(`BEGIN; LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      const run = backup(database);
      run.catch(() => undefined);
      const waiting = async (): Promise<boolean> => (await runBackends(watcher, database)).some((b) => b.wait === 'Lock' && b.query.startsWith('LOCK TABLE'));
      const deadline = Date.now() + 20_000;
      while (!(await waiting()) && Date.now() < deadline) await sleep(50);
      expect(await waiting()).toBe(true);
      await migration.query(`${migrationSql}; COMMIT`);
      const { manifest } = await run;
      const plain = gunzipSync(await getBytes(createS3Client(s3.env), s3.bucket, manifest.objects.find((o) => o.format === 'plain')!.key)).toString('utf8');
      return { manifest, dumped: (name: string) => dumpedRows(plain, name) };
    } finally {
      await Promise.all([migration.end(), watcher.end()]);
      dropDatabase(database);
    }
  };

  it('a migration that rewrites a table and creates another while the run waits for its lock: both are dumped with their rows and counted', async () => {
    // Arrange / Act: the migration rewrites "held" (not MVCC-safe: empty to a snapshot taken before
    // it) and creates "fresh" (in no list taken before the run's lock was granted)
    const { manifest, dumped } = await backupBehindMigration(
      'bkc_migration',
      'CREATE TABLE held (id int); INSERT INTO held VALUES (1), (2), (3);',
      'held',
      'ALTER TABLE held ALTER COLUMN id TYPE bigint; CREATE TABLE fresh AS SELECT generate_series(1, 7) AS id',
    );

    // Assert: the snapshot is taken after the wait, and the new table is counted too
    expect(dumped('public.held')).toBe(3);
    expect(dumped('public.fresh')).toBe(7);
    expect(manifest.tables).toEqual([
      { schema: 'public', name: 'fresh', rows: 7 },
      { schema: 'public', name: 'held', rows: 3 },
    ]);
  });

  it('a table dropped while the run waits to lock it: the run lists the tables again and publishes a backup without it', async () => {
    // Arrange / Act
    const { manifest, dumped } = await backupBehindMigration(
      'bkc_dropped',
      'CREATE TABLE gone (id int); CREATE TABLE kept (id int); INSERT INTO kept VALUES (1), (2);',
      'gone',
      'DROP TABLE gone',
    );

    // Assert
    expect(dumped('public.kept')).toBe(2);
    expect(manifest.tables).toEqual([{ schema: 'public', name: 'kept', rows: 2 }]);
  });
});
