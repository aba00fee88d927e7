import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { SNSClient } from '@aws-sdk/client-sns';
import middy from '@middy/core';
import { z } from 'zod';
import { SDK_RETRY } from '../shared/aws';
import { parseEnvSettings } from '../shared/env-settings';
import { observability } from '../shared/observability';
import { checkSubscriptions, parseTopicsToCheck, SUBSCRIPTIONS_CHECK_SERVICE } from './subscriptions';

const { logger, metrics, tracer } = observability(SUBSCRIPTIONS_CHECK_SERVICE);
const env = parseEnvSettings(
  z.object({
    /**
     * JSON: [{level, name, topicArn, declared: [{protocol, sha256}]}] in level order (no endpoint),
     * then the topics without a level (no `level`: the key guard's).
     */
    SUBSCRIPTION_LEVELS: z.string().transform(parseTopicsToCheck),
  }),
  process.env,
  { what: 'escalation subscriptions check', fix: 'it is set by the escalation construct: redeploy the ops stack' },
);
const sns = tracer.captureAWSv3Client(new SNSClient(SDK_RETRY));

/** The hourly run: compares every level topic's (and the key guard topic's) subscriptions with the config (lambdas/escalation/subscriptions.ts). */
export async function check(): Promise<{ unconfirmed: number }> {
  const report = await checkSubscriptions({ sns, metrics, logger }, env.SUBSCRIPTION_LEVELS);
  return { unconfirmed: report.unconfirmed };
}

export const handler = middy(check).use(injectLambdaContext(logger)).use(logMetrics(metrics)).use(captureLambdaHandler(tracer));
