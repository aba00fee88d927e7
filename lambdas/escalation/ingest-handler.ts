import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import middy from '@middy/core';
import { z } from 'zod';
import { SDK_RETRY } from '../shared/aws';
import { EVENT_SOURCE } from '../shared/constants';
import { observability } from '../shared/observability';
import { parseEnvSettings } from '../shared/env-settings';
import { incidentStore } from './clients';
import { ingestAction, ingestAlarmChange } from './ingest';
import { ActionEventSchema, AlarmStateChangeSchema } from './model';

const { logger, tracer } = observability('escalation-ingest');
const env = parseEnvSettings(z.object({ OPS_TABLE: z.string().min(3), STATE_MACHINE_ARN: z.string().startsWith('arn:'), ALARM_NAME_PREFIX: z.string().min(1), LEVEL_TIMEOUTS_SECONDS: z.string().regex(/^\d+(,\d+)*$/) }), process.env, { what: 'escalation intake', fix: 'it is set by the escalation construct: redeploy the ops stack' });
const sfn = tracer.captureAWSv3Client(new SFNClient(SDK_RETRY));
const levelTimeoutsSeconds = env.LEVEL_TIMEOUTS_SECONDS.split(',').map(Number);
const store = incidentStore(env.OPS_TABLE, { ddb: tracer.captureAWSv3Client(new DynamoDBClient(SDK_RETRY)), sfn });

/** Alarm state changes open/resolve incidents; atmr-dr events join the open incidents' timelines. */
export async function ingest(event: unknown): Promise<unknown> {
  const alarm = AlarmStateChangeSchema.safeParse(event);
  if (alarm.success) {
    const result = await ingestAlarmChange({ store, sfn, stateMachineArn: env.STATE_MACHINE_ARN, alarmNamePrefix: env.ALARM_NAME_PREFIX, levelTimeoutsSeconds }, alarm.data);
    logger.info('alarm state change', { alarmName: alarm.data.detail.alarmName, state: alarm.data.detail.state.value, ...result });
    return result;
  }
  const action = ActionEventSchema.safeParse(event);
  if (action.success && action.data.source === EVENT_SOURCE) {
    const ids = await ingestAction({ store }, action.data);
    logger.info('automated action added to open incidents', { detailType: action.data['detail-type'], incidents: ids });
    return { action: 'recorded', incidents: ids };
  }
  // Only the two rules above target this function: anything else is a wiring error, made visible.
  throw new Error(`unexpected event: ${alarm.error.issues[0]?.message ?? 'unknown shape'}`);
}

export const handler = middy(ingest).use(injectLambdaContext(logger)).use(captureLambdaHandler(tracer));
