import { Client } from 'pg';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { runBackup, type BackupProgress } from '../../lambdas/backup/backup';
import { createS3Client } from '../../lambdas/shared/aws';
import { OperatorError } from '../../lambdas/shared/errors';
import { testCluster, uniqueDatabaseName, testClient } from '../support/cluster';
import { psql, startAgain, startPostgres, stopFast, stopPostgres } from '../support/postgres';
import { LocalS3, startLocalS3 } from '../support/s3';
import { heldPgDump, truncateBeforePgDump, waitFor, waitOf, withinBound } from '../support/held-pg-dump';
import { createDatabase, dropDatabase, getBytes, listKeys, pointers, runBackends } from './backup-support';

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
    const client = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database, application_name: applicationName });
    await client.connect();
    return client;
  };
  const backup = (
    database: string,
    extra: { log?: (line: string) => void; onProgress?: (p: BackupProgress) => void; pgBinDir?: string; signal?: AbortSignal } = {},
    lockWaitTimeoutMs = 30_000,
  ) => {
    const cluster = testCluster();
    return runBackup(
      { s3: createS3Client(s3.env), bucket: s3.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database }, ...extra },
      { tier: 'hourly', lockWaitTimeoutMs },
    );
  };

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

  // DROP SCHEMA ... CASCADE makes the waiting LOCK TABLE fail with 3F000, DROP TABLE with 42P01
  it.each([
    ['a table dropped while the run waits to lock it', 'bkc_dropped', 'CREATE TABLE gone (id int);', 'gone', 'DROP TABLE gone'],
    ['a schema dropped while the run waits to lock one of its tables', 'bkc_schema', 'CREATE SCHEMA old; CREATE TABLE old.gone (id int);', 'old.gone', 'DROP SCHEMA old CASCADE'],
  ])('%s: the run lists the tables again and publishes a backup without it', async (_what, prefix, schema, table, drop) => {
    // Arrange / Act
    const { manifest, dumped } = await backupBehindMigration(prefix, `${schema} CREATE TABLE kept (id int); INSERT INTO kept VALUES (1), (2);`, table, drop);

    // Assert
    expect(dumped('public.kept')).toBe(2);
    expect(manifest.tables).toEqual([{ schema: 'public', name: 'kept', rows: 2 }]);
  });

  /** A database made by `schema`, a held pg_dump (heldPgDump), and the application's and a watcher's sessions, for `body`. */
  const withHeldPgDump = async (
    prefix: string,
    schema: string,
    body: (f: { database: string; dir: string; app: Client; watcher: Client }) => Promise<void>,
    held: { holdEnd?: boolean } = {},
  ): Promise<void> => {
    const database = uniqueDatabaseName(prefix);
    createDatabase(database, schema);
    const dir = heldPgDump(fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-cycle-')), held);
    const app = await connect(database, 'app');
    const watcher = await connect(database, 'watcher');
    try {
      await body({ database, dir, app, watcher });
    } finally {
      await app.query('ROLLBACK').catch(() => undefined);
      await Promise.all([app.end(), watcher.end()]);
      dropDatabase(database);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };

  it("a TRUNCATE issued between the run's locks and pg_dump's: it runs within seconds, and the run starts again after it, counting what it dumps", async () => {
    // Arrange: pg_dump held at its start, once the run's snapshot holds every table ACCESS SHARE
    await withHeldPgDump('bkc_cycle', 'CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000); CREATE TABLE u (id int); INSERT INTO u VALUES (1), (2);', async ({ database, dir, app, watcher }) => {
      const lines: string[] = [];
      // A bound of a minute: without a way out, the TRUNCATE waits that long
      const run = backup(database, { log: (line) => lines.push(line), pgBinDir: dir }, 60_000);
      run.catch(() => undefined);

      // Act: the application truncates t between the run's locks and pg_dump's; the next attempt goes on
      fs.writeFileSync(path.join(dir, 'go-2'), '');
      const waited = await withinBound((await truncateBeforePgDump(dir, 1, app, watcher)).truncated);
      const { manifest } = await run;

      // Assert: the application waited seconds, not the run's lock wait bound
      expect(waited).toBeLessThan(10_000);
      // The second attempt's snapshot is after the TRUNCATE: the dump and the counts agree on it
      const plain = gunzipSync(await getBytes(createS3Client(s3.env), s3.bucket, manifest.objects.find((o) => o.format === 'plain')!.key)).toString('utf8');
      expect(dumpedRows(plain, 'public.t')).toBe(0);
      expect(dumpedRows(plain, 'public.u')).toBe(2);
      expect(manifest.tables).toEqual([
        { schema: 'public', name: 't', rows: 0 },
        { schema: 'public', name: 'u', rows: 2 },
      ]);
      expect(lines.filter((l) => l.includes('starting again'))).toEqual([
        expect.stringMatching(/^backup: pg_dump's lock on public\.t queued behind pid \d+ \(TRUNCATE t\), which waits for this run's own lock on it: ended this attempt so that it can run; starting again \(attempt 2 of 3\)$/),
      ]);
    });
  });

  it("the standoff look's side connection ended by the server: a later look opens another, and the TRUNCATE still runs within seconds", async () => {
    // Arrange: pg_dump held at its start; the side connection's session ended once it is open
    await withHeldPgDump('bkc_sideend', 'CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);', async ({ database, dir, app, watcher }) => {
      const run = backup(database, { pgBinDir: dir }, 60_000);
      run.catch(() => undefined);
      fs.writeFileSync(path.join(dir, 'go-2'), '');
      await waitFor("pg_dump's start 1", () => fs.existsSync(path.join(dir, 'started-1')));
      // The snapshot's session is in its transaction; the side connection is not
      const sideSessions = async (): Promise<number[]> => (await runBackends(watcher, database)).filter((b) => !b.inTransaction).map((b) => b.pid);
      await waitFor('the side connection', async () => (await sideSessions()).length > 0);
      const [ended] = await sideSessions();
      await watcher.query('SELECT pg_terminate_backend($1)', [ended]);
      await waitFor('the side session to end', async () => !(await sideSessions()).includes(ended));

      // Act: the application truncates t between the run's locks and pg_dump's
      const waited = await withinBound((await truncateBeforePgDump(dir, 1, app, watcher)).truncated);
      const { manifest } = await run;

      // Assert: found on a new side connection, not left to the run's lock wait bound
      expect(waited).toBeLessThan(10_000);
      expect(manifest.tables).toEqual([{ schema: 'public', name: 't', rows: 0 }]);
    });
  });

  it('the application truncating the table each time the run starts pg_dump: each TRUNCATE runs within seconds, and the run fails after three attempts naming it', async () => {
    // Arrange
    await withHeldPgDump('bkc_cycles', 'CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);', async ({ database, dir, app, watcher }) => {
      const started = Date.now();
      const run = backup(database, { pgBinDir: dir }, 60_000);
      run.catch(() => undefined);

      // Act: a TRUNCATE between the locks of each attempt
      const waited: number[] = [];
      for (const n of [1, 2, 3]) waited.push(await withinBound((await truncateBeforePgDump(dir, n, app, watcher)).truncated));
      const outcome = await run.then(
        () => 'published',
        (error: Error) => error.message,
      );

      // Assert
      expect(waited.every((ms) => ms < 10_000)).toBe(true);
      expect(outcome).toMatch(
        /^backup failed, nothing published \(no manifest, latest pointers unchanged\): pg_dump's lock on public\.t queued behind pid \d+ \(TRUNCATE t\), which waits for this run's own lock on it, on each of 3 attempts \(each ended so that it could run\): let the application finish changing that table \(TRUNCATE, ALTER TABLE\), then run the backup again$/,
      );
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(fs.existsSync(path.join(dir, 'started-4'))).toBe(false);
    });
  });

  it("a TRUNCATE caught so in a transaction the application keeps open: the ended pg_dump's backend leaves the lock queue within seconds, and the run goes on after the commit", async () => {
    // Arrange
    await withHeldPgDump('bkc_cycleopen', 'CREATE TABLE a (id int); INSERT INTO a VALUES (1); CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);', async ({ database, dir, app, watcher }) => {
      const run = backup(database, { pgBinDir: dir }, 60_000);
      run.catch(() => undefined);
      await app.query('BEGIN');
      fs.writeFileSync(path.join(dir, 'go-2'), '');
      const { truncated } = await truncateBeforePgDump(dir, 1, app, watcher);

      // Act: the TRUNCATE runs once the attempt ends; its transaction stays open a while
      expect(await withinBound(truncated)).toBeLessThan(10_000);
      const pgDumpQueued = async (): Promise<boolean> =>
        (await runBackends(watcher, database)).some((b) => b.wait === 'Lock' && b.query === 'LOCK TABLE public.t IN ACCESS SHARE MODE');
      let queuedAfter3s = true;
      await waitFor('the ended pg_dump to leave the lock queue', async () => !(queuedAfter3s = await pgDumpQueued()), 3000).catch(() => undefined);
      // The next attempt's own lock waits for the commit
      await waitFor('the next snapshot to wait', async () => (await runBackends(watcher, database)).some((b) => b.wait === 'Lock' && b.query.startsWith('LOCK TABLE ONLY')));
      await app.query('COMMIT');
      const { manifest } = await run;

      // Assert: pg_dump's backend (stopped, it cancels its LOCK TABLE) did not hold a, the table it
      // had locked, for the application's whole transaction
      expect(queuedAfter3s).toBe(false);
      expect(manifest.tables).toEqual([
        { schema: 'public', name: 'a', rows: 1 },
        { schema: 'public', name: 't', rows: 0 },
      ]);
    });
  });

  it('an abort (Ctrl-C, the Lambda\'s deadline) as an attempt ends for a TRUNCATE the application keeps open: the run fails at once as aborted, the TRUNCATE runs, nothing published', async () => {
    // Arrange: the TRUNCATE caught between the run's locks and pg_dump's stays in an open
    // transaction, so a next snapshot's LOCK TABLE would wait for the whole lock wait bound (a minute)
    await withHeldPgDump('bkc_cycleabort', 'CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);', async ({ database, dir, app, watcher }) => {
      const s3Client = createS3Client(s3.env);
      const pointersBefore = await pointers(s3Client, s3.bucket);
      const aborter = new AbortController();
      let abortedAt = 0;
      // Act: the signal aborts as the run says it starts again (the Lambda's deadline, Ctrl-C at that moment)
      const log = (line: string): void => {
        if (!line.includes('starting again')) return;
        abortedAt = Date.now();
        aborter.abort(new Error('Lambda deadline reached'));
      };
      const run = backup(database, { log, pgBinDir: dir, signal: aborter.signal }, 60_000);
      run.catch(() => undefined);
      await app.query('BEGIN');
      const { truncated } = await truncateBeforePgDump(dir, 1, app, watcher);
      const outcome = await run.then(
        () => 'published',
        (error: Error) => error.message,
      );
      const settledAfter = Date.now() - abortedAt;

      // Assert: the run ended as aborted within seconds, not after the next snapshot's lock wait
      expect(abortedAt).toBeGreaterThan(0);
      expect(outcome).toBe('backup failed, nothing published (no manifest, latest pointers unchanged): backup aborted (Lambda deadline reached)');
      expect(settledAfter).toBeLessThan(5_000);
      expect(await withinBound(truncated)).toBeLessThan(10_000);
      expect(fs.existsSync(path.join(dir, 'started-2'))).toBe(false);
      expect((await listKeys(s3Client, s3.bucket)).filter((k) => k.includes(database))).toEqual([]);
      expect(await pointers(s3Client, s3.bucket)).toEqual(pointersBefore);
    });
  });

  it('an abort (Ctrl-C, the Lambda\'s deadline) while an attempt is ending for a TRUNCATE: no line says the run starts again, the run fails as aborted', async () => {
    await withHeldPgDump('bkc_endabort', 'CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);', async ({ database, dir, app, watcher }) => {
      const aborter = new AbortController();
      const lines: string[] = [];
      const run = backup(database, { log: (line) => lines.push(line), pgBinDir: dir, signal: aborter.signal }, 60_000);
      run.catch(() => undefined);

      // Act: the signal aborts once the TRUNCATE has run (the attempt's snapshot ended) and while
      // pg_dump, told to stop, has not ended (heldPgDump's holdEnd): the attempt is still ending,
      // whatever the load, even past the SIGKILL the run sends KILL_GRACE_MS (5 s) after its SIGTERM
      // (the hold keeps pg_dump's output open); then pg_dump ends
      const { truncated } = await truncateBeforePgDump(dir, 1, app, watcher);
      await withinBound(truncated);
      await waitFor('pg_dump to be told to stop', () => fs.existsSync(path.join(dir, 'stopping-1')));
      const linesBeforeAbort = [...lines];
      aborter.abort(new Error('Lambda deadline reached'));
      fs.writeFileSync(path.join(dir, 'end-1'), '');
      const outcome = await run.then(
        () => 'published',
        (error: Error) => error.message,
      );

      // Assert: the abort came inside the window (no line yet said the run starts again), and the
      // run ended as aborted without saying it either
      expect(linesBeforeAbort.filter((line) => line.includes('starting again'))).toEqual([]);
      expect(outcome).toBe('backup failed, nothing published (no manifest, latest pointers unchanged): backup aborted (Lambda deadline reached)');
      expect(lines.filter((line) => line.includes('starting again'))).toEqual([]);
      expect(fs.existsSync(path.join(dir, 'started-2'))).toBe(false);
    }, { holdEnd: true });
  });

  it('a stalled backup watched by a person: the progress line and the standoff look share one side connection', async () => {
    // Arrange: a migration holds t while the run locks it (the progress line looks after 3 s), then
    // pg_dump is held at its start (the standoff look runs each second until its first byte)
    await withHeldPgDump('bkc_sidelooks', 'CREATE TABLE t (id int); INSERT INTO t VALUES (1);', async ({ database, dir, app, watcher }) => {
      await app.query('BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE');
      const waiting: string[] = [];
      const run = backup(database, { onProgress: (p) => p.waiting && waiting.push(p.waiting), pgBinDir: dir });
      run.catch(() => undefined);
      const sessions = new Set<number>();
      const sample = async (): Promise<boolean> => {
        for (const backend of await runBackends(watcher, database)) sessions.add(backend.pid);
        return true;
      };

      // Act
      await waitFor('the progress line to name the lock', async () => (await sample()) && waiting.length > 0);
      await app.query('COMMIT');
      await waitFor("pg_dump's start", async () => (await sample()) && fs.existsSync(path.join(dir, 'started-1')));
      const held = Date.now() + 3000;
      while (Date.now() < held) {
        await sample();
        await sleep(50);
      }
      fs.writeFileSync(path.join(dir, 'go-1'), '');
      const { manifest } = await run;

      // Assert: the snapshot's session and one side connection, both watches looked
      expect(waiting[0]).toMatch(/^waiting \d+ s for a lock on public\.t held by pid \d+ \(role \w+, application "app", idle in transaction/);
      expect(sessions.size).toBe(2);
      expect(manifest.tables).toEqual([{ schema: 'public', name: 't', rows: 1 }]);
    });
  });

  it("the server stopped while the run starts again after a standoff: the line says it went away, not to check PGHOST, exit 1, nothing published", async () => {
    // Arrange: a server of the test's own (it is stopped), pg_dump held at its start so that the
    // application's TRUNCATE is caught between the run's locks and pg_dump's
    const own = await startPostgres();
    psql(own, 'postgres', 'CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);');
    const dir = heldPgDump(fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-gone-')));
    const session = (application_name: string) => testClient({ host: own.host, port: own.port, user: own.user, database: 'postgres', application_name });
    const [app, watcher] = [session('app'), session('watcher')];
    await Promise.all([app.connect(), watcher.connect()]);
    try {
      // The server stops (pg_ctl stop -m fast, as a restart or a failover) as the run announces its
      // next attempt: that attempt's connection is refused.
      const run = runBackup(
        {
          s3: createS3Client(s3.env),
          bucket: s3.bucket,
          connection: { host: own.host, port: own.port, user: own.user, database: 'postgres' },
          pgBinDir: dir,
          log: (line) => line.includes('starting again') && stopFast(own),
        },
        { tier: 'hourly', lockWaitTimeoutMs: 60_000 },
      );
      run.catch(() => undefined);

      // Act
      await truncateBeforePgDump(dir, 1, app, watcher);
      const outcome = await run.then(
        () => 'published',
        (error: OperatorError) => ({ message: error.message, exitCode: error.exitCode }),
      );

      // Assert
      // ("Error: " before the driver's words in jest only: its sandbox sees node's errors as not instanceof Error)
      expect(outcome).toEqual({
        message: expect.stringMatching(
          new RegExp(
            `^cannot connect to postgres@127\\.0\\.0\\.1:${own.port}/postgres: (Error: )?connect ECONNREFUSED 127\\.0\\.0\\.1:${own.port}; it took this run's connections before: the server went away \\(a restart, a failover\\), the settings are not the cause; rerun once it answers \\(psql -c 'SELECT 1'\\)$`,
          ),
        ),
        exitCode: 1,
      });
      expect((await listKeys(createS3Client(s3.env), s3.bucket)).filter((k) => k.includes('/postgres_backup_') || k.startsWith('latest/postgres'))).toEqual([]);
    } finally {
      await Promise.all([app.end().catch(() => undefined), watcher.end().catch(() => undefined)]);
      startAgain(own);
      stopPostgres(own);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
