import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SNSClient } from '@aws-sdk/client-sns';
import middy from '@middy/core';
import { z } from 'zod';
import { SDK_RETRY } from '../shared/aws';
import { observability } from '../shared/observability';
import { parseEnvSettings } from '../shared/env-settings';
import { incidentStore } from './clients';
import { readAckLinkKey } from './key';
import { runTask, TaskInput } from './tasks';

const { logger, tracer } = observability('escalation-tasks');
const env = parseEnvSettings(z.object({
  OPS_TABLE: z.string().min(3),
  /** The environment: the commands its pages print name it (--env). */
  ENVIRONMENT_NAME: z.string().min(1),
  /** JSON: [{name, topicArn}] in level order. */
  LEVELS: z.string().transform((s) => z.array(z.object({ name: z.string(), topicArn: z.string().startsWith('arn:') })).min(1).parse(JSON.parse(s))),
  /** The levels' acknowledgement timeouts, in level order: the state machine's (comma-separated seconds). */
  LEVEL_TIMEOUTS_SECONDS: z.string().regex(/^\d+(,\d+)*$/).transform((s) => s.split(',').map(Number)),
  SLACK_TOPIC_ARN: z.string().startsWith('arn:').optional(),
  /** Set when the Slack `/incident` command is deployed (the construct's handleSlackCommands). */
  SLACK_INCIDENT_COMMAND: z.literal('deployed').optional(),
  RUNBOOK_URL: z.url(),
  ACK_URL: z.url().optional(),
  ACK_KEY_SECRET_ARN: z.string().startsWith('arn:').optional(),
  ACK_LINK_VALIDITY_SECONDS: z.coerce.number().int().positive().default(14400),
}).refine((e) => e.LEVEL_TIMEOUTS_SECONDS.length === e.LEVELS.length, { message: 'LEVEL_TIMEOUTS_SECONDS must give one timeout per level of LEVELS', path: ['LEVEL_TIMEOUTS_SECONDS'] }), process.env, { what: 'escalation pager', fix: 'it is set by the escalation construct: redeploy the ops stack' });
const store = incidentStore(env.OPS_TABLE, {
  ddb: tracer.captureAWSv3Client(new DynamoDBClient(SDK_RETRY)),
  sfn: tracer.captureAWSv3Client(new SFNClient(SDK_RETRY)),
}, env.ENVIRONMENT_NAME);
const deps = {
  store,
  sns: tracer.captureAWSv3Client(new SNSClient(SDK_RETRY)),
  cloudwatch: tracer.captureAWSv3Client(new CloudWatchClient(SDK_RETRY)),
  levels: env.LEVELS.map((level, index) => ({ ...level, ackTimeoutSeconds: env.LEVEL_TIMEOUTS_SECONDS[index] })),
  slackTopicArn: env.SLACK_TOPIC_ARN,
  slackIncidentCommand: env.SLACK_INCIDENT_COMMAND === 'deployed',
  runbookUrl: env.RUNBOOK_URL,
  warn: (message: string, details: Record<string, unknown>) => logger.warn(message, details),
  ...(env.ACK_URL &&
    env.ACK_KEY_SECRET_ARN && {
      ackLink: { baseUrl: env.ACK_URL, validitySeconds: env.ACK_LINK_VALIDITY_SECONDS, key: () => readAckLinkKey(env.ACK_KEY_SECRET_ARN as string) },
    }),
};

/** One step of the escalation workflow (page, await, remind, check, resolve). */
export async function task(event: TaskInput): Promise<unknown> {
  const result = await runTask(deps, event);
  logger.info('escalation step', { action: event.action, incidentId: event.incidentId, result });
  return result;
}

export const handler = middy(task).use(injectLambdaContext(logger)).use(captureLambdaHandler(tracer));
