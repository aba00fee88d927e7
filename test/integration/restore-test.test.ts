import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BackupResult, runBackup } from '../../lambdas/backup/backup';
import { restoreBackup } from '../../lambdas/restore/restore';
import * as catalog from '../../lambdas/restore/catalog';
import { NoBackupError } from '../../lambdas/restore/catalog';
import { RestoreTestDeps, RestoreTestOptions, restoreTestText, runRestoreTest } from '../../lambdas/restore/restore-test';
import { createS3Client } from '../../lambdas/shared/aws';
import { PgConnection } from '../../lambdas/shared/pg-connection';
import { runId, siblingPrefix } from '../../lambdas/restore/leftovers';
import { testClient, testCluster, uniqueDatabaseName } from '../support/cluster';
import { psql } from '../support/postgres';
import { LocalS3, startLocalS3 } from '../support/s3';
import { itWithSmallDisk, mountSmallDisk } from '../support/small-disk';
import { FIXTURE_SQL } from './backup-fixture';
import { databaseExists, databaseFingerprint, databasesLike, serverThatGoesAway, writeFixtureBackup } from '../lambdas/restore/fixtures';

const cluster = testCluster();
let localS3: LocalS3;
let s3: S3Client;
let source: PgConnection;
let target: PgConnection;

const OPTIONS: RestoreTestOptions = {
  takeBackup: true,
  tier: 'hourly',
  criticalQueries: ['SELECT COUNT(*) FROM company', 'SELECT COUNT(*) FROM booking'],
  rtoObjectiveSeconds: 1800,
  rpoObjectiveSeconds: 900,
};

function deps(overrides: Partial<RestoreTestDeps> = {}): RestoreTestDeps {
  return { s3, bucket: localS3.bucket, source, target, jobs: 2, backup: runBackup, ...overrides };
}

/** Neither the scratch database nor its staging sibling may survive a run. */
function expectNoScratchLeft(scratch: string): void {
  expect(databaseExists(cluster, scratch)).toBe(false);
  expect(databasesLike(cluster, `${scratch.slice(0, 40)}_restore_`)).toEqual([]);
}

async function bucketKeys(prefix: string): Promise<string[]> {
  const page = await s3.send(new ListObjectsV2Command({ Bucket: localS3.bucket, Prefix: prefix }));
  return (page.Contents ?? []).map((o) => o.Key!).sort();
}

beforeAll(async () => {
  localS3 = await startLocalS3();
  s3 = createS3Client(localS3.env);
  const database = uniqueDatabaseName('rtest_src');
  psql(cluster, 'postgres', `CREATE DATABASE ${database}`);
  psql(cluster, database, FIXTURE_SQL);
  psql(cluster, database, "CREATE TABLE company (id int PRIMARY KEY, name text); INSERT INTO company VALUES (1, 'ATMR'), (2, 'Transports Léman');");
  psql(cluster, 'postgres', `ALTER DATABASE ${database} SET work_mem = '8MB'`);
  source = { host: cluster.host, port: cluster.port, user: cluster.user, database };
  target = { ...source, database: 'postgres' };
}, 120_000);

afterAll(async () => {
  await localS3?.stop();
});

describe('restore test (test_backup_restore, automated)', () => {
  it('backs up, restores into a scratch database, proves the point in time, drops it, and leaves the source exactly as it was', async () => {
    // Arrange: a published latest of the source, and the source's fingerprint
    const published = await writeFixtureBackup(s3, localS3.bucket, cluster, source.database, { tier: 'hourly' });
    const pointersBefore = await bucketKeys('latest');
    const pointerBody = async (key: string) => (await (await s3.send(new GetObjectCommand({ Bucket: localS3.bucket, Key: key }))).Body!.transformToString());
    const pointerValues = async (keys: string[]) => Promise.all(keys.map(pointerBody));
    const pointerValuesBefore = await pointerValues(pointersBefore);
    const fingerprintBefore = databaseFingerprint(cluster, source.database);

    // Act
    const report = await runRestoreTest(deps(), OPTIONS);

    // Assert: the test passed on its own backup, under restore-tests/
    expect(report.error).toBeUndefined();
    expect(report.ok).toBe(true);
    expect(report.manifestKey).toMatch(/^restore-tests\/backups\/hourly\/rtest_src_.*\.manifest\.json$/);
    expect(report.pointInTime).toEqual(expect.objectContaining({ ok: true, snapshot: expect.stringMatching(/^\d+:\d+:/) }));
    expect(report.tablesRestored).toBe(8); // the fixture's 7 leaf tables and company: no table of ours
    expect(report.rowsRestored).toBeGreaterThan(3000);
    expect(report.rtoSeconds).toBeGreaterThan(0);
    expect(report.rtoMet).toBe(true);
    expect(report.rpoSeconds).toBeGreaterThanOrEqual(0);
    expect(report.rpoSeconds).toBeLessThan(120);
    expect(Object.keys(report.steps)).toEqual(expect.arrayContaining(['backupSeconds', 'downloadSeconds', 'restoreSeconds', 'verifySeconds', 'checksSeconds', 'cleanupSeconds']));
    expect(report.criticalQueries).toEqual([
      { sql: 'SELECT COUNT(*) FROM company', status: 'ok', detail: '2' },
      expect.objectContaining({ sql: 'SELECT COUNT(*) FROM booking', status: 'skipped' }),
    ]);
    expect(report.scratchDropped).toBe(true);
    expectNoScratchLeft(report.scratchDatabase);
    // Assert: the source is unchanged (no table, no row, no setting), and its latest is still the published backup
    expect(databaseFingerprint(cluster, source.database)).toEqual(fingerprintBefore);
    expect(await bucketKeys('latest')).toEqual(pointersBefore);
    expect(await pointerValues(pointersBefore)).toEqual(pointerValuesBefore);
    expect(JSON.parse(await pointerBody(`latest/${source.database}.json`))).toEqual({ manifest: published.manifestKey });
  });

  it('drops the scratch database when a critical query fails, and reports the failure', async () => {
    const report = await runRestoreTest(deps(), { ...OPTIONS, criticalQueries: ['SELECT COUNT(*) FROM company', 'SELECT 1 / (COUNT(*) - COUNT(*)) FROM company'] });

    expect(report.ok).toBe(false);
    expect(report.error).toMatch(/critical query failed on the restored copy: SELECT 1 \/ .*division by zero/);
    expect(report.criticalQueries.map((q) => q.status)).toEqual(['ok', 'failed']);
    expect(report.scratchDropped).toBe(true);
    expectNoScratchLeft(report.scratchDatabase);
  });

  it("fails on a query the operator gave whose table is missing: only the defaults, which guess ATMR's schema, are skipped", async () => {
    const report = await runRestoreTest(deps(), { ...OPTIONS, criticalQueries: ['SELECT COUNT(*) FROM booking', 'SELECT * FROM nosuch'] });

    expect(report.ok).toBe(false);
    expect(report.error).toBe(
      'critical query failed on the restored copy: SELECT * FROM nosuch: relation "nosuch" does not exist: the restored copy has no such table; check the query (--critical-query, or restoreTest.criticalQueries in cdk.json)',
    );
    expect(report.criticalQueries).toEqual([
      { sql: 'SELECT COUNT(*) FROM booking', status: 'skipped', detail: 'relation "booking" does not exist' },
      { sql: 'SELECT * FROM nosuch', status: 'failed', detail: 'relation "nosuch" does not exist' },
    ]);
    expectNoScratchLeft(report.scratchDatabase);
  });

  it.each([
    ['of several statements (it could end the read-only transaction)', (role: string) => `SELECT 1; COMMIT; CREATE ROLE ${role}`, 'cannot insert multiple commands into a prepared statement'],
    ['that writes', (role: string) => `CREATE ROLE ${role}`, 'cannot execute CREATE ROLE in a read-only transaction'],
  ])('fails the check on a critical query %s, as the recovery verification does, and writes nothing', async (_what, query, reason) => {
    // A role outlives the scratch database: what a query that wrote would leave on the server.
    const role = uniqueDatabaseName('rtest_role');
    const sql = query(role);

    const report = await runRestoreTest(deps(), { ...OPTIONS, criticalQueries: ['SELECT COUNT(*) FROM company', sql] });

    expect(report.ok).toBe(false);
    expect(report.error).toBe(`critical query failed on the restored copy: ${sql}: ${reason}`);
    expect(report.criticalQueries).toEqual([
      { sql: 'SELECT COUNT(*) FROM company', status: 'ok', detail: '2' },
      { sql, status: 'failed', detail: reason },
    ]);
    expect(psql(cluster, 'postgres', `SELECT count(*) FROM pg_roles WHERE rolname = '${role}'`)).toBe('0');
    expectNoScratchLeft(report.scratchDatabase);
  });

  it('fails before taking its backup when pg_restore is missing, naming the fix, and writes nothing to the bucket', async () => {
    // Arrange: a client-tools directory with pg_dump (the backup would succeed) but no pg_restore
    const binDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-nopgrestore-'));
    fs.symlinkSync(execFileSync('which', ['pg_dump'], { encoding: 'utf8' }).trim(), path.join(binDir, 'pg_dump'));
    const keysBefore = await bucketKeys('restore-tests/');

    try {
      // Act
      const report = await runRestoreTest(deps({ pgBinDir: binDir }), OPTIONS);

      // Assert
      expect(report.ok).toBe(false);
      expect(report.error).toBe(`pg_restore not found (${path.join(binDir, 'pg_restore')}): install the PostgreSQL client tools or put them on PATH`);
      expect(report.steps.backupSeconds).toBeUndefined();
      expect(await bucketKeys('restore-tests/')).toEqual(keysBefore);
      expectNoScratchLeft(report.scratchDatabase);
    } finally {
      fs.rmSync(binDir, { recursive: true, force: true });
    }
  });

  it('fails before taking its backup when the temp directory is not writable, naming the fix', async () => {
    // Act: a temp directory that does not exist is not writable either (and root may write anywhere else)
    const missing = path.join(os.tmpdir(), 'atmr-dr-no-such-dir', 'tmp');
    const keysBefore = await bucketKeys('restore-tests/');
    const report = await runRestoreTest(deps({ tempDir: missing }), OPTIONS);

    // Assert
    expect(report.ok).toBe(false);
    expect(report.error).toBe(`temp directory ${missing} is not writable (ENOENT): point TMPDIR at an existing, writable directory with room for the backup`);
    expect(report.steps.backupSeconds).toBeUndefined();
    expect(await bucketKeys('restore-tests/')).toEqual(keysBefore);
  });

  it('fails before taking its backup when the role cannot create the scratch database (no CREATEDB), naming the fix, and writes nothing to the bucket', async () => {
    // Arrange: a role that may read the source (the backup would succeed) but not create databases
    const role = `${source.database}_nocreatedb`;
    const largeObject = psql(cluster, source.database, 'SELECT min(oid) FROM pg_largeobject_metadata');
    psql(cluster, source.database, `CREATE ROLE ${role} LOGIN; GRANT pg_read_all_data TO ${role}; GRANT SELECT ON LARGE OBJECT ${largeObject} TO ${role};`);
    const keysBefore = await bucketKeys('restore-tests/');
    try {
      // Act
      const report = await runRestoreTest(deps({ source: { ...source, user: role }, target: { ...target, user: role } }), OPTIONS);

      // Assert
      expect(report.ok).toBe(false);
      expect(report.error).toBe(
        `role "${role}" cannot create databases, and the restore test creates its scratch database (loaded as a staging database, then renamed): have an admin run ALTER ROLE "${role}" CREATEDB, or connect as a role that has it (on RDS, the master user)`,
      );
      expect(report.steps.backupSeconds).toBeUndefined();
      expect(await bucketKeys('restore-tests/')).toEqual(keysBefore);
      expectNoScratchLeft(report.scratchDatabase);
    } finally {
      psql(cluster, source.database, `DROP OWNED BY ${role}; DROP ROLE ${role};`);
    }
  });

  it('fails at its backup of a table with row-level security the role does not bypass, naming BYPASSRLS or the owner as the fix', async () => {
    // Arrange: a database whose clients table has a policy, read by a role that may create databases but is subject to it
    const database = uniqueDatabaseName('rtest_rls');
    const role = `${database}_reader`;
    psql(cluster, 'postgres', `CREATE DATABASE ${database}; CREATE ROLE ${role} LOGIN CREATEDB;`);
    psql(cluster, database, `CREATE TABLE clients (id int, owner text); INSERT INTO clients VALUES (1, 'a'); ALTER TABLE clients ENABLE ROW LEVEL SECURITY; CREATE POLICY own ON clients USING (owner = current_user); GRANT SELECT ON clients TO ${role};`);
    try {
      // Act
      const report = await runRestoreTest(deps({ source: { ...source, database, user: role }, target: { ...target, user: role } }), OPTIONS);

      // Assert
      expect(report.ok).toBe(false);
      expect(report.error).toMatch(
        new RegExp(`query would be affected by row-level security policy for table "clients".*; the backup role "${role}" is subject to that table's row-level security, and pg_dump will not dump only the rows a policy shows it: have an admin run ALTER ROLE "${role}" BYPASSRLS, or back up as the table's owner$`),
      );
      expectNoScratchLeft(report.scratchDatabase);
    } finally {
      psql(cluster, 'postgres', `DROP DATABASE ${database} WITH (FORCE)`);
      psql(cluster, 'postgres', `DROP ROLE ${role}`);
    }
  });

  it('fails before taking its backup when the sessions of the role default to read-only, naming where that is set and the statement that undoes it', async () => {
    // Arrange: a role that may create databases, but whose sessions are read-only (ALTER ROLE ... SET)
    const role = `${source.database}_readonly`;
    const largeObject = psql(cluster, source.database, 'SELECT min(oid) FROM pg_largeobject_metadata');
    psql(cluster, source.database, `CREATE ROLE ${role} LOGIN CREATEDB; GRANT pg_read_all_data TO ${role}; GRANT SELECT ON LARGE OBJECT ${largeObject} TO ${role}; ALTER ROLE ${role} SET default_transaction_read_only = on;`);
    const keysBefore = await bucketKeys('restore-tests/');
    try {
      // Act
      const report = await runRestoreTest(deps({ source: { ...source, user: role }, target: { ...target, user: role } }), OPTIONS);

      // Assert
      expect(report.ok).toBe(false);
      expect(report.error).toBe(
        `database server ${target.host}:${target.port} is read-only for this session (default_transaction_read_only = on, set by: user), and the restore test creates its scratch database there: have an admin run ALTER ROLE "${role}" RESET default_transaction_read_only, then run the test again`,
      );
      expect(report.steps.backupSeconds).toBeUndefined();
      expect(await bucketKeys('restore-tests/')).toEqual(keysBefore);
    } finally {
      psql(cluster, source.database, `DROP OWNED BY ${role}; DROP ROLE ${role};`);
    }
  });

  it('reports the scratch database as not created when the run fails before it exists (the server refuses the connection)', async () => {
    // Arrange: nothing listens on port 1
    const unreachable = { source: { ...source, port: 1 }, target: { ...target, port: 1 } };

    // Act
    const report = await runRestoreTest(deps(unreachable), OPTIONS);

    // Assert
    expect(report.ok).toBe(false);
    expect(report.error).toMatch(/cannot connect to .*:1\//);
    expect(report.scratchCreated).toBe(false);
    expect(report.scratchDropped).toBe(true);
    expect(report.steps.cleanupSeconds).toBeUndefined();
  });

  it('fails a test that restored no table (an empty or wrong database): one line naming the database and the fix, no scratch database left', async () => {
    const empty = uniqueDatabaseName('rtest_empty');
    psql(cluster, 'postgres', `CREATE DATABASE ${empty}`);

    const report = await runRestoreTest(deps({ source: { ...source, database: empty } }), OPTIONS);

    expect(report.ok).toBe(false);
    expect(report.error).toBe(`the backup of ${empty} holds no table: the test is pointed at an empty or wrong database; check PGDATABASE / the configured database`);
    expect(report.tablesRestored).toBe(0);
    expectNoScratchLeft(report.scratchDatabase);
  });

  it('fails a test whose critical queries were all skipped (their tables absent): it proved no critical data', async () => {
    // Tables, but none the default queries read: the fixture's leaf tables without company.
    const other = uniqueDatabaseName('rtest_other');
    psql(cluster, 'postgres', `CREATE DATABASE ${other}`);
    psql(cluster, other, FIXTURE_SQL);

    const report = await runRestoreTest(deps({ source: { ...source, database: other } }), OPTIONS);

    expect(report.ok).toBe(false);
    expect(report.error).toBe(
      `no critical query ran on the restored copy of ${other} (${report.tablesRestored} tables restored; skipped, no such table on the search path: SELECT COUNT(*) FROM company; SELECT COUNT(*) FROM booking): the test proved no critical data; point it at the right database, or set restoreTest.criticalQueries in cdk.json / --critical-query (with the schema, for tables outside the search path)`,
    );
    expect(report.criticalQueries.map((q) => q.status)).toEqual(['skipped', 'skipped']);
    expect(report.tablesRestored).toBeGreaterThan(0);
    expectNoScratchLeft(report.scratchDatabase);
  });

  it("names the database's newest published backup and its age, the RPO a restore from the catalog would give now, and says when there is none", async () => {
    // Arrange: a database of its own, with no published backup yet
    const database = uniqueDatabaseName('rtest_pub');
    psql(cluster, 'postgres', `CREATE DATABASE ${database}`);
    psql(cluster, database, "CREATE TABLE company (id int PRIMARY KEY); INSERT INTO company VALUES (1);");
    const own = { ...source, database };
    const where = { database, bucket: localS3.bucket };

    // Act: a test before any published backup, then one after a backup published two hours ago
    const none = await runRestoreTest(deps({ source: own }), OPTIONS);
    const published = await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily', startedAt: new Date(Date.now() - 7_200_000) });
    const found = await runRestoreTest(deps({ source: own }), OPTIONS);

    // Assert: both pass (the test proves the mechanism); each says what a restore from the catalog has
    expect([none.ok, found.ok]).toEqual([true, true]);
    expect(none.latestPublished).toBeNull();
    expect(restoreTestText(none, where)).toContain(`\n  no published backup of ${database} in s3://${localS3.bucket}: a restore from the catalog has nothing to restore\n`);
    expect(found.latestPublished).toEqual({ manifestKey: published.manifestKey, ageSeconds: expect.any(Number) });
    expect((found.latestPublished as { ageSeconds: number }).ageSeconds).toBeGreaterThanOrEqual(7200);
    expect(restoreTestText(found, where)).toMatch(
      new RegExp(`\n {2}latest published backup of ${database}: ${published.manifestKey.replaceAll('.', '\\.')}, 2\\.0 h old \\(72\\d\\d s\\): the RPO of a restore from the catalog now; its checksum is not verified here \\(check it: npx --no atmr-dr backups verify latest\\)\n`),
    );
    // The RPO measured is that of the test's own backup, and the line says so.
    expect(restoreTestText(found, where)).toMatch(/\n {2}RPO \d+\.\d s \(age of the backup this test took\): objective 900 s met\n/);
  });

  it('takes the catalog\'s no-backup refusal for "none published" by its type, whatever its words', async () => {
    // Arrange: the refusal of `latest` for a database without a backup, worded otherwise than today
    const resolve = jest.spyOn(catalog, 'resolveBackup').mockRejectedValueOnce(new NoBackupError('nothing published for this database', 'publish one'));

    try {
      // Act
      const report = await runRestoreTest(deps(), OPTIONS);

      // Assert: none published (the report's "no published backup"), not a catalog that could not be read
      expect(resolve).toHaveBeenCalledWith(expect.anything(), 'latest', { database: source.database });
      expect(report.latestPublished).toBeNull();
      expect(report.ok).toBe(true);
    } finally {
      resolve.mockRestore();
    }
  });

  it('stopped during the load, reports what it ran: the RTO as a lower bound, the download and the partial load, no RPO verdict, no check it did not run', async () => {
    // Arrange: an operator's stop (Ctrl-C) as the load begins
    const stop = new AbortController();
    const onLoad = () => {
      stop.abort(new Error('received SIGINT'));
      return () => undefined;
    };

    const logged: string[] = [];

    // Act
    const report = await runRestoreTest(deps({ signal: stop.signal, onLoad, log: (line) => logged.push(line) }), OPTIONS);

    // Assert: the measures it took, and no other
    expect(report.ok).toBe(false);
    expect(report.error).toMatch(/restore interrupted \(received SIGINT\)/);
    // The scratch database never existed: said once, as not created (not "untouched"), and the
    // failure is the report's to say, not also a progress line.
    expect(report.error).toMatch(new RegExp(`; scratch database "${report.scratchDatabase}" not created$`));
    expect(report.scratchCreated).toBe(false);
    expect(logged.filter((line) => line.includes('received SIGINT'))).toEqual([]);
    expect(report.rtoSeconds).toBeUndefined();
    expect(report.rtoAtLeastSeconds).toEqual(expect.any(Number));
    expect(report.rpoMet).toBeUndefined();
    expect(report.tablesRestored).toBeUndefined();
    expect(report.steps).toEqual(expect.objectContaining({ backupSeconds: expect.any(Number), downloadSeconds: expect.any(Number), restoreSeconds: expect.any(Number) }));
    const text = restoreTestText(report);
    expect(text).not.toMatch(/point in time proven|tables restored/);
    expect(text).toMatch(/\n {2}RTO more than \d+\.\d s \(stopped during the restore step\): objective 1800 s not judged, no restore completed\n/);
    expect(text).toMatch(/\n {2}RPO \d+\.\d s \(age of the backup this test took\): objective 900 s not judged, no restore completed\n/);
    expectNoScratchLeft(report.scratchDatabase);
  });

  it('whose own upload comes back corrupt, says so and to check the bucket, with no RPO verdict, no point in time and no table, and has the download in its steps', async () => {
    // Arrange: the test's own upload comes back corrupt (one byte flipped in S3 after the backup)
    const corrupting = async (...args: Parameters<typeof runBackup>): Promise<BackupResult> => {
      const result = await runBackup(...args);
      const custom = result.manifest.objects.find((o) => o.format === 'custom')!.key;
      const bytes = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: localS3.bucket, Key: custom }))).Body!.transformToByteArray());
      bytes[100] ^= 0x10;
      await s3.send(new PutObjectCommand({ Bucket: localS3.bucket, Key: custom, Body: bytes }));
      return result;
    };

    // Act
    const report = await runRestoreTest(deps({ backup: corrupting }), OPTIONS);

    // Assert
    expect(report.ok).toBe(false);
    expect(report.error).toMatch(/sha256/);
    // Its own upload: no other backup to choose; the storage or the network changed it.
    expect(report.error).toMatch(/: the backup this test uploaded came back corrupt \(the storage or the network between here and S3 changed it\): check the bucket \(its storage, any proxy in front of it\), then run the test again$/);
    expect(report.error).not.toMatch(/choose another backup/);
    expect(report.rpoMet).toBeUndefined();
    expect(report.rtoAtLeastSeconds).toBeUndefined();
    expect(report.steps).toEqual(expect.objectContaining({ downloadSeconds: expect.any(Number) }));
    expect(report.steps.restoreSeconds).toBeUndefined();
    const text = restoreTestText(report);
    expect(text).not.toMatch(/point in time proven|tables restored/);
    expect(text).toContain('\n  RTO not measured: no restore completed\n');
    expect(text).toMatch(/\n {2}RPO \d+\.\d s \(age of the backup this test took\): objective 900 s not judged, no restore completed\n/);
    expectNoScratchLeft(report.scratchDatabase);
  });

  it('reports the scratch database as created and dropped after a restore', async () => {
    const report = await runRestoreTest(deps(), { ...OPTIONS, criticalQueries: [] });

    expect(report.ok).toBe(true);
    expect(report.scratchCreated).toBe(true);
    expect(report.scratchDropped).toBe(true);
    expectNoScratchLeft(report.scratchDatabase);
  });

  it('fails (and leaves nothing behind) when the backup is not the point in time it claims', async () => {
    // Arrange: an older backup, then transactions on the source; the "backup" step hands back the old one
    const older = await runBackup({ s3, bucket: localS3.bucket, connection: source }, { tier: 'hourly', formats: ['custom'], unpublishedPrefix: 'restore-tests/backups/' });
    psql(cluster, source.database, 'CREATE TEMP TABLE moves_the_horizon (id int); INSERT INTO moves_the_horizon VALUES (1);');
    const staleBackup = async (): Promise<BackupResult> => older;

    // Act
    const report = await runRestoreTest(deps({ backup: staleBackup }), OPTIONS);

    // Assert
    expect(report.ok).toBe(false);
    expect(report.pointInTime?.ok).toBe(false);
    expect(report.error).toMatch(/holds snapshot \d+:\d+:.*, outside the test's window .*: the backup is not the point in time it claims/);
    expectNoScratchLeft(report.scratchDatabase);
  });

  it('scheduled mode restores the latest backup of the tier of that database, with RPO = age of that backup', async () => {
    const startedAt = new Date(Date.now() - 3_600_000);
    await writeFixtureBackup(s3, localS3.bucket, cluster, source.database, { tier: 'daily', startedAt });

    const report = await runRestoreTest(deps({ source: undefined }), { ...OPTIONS, takeBackup: false, tier: 'daily', database: source.database });

    expect(report.ok).toBe(true);
    expect(report.manifestKey).toMatch(/^daily\//);
    expect(report.pointInTime).toBeUndefined();
    expect(report.rpoSeconds).toBeGreaterThanOrEqual(3600);
    expect(report.rpoMet).toBe(false);
    expect(report.steps.backupSeconds).toBeUndefined();
    expectNoScratchLeft(report.scratchDatabase);
  });

  it('reports a corrupt latest backup as a failed test and leaves no scratch database', async () => {
    const backup = await writeFixtureBackup(s3, localS3.bucket, cluster, source.database, { tier: 'weekly' });
    const custom = backup.manifest.objects.find((o) => o.format === 'custom')!.key;
    const bytes = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: localS3.bucket, Key: custom }))).Body!.transformToByteArray());
    bytes[100] ^= 0x10;
    await s3.send(new PutObjectCommand({ Bucket: localS3.bucket, Key: custom, Body: bytes }));

    const report = await runRestoreTest(deps({ source: undefined }), { ...OPTIONS, takeBackup: false, tier: 'weekly', database: source.database });

    expect(report.ok).toBe(false);
    expect(report.error).toMatch(/sha256 .*corrupt/);
    expect(report.rtoSeconds).toBeUndefined();
    expectNoScratchLeft(report.scratchDatabase);
  });
});

describe('databases left by a restore test that was killed (kill -9 mid-restore: no cleanup ran)', () => {
  const DAY_MS = 24 * 3600_000;
  /** A scratch database name as a test started at `at` (ms) makes it, and the staging database the restore gives it. */
  const scratchAt = (at: number) => `atmr_dr_restore_test_${runId(at)}`;
  const stagingOf = (scratch: string) => `${siblingPrefix(scratch, 'restore')}${runId()}`;
  const create = (names: string[]) => names.forEach((name) => psql(cluster, 'postgres', `CREATE DATABASE "${name}"`));
  const dropAll = (names: string[]) => names.forEach((name) => psql(cluster, 'postgres', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));

  it('drops the scratch and staging databases of a test started over a day ago that no session is in, one warning line each naming it and its size, before its own restore', async () => {
    // Arrange: what a test killed two days ago (during its checks) and one killed three days ago (during pg_restore) left
    const twoDaysAgo = Date.now() - 2 * DAY_MS;
    const threeDaysAgo = twoDaysAgo - DAY_MS;
    const killedInChecks = scratchAt(twoDaysAgo);
    const killedInLoad = stagingOf(scratchAt(threeDaysAgo));
    create([killedInChecks, killedInLoad]);
    const warnings: string[] = [];
    const lines: string[] = [];

    try {
      // Act
      const report = await runRestoreTest(deps({ warn: (line) => {
            lines.push(line);
            warnings.push(line);
          }, log: (line) => lines.push(line) }), OPTIONS);

      // Assert: both dropped, said before the restore began; the test itself passed
      expect(report.ok).toBe(true);
      expect(databaseExists(cluster, killedInChecks)).toBe(false);
      expect(databaseExists(cluster, killedInLoad)).toBe(false);
      // The time a staging database's line gives is its test's start (its scratch name's), not the staging id's (now).
      const started = (name: string) => new Date(name === killedInChecks ? twoDaysAgo : threeDaysAgo).toISOString().slice(0, 16).replace('T', ' ');
      for (const name of [killedInChecks, killedInLoad]) {
        expect(warnings).toContainEqual(
          expect.stringMatching(new RegExp(`^dropped database "${name}" \\(\\d+(\\.\\d+)? [KM]iB\\), of a restore test started ${started(name)} UTC, left by a test that was killed \\(no session was connected to it\\)$`)),
        );
      }
      expect(warnings).toHaveLength(2);
      // Before the restore: the room they held is back for this test's copy.
      expect(lines.findIndex((line) => line.startsWith('restoring '))).toBe(lines.indexOf(warnings[1]) + 1);
    } finally {
      dropAll([killedInChecks, killedInLoad]);
    }
  });

  it('leaves alone a database a session is in, a recent one (named, with its DROP), and any name a restore test does not make', async () => {
    // Arrange: an old scratch database someone is connected to; one of a test started an hour ago;
    // names that only look like a test's (a staging name whose mark is not its scratch's, an id that is not one)
    const old = Date.now() - 2 * DAY_MS;
    const inUse = scratchAt(old);
    const recent = scratchAt(Date.now() - 3600_000);
    const oldScratch = scratchAt(old - 1000);
    const wrongMark = `${oldScratch}_restore_0badc0de_${runId(old)}`;
    const notAnId = `atmr_dr_restore_test_${runId(old).slice(0, 8)}_copy`;
    const prefixOnly = `atmr_dr_restore_test_${runId(old)}x`;
    const all = [inUse, recent, wrongMark, notAnId, prefixOnly];
    create(all);
    const session = testClient({ host: cluster.host, port: cluster.port, user: cluster.user, database: inUse });
    await session.connect();
    const warnings: string[] = [];

    try {
      // Act: the function's scheduled test
      await writeFixtureBackup(s3, localS3.bucket, cluster, source.database, { tier: 'daily' });
      const report = await runRestoreTest(deps({ source: undefined, warn: (line) => warnings.push(line) }), { ...OPTIONS, takeBackup: false, tier: 'daily', database: source.database });

      // Assert: every one still there; only the recent one named
      expect(report.ok).toBe(true);
      for (const name of all) expect(databaseExists(cluster, name)).toBe(true);
      expect(warnings).toEqual([
        expect.stringMatching(
          new RegExp(`^database "${recent}" \\(\\d+(\\.\\d+)? [KM]iB\\), of a restore test started \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d UTC and no session is connected to it: left in place, it may be a running test's; if no restore test is running, DROP DATABASE "${recent}"$`),
        ),
      ]);
    } finally {
      await session.end();
      dropAll(all);
    }
  });
});

describe("the source database's own timeouts, which its restored copy keeps", () => {
  it("neither the backup, the restore into a new name, nor the restore test's queries on the copy take them; the application's sessions on the copy still do", async () => {
    // Arrange: production's statement_timeout, shorter than a critical query that takes half a
    // second whatever the machine's load (pg_sleep); the trivial statements around it take far less
    const database = uniqueDatabaseName('rtest_timeout');
    psql(cluster, 'postgres', `CREATE DATABASE ${database}`);
    psql(cluster, database, 'CREATE TABLE ledger (id int PRIMARY KEY); INSERT INTO ledger SELECT generate_series(1, 1000);');
    psql(cluster, 'postgres', `ALTER DATABASE ${database} SET statement_timeout = '200ms'`);
    const slow = 'SELECT count(*) FROM ledger, pg_sleep(0.5)';
    const copy = `${database}_copy`;
    try {
      // Act
      const report = await runRestoreTest(deps({ source: { ...source, database } }), { ...OPTIONS, criticalQueries: [slow] });
      const restored = await restoreBackup({ s3, bucket: localS3.bucket, connection: target, jobs: 2 }, { ref: report.manifestKey!, targetDb: copy });

      // Assert
      expect(report.error).toBeUndefined();
      expect(report.criticalQueries).toEqual([{ sql: slow, status: 'ok', detail: '1000' }]);
      expect(restored.rowsRestored).toBe(1000);
      expect(psql(cluster, copy, 'SHOW statement_timeout')).toBe('200ms');
      expect(() => psql(cluster, copy, slow)).toThrow(/canceling statement due to statement timeout/);
    } finally {
      psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${copy}; DROP DATABASE ${database}`);
    }
  }, 120_000);
});

describe('a server that goes away during the restore test', () => {
  it('reports the scratch database as not created, and names the staging database left with its DROP, when the server is gone before the swap', async () => {
    // Arrange: a published backup on a cluster of its own, and a pg_restore that stops that server and fails
    const gone = await serverThatGoesAway('gone_rt_src');
    try {
      await writeFixtureBackup(s3, localS3.bucket, gone.cluster, 'gone_rt_src', { tier: 'weekly' });
      const ownTarget: PgConnection = { host: gone.cluster.host, port: gone.cluster.port, user: gone.cluster.user, database: 'postgres' };

      // Act
      const report = await runRestoreTest({ s3, bucket: localS3.bucket, target: ownTarget, pgBinDir: gone.pgBinDir }, { ...OPTIONS, takeBackup: false, tier: 'weekly', database: 'gone_rt_src' });

      // Assert: the scratch database is only ever created by the swap, which never came; what is left is the staging one
      expect(report.ok).toBe(false);
      expect(report.scratchCreated).toBe(false);
      expect(report.scratchDropped).toBe(true);
      expect(report.error).toMatch(/could not drop staging database (atmr_dr_restore_test_\w+_restore_\w+) \(cannot connect to .*\): drop it with DROP DATABASE "\1" WITH \(FORCE\)$/);
    } finally {
      gone.cleanup();
    }
  }, 120_000);
});

describe('a TMPDIR too small for the restore test', () => {
  /** A source whose dump is about 2 MiB (hex text compresses to about half), with a published latest backup. */
  async function bigSource(): Promise<{ connection: PgConnection; published: BackupResult }> {
    const database = uniqueDatabaseName('rtest_space');
    psql(cluster, 'postgres', `CREATE DATABASE ${database}`);
    psql(cluster, database, 'CREATE TABLE note (id int PRIMARY KEY, body text); INSERT INTO note SELECT i, md5(random()::text) || md5(random()::text) FROM generate_series(1, 60000) i;');
    const published = await writeFixtureBackup(s3, localS3.bucket, cluster, database, { tier: 'daily' });
    return { connection: { ...source, database }, published };
  }

  itWithSmallDisk("refuses before taking its backup when TMPDIR cannot hold a dump the size of the database's last backup: one line with the sizes, nothing written to the bucket", async () => {
    // Arrange: a 1 MiB TMPDIR; the last backup's .dump is larger
    const { connection, published } = await bigSource();
    const dump = published.manifest.objects.find((o) => o.format === 'custom')!;
    expect(dump.bytes).toBeGreaterThan(1024 * 1024);
    const disk = mountSmallDisk(1024 * 1024);
    const keysBefore = await bucketKeys('restore-tests/');
    try {
      // Act
      const report = await runRestoreTest(deps({ source: connection, tempDir: disk.path }), OPTIONS);

      // Assert
      expect(report.ok).toBe(false);
      expect(report.error).toMatch(
        new RegExp(
          `^not enough space in TMPDIR \\(${disk.path}\\) for the test's download, sized by the last backup of "${connection.database}" \\(${dump.key.replaceAll('.', '\\.')}\\); nothing was backed up: [\\d.]+ (KiB|MiB) free, [\\d.]+ MiB needed \\(object [\\d.]+ MiB x 1\\.1\\); the backup is not at fault: point TMPDIR at a larger disk`,
        ),
      );
      expect(report.steps.backupSeconds).toBeUndefined();
      expect(await bucketKeys('restore-tests/')).toEqual(keysBefore);
      expect(report.scratchCreated).toBe(false);
    } finally {
      disk.unmount();
      psql(cluster, 'postgres', `DROP DATABASE ${connection.database}`);
    }
  }, 120_000);

  itWithSmallDisk('runs when TMPDIR is smaller than the database but holds its dump: the database size is not what the download needs', async () => {
    // Arrange: 8 MiB, less than pg_database_size (the catalogs alone are about 7 MiB), several times the dump
    const { connection } = await bigSource();
    expect(Number(psql(cluster, connection.database, 'SELECT pg_database_size(current_database())'))).toBeGreaterThan(8 * 1024 * 1024);
    const disk = mountSmallDisk(8 * 1024 * 1024);
    try {
      // Act
      const report = await runRestoreTest(deps({ source: connection, tempDir: disk.path }), { ...OPTIONS, criticalQueries: [] });

      // Assert
      expect(report.error).toBeUndefined();
      expect(report.ok).toBe(true);
      expect(report.rowsRestored).toBe(60000);
    } finally {
      disk.unmount();
      psql(cluster, 'postgres', `DROP DATABASE ${connection.database}`);
    }
  }, 120_000);
});
