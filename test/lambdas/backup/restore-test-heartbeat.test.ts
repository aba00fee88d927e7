import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { emitLatestBackupAge, emitRestoreTestReportAge, loadRunnerSettings } from '../../../lambdas/backup/scheduled-run';
import { createS3Client } from '../../../lambdas/shared/aws';
import { BACKUP_TIERS, RESTORE_TEST_AGE_BASELINE_KEY, backupAgeBaselineKey, backupObjectKeys, latestDatabaseTierPointerKey } from '../../../lambdas/shared/s3-layout';
import { getText, getTextIfExists } from '../../../lambdas/shared/s3-objects';
import { startConditionalS3 } from '../../support/conditional-s3';
import { LocalS3, startLocalS3 } from '../../support/s3';

const BUCKET = 'atmr-dr-heartbeat';

/** Records what the runner emits as single metrics, with the dimensions each was given. */
function recordingMetrics() {
  const emitted: [string, string, number][] = [];
  const byTier: Record<string, number> = {};
  const metrics = {
    singleMetric: () => {
      const dimensions: Record<string, string> = {};
      return {
        addDimension: (name: string, value: string) => (dimensions[name] = value),
        addMetric: (name: string, unit: string, value: number) => {
          emitted.push([name, unit, value]);
          if (dimensions.Tier) byTier[dimensions.Tier] = value;
        },
      };
    },
  } as unknown as Metrics;
  return { metrics, emitted, byTier };
}

/** Records the runner's warnings (what it logs when it cannot report an age). */
function recordingLogger() {
  const warnings: string[] = [];
  return { logger: { warn: (message: string) => warnings.push(message) } as never, warnings };
}

const settings = (prefix?: string, database = 'atmr') =>
  loadRunnerSettings({
    BACKUP_BUCKET: BUCKET,
    DATABASE_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-3:111111111111:secret:db-AbCdEf',
    DATABASE_HOST: 'db.internal',
    DATABASE_NAME: database,
    DATABASE_INSTANCE_IDENTIFIER: 'atmr-prod',
    ...(prefix && { RESTORE_TEST_REPORT_PREFIX: prefix }),
  });

const DAY = 86_400;

describe('restore-test heartbeat (the backup runner reports the age of the newest restore-test report)', () => {
  let s3: LocalS3;

  beforeAll(async () => {
    s3 = await startLocalS3(BUCKET);
  });
  afterAll(async () => {
    await s3.stop();
  });

  // A new deployment has no report until the first scheduled test (up to 5 weeks away): its age
  // counts from the first time the runner found none, so the alarm pages only when that first
  // report is as overdue as any later one, and not 3 hours after every deploy.
  it('no report yet: age from baseline; baseline written once (a second run does not move it)', async () => {
    const client = createS3Client(s3.env);
    const deployedAt = new Date('2026-11-05T10:00:00Z');
    const first = recordingMetrics();

    await emitRestoreTestReportAge({ s3: client, settings: settings('restore-tests/'), metrics: first.metrics }, deployedAt);

    expect(first.emitted).toEqual([['RestoreTestReportAgeSeconds', 'Seconds', 0]]);
    const baseline = await getText(client, BUCKET, RESTORE_TEST_AGE_BASELINE_KEY);
    expect(JSON.parse(baseline)).toEqual({ schema: 1, since: '2026-11-05T10:00:00.000Z' });

    const second = recordingMetrics();
    await emitRestoreTestReportAge({ s3: client, settings: settings('restore-tests/'), metrics: second.metrics }, new Date(deployedAt.getTime() + 37 * DAY * 1000));

    expect(second.emitted).toEqual([['RestoreTestReportAgeSeconds', 'Seconds', 37 * DAY]]);
    expect(await getText(client, BUCKET, RESTORE_TEST_AGE_BASELINE_KEY)).toBe(baseline);
  });

  it('does not take the backups the CLI restore test keeps under restore-tests/backups/ for reports (a CLI run writes no report): the age still counts from the baseline', async () => {
    const client = createS3Client(s3.env);
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'restore-tests/backups/daily/atmr_backup_20261201_020000.dump', Body: 'PGDMP' }));
    const { metrics, emitted } = recordingMetrics();

    await emitRestoreTestReportAge({ s3: client, settings: settings('restore-tests/'), metrics }, new Date('2026-11-06T10:00:00Z'));

    expect(emitted).toEqual([['RestoreTestReportAgeSeconds', 'Seconds', DAY]]);
  });

  it('emits the age in seconds of the newest report under the prefix once one exists, not the baseline\'s', async () => {
    const client = createS3Client(s3.env);
    for (const key of ['restore-tests/2026-10-07T04-00-00Z.json', 'restore-tests/2026-11-04T04-00-00Z.json']) {
      await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: '{}' }));
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

describe('baselines of the ages, in a bucket of their own', () => {
  let s3: LocalS3;

  beforeEach(async () => {
    s3 = await startLocalS3(BUCKET);
  });
  afterEach(async () => {
    await s3.stop();
  });

  it('two runs that find no report at once keep one baseline: the one whose put-if-absent lost measures from the winner\'s', async () => {
    const earlier = new Date('2026-11-05T08:00:00Z');
    // The other run's marker lands between this run's read (nothing there) and its write.
    const conditional = await startConditionalS3(s3, async (key) => {
      if (key !== RESTORE_TEST_AGE_BASELINE_KEY || (await getTextIfExists(createS3Client(s3.env), BUCKET, key)) !== undefined) return;
      await createS3Client(s3.env).send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: JSON.stringify({ schema: 1, since: earlier.toISOString() }) }));
    });
    try {
      const { metrics, emitted } = recordingMetrics();

      await emitRestoreTestReportAge({ s3: createS3Client(conditional.env), settings: settings('restore-tests/'), metrics }, new Date('2026-11-05T10:00:00Z'));

      expect(conditional.refused).toEqual([RESTORE_TEST_AGE_BASELINE_KEY]);
      expect(emitted).toEqual([['RestoreTestReportAgeSeconds', 'Seconds', 2 * 3600]]);
      expect(JSON.parse(await getText(createS3Client(s3.env), BUCKET, RESTORE_TEST_AGE_BASELINE_KEY))).toEqual({ schema: 1, since: earlier.toISOString() });
    } finally {
      await conditional.stop();
    }
  });

  it('an unreadable baseline reports no age (the alarm then counts the missing age as breaching) and is left as it is', async () => {
    const client = createS3Client(s3.env);
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: RESTORE_TEST_AGE_BASELINE_KEY, Body: 'not json' }));
    const { metrics, emitted } = recordingMetrics();
    const { logger, warnings } = recordingLogger();

    await emitRestoreTestReportAge({ s3: client, settings: settings('restore-tests/'), metrics, logger }, new Date());

    expect(emitted).toEqual([]);
    expect(warnings).toEqual(['cannot report the age of the newest restore-test report']);
    expect(await getText(client, BUCKET, RESTORE_TEST_AGE_BASELINE_KEY)).toBe('not json');
  });

  // A tier that has never succeeded since deploy (its schedule disabled, its Fargate task never
  // started) must page like a tier that stopped: its age counts from the first run that found no pointer.
  it('backup tiers with no backup yet: age from baseline; baseline written once (a second run does not move it)', async () => {
    const client = createS3Client(s3.env);
    const deployedAt = new Date('2026-11-05T10:00:00Z');
    const first = recordingMetrics();

    await emitLatestBackupAge({ s3: client, settings: settings(), metrics: first.metrics }, deployedAt);

    expect(first.byTier).toEqual({ hourly: 0, daily: 0, weekly: 0, monthly: 0 });
    const baselines = await Promise.all(BACKUP_TIERS.map((tier) => getText(client, BUCKET, backupAgeBaselineKey('atmr', tier))));
    for (const text of baselines) expect(JSON.parse(text)).toEqual({ schema: 1, since: '2026-11-05T10:00:00.000Z' });

    const second = recordingMetrics();
    await emitLatestBackupAge({ s3: client, settings: settings(), metrics: second.metrics }, new Date(deployedAt.getTime() + 52 * 3600_000));

    expect(second.byTier).toEqual({ hourly: 52 * 3600, daily: 52 * 3600, weekly: 52 * 3600, monthly: 52 * 3600 });
    expect(await Promise.all(BACKUP_TIERS.map((tier) => getText(client, BUCKET, backupAgeBaselineKey('atmr', tier))))).toEqual(baselines);
  });

  it('a tier with a backup reports that backup\'s age, not its baseline\'s; baselines are per database', async () => {
    const client = createS3Client(s3.env);
    await emitLatestBackupAge({ s3: client, settings: settings(), metrics: recordingMetrics().metrics }, new Date('2026-11-01T00:00:00Z'));
    const startedAt = new Date('2026-11-05T02:00:00Z');
    const daily = backupObjectKeys('daily', 'atmr', startedAt).manifest;
    const manifest = {
      schema: 1,
      database: 'atmr',
      tier: 'daily',
      startedAt: startedAt.toISOString(),
      finishedAt: '2026-11-05T02:10:00.000Z',
      durationMs: 600_000,
      serverVersion: '17.2',
      pgDumpVersion: '17.2',
      objects: [{ key: backupObjectKeys('daily', 'atmr', startedAt).custom, format: 'custom', bytes: 5, sha256: 'a'.repeat(64) }],
      tables: [],
    };
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: daily, Body: JSON.stringify(manifest) }));
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: latestDatabaseTierPointerKey('atmr', 'daily'), Body: JSON.stringify({ manifest: daily }) }));
    const { metrics, byTier } = recordingMetrics();

    await emitLatestBackupAge({ s3: client, settings: settings(), metrics }, new Date('2026-11-05T12:10:00Z'));

    expect(byTier.daily).toBe(10 * 3600);
    expect(byTier.monthly).toBe((4 * 24 + 12) * 3600 + 600);
    // Another database's tiers have baselines of their own (the runner backs up one database).
    const other = recordingMetrics();
    await emitLatestBackupAge({ s3: client, settings: settings(undefined, 'billing'), metrics: other.metrics }, new Date('2026-11-05T12:10:00Z'));
    expect(other.byTier.daily).toBe(0);
  });
});
