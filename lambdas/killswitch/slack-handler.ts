import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { getSecret } from '@aws-lambda-powertools/parameters/secrets';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { SSMClient } from '@aws-sdk/client-ssm';
import middy from '@middy/core';
import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import { z } from 'zod';
import { observability } from '../shared/observability';
import { parseEnvSettings } from '../shared/env-settings';
import { SLACK_COMMAND_SDK } from '../shared/sdk-retry';
import { namedClient } from '../shared/named-clients';
import { handleSlackCommand } from './slack';
import { incidentSlackCommand } from '../escalation/slack';

const { logger, tracer } = observability('killswitch-slack');
const env = parseEnvSettings(z.object({
  KILLSWITCH_PARAMETER: z.string().min(1),
  ENVIRONMENT_NAME: z.string().min(1),
  SLACK_SIGNING_SECRET_ARN: z.string().startsWith('arn:'),
  SLACK_ALLOWED_USER_IDS: z.string().transform((s) => s.split(',').filter(Boolean)),
  SLACK_TEAM_ID: z.string().min(1),
  SLACK_API_APP_ID: z.string().min(1),
  OPS_TABLE: z.string().min(3).optional(),
}), process.env, { what: 'killswitch Slack command', fix: 'it is set by the killswitch construct: redeploy the ops stack' });
// Named calls: a refusal's reply names the permission of the call SSM refused (awsRefusalLine).
const ssm = namedClient(tracer.captureAWSv3Client(new SSMClient(SLACK_COMMAND_SDK)), 'SSM');
/** The signing secret is cached for 5 minutes (a rotation is picked up within that time). */
const SECRET_MAX_AGE_SECONDS = 300;

const FunctionUrlEventSchema = z.looseObject({
  headers: z.record(z.string(), z.string().optional()).default({}),
  body: z.string().optional(),
  isBase64Encoded: z.boolean().optional(),
});

/** Function URL adapter: raw body (decoded), headers in, Slack JSON out. */
export async function slack(event: unknown): Promise<APIGatewayProxyResultV2> {
  const parsed = FunctionUrlEventSchema.safeParse(event);
  if (!parsed.success || parsed.data.body === undefined) {
    return { statusCode: 400, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ response_type: 'ephemeral', text: 'malformed request' }) };
  }
  const rawBody = parsed.data.isBase64Encoded ? Buffer.from(parsed.data.body, 'base64').toString('utf8') : parsed.data.body;
  const reply = await handleSlackCommand(
    {
      ssm,
      parameterName: env.KILLSWITCH_PARAMETER,
      environmentName: env.ENVIRONMENT_NAME,
      allowedUserIds: env.SLACK_ALLOWED_USER_IDS,
      teamId: env.SLACK_TEAM_ID,
      apiAppId: env.SLACK_API_APP_ID,
      logger,
      incidentCommand: env.OPS_TABLE ? incidentSlackCommand(env.OPS_TABLE, env.ENVIRONMENT_NAME) : undefined,
      signingSecret: async () => {
        const secret = await getSecret(env.SLACK_SIGNING_SECRET_ARN, { maxAge: SECRET_MAX_AGE_SECONDS });
        if (typeof secret !== 'string' || secret === '') throw new Error('Slack signing secret is empty or binary');
        return secret;
      },
    },
    { headers: parsed.data.headers, rawBody },
  );
  return { statusCode: reply.statusCode, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(reply.body) };
}

export const handler = middy(slack).use(injectLambdaContext(logger)).use(captureLambdaHandler(tracer));
