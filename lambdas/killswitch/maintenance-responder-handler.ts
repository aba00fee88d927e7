import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { SSMClient } from '@aws-sdk/client-ssm';
import middy from '@middy/core';
import { z } from 'zod';
import { observability } from '../shared/observability';
import { parseEnvSettings } from '../shared/env-settings';
import { REQUEST_PATH_SDK } from '../shared/sdk-retry';
import { AlbResponse, MAINTENANCE_RULE_REMOVAL_GRACE_SECONDS, MaintenanceResponder } from './maintenance-responder';
import { KillswitchReader } from './reader';

const { logger, metrics, tracer } = observability('killswitch-maintenance');
const env = parseEnvSettings(z.object({
  KILLSWITCH_PARAMETER: z.string().min(1),
  DEFAULT_RETRY_AFTER_SECONDS: z.coerce.number().int().min(1).max(86400),
  REMOVAL_GRACE_SECONDS: z.coerce.number().int().min(0).max(MAINTENANCE_RULE_REMOVAL_GRACE_SECONDS),
}), process.env, { what: 'maintenance responder', fix: 'it is set by the killswitch construct: redeploy the ops stack' });
const reader = new KillswitchReader({ parameterName: env.KILLSWITCH_PARAMETER, ssm: tracer.captureAWSv3Client(new SSMClient(REQUEST_PATH_SDK)), logger, metrics });
const responder = new MaintenanceResponder({ reader, defaultRetryAfterSeconds: env.DEFAULT_RETRY_AFTER_SECONDS, removalGraceSeconds: env.REMOVAL_GRACE_SECONDS, logger, metrics });

export async function respond(event: unknown): Promise<AlbResponse> {
  const response = await responder.answer(event);
  // Flushed only when something was recorded (KillswitchInvalid, an answer outside maintenance): the logMetrics middleware
  // would log "no metrics" on every request of a maintenance page under load.
  if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
  return response;
}

/** Behind the killswitch ALB rule (lambda target group): every request gets the maintenance 503. */
export const handler = middy(respond).use(injectLambdaContext(logger)).use(captureLambdaHandler(tracer));
