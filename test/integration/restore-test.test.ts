import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { runBackup } from '../../lambdas/backup/backup';
import { CANARY_TABLE, RestoreTestDeps, RestoreTestOptions, runRestoreTest } from '../../lambdas/restore/restore-test';
import { createS3Client } from '../../lambdas/shared/aws';
import { PgConnection } from '../../lambdas/shared/pg-connection';
import { testCluster, uniqueDatabaseName } from '../support/cluster';
import { psql } from '../support/postgres';
import { LocalS3, startLocalS3 } from '../support/s3';
import { FIXTURE_SQL } from './backup-fixture';
import { databaseExists, databasesLike, writeFixtureBackup } from '../lambdas/restore/fixtures';

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

beforeAll(async () => {
  localS3 = await startLocalS3();
  s3 = createS3Client(localS3.env);
  const database = uniqueDatabaseName('rtest_src');
  psql(cluster, 'postgres', `CREATE DATABASE ${database}`);
  psql(cluster, database, FIXTURE_SQL);
  psql(cluster, database, "CREATE TABLE company (id int PRIMARY KEY, name text); INSERT INTO company VALUES (1, 'ATMR'), (2, 'Transports Léman');");
  source = { host: cluster.host, port: cluster.port, user: cluster.user, database };
  target = { ...source, database: 'postgres' };
}, 120_000);

afterAll(async () => {
  await localS3?.stop();
});

describe('restore test (test_backup_restore, automated)', () => {
  it('backs up, writes a canary after the backup, restores into a scratch database, verifies and drops it', async () => {
    const report = await runRestoreTest(deps(), OPTIONS);

    expect(report.error).toBeUndefined();
    expect(report.ok).toBe(true);
    expect(report.manifestKey).toMatch(/^hourly\/rtest_src_.*\.manifest\.json$/);
    expect(report.canaryAbsent).toBe(true);
    expect(report.tablesRestored).toBeGreaterThanOrEqual(9);
    expect(report.rowsRestored).toBeGreaterThan(3000);
    expect(report.rtoSeconds).toBeGreaterThan(0);
    expect(report.rtoMet).toBe(true);
    expect(report.rpoSeconds).toBeGreaterThanOrEqual(0);
    expect(report.rpoSeconds).toBeLessThan(120);
    expect(Object.keys(report.steps)).toEqual(expect.arrayContaining(['backupSeconds', 'canarySeconds', 'downloadSeconds', 'restoreSeconds', 'verifySeconds', 'checksSeconds', 'cleanupSeconds']));
    expect(report.criticalQueries).toEqual([
      { sql: 'SELECT COUNT(*) FROM company', status: 'ok', detail: '2' },
      expect.objectContaining({ sql: 'SELECT COUNT(*) FROM booking', status: 'skipped' }),
    ]);
    expect(report.scratchDropped).toBe(true);
    expectNoScratchLeft(report.scratchDatabase);
    // The canary table stays (it is part of later backups); the row written for this run is gone.
    expect(psql(cluster, source.database, `SELECT count(*) FROM ${CANARY_TABLE}`)).toBe('0');
  });

  it('drops the scratch database when a critical query fails, and reports the failure', async () => {
    const report = await runRestoreTest(deps(), { ...OPTIONS, criticalQueries: ['SELECT COUNT(*) FROM company', 'SELECT 1 / (COUNT(*) - COUNT(*)) FROM company'] });

    expect(report.ok).toBe(false);
    expect(report.error).toMatch(/critical query failed on the restored copy: SELECT 1 \/ .*division by zero/);
    expect(report.criticalQueries.map((q) => q.status)).toEqual(['ok', 'failed']);
    expect(report.scratchDropped).toBe(true);
    expectNoScratchLeft(report.scratchDatabase);
  });

  it('fails (and leaves nothing behind) when the canary row is in the restored copy', async () => {
    const canaryId = `canary-leaked-${Date.now()}`;
    // A write path whose "backup" is really taken after the canary: the test must catch it.
    const backupAfterCanary: RestoreTestDeps['backup'] = async (backupDeps, options) => {
      psql(cluster, source.database, `INSERT INTO ${CANARY_TABLE} (id) VALUES ('${canaryId}')`);
      return runBackup(backupDeps, options);
    };

    const report = await runRestoreTest(deps({ backup: backupAfterCanary, canaryId: () => canaryId }), OPTIONS);

    expect(report.ok).toBe(false);
    expect(report.canaryAbsent).toBe(false);
    expect(report.error).toMatch(new RegExp(`canary row ${canaryId}, written after the backup, is in the restored copy`));
    expectNoScratchLeft(report.scratchDatabase);
    expect(psql(cluster, source.database, `SELECT count(*) FROM ${CANARY_TABLE} WHERE id = '${canaryId}'`)).toBe('0');
  });

  it('scheduled mode restores the latest backup of the tier, with RPO = age of that backup', async () => {
    const startedAt = new Date(Date.now() - 3_600_000);
    await writeFixtureBackup(s3, localS3.bucket, cluster, source.database, { tier: 'daily', startedAt });

    const report = await runRestoreTest(deps({ source: undefined }), { ...OPTIONS, takeBackup: false, tier: 'daily' });

    expect(report.ok).toBe(true);
    expect(report.manifestKey).toMatch(/^daily\//);
    expect(report.canaryAbsent).toBeUndefined();
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

    const report = await runRestoreTest(deps({ source: undefined }), { ...OPTIONS, takeBackup: false, tier: 'weekly' });

    expect(report.ok).toBe(false);
    expect(report.error).toMatch(/sha256 .*corrupt/);
    expect(report.rtoSeconds).toBeUndefined();
    expectNoScratchLeft(report.scratchDatabase);
  });
});
