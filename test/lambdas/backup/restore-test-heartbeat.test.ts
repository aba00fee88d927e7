import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { emitRestoreTestReportAge, loadRunnerSettings } from '../../../lambdas/backup/scheduled-run';
import { createS3Client } from '../../../lambdas/shared/aws';
import { LocalS3, startLocalS3 } from '../../support/s3';

/** Records what the runner emits as single metrics ({service} dimension only). */
function recordingMetrics() {
  const emitted: [string, string, number][] = [];
  const metrics = { singleMetric: () => ({ addMetric: (name: string, unit: string, value: number) => emitted.push([name, unit, value]) }) } as unknown as Metrics;
  return { metrics, emitted };
}

describe('restore-test heartbeat (the backup runner reports the age of the newest restore-test report)', () => {
  let s3: LocalS3;
  const settings = (prefix?: string) =>
    loadRunnerSettings({
      BACKUP_BUCKET: 'atmr-dr-heartbeat',
      DATABASE_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:db-AbCdEf',
      DATABASE_HOST: 'db.internal',
      DATABASE_NAME: 'atmr',
      DATABASE_INSTANCE_IDENTIFIER: 'atmr-prod',
      ...(prefix && { RESTORE_TEST_REPORT_PREFIX: prefix }),
    });

  beforeAll(async () => {
    s3 = await startLocalS3('atmr-dr-heartbeat');
  });
  afterAll(async () => {
    await s3.stop();
  });

  it('emits nothing while no report exists (the alarm treats the missing age as "never ran")', async () => {
    const { metrics, emitted } = recordingMetrics();

    await emitRestoreTestReportAge({ s3: createS3Client(s3.env), settings: settings('restore-tests/'), metrics }, new Date());

    expect(emitted).toEqual([]);
  });

  it('does not take the backups the CLI restore test keeps under restore-tests/backups/ for reports (a CLI run writes no report)', async () => {
    const client = createS3Client(s3.env);
    await client.send(new PutObjectCommand({ Bucket: 'atmr-dr-heartbeat', Key: 'restore-tests/backups/daily/atmr_backup_20261201_020000.dump', Body: 'PGDMP' }));
    const { metrics, emitted } = recordingMetrics();

    await emitRestoreTestReportAge({ s3: client, settings: settings('restore-tests/'), metrics }, new Date());

    expect(emitted).toEqual([]);
  });

  it('emits the age in seconds of the newest report under the prefix', async () => {
    const client = createS3Client(s3.env);
    for (const key of ['restore-tests/2026-10-07T04-00-00Z.json', 'restore-tests/2026-11-04T04-00-00Z.json']) {
      await client.send(new PutObjectCommand({ Bucket: 'atmr-dr-heartbeat', Key: key, Body: '{}' }));
    }
    const { metrics, emitted } = recordingMetrics();
    const now = new Date(Date.now() + 3_600_000);

    await emitRestoreTestReportAge({ s3: client, settings: settings('restore-tests/'), metrics }, now);

    expect(emitted).toHaveLength(1);
    const [name, unit, age] = emitted[0];
    expect([name, unit]).toEqual(['RestoreTestReportAgeSeconds', 'Seconds']);
    expect(age).toBeGreaterThanOrEqual(3590);
    expect(age).toBeLessThan(3700);
  });

  it('emits nothing when the restore test is not deployed (no prefix configured)', async () => {
    const { metrics, emitted } = recordingMetrics();

    await emitRestoreTestReportAge({ s3: createS3Client(s3.env), settings: settings(), metrics }, new Date());

    expect(emitted).toEqual([]);
  });
});
