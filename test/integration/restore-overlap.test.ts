import { S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../../lambdas/shared/aws';
import type { OperatorError } from '../../lambdas/shared/errors';
import type { PgConnection } from '../../lambdas/shared/pg-connection';
import { restoreBackup } from '../../lambdas/restore/restore';
import { RESTORE_LOCK_KEY } from '../../lambdas/restore/target';
import { testCluster, uniqueDatabaseName } from '../support/cluster';
import { psql } from '../support/postgres';
import { type HoldingProxy, LocalS3, startHoldingProxy, startLocalS3 } from '../support/s3';
import { FIXTURE_SQL } from './backup-fixture';
import { writeFixtureBackup } from '../lambdas/restore/fixtures';

/**
 * What a restore does at the same time: the session that holds the target's lock is opened while
 * the manifest is read (each a round trip or more), and a failure of either is told as when they
 * ran one after the other.
 */
const cluster = testCluster();
const connection: PgConnection = { host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' };
let localS3: LocalS3;
let s3: S3Client;
let source: string;
let manifestKey: string;

beforeAll(async () => {
  localS3 = await startLocalS3();
  s3 = createS3Client(localS3.env);
  source = uniqueDatabaseName('overlap_src');
  psql(cluster, 'postgres', `CREATE DATABASE ${source}`);
  psql(cluster, source, FIXTURE_SQL);
  ({ manifestKey } = await writeFixtureBackup(s3, localS3.bucket, cluster, source, { tier: 'daily' }));
}, 120_000);

afterAll(async () => {
  await localS3?.stop();
});

/** Whether a session holds the restore lock of `target` (lockTarget's advisory lock). */
function targetLocked(target: string): boolean {
  return psql(cluster, 'postgres', `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = ${RESTORE_LOCK_KEY}::int::oid AND objid = hashtext('${target}')::oid AND objsubid = 2`).trim() !== '0';
}

describe('the manifest and the session at once', () => {
  it('takes the target\'s lock while the manifest\'s GET is still unanswered, then restores', async () => {
    // Arrange: the manifest's answer held back
    const target = uniqueDatabaseName('overlap_target');
    let proxy: HoldingProxy | undefined;
    try {
      proxy = await startHoldingProxy(localS3.endpoint, /^GET \S*\.manifest\.json/);
      const held = proxy;
      const restoring = restoreBackup({ s3: createS3Client({ ...localS3.env, AWS_ENDPOINT_URL_S3: held.endpoint }), bucket: localS3.bucket, connection, jobs: 2 }, { ref: manifestKey, targetDb: target });
      restoring.catch(() => undefined);
      await held.holding;

      // Act: look for the lock while the GET waits
      let locked = false;
      for (const until = Date.now() + 10_000; !locked && Date.now() < until; await new Promise((resolve) => setTimeout(resolve, 50))) locked = targetLocked(target);
      held.release();
      const result = await restoring;

      // Assert
      expect(locked).toBe(true);
      expect(result.targetDb).toBe(target);
      expect(targetLocked(target)).toBe(false);
    } finally {
      await proxy?.stop();
      psql(cluster, 'postgres', `DROP DATABASE IF EXISTS ${target}`);
    }
  }, 60_000);

  it('says the manifest\'s failure, and leaves no session holding the target\'s lock', async () => {
    // Arrange
    const target = uniqueDatabaseName('overlap_target');
    const missing = manifestKey.replace(/\.manifest\.json$/, '9.manifest.json');

    // Act
    const error = await restoreBackup({ s3, bucket: localS3.bucket, connection, jobs: 2 }, { ref: missing, targetDb: target }).then(
      () => undefined,
      (e: unknown) => e as OperatorError,
    );

    // Assert: the manifest's line, the lock already given back when the restore answers
    expect(error?.message).toContain(missing);
    expect(targetLocked(target)).toBe(false);
    expect(psql(cluster, 'postgres', `SELECT count(*) FROM pg_database WHERE datname LIKE '${target}%'`).trim()).toBe('0');
  });
});
