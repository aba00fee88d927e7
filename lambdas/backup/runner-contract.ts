/**
 * What the backup runner's infrastructure (lib/constructs/backups.ts) and its code
 * (lambdas/backup/{handler,task,scheduled-run,rds}.ts) must agree on: environment variable names,
 * metric names, the Powertools service name, snapshot naming and tags. No runtime dependencies,
 * so that the CDK app can import it without pulling in the SDK or pg.
 */

import { OperatorError } from '../shared/errors';

/** Powertools service name of the runner: also the `service` dimension of every metric it emits. */
export const BACKUP_RUNNER_SERVICE = 'backup-runner';

/**
 * Powertools service name of the PITR watch (lambdas/backup/pitr-watch.ts), the `service` dimension
 * of the PITR metrics it publishes every 5 minutes: the PitrOff, PitrLag and PitrUnread alarms read
 * these, not the hourly run's (service backup-runner), so that a watch gone silent is not hidden by
 * the hourly run's one datapoint an hour.
 */
export const PITR_WATCH_SERVICE = 'pitr-watch';

/** Non-secret settings the runner reads from its environment (never a password or token). */
export const RUNNER_ENV = {
  bucket: 'BACKUP_BUCKET',
  secretArn: 'DATABASE_SECRET_ARN',
  iamAuthUser: 'DATABASE_IAM_AUTH_USER',
  host: 'DATABASE_HOST',
  port: 'DATABASE_PORT',
  database: 'DATABASE_NAME',
  instanceIdentifier: 'DATABASE_INSTANCE_IDENTIFIER',
  compressionLevel: 'BACKUP_COMPRESSION_LEVEL',
  partSizeMiB: 'BACKUP_PART_SIZE_MIB',
  weeklySnapshotRetention: 'SNAPSHOT_RETENTION_WEEKLY',
  monthlySnapshotRetention: 'SNAPSHOT_RETENTION_MONTHLY',
  minPitrRetentionDays: 'MIN_PITR_RETENTION_DAYS',
  /** Days of compliance-mode Object Lock on every monthly object, when set (config backups.monthlyComplianceLockDays). */
  monthlyComplianceLockDays: 'BACKUP_MONTHLY_COMPLIANCE_LOCK_DAYS',
  /** Where the restore test writes its reports, when it is deployed: the runner reports their age. */
  restoreTestReportPrefix: 'RESTORE_TEST_REPORT_PREFIX',
  /** ECS task only: the tier, when not given as `--tier` on the command line. */
  tier: 'BACKUP_TIER',
  /** ECS task only: its time limit in seconds (config backups.fargateTimeoutMinutes). */
  taskTimeoutSeconds: 'BACKUP_TASK_TIMEOUT_SECONDS',
} as const;

/**
 * Longest time limit of the Fargate runner (config backups.fargateTimeoutMinutes), and its default.
 * A scheduled run's limit counts from its scheduled time, not from its start: a run Scheduler
 * delivers late (RunTask retried), or that waits for Fargate capacity or its image, has that much
 * less time, so it still ends within 55 minutes of its scheduled time. The hourly tier's runs are
 * 60 minutes apart, the shortest interval of any schedule (also across the daylight-saving
 * changes), so no run ends after the next run of its tier is due, late or not. The 5 minutes left
 * absorb the difference between Scheduler's clock and the task's, and the task's exit.
 */
export const MAX_TASK_TIMEOUT_MINUTES = 55;
export const DEFAULT_TASK_TIMEOUT_MINUTES = MAX_TASK_TIMEOUT_MINUTES;

/**
 * The task's argument with its run's scheduled time (ISO 8601 UTC): the schedules fill it with
 * EventBridge Scheduler's `<aws.scheduler.scheduled-time>`, which stays the same on every retry.
 */
export const SCHEDULED_TIME_ARG = '--scheduled-time';

/**
 * The Lambda runner's event. Its schedules give both: `scheduledTime` is Scheduler's
 * `<aws.scheduler.scheduled-time>`, the same on every delivery, as the task's SCHEDULED_TIME_ARG.
 * A manual invoke gives the tier only, and is a manual run.
 */
export interface BackupRunnerEvent {
  readonly tier: string;
  readonly scheduledTime?: string;
}

/**
 * Exit code of the Fargate task whose run failed and has reported it (`ScheduledRunFailure`, so
 * `Backups-FailedRun` pages). Any other non-zero exit, or a task that never started, is a run that
 * could not report itself (killed out of memory, a bad image, a configuration error): the
 * `Backups-RunnerStopped` alarm pages for those, and only for those, so that one failure opens one
 * incident. Not 1: node exits 1 on an uncaught error, before the runner could report anything.
 */
export const REPORTED_FAILURE_EXIT_CODE = 3;

/** Metrics emitted by the backup core (lambdas/backup/backup.ts runBackup), dimensions {service, Tier}. */
export const CORE_METRICS = {
  success: 'BackupSuccess',
  failure: 'BackupFailure',
  durationSeconds: 'BackupDurationSeconds',
  bytes: 'BackupBytes',
} as const;

/** Metrics emitted by the runner around the core. */
export const RUNNER_METRICS = {
  /** 1 when automated backups are on with retention >= the configured minimum, else 0. Dims {service, DBInstanceIdentifier}. */
  pitrEnabled: 'PitrEnabled',
  /** Automated-backup retention in days. Dims {service, DBInstanceIdentifier}. */
  pitrRetentionDays: 'PitrRetentionDays',
  /** Seconds between now and the instance's latest restorable time: the RPO reachable by PITR. */
  pitrLagSeconds: 'PitrLagSeconds',
  /**
   * 1 when RDS reports a latest restorable time, 0 when it reports none; published only while
   * automated backups are on (off is PitrEnabled's). With none there is no point to recover to and
   * no lag to measure, so PitrLag alone would stay silent. Dims {service, DBInstanceIdentifier}.
   */
  pitrRestorable: 'PitrRestorable',
  /** 1 per scheduled run that failed for any reason (core, connection, RDS side). Dims {service}. */
  scheduledRunFailure: 'ScheduledRunFailure',
  /**
   * Age of the newest good backup (any tier) at the end of a run. Dims {service}. Also per tier,
   * dims {service, Tier}: for a tier with no backup yet, the time since its age baseline.
   */
  latestBackupAgeSeconds: 'LatestBackupAgeSeconds',
  /**
   * Age of the newest restore-test report, every run (when the restore test is deployed): the
   * hourly heartbeat of a monthly test, so that a test that never runs is noticed; before the first
   * report, the time since its age baseline. Dims {service}.
   */
  restoreTestReportAgeSeconds: 'RestoreTestReportAgeSeconds',
} as const;

/** Every manual snapshot this tool takes starts with this prefix (IAM scopes deletes to it). */
export const SNAPSHOT_PREFIX = 'atmr-dr-';
export const MANAGED_TAG_KEY = 'atmr-dr:managed';
export const TIER_TAG_KEY = 'atmr-dr:tier';

/** Name of the runner container in the Fargate task definition. */
export const RUNNER_CONTAINER_NAME = 'runner';

/** Where the runner image keeps its files (the Lambda base image's task root). */
export const RUNNER_TASK_ROOT = '/var/task';

/**
 * zlib level of both formats, same default as config backups.compressionLevel: level 1 costs pg_dump
 * about 2.5x less CPU than 6 for ~20% larger objects (docs/backups.md). Here, without runtime
 * dependencies, so that the CLI's `backup --help` shows it without loading the backup pipeline.
 */
export const DEFAULT_COMPRESSION_LEVEL = 1;

/**
 * The refusal of a compression level, echoing it as given (a number, or the text typed): one
 * message for the CLI's parser and the core's check. Here, so that the CLI's option parser does
 * not load the backup pipeline to build it.
 */
export function invalidCompressionLevel(given: number | string): OperatorError {
  return new OperatorError(`invalid compression level "${given}": use an integer from 0 (none) to 9 (smallest)`, 2);
}
