import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { SchedulerClient } from '@aws-sdk/client-scheduler';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import middy from '@middy/core';
import { z } from 'zod';
import { observability } from '../shared/observability';
import { parseEnvSettings } from '../shared/env-settings';
import { notifyKillswitchChange, NotifyResult } from './notify';

const { logger, metrics, tracer } = observability('killswitch-notifier');
const env = parseEnvSettings(z.object({
  KILLSWITCH_PARAMETER: z.string().min(1),
  ENVIRONMENT_NAME: z.string().min(1),
  TOPIC_ARN: z.string().startsWith('arn:'),
  EXPIRY_SCHEDULE_GROUP: z.string().min(1),
  EXPIRY_SCHEDULE_NAME: z.string().min(1),
  REVERT_FUNCTION_ARN: z.string().startsWith('arn:'),
  SCHEDULER_ROLE_ARN: z.string().startsWith('arn:'),
  DEAD_LETTER_QUEUE_ARN: z.string().startsWith('arn:'),
}), process.env, { what: 'killswitch notifier', fix: 'it is set by the killswitch construct: redeploy the ops stack' });
const clients = {
  ssm: tracer.captureAWSv3Client(new SSMClient({})),
  events: tracer.captureAWSv3Client(new EventBridgeClient({})),
  sns: tracer.captureAWSv3Client(new SNSClient({})),
  scheduler: tracer.captureAWSv3Client(new SchedulerClient({})),
};

const ChangeEventSchema = z.looseObject({
  'detail-type': z.literal('Parameter Store Change'),
  detail: z.looseObject({ name: z.string(), operation: z.string() }),
});

export async function notify(event: unknown): Promise<NotifyResult> {
  const change = ChangeEventSchema.parse(event);
  logger.info('killswitch parameter changed', { operation: change.detail.operation });
  return notifyKillswitchChange(
    { ...clients, metrics, logger },
    {
      parameterName: env.KILLSWITCH_PARAMETER,
      environmentName: env.ENVIRONMENT_NAME,
      topicArn: env.TOPIC_ARN,
      expiry: {
        groupName: env.EXPIRY_SCHEDULE_GROUP,
        scheduleName: env.EXPIRY_SCHEDULE_NAME,
        targetArn: env.REVERT_FUNCTION_ARN,
        roleArn: env.SCHEDULER_ROLE_ARN,
        deadLetterArn: env.DEAD_LETTER_QUEUE_ARN,
      },
    },
  );
}

export const handler = middy(notify).use(injectLambdaContext(logger)).use(logMetrics(metrics)).use(captureLambdaHandler(tracer));
