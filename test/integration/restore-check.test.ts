import { S3Client } from '@aws-sdk/client-s3';
import { spawn, type ChildProcess } from 'node:child_process';
import { Client } from 'pg';
import { createS3Client } from '../../lambdas/shared/aws';
import type { OperatorError } from '../../lambdas/shared/errors';
import type { BackupManifest } from '../../lambdas/shared/manifest';
import type { PgConnection, ReadBounds } from '../../lambdas/shared/pg-connection';
import { checkRowCounts, rowCountBounds } from '../../lambdas/restore/check';
import { restoreBackup } from '../../lambdas/restore/restore';
import { holdTableLock, testCluster, uniqueDatabaseName, type HeldLock, testClient } from '../support/cluster';
import { psql } from '../support/postgres';
import { LocalS3, startLocalS3 } from '../support/s3';
import { startCuttingProxy } from '../support/cutting-proxy';
import { FIXTURE_SQL } from './backup-fixture';
import { databasesLike, writeFixtureBackup } from '../lambdas/restore/fixtures';

/**
 * The row-count check is the last long step before the swap: a count of a large table, or one
 * queued behind a lock, must not keep an interrupted restore alive past ECS's stop timeout or the
 * Lambda's deadline, or the process is killed before it drops its staging database.
 */
const cluster = testCluster();
const connection: PgConnection = { host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' };
/** How long the lock is held: an abort that is not honoured waits this long for the counts. */
const LOCK_HELD_MS = 20_000;
let localS3: LocalS3;
let s3: S3Client;
let source: string;
let manifestKey: string;
let manifest: BackupManifest;

beforeAll(async () => {
  localS3 = await startLocalS3();
  s3 = createS3Client(localS3.env);
  source = uniqueDatabaseName('check_src');
  psql(cluster, 'postgres', `CREATE DATABASE ${source}`);
  psql(cluster, source, FIXTURE_SQL);
  ({ manifestKey, manifest } = await writeFixtureBackup(s3, localS3.bucket, cluster, source, { tier: 'daily' }));
}, 120_000);

afterAll(async () => {
  await localS3?.stop();
});

/**
 * A restore's log that, as the check starts, has another session take the staging copy's rides
 * table for LOCK_HELD_MS, then calls `onLocked`. The log line is written synchronously just before
 * the counts connect, and the wait below blocks the event loop, so the lock is held before the
 * first count is sent. Kill `locker` after the test (the staging database's DROP ... WITH (FORCE) ends it first).
 */
function lockRidesAtCheck(onLocked: () => void = () => undefined): { log: (line: string) => void; readonly lines: string[]; readonly staging?: string; readonly locker?: ChildProcess } {
  const seen: { lines: string[]; staging?: string; locker?: ChildProcess } = { lines: [] };
  const log = (line: string): void => {
    seen.lines.push(line);
    seen.staging = /^load: .+ into staging database (\S+)$/.exec(line)?.[1] ?? seen.staging;
    if (line.startsWith('check: ') && seen.staging) {
      seen.locker = spawn('psql', ['-X', '-q', '-d', seen.staging, '-c', `BEGIN; LOCK TABLE public.rides IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(${LOCK_HELD_MS / 1000}); COMMIT;`], {
        env: { ...process.env, ...cluster.env, PGAPPNAME: 'test-locker' },
        stdio: 'ignore',
      });
      psql(
        cluster,
        'postgres',
        `DO $$ BEGIN
           WHILE NOT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                              WHERE a.application_name = 'test-locker' AND l.locktype = 'relation'
                                AND l.mode = 'AccessExclusiveLock' AND l.granted) LOOP
             PERFORM pg_sleep(0.02);
           END LOOP;
         END $$;`,
      );
      onLocked();
    }
  };
  return Object.assign(seen, { log });
}

describe('row count sessions', () => {
  it('opens its sessions together, not one after the other behind the list of tables', async () => {
    // Arrange: a connect that counts the connections in flight at the same time
    let inFlight = 0;
    let mostInFlight = 0;
    const connect = async (): Promise<Client> => {
      inFlight += 1;
      mostInFlight = Math.max(mostInFlight, inFlight);
      try {
        const client = testClient({ ...connection, database: source });
        await client.connect();
        return client;
      } finally {
        inFlight -= 1;
      }
    };

    // Act
    const rows = await checkRowCounts({ ...connection, database: source }, manifest, manifestKey, 2, undefined, { connect });

    // Assert: both sessions were being opened at once, and the counts are the manifest's
    expect(mostInFlight).toBe(2);
    expect(rows).toBe(manifest.tables.reduce((sum, t) => sum + t.rows, 0));
  });

  it('a table the manifest lists and the restored copy lacks is named as missing, beside the tables whose counts differ, and the target is said untouched', async () => {
    // Arrange: the manifest lists a table the database does not have, and one count off by one
    const [first, ...rest] = manifest.tables;
    const listed: BackupManifest = { ...manifest, tables: [{ ...first, rows: first.rows + 1 }, ...rest, { schema: 'public', name: 'ghost_bookings', rows: 7 }] };

    // Act
    const checked = checkRowCounts({ ...connection, database: source }, listed, manifestKey, 2);

    // Assert
    await expect(checked).rejects.toThrow(
      `restored data differs from manifest ${manifestKey}: ${[`${first.schema}.${first.name} has ${first.rows} rows, manifest ${first.rows + 1}`, 'public.ghost_bookings is missing'].sort().join('; ')}; the target was not touched`,
    );
  });

  it('ends the session it opened when another one fails to connect, and says why', async () => {
    // Arrange: the second connection refused
    const opened: Client[] = [];
    let ended = 0;
    let calls = 0;
    const connect = async (): Promise<Client> => {
      calls += 1;
      if (calls === 2) throw new Error('too many connections for role "restorer"');
      const client = testClient({ ...connection, database: source });
      client.on('end', () => (ended += 1));
      await client.connect();
      opened.push(client);
      return client;
    };

    // Act
    const error = await checkRowCounts({ ...connection, database: source }, manifest, manifestKey, 2, undefined, { connect }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );

    // Assert
    expect(error?.message).toBe('too many connections for role "restorer"');
    expect(opened).toHaveLength(1);
    expect(ended).toBe(1);
  });
});

describe('row counts interrupted', () => {
  it('stops counting at once on an abort, with the abort reason, and closes its sessions', async () => {
    // Arrange: the source's rides table held by another session, so that its count waits
    let lock: HeldLock | undefined;
    const interrupt = new AbortController();
    try {
      lock = await holdTableLock(source, 'public.rides');
      let opened = 0;
      let closed = 0;
      const connect = async (): Promise<Client> => {
        const client = testClient({ ...connection, database: source });
        client.on('end', () => (closed += 1));
        await client.connect();
        opened += 1;
        return client;
      };
      setTimeout(() => interrupt.abort(new Error('SIGTERM')), 300);

      // Act
      const started = performance.now();
      const error = await checkRowCounts({ ...connection, database: source }, manifest, manifestKey, 2, interrupt.signal, { connect }).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      const seconds = (performance.now() - started) / 1000;

      // Assert: the abort's own reason, long before the lock goes, and every session closed
      expect(error?.message).toBe('SIGTERM');
      expect(seconds).toBeLessThan(5);
      expect(opened).toBeGreaterThan(0);
      expect(closed).toBe(opened);
    } finally {
      await lock?.release();
    }
  }, LOCK_HELD_MS + 20_000);

  it('an interrupted restore whose counts wait on a lock drops its staging database and says so promptly (exit 130), the target never created', async () => {
    // Arrange: as the check starts, another session takes the staging copy's rides table, and the restore is interrupted
    const target = uniqueDatabaseName('check_target');
    const interrupt = new AbortController();
    const checking = lockRidesAtCheck(() => setTimeout(() => interrupt.abort(new Error('SIGINT')), 300));

    try {
      // Act
      const started = performance.now();
      const error = await restoreBackup({ s3, bucket: localS3.bucket, connection, jobs: 2, log: checking.log }, { ref: manifestKey, targetDb: target, signal: interrupt.signal }).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );
      const seconds = (performance.now() - started) / 1000;

      // Assert: interrupted, the staging database dropped (its DROP ... WITH (FORCE) ends the
      // locker too), nothing under the target's name
      expect(checking.locker).toBeDefined();
      expect(error?.exitCode).toBe(130);
      expect(error?.message).toBe(`restore interrupted (SIGINT): staging database ${checking.staging} dropped; target "${target}" untouched`);
      expect(seconds).toBeLessThan(LOCK_HELD_MS / 1000);
      expect(databasesLike(cluster, target)).toEqual([]);
    } finally {
      checking.locker?.kill();
    }
  }, LOCK_HELD_MS + 60_000);
});

describe('row counts bounded', () => {
  /** What every bound's line says after its own words. */
  const CHECK_THERE = `check that the server answers (psql -c 'SELECT 1') and which session holds a lock or runs long there (SELECT pid, state, wait_event_type, query FROM pg_stat_activity WHERE state <> 'idle'); the target was not touched`;
  /** The counts' sessions still open on `database` (a count given up must not leave its session). */
  const countSessions = (database: string): string =>
    psql(cluster, 'postgres', `SELECT count(*) FROM pg_stat_activity WHERE datname = '${database}' AND application_name = 'atmr-dr'`);

  it.each([
    ['lock_timeout', { lock_timeout: 500, statement_timeout: 10_000, query_timeout: 12_000 }, 'waited 0.5 s for a lock another session holds (lock_timeout)'],
    ['statement_timeout', { lock_timeout: 10_000, statement_timeout: 500, query_timeout: 12_000 }, 'did not end within 0.5 s (statement_timeout)'],
  ])(
    "a count held by another session's lock on its table ends at the session's %s, in one line naming the table, the bound and the server, its sessions closed",
    async (_bound, bounds: ReadBounds, why) => {
      // Arrange: another session holds the copy's rides table (ACCESS EXCLUSIVE), as a LOCK TABLE left in an open transaction
      const lock = await holdTableLock(source, 'public.rides');
      try {
        // Act
        const started = performance.now();
        const error = await checkRowCounts({ ...connection, database: source }, manifest, manifestKey, 2, undefined, { bounds }).then(
          () => undefined,
          (e: unknown) => e as OperatorError,
        );
        const seconds = (performance.now() - started) / 1000;

        // Assert
        expect(error?.message).toBe(`the row count of public.rides (count(*)) on ${cluster.user}@${cluster.host}:${cluster.port}/${source} ${why}: ${CHECK_THERE}`);
        expect(seconds).toBeLessThan(5);
        expect(countSessions(source)).toBe('0');
      } finally {
        await lock.release();
      }
    },
    15_000,
  );

  it('a count the server never answers ends at the answer wait (query_timeout), in one line naming the table and the server', async () => {
    // Arrange: a proxy that lets the sessions log in and read the list of tables, and never passes on a count (a server that stopped answering)
    const proxy = await startCuttingProxy({ host: cluster.host, port: cluster.port }, /count\(\*\)/, { silence: true });
    try {
      const bounds: ReadBounds = { lock_timeout: 10_000, statement_timeout: 10_000, query_timeout: 1_000 };

      // Act
      const started = performance.now();
      const error = await checkRowCounts({ ...connection, port: proxy.port, database: source }, manifest, manifestKey, 1, undefined, { bounds }).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );
      const seconds = (performance.now() - started) / 1000;

      // Assert: the first table in the manifest's order is the one silenced
      const first = manifest.tables[0];
      expect(error?.message).toBe(
        `the row count of ${first.schema}.${first.name} (count(*)) on ${cluster.user}@${cluster.host}:${proxy.port}/${source} got no answer within 1 s (the server accepts connections but does not answer): ${CHECK_THERE}`,
      );
      expect(seconds).toBeLessThan(5);
    } finally {
      await proxy.stop();
    }
  }, 15_000);

  it("a restore whose counts wait on another session's lock fails at the bound with that line, drops its staging database, the target never created", async () => {
    // Arrange: as the check starts, another session takes the staging copy's rides table
    const target = uniqueDatabaseName('check_bounded');
    const checking = lockRidesAtCheck();
    const bounds: ReadBounds = { lock_timeout: 1_000, statement_timeout: 10_000, query_timeout: 12_000 };

    try {
      // Act
      const started = performance.now();
      // With the CLI's option: a lock is not a count too long, and its line asks for no longer bound.
      const error = await restoreBackup({ s3, bucket: localS3.bucket, connection, jobs: 2, log: checking.log, rowCountBounds: bounds, countTimeoutOption: '--count-timeout' }, { ref: manifestKey, targetDb: target }).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );
      const seconds = (performance.now() - started) / 1000;

      // Assert: the bound's line, the staging database dropped (its DROP ... WITH (FORCE) ends the locker too), nothing under the target's name
      expect(checking.locker).toBeDefined();
      expect(error?.message).toBe(`the row count of public.rides (count(*)) on ${cluster.user}@${cluster.host}:${cluster.port}/${checking.staging} waited 1 s for a lock another session holds (lock_timeout): ${CHECK_THERE}`);
      expect(error?.exitCode).toBe(1);
      expect(checking.lines).toContain(`staging database ${checking.staging} dropped`);
      expect(seconds).toBeLessThan(LOCK_HELD_MS / 1000);
      expect(databasesLike(cluster, target)).toEqual([]);
    } finally {
      checking.locker?.kill();
    }
  }, LOCK_HELD_MS + 60_000);

  it.each([
    ["with the CLI's option, its line says how to give each count longer", '--count-timeout', '; give each count longer: --count-timeout <more than 2 s>'],
    ['without an option (restore-test, the Lambda), its line names none', undefined, ''],
  ])('a restore whose count its statement_timeout ends fails at the bound: %s', async (_case, countTimeoutOption, advice) => {
    // Arrange: each count bounded to 2 s, under the minute of lock_timeout, so a count queued behind
    // another session's lock on rides ends at its statement_timeout (57014), as a count too long would.
    const target = uniqueDatabaseName('check_too_long');
    const checking = lockRidesAtCheck();

    try {
      // Act
      const error = await restoreBackup(
        { s3, bucket: localS3.bucket, connection, jobs: 2, log: checking.log, rowCountBounds: rowCountBounds(2), countTimeoutOption },
        { ref: manifestKey, targetDb: target },
      ).then(
        () => undefined,
        (e: unknown) => e as OperatorError,
      );

      // Assert
      expect(error?.message).toBe(
        `the row count of public.rides (count(*)) on ${cluster.user}@${cluster.host}:${cluster.port}/${checking.staging} did not end within 2 s (statement_timeout): check that the server answers (psql -c 'SELECT 1') and which session holds a lock or runs long there (SELECT pid, state, wait_event_type, query FROM pg_stat_activity WHERE state <> 'idle')${advice}; the target was not touched`,
      );
      expect(checking.lines).toContain(`staging database ${checking.staging} dropped`);
      expect(databasesLike(cluster, target)).toEqual([]);
    } finally {
      checking.locker?.kill();
    }
  }, LOCK_HELD_MS + 60_000);
});
