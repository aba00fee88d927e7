import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import { SSMClient } from '@aws-sdk/client-ssm';
import middy from '@middy/core';
import { z } from 'zod';
import { observability } from '../shared/observability';
import { enforceKillswitch, EnforceResult } from './enforcer';
import { parseEnvSettings } from '../shared/env-settings';

const { logger, tracer } = observability('killswitch-enforcer');
const env = parseEnvSettings(z.object({
  KILLSWITCH_PARAMETER: z.string().min(1),
  LISTENER_ARN: z.string().startsWith('arn:'),
  LISTENER_RULE_PRIORITY: z.coerce.number().int().min(1).max(49999),
  MAINTENANCE_TARGET_GROUP_ARN: z.string().startsWith('arn:'),
  API_TARGET_GROUP_ARN: z.string().startsWith('arn:'),
}), process.env, { what: 'killswitch enforcer', fix: 'it is set by the killswitch construct: redeploy the ops stack' });
const ssm = tracer.captureAWSv3Client(new SSMClient({}));
const elbv2 = tracer.captureAWSv3Client(new ElasticLoadBalancingV2Client({}));

/** A "Parameter Store Change" of the parameter, or the 5-minute reconcile schedule. */
const TriggerSchema = z.looseObject({ 'detail-type': z.enum(['Parameter Store Change', 'Scheduled Event']) });

export async function enforce(event: unknown): Promise<EnforceResult> {
  const trigger = TriggerSchema.parse(event);
  const result = await enforceKillswitch(
    { ssm, elbv2 },
    {
      parameterName: env.KILLSWITCH_PARAMETER,
      listenerArn: env.LISTENER_ARN,
      priority: env.LISTENER_RULE_PRIORITY,
      maintenanceTargetGroupArn: env.MAINTENANCE_TARGET_GROUP_ARN,
      apiTargetGroupArn: env.API_TARGET_GROUP_ARN,
    },
  );
  // A change found by the reconcile means an event was missed: worth a warning.
  const log = trigger['detail-type'] === 'Scheduled Event' && result.changes.length > 0 ? logger.warn.bind(logger) : logger.info.bind(logger);
  log('killswitch enforced', { trigger: trigger['detail-type'], mode: result.mode, changes: result.changes });
  return result;
}

export const handler = middy(enforce).use(injectLambdaContext(logger)).use(captureLambdaHandler(tracer));
