import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { SSMClient } from '@aws-sdk/client-ssm';
import middy from '@middy/core';
import { z } from 'zod';
import { OperatorError } from '../shared/errors';
import { observability } from '../shared/observability';
import { revertExpired } from './core';
import { parseEnvSettings } from '../shared/env-settings';

const { logger, tracer } = observability('killswitch-expiry');
const env = parseEnvSettings(z.object({ KILLSWITCH_PARAMETER: z.string().min(1) }), process.env, { what: 'killswitch expiry', fix: 'it is set by the killswitch construct: redeploy the ops stack' });
const ssm = tracer.captureAWSv3Client(new SSMClient({}));

const RevertEventSchema = z.strictObject({ parameterName: z.string().min(1), expectedUpdatedAt: z.iso.datetime({ offset: true }) });

/**
 * Invoked (asynchronously) by the one-time Scheduler schedule armed for `--expires`. A conflict with
 * another write throws: the run fails straight into the killswitch dead-letter queue, whose
 * DeadLetters alarm pages the incidents topic (no Lambda retry: a retry would read the value the
 * conflict left and skip it as "changed since", and the page would be lost).
 */
export async function revert(event: unknown): Promise<{ reverted: boolean; why?: string }> {
  const request = RevertEventSchema.parse(event);
  if (request.parameterName !== env.KILLSWITCH_PARAMETER) {
    throw new OperatorError(`killswitch expiry: parameter ${request.parameterName} is not this environment's (${env.KILLSWITCH_PARAMETER})`);
  }
  const outcome = await revertExpired({ ssm }, request);
  logger.info(outcome.reverted ? 'killswitch expired: reverted to normal' : 'killswitch expiry skipped', outcome.reverted ? {} : { why: outcome.why });
  return outcome.reverted ? { reverted: true } : { reverted: false, why: outcome.why };
}

export const handler = middy(revert).use(injectLambdaContext(logger)).use(captureLambdaHandler(tracer));
