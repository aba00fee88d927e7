import { RDSClient } from '@aws-sdk/client-rds';
import type { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { createS3Client, DEFAULT_MAX_ATTEMPTS } from '../shared/aws';
import { msUntilDeadline } from '../shared/deadline';
import { observability } from '../shared/observability';
import { BACKUP_RUNNER_SERVICE, type BackupRunnerEvent } from './runner-contract';
import { parseBackupTier } from '../shared/tiers';
import { loadRunnerSettings, parseScheduledTime, runScheduledBackup } from './scheduled-run';

/**
 * Lambda entry of the backup runner (container image, CMD `backup.handler`). EventBridge Scheduler
 * invokes it asynchronously with `{"tier": "hourly" | "daily" | "weekly" | "monthly", "scheduledTime":
 * "<ISO 8601 UTC>"}` (BackupRunnerEvent): a delivery that finds its tier backed up since its
 * scheduled time, by another delivery of the run, has nothing to do.
 * A failed run throws: Lambda's async retry, the on-failure queue and the Errors alarm see it.
 */

const { logger, metrics, tracer } = observability(BACKUP_RUNNER_SERVICE);

let clients: { s3: S3Client; rds: RDSClient; secretsManager: SecretsManagerClient } | undefined;

/** SDK clients, created on first use (reused by warm invocations). */
function sdkClients() {
  clients ??= {
    s3: createS3Client(),
    rds: tracer.captureAWSv3Client(new RDSClient({ maxAttempts: DEFAULT_MAX_ATTEMPTS })),
    secretsManager: tracer.captureAWSv3Client(new SecretsManagerClient({ maxAttempts: DEFAULT_MAX_ATTEMPTS })),
  };
  return clients;
}

export interface BackupRunOutput {
  readonly tier: string;
  readonly manifestKey: string;
  readonly snapshot?: string;
  readonly deletedSnapshots?: readonly string[];
  readonly pitrEnabled?: boolean;
}

async function runScheduledBackupHandler(event: unknown, context?: Context): Promise<BackupRunOutput> {
  const { tier: givenTier, scheduledTime: givenTime } = (event ?? {}) as { [K in keyof BackupRunnerEvent]?: unknown };
  const tier = parseBackupTier(givenTier, 'backup event');
  // Absent in a manual invoke: that run backs up whatever the tier holds, as a manual task does.
  const scheduledTime = givenTime === undefined ? undefined : parseScheduledTime(givenTime, 'backup event: scheduledTime');
  const settings = loadRunnerSettings(process.env);
  // The dump stops before Lambda's deadline, so that its uploads are aborted cleanly.
  const stopInMs = msUntilDeadline(context);
  const signal = stopInMs !== undefined ? AbortSignal.timeout(stopInMs) : undefined;
  try {
    const result = await runScheduledBackup(
      { settings, ...sdkClients(), metrics, logger, env: process.env, region: process.env.AWS_REGION, signal, scheduledTime },
      tier,
    );
    return {
      tier: result.tier,
      manifestKey: result.manifestKey,
      snapshot: result.snapshot?.created,
      deletedSnapshots: result.snapshot?.deleted,
      pitrEnabled: result.pitr?.enabled,
    };
  } catch (error) {
    logger.error('scheduled backup failed', { tier, error: (error as Error).message });
    throw error;
  }
}

export const handler = middy(runScheduledBackupHandler)
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics))
  .use(captureLambdaHandler(tracer));
