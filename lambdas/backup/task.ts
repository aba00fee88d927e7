import { RDSClient } from '@aws-sdk/client-rds';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { z } from 'zod';
import { createS3Client, DEFAULT_MAX_ATTEMPTS } from '../shared/aws';
import { DEADLINE_MARGIN_MS, msUntilDeadline } from '../shared/deadline';
import { parseEnvSettings } from '../shared/env-settings';
import { OperatorError, oneLine } from '../shared/errors';
import { exitWhenFailed } from '../shared/exit';
import { formatSeconds } from '../shared/format';
import { observability } from '../shared/observability';
import type { BackupTier } from '../shared/s3-layout';
import { emitSingleMetric } from '../shared/single-metric';
import {
  BACKUP_RUNNER_SERVICE,
  DEFAULT_TASK_TIMEOUT_MINUTES,
  MAX_TASK_TIMEOUT_MINUTES,
  REPORTED_FAILURE_EXIT_CODE,
  RUNNER_ENV,
  RUNNER_METRICS,
  SCHEDULED_TIME_ARG,
} from './runner-contract';
import { parseBackupTier } from '../shared/tiers';
import { loadRunnerSettings, parseScheduledTime, runScheduledBackup, type ScheduledRunDeps } from './scheduled-run';

/**
 * ECS Fargate entry of the backup runner (same image as the Lambda; `node /var/task/task.js
 * --tier weekly`), for databases whose dump outgrows Lambda's 15 minutes. Same code path as the
 * handler: runScheduledBackup. Exit 0 on success, non-zero with one line on stderr otherwise:
 * REPORTED_FAILURE_EXIT_CODE when the failure was reported (ScheduledRunFailure), 1 or 2 when it
 * could not be (ECS's stop event then pages, lib/constructs/backups.ts RunnerStopped).
 *
 * ECS puts no time limit on a task: the task keeps its own (BACKUP_TASK_TIMEOUT_SECONDS, config
 * backups.fargateTimeoutMinutes), so that a hung pg_dump or a stalled upload does not hold its
 * snapshot open on production for hours while the next runs start beside it. A scheduled run
 * counts it from its scheduled time (`--scheduled-time`), so that a late start cannot carry the run
 * past the time the next run of its tier is due.
 */

/** The tier from `--tier T` / `--tier=T`, else from BACKUP_TIER. */
export function tierFromCommandLine(argv: readonly string[], env: NodeJS.ProcessEnv): BackupTier {
  const index = argv.findIndex((a) => a === '--tier' || a.startsWith('--tier='));
  if (index >= 0) {
    const arg = argv[index];
    const value = arg === '--tier' ? argv[index + 1] : arg.slice('--tier='.length);
    return parseBackupTier(value, '--tier');
  }
  if (env[RUNNER_ENV.tier] !== undefined) return parseBackupTier(env[RUNNER_ENV.tier], RUNNER_ENV.tier);
  throw new OperatorError(`no backup tier: pass --tier hourly|daily|weekly|monthly or set ${RUNNER_ENV.tier}`, 2);
}

/** The run's scheduled time from `--scheduled-time T` / `--scheduled-time=T`; undefined for a manual run without it. */
export function scheduledTimeFromCommandLine(argv: readonly string[]): Date | undefined {
  const index = argv.findIndex((a) => a === SCHEDULED_TIME_ARG || a.startsWith(`${SCHEDULED_TIME_ARG}=`));
  if (index < 0) return undefined;
  const arg = argv[index];
  const value = arg === SCHEDULED_TIME_ARG ? (argv[index + 1] ?? '') : arg.slice(SCHEDULED_TIME_ARG.length + 1);
  return parseScheduledTime(value, SCHEDULED_TIME_ARG);
}

export interface TaskIo {
  readonly stderr: { write(line: string): unknown };
  /** Overrides for tests; default: SDK clients from the environment. */
  readonly clients?: Pick<ScheduledRunDeps, 's3' | 'rds' | 'secretsManager'>;
  /** Stops the run from outside (SIGTERM from ECS). */
  readonly signal?: AbortSignal;
  readonly pgBinDir?: string;
}

const TaskSettingsSchema = z.object({
  [RUNNER_ENV.taskTimeoutSeconds]: z.coerce.number().int().positive().default(DEFAULT_TASK_TIMEOUT_MINUTES * 60),
});

/** The task's time limit in seconds, or one line naming the variable (a deployment defect). */
export function taskTimeoutSeconds(env: NodeJS.ProcessEnv): number {
  return parseEnvSettings(TaskSettingsSchema, env, { what: 'runner environment', fix: 'it is set by the backups construct: redeploy the stack' })[
    RUNNER_ENV.taskTimeoutSeconds
  ];
}

/** Thrown when a stopped run did not end in time: the task gives up on it (and reports it). */
class RunAbandoned extends OperatorError {
  constructor(message: string) {
    super(message, REPORTED_FAILURE_EXIT_CODE);
  }
}

/** Thrown when a scheduled run starts too late to end by its limit: it does not run, and reports its failure. */
class RunSkipped extends OperatorError {
  constructor(message: string) {
    super(message, REPORTED_FAILURE_EXIT_CODE);
  }
}

/** Runs one scheduled backup; resolves to the process exit code. */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv, io: TaskIo): Promise<number> {
  const { logger, metrics } = observability(BACKUP_RUNNER_SERVICE);
  let ran = false;
  const deadline = new AbortController();
  const signal = io.signal ? AbortSignal.any([io.signal, deadline.signal]) : deadline.signal;
  const timers: NodeJS.Timeout[] = [];
  let giveUp: (() => void) | undefined;
  try {
    const tier = tierFromCommandLine(argv, env);
    const scheduledTime = scheduledTimeFromCommandLine(argv);
    const settings = loadRunnerSettings(env);
    const timeoutSeconds = taskTimeoutSeconds(env);
    ran = true;
    // The limit runs from the scheduled time, or from now when that is later (a manual run, or a
    // clock ahead of Scheduler's): a late start shortens the run, it never moves its end.
    const startedAt = Date.now();
    const remainingMs = Math.min(startedAt, scheduledTime?.getTime() ?? startedAt) + timeoutSeconds * 1000 - startedAt;
    // A run is stopped at least 1 s after it starts (msUntilDeadline) and given DEADLINE_MARGIN_MS
    // to end: with less time left, it would end after its limit, so it does not start.
    if (scheduledTime && remainingMs < DEADLINE_MARGIN_MS + 1_000) {
      throw new RunSkipped(
        `${tier} backup run skipped: it started ${formatSeconds(Math.floor((startedAt - scheduledTime.getTime()) / 1000))} after its scheduled time ${scheduledTime.toISOString()}, too late to end within its limit of ${formatSeconds(timeoutSeconds)} counted from then (backups.fargateTimeoutMinutes), so it could only run into the next ${tier} run; find why the task started late (RunTask retried by Scheduler, Fargate capacity, the image pull)`,
      );
    }
    const clients = io.clients ?? {
      s3: createS3Client(env),
      rds: new RDSClient({ maxAttempts: DEFAULT_MAX_ATTEMPTS }),
      secretsManager: new SecretsManagerClient({ maxAttempts: DEFAULT_MAX_ATTEMPTS }),
    };
    // As the Lambda handler before Lambda's limit, the run is stopped DEADLINE_MARGIN_MS before the
    // task's, through the signal SIGTERM aborts (pg_dump killed, uploads aborted, the snapshot's
    // transaction closed, nothing published).
    const stopInMs = msUntilDeadline({ getRemainingTimeInMillis: () => remainingMs });
    const limit = `${formatSeconds(timeoutSeconds)}${scheduledTime ? ` after its scheduled time ${scheduledTime.toISOString()}` : ''}`;
    timers.push(
      setTimeout(
        () =>
          deadline.abort(
            new Error(
              `time limit reached: stopped ${DEADLINE_MARGIN_MS / 1000} s before the task's limit of ${limit}; ${timeoutSeconds < MAX_TASK_TIMEOUT_MINUTES * 60 ? `raise backups.fargateTimeoutMinutes in cdk.json (${MAX_TASK_TIMEOUT_MINUTES} at most) or ` : ''}give the task more CPU (backups.fargateCpu) if the dump needs longer`,
            ),
          ),
        stopInMs,
      ),
    );
    // A step that does not listen to the signal (a hung Secrets Manager or RDS call, an S3 read
    // after the dump) must not keep a stopped task alive, nor leave its failure unreported: the
    // margin after a stop is all the run gets, as in Lambda, and well within ECS's stopTimeout.
    const abandoned = new Promise<never>((_resolve, reject) => {
      giveUp = () =>
        timers.push(
          setTimeout(
            () => reject(new RunAbandoned(`${tier} backup run abandoned: still running ${DEADLINE_MARGIN_MS / 1000} s after it was stopped (${oneLine(signal.reason)})`)),
            DEADLINE_MARGIN_MS,
          ),
        );
      if (signal.aborted) giveUp();
      else signal.addEventListener('abort', giveUp, { once: true });
    });
    const result = await Promise.race([
      runScheduledBackup({ settings, ...clients, metrics, logger, env, region: env.AWS_REGION, signal, pgBinDir: io.pgBinDir, scheduledTime }, tier),
      abandoned,
    ]);
    logger.info('scheduled backup done', { ...result });
    return 0;
  } catch (error) {
    // The run never got to report its own failure (or never started): a missed backup pages as a failed run.
    if (error instanceof RunAbandoned || error instanceof RunSkipped) emitSingleMetric(metrics, RUNNER_METRICS.scheduledRunFailure, MetricUnit.Count, 1);
    io.stderr.write(`atmr-dr backup task: ${oneLine(error)}\n`);
    return error instanceof OperatorError ? error.exitCode : 1;
  } finally {
    if (giveUp) signal.removeEventListener('abort', giveUp);
    for (const timer of timers) clearTimeout(timer);
    // Outside Lambda there is no middleware to flush: EMF lines go to stdout, hence CloudWatch Logs.
    if (ran) metrics.publishStoredMetrics();
  }
}

if (require.main === module) {
  const abort = new AbortController();
  // ECS stops a task with SIGTERM, then SIGKILL after stopTimeout: abort uploads in between.
  process.once('SIGTERM', () => abort.abort(new Error('task stopped (SIGTERM)')));
  void main(process.argv.slice(2), process.env, { stderr: process.stderr, signal: abort.signal }).then(exitWhenFailed);
}
