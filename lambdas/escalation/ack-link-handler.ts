import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import middy from '@middy/core';
import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import { z } from 'zod';
import { SDK_RETRY } from '../shared/aws';
import { observability } from '../shared/observability';
import { parseEnvSettings } from '../shared/env-settings';
import { handleAckLink } from './ack-link';
import { incidentStore } from './clients';
import { readAckLinkKey } from './key';

const { logger, tracer } = observability('escalation-ack-link');
const env = parseEnvSettings(z.object({
  OPS_TABLE: z.string().min(3),
  /** The environment: the commands its pages print name it (--env). */
  ENVIRONMENT_NAME: z.string().min(1),
  ACK_KEY_SECRET_ARN: z.string().startsWith('arn:'),
  LEVEL_NAMES: z.string().transform((s) => s.split('|')),
  /** Set when the Slack `/incident` command is deployed (the construct's handleSlackCommands). */
  SLACK_INCIDENT_COMMAND: z.literal('deployed').optional(),
}), process.env, { what: 'escalation ack link', fix: 'it is set by the escalation construct: redeploy the ops stack' });
const store = incidentStore(env.OPS_TABLE, {
  ddb: tracer.captureAWSv3Client(new DynamoDBClient(SDK_RETRY)),
  sfn: tracer.captureAWSv3Client(new SFNClient(SDK_RETRY)),
}, env.ENVIRONMENT_NAME);

const FunctionUrlEventSchema = z.looseObject({
  rawQueryString: z.string().default(''),
  body: z.string().optional(),
  isBase64Encoded: z.boolean().optional(),
  requestContext: z.looseObject({ http: z.looseObject({ method: z.string() }) }),
});

/** Function URL adapter: query (GET) or form body (POST) in, an HTML page out. */
export async function ackLink(event: unknown): Promise<APIGatewayProxyResultV2> {
  const parsed = FunctionUrlEventSchema.safeParse(event);
  if (!parsed.success) return { statusCode: 400, headers: { 'Content-Type': 'text/plain' }, body: 'malformed request' };
  const { method } = parsed.data.requestContext.http;
  const body = parsed.data.body && parsed.data.isBase64Encoded ? Buffer.from(parsed.data.body, 'base64').toString('utf8') : parsed.data.body;
  const params = new URLSearchParams(method === 'POST' ? (body ?? '') : parsed.data.rawQueryString);
  const reply = await handleAckLink({ store, key: () => readAckLinkKey(env.ACK_KEY_SECRET_ARN), levelNames: env.LEVEL_NAMES, slackIncidentCommand: env.SLACK_INCIDENT_COMMAND === 'deployed' }, { method, params });
  if (reply.statusCode >= 400) logger.warn('acknowledgement link refused', { statusCode: reply.statusCode, incidentId: params.get('i') });
  return {
    statusCode: reply.statusCode,
    headers: { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store', 'Referrer-Policy': 'no-referrer', 'X-Robots-Tag': 'noindex' },
    body: reply.html,
  };
}

// The reply stays out of the trace (Powertools stores a handler's response by default): a GET's
// form repeats the link's signed fields, mail scanners open every link, and the trace would keep a
// usable link for its validity.
export const handler = middy(ackLink).use(injectLambdaContext(logger)).use(captureLambdaHandler(tracer, { captureResponse: false }));
