import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import middy from '@middy/core';
import { z } from 'zod';
import { SDK_RETRY } from '../shared/aws';
import { parseEnvSettings } from '../shared/env-settings';
import { observability } from '../shared/observability';
import { incidentStore } from './clients';
import { SWEEP_SERVICE, sweepStoppedRuns, SweepResult } from './sweep';

const { logger, metrics, tracer } = observability(SWEEP_SERVICE);
const env = parseEnvSettings(z.object({ OPS_TABLE: z.string().min(3), LEVEL_TIMEOUTS_SECONDS: z.string().regex(/^\d+(,\d+)*$/) }), process.env, {
  what: 'escalation sweep',
  fix: 'it is set by the escalation construct: redeploy the ops stack',
});
const sfn = tracer.captureAWSv3Client(new SFNClient(SDK_RETRY));
const levelTimeoutsSeconds = env.LEVEL_TIMEOUTS_SECONDS.split(',').map(Number);
const store = incidentStore(env.OPS_TABLE, { ddb: tracer.captureAWSv3Client(new DynamoDBClient(SDK_RETRY)), sfn });

/** Every 5 minutes (EventBridge Scheduler): restarts the stopped runs of open incidents (sweep.ts). */
export async function sweep(): Promise<SweepResult> {
  const result = await sweepStoppedRuns({ store, sfn, levelTimeoutsSeconds, metrics });
  if (result.restarted.length > 0) logger.warn('stopped escalation runs restarted', { ...result });
  else logger.info('no stopped escalation run', { open: result.open });
  return result;
}

export const handler = middy(sweep).use(injectLambdaContext(logger)).use(logMetrics(metrics)).use(captureLambdaHandler(tracer));
