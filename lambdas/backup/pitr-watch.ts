import { RDSClient } from '@aws-sdk/client-rds';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import { z } from 'zod';
import { parseEnvSettings } from '../shared/env-settings';
import { observability } from '../shared/observability';
import { DEFAULT_MAX_ATTEMPTS } from '../shared/sdk-retry';
import { reportPitr, type PitrStatus } from './rds';
import { PITR_WATCH_SERVICE, RUNNER_ENV } from './runner-contract';

/**
 * The PITR watch: every 5 minutes (EventBridge Scheduler, lib/constructs/backups.ts), independent of
 * the backup runs, reads how far behind RDS's latest restorable time is and publishes PitrEnabled,
 * PitrRetentionDays, PitrLagSeconds and PitrRestorable (the same helper as the hourly run,
 * reportPitr). The hourly run alone saw a stalled archiving up to an hour late, 45 minutes past the
 * runbook's 15-minute RPO.
 * A failed read throws: the invocation fails (Lambda's Errors), publishes nothing, and PitrUnread
 * pages once no read has succeeded for 15 minutes; never a success that measured nothing.
 */

const { logger, metrics, tracer } = observability(PITR_WATCH_SERVICE);

const WatchSettingsSchema = z.object({
  [RUNNER_ENV.instanceIdentifier]: z.string().min(1),
  [RUNNER_ENV.minPitrRetentionDays]: z.coerce.number().int().positive().default(7),
});

let rds: RDSClient | undefined;

async function watchPitr(): Promise<PitrStatus> {
  const settings = parseEnvSettings(WatchSettingsSchema, process.env, {
    what: 'PITR watch environment',
    fix: 'it is set by the backups construct: redeploy the stack',
  });
  const instance = settings[RUNNER_ENV.instanceIdentifier];
  rds ??= tracer.captureAWSv3Client(new RDSClient({ maxAttempts: DEFAULT_MAX_ATTEMPTS }));
  try {
    const pitr = await reportPitr({ rds, metrics }, instance, settings[RUNNER_ENV.minPitrRetentionDays]);
    if (!pitr.enabled) logger.warn('PITR is off or below the minimum retention: the 15-minute RPO is not reachable', { instance, ...pitr });
    if (pitr.noRestorableTime) logger.warn('automated backups are on but RDS reports no latest restorable time: nothing to recover to by PITR', { instance, ...pitr });
    return pitr;
  } catch (error) {
    logger.error('PITR read failed: no PITR metric published for this read', { instance, error: (error as Error).message });
    throw error;
  }
}

export const handler = middy(watchPitr)
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics))
  .use(captureLambdaHandler(tracer));
