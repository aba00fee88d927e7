import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { RDSClient } from '@aws-sdk/client-rds';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { z } from 'zod';
import { OperatorError, oneLine } from '../shared/errors';
import { LatestPointerSchema, parseManifest } from '../shared/manifest';
import { emitSingleMetric } from '../shared/single-metric';
import { describeConnection, resolveConnection } from '../shared/pg-connection';
import {
  BACKUP_TIERS,
  CLOCK_SKEW_TOLERANCE_MS,
  LATEST_POINTER_KEY,
  RESTORE_TEST_AGE_BASELINE_KEY,
  backupAgeBaselineKey,
  latestDatabaseTierPointerKey,
  manifestKeyStartedAt,
  type BackupTier,
} from '../shared/s3-layout';
import { parseEnvSettings } from '../shared/env-settings';
import { getText, getTextIfExists } from '../shared/s3-objects';
import { ageBaseline } from './age-baseline';
import { DEFAULT_COMPRESSION_LEVEL, runBackup } from './backup';
import { runRdsSide, type PitrStatus, type TierSnapshotResult } from './rds';
import { REPORTED_FAILURE_EXIT_CODE, RUNNER_ENV, RUNNER_METRICS } from './runner-contract';

/**
 * One scheduled backup run, the same for the Lambda handler and the ECS Fargate task:
 * resolve the connection (Secrets Manager or IAM auth, at run time), run the backup core, then the
 * RDS side (PITR check every run, snapshot + prune for weekly/monthly). Any failure fails the run.
 */

const positiveInt = z.coerce.number().int().positive();

/** The runner's non-secret settings, from its environment (set by lib/constructs/backups.ts). */
const RunnerSettingsSchema = z.object({
  [RUNNER_ENV.bucket]: z.string().min(1),
  [RUNNER_ENV.secretArn]: z.string().startsWith('arn:').optional(),
  [RUNNER_ENV.iamAuthUser]: z.string().min(1).optional(),
  [RUNNER_ENV.host]: z.string().min(1),
  [RUNNER_ENV.port]: z.coerce.number().int().min(1).max(65535).default(5432),
  [RUNNER_ENV.database]: z.string().min(1),
  [RUNNER_ENV.instanceIdentifier]: z.string().min(1),
  [RUNNER_ENV.compressionLevel]: z.coerce.number().int().min(0).max(9).default(DEFAULT_COMPRESSION_LEVEL),
  [RUNNER_ENV.partSizeMiB]: z.coerce.number().int().min(5).max(512).default(5),
  [RUNNER_ENV.weeklySnapshotRetention]: positiveInt.default(4),
  [RUNNER_ENV.monthlySnapshotRetention]: positiveInt.default(12),
  [RUNNER_ENV.minPitrRetentionDays]: positiveInt.default(7),
  [RUNNER_ENV.monthlyComplianceLockDays]: positiveInt.optional(),
  [RUNNER_ENV.restoreTestReportPrefix]: z.string().min(1).optional(),
});

export interface RunnerSettings {
  readonly bucket: string;
  readonly secretArn?: string;
  readonly iamAuthUser?: string;
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly instanceIdentifier: string;
  readonly compressionLevel: number;
  readonly partSizeMiB: number;
  readonly snapshotRetention: { readonly weekly: number; readonly monthly: number };
  readonly minPitrRetentionDays: number;
  /** Compliance-mode Object Lock days of the monthly tier's objects, when configured. */
  readonly monthlyComplianceLockDays?: number;
  /** Prefix of the restore-test reports, when the restore test is deployed. */
  readonly restoreTestReportPrefix?: string;
}

/** Reads the settings, or fails with one line naming the variable (a deployment defect). */
export function loadRunnerSettings(env: NodeJS.ProcessEnv = process.env): RunnerSettings {
  const s = parseEnvSettings(RunnerSettingsSchema, env, {
    what: 'runner environment',
    fix: 'it is set by the backups construct: redeploy the stack',
  });
  if (!s[RUNNER_ENV.secretArn] && !s[RUNNER_ENV.iamAuthUser]) {
    throw new OperatorError(
      `runner environment: neither ${RUNNER_ENV.secretArn} nor ${RUNNER_ENV.iamAuthUser} is set; set database.secretArn or database.iamAuthUser in cdk.json and redeploy`,
      2,
    );
  }
  return {
    bucket: s[RUNNER_ENV.bucket],
    secretArn: s[RUNNER_ENV.secretArn],
    iamAuthUser: s[RUNNER_ENV.iamAuthUser],
    host: s[RUNNER_ENV.host],
    port: s[RUNNER_ENV.port],
    database: s[RUNNER_ENV.database],
    instanceIdentifier: s[RUNNER_ENV.instanceIdentifier],
    compressionLevel: s[RUNNER_ENV.compressionLevel],
    partSizeMiB: s[RUNNER_ENV.partSizeMiB],
    snapshotRetention: { weekly: s[RUNNER_ENV.weeklySnapshotRetention], monthly: s[RUNNER_ENV.monthlySnapshotRetention] },
    minPitrRetentionDays: s[RUNNER_ENV.minPitrRetentionDays],
    monthlyComplianceLockDays: s[RUNNER_ENV.monthlyComplianceLockDays],
    restoreTestReportPrefix: s[RUNNER_ENV.restoreTestReportPrefix],
  };
}

/**
 * A run's scheduled time, as EventBridge Scheduler's `<aws.scheduler.scheduled-time>` gives it
 * (2026-12-01T02:00:00Z). Date.parse alone would take local times and roll 2026-13-01 over: only a
 * valid UTC instant.
 */
const ScheduledTimeSchema = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/)
  .refine((value) => {
    const time = new Date(value);
    return !Number.isNaN(time.getTime()) && time.toISOString().slice(0, 19) === value.slice(0, 19);
  })
  .transform((value) => new Date(value));

/**
 * The scheduled time the ECS task's `--scheduled-time` or the Lambda event's `scheduledTime`
 * carries, or one line naming `source` (where it came from) and the format (exit code 2).
 */
export function parseScheduledTime(value: unknown, source: string): Date {
  const parsed = ScheduledTimeSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const shown = typeof value === 'string' ? `"${value}"` : String(JSON.stringify(value));
  throw new OperatorError(
    `${source}: invalid time ${shown}: give an ISO 8601 UTC time such as 2026-12-01T02:00:00Z (the schedules pass <aws.scheduler.scheduled-time>)`,
    2,
  );
}

export interface ScheduledRunDeps {
  readonly settings: RunnerSettings;
  readonly s3: S3Client;
  readonly rds: RDSClient;
  readonly secretsManager: SecretsManagerClient;
  readonly metrics?: Metrics;
  readonly logger?: Logger;
  readonly now?: () => Date;
  /** Environment for libpq defaults (PGSSLMODE, PGSSLROOTCERT set by the image). */
  readonly env?: NodeJS.ProcessEnv;
  /** Region for IAM database authentication tokens. */
  readonly region?: string;
  readonly pgBinDir?: string;
  /** Aborts the dump (the Lambda deadline, SIGTERM of the ECS task). */
  readonly signal?: AbortSignal;
  /**
   * The run's scheduled time (the ECS task's `--scheduled-time`, the Lambda event's `scheduledTime`):
   * a backup of the tier published since then, by another delivery of this run, leaves it nothing
   * to do (backup.ts backupTakenSince).
   */
  readonly scheduledTime?: Date;
}

export interface ScheduledRunResult {
  readonly tier: BackupTier;
  readonly manifestKey: string;
  readonly snapshot?: TierSnapshotResult;
  readonly pitr?: PitrStatus;
}

export async function runScheduledBackup(deps: ScheduledRunDeps, tier: BackupTier): Promise<ScheduledRunResult> {
  const { settings, logger } = deps;
  const now = deps.now ?? (() => new Date());
  const errors: string[] = [];

  let manifestKey: string | undefined;
  try {
    const connection = await resolveConnection({
      env: deps.env ?? {},
      secretArn: settings.iamAuthUser ? undefined : settings.secretArn,
      secretsManager: deps.secretsManager,
      iamAuthUser: settings.iamAuthUser,
      region: deps.region,
      overrides: { host: settings.host, port: settings.port, database: settings.database },
    });
    logger?.info('backup starting', { tier, database: describeConnection(connection) });
    const result = await runBackup(
      {
        s3: deps.s3,
        bucket: settings.bucket,
        connection,
        pgBinDir: deps.pgBinDir,
        metrics: deps.metrics,
        now: deps.now,
        signal: deps.signal,
        // A new snapshot taken for the application's statement (a TRUNCATE caught between the run's
        // locks and pg_dump's) is worth a warning: a run that fails after three names it, and a
        // schedule that meets it each time is one to change. The CLI's phase lines stay at debug.
        log: (line, level) => (level === 'warn' ? logger?.warn(line, { tier }) : logger?.debug(line, { tier })),
      },
      {
        tier,
        compressionLevel: settings.compressionLevel,
        partSizeBytes: settings.partSizeMiB * 1024 * 1024,
        ...(tier === 'monthly' && settings.monthlyComplianceLockDays !== undefined && { complianceRetentionDays: settings.monthlyComplianceLockDays }),
        scheduledTime: deps.scheduledTime,
      },
    );
    manifestKey = result.manifestKey;
    // A run delivered twice (EventBridge Scheduler delivers at least once): the tier has its backup,
    // from the other delivery (of the same second, or published since the scheduled time), and this
    // one has nothing to report as a failure.
    if (result.skipped) logger?.info(result.skipped, { tier, manifestKey });
    else logger?.info('backup written', { tier, manifestKey });
  } catch (error) {
    errors.push(`backup: ${oneLine(error)}`);
  }

  // The RDS side runs even when the dump failed: a snapshot and the PITR check are independent of it.
  const rdsSide = await runRdsSide(
    { rds: deps.rds, metrics: deps.metrics, now },
    {
      instanceIdentifier: settings.instanceIdentifier,
      tier,
      minPitrRetentionDays: settings.minPitrRetentionDays,
      snapshotRetention: settings.snapshotRetention,
      snapshotAt: manifestKey === undefined ? undefined : manifestKeyStartedAt(manifestKey),
    },
  );
  errors.push(...rdsSide.errors.map((e) => `rds: ${e}`));
  if (rdsSide.pitr && !rdsSide.pitr.enabled) {
    logger?.warn('PITR is off or below the minimum retention: the 15-minute RPO is not reachable', { ...rdsSide.pitr });
  }
  if (rdsSide.pitr?.noRestorableTime) {
    logger?.warn('automated backups are on but RDS reports no latest restorable time: nothing to recover to by PITR', { ...rdsSide.pitr });
  }
  if (rdsSide.snapshot?.alreadyTaken) logger?.info(`snapshot ${rdsSide.snapshot.created} already taken (another run of this second took it)`, { tier, ...rdsSide.snapshot });
  else if (rdsSide.snapshot) logger?.info('snapshot taken', { tier, ...rdsSide.snapshot });

  await emitLatestBackupAge(deps, now());
  await emitRestoreTestReportAge(deps, now());

  if (errors.length > 0 || manifestKey === undefined) {
    emitSingleMetric(deps.metrics, RUNNER_METRICS.scheduledRunFailure, MetricUnit.Count, 1);
    // Reported: the Fargate task's exit code tells ECS's stop event it needs no page of its own.
    throw new OperatorError(`${tier} backup run failed: ${errors.join(' | ')}`, REPORTED_FAILURE_EXIT_CODE);
  }
  return { tier, manifestKey, snapshot: rdsSide.snapshot, pitr: rdsSide.pitr };
}

/**
 * Age of the newest good backup (latest.json -> manifest finishedAt): rises while runs fail.
 * Then the same per tier, from the database's tier pointers, with a `Tier` dimension: every hourly
 * run thus watches the daily, weekly and monthly tiers, whose run may fail without a metric of its
 * own (a schedule disabled, a Fargate task that never started, crashed or hangs). A tier with no
 * backup yet reports the time since its age baseline (age-baseline.ts), so a tier that has never
 * succeeded since the deploy pages like one that stopped. Best effort: an unreadable pointer,
 * manifest or baseline only logs, and the tier reports no age (its alarm counts that as breaching);
 * so does a manifest dated ahead of now beyond CLOCK_SKEW_TOLERANCE_MS.
 */
export async function emitLatestBackupAge(deps: Pick<ScheduledRunDeps, 's3' | 'settings' | 'metrics' | 'logger'>, now: Date): Promise<void> {
  const metrics = deps.metrics;
  if (!metrics) return;
  const ageOf = async (pointerText: string) => {
    const pointer = LatestPointerSchema.parse(JSON.parse(pointerText));
    const manifest = parseManifest(pointer.manifest, await getText(deps.s3, deps.settings.bucket, pointer.manifest));
    // A backup stamped ahead of now (a machine whose clock ran fast) would report an age of 0 until
    // that date, silencing the alarm: its age is unknown, as an unreadable manifest's.
    const latestMs = Math.max(Date.parse(manifest.finishedAt), manifestKeyStartedAt(pointer.manifest)?.getTime() ?? 0);
    if (latestMs - now.getTime() > CLOCK_SKEW_TOLERANCE_MS) {
      throw new Error(
        `${pointer.manifest} is dated ${new Date(latestMs).toISOString()}, ${Math.round((latestMs - now.getTime()) / 1000)} s ahead of now: written by a machine whose clock ran fast, its age is unknown; take a backup of this tier (docs/backups.md)`,
      );
    }
    return secondsSince(new Date(manifest.finishedAt), now);
  };
  try {
    emitSingleMetric(metrics, RUNNER_METRICS.latestBackupAgeSeconds, MetricUnit.Seconds, await ageOf(await getText(deps.s3, deps.settings.bucket, LATEST_POINTER_KEY)));
  } catch (error) {
    deps.logger?.warn('cannot read the latest backup pointer for the age metric', { error: oneLine(error) });
  }
  for (const tier of BACKUP_TIERS) {
    try {
      const pointer = await getTextIfExists(deps.s3, deps.settings.bucket, latestDatabaseTierPointerKey(deps.settings.database, tier));
      const age =
        pointer === undefined
          ? secondsSince(await ageBaseline(deps.s3, deps.settings.bucket, backupAgeBaselineKey(deps.settings.database, tier), now), now)
          : await ageOf(pointer);
      emitSingleMetric(metrics, RUNNER_METRICS.latestBackupAgeSeconds, MetricUnit.Seconds, age, { Tier: tier });
    } catch (error) {
      deps.logger?.warn('cannot report the age of the newest backup of a tier (pointer, manifest or age baseline unreadable)', { tier, error: oneLine(error) });
    }
  }
}

/**
 * Age of the newest restore-test report; while there is none (a new deployment, before the first
 * scheduled test), the time since its age baseline (age-baseline.ts), so that RestoreTest-NotRun
 * pages only when the first report is as overdue as any later one. Best effort: a listing or
 * baseline error only logs, and no age is reported (the alarm counts that as breaching).
 */
export async function emitRestoreTestReportAge(deps: Pick<ScheduledRunDeps, 's3' | 'settings' | 'metrics' | 'logger'>, now: Date): Promise<void> {
  const prefix = deps.settings.restoreTestReportPrefix;
  if (!deps.metrics || !prefix) return;
  try {
    let newest = 0;
    let token: string | undefined;
    do {
      // Delimiter: the reports only, not what sits below them (restore-tests/backups/, the CLI
      // test's backups: a CLI run writes no report, and may have failed after its backup).
      const page = await deps.s3.send(new ListObjectsV2Command({ Bucket: deps.settings.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }));
      for (const object of page.Contents ?? []) newest = Math.max(newest, object.LastModified?.getTime() ?? 0);
      token = page.NextContinuationToken;
    } while (token);
    let since: Date;
    if (newest === 0) {
      since = await ageBaseline(deps.s3, deps.settings.bucket, RESTORE_TEST_AGE_BASELINE_KEY, now);
      deps.logger?.info('no restore-test report yet: its age counts from the baseline', { prefix, since: since.toISOString() });
    } else {
      since = new Date(newest);
    }
    emitSingleMetric(deps.metrics, RUNNER_METRICS.restoreTestReportAgeSeconds, MetricUnit.Seconds, secondsSince(since, now));
  } catch (error) {
    deps.logger?.warn('cannot report the age of the newest restore-test report', { error: oneLine(error) });
  }
}

function secondsSince(then: Date, now: Date): number {
  return Math.max(0, Math.round((now.getTime() - then.getTime()) / 1000));
}
