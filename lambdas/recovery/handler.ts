import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { RDSClient } from '@aws-sdk/client-rds';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import middy from '@middy/core';
import { z } from 'zod';
import { SDK_RETRY } from '../shared/aws';
import { parseEnvSettings } from '../shared/env-settings';
import { observability } from '../shared/observability';
import { RECOVERY_ENV, RECOVERY_SERVICE } from './contract';
import { dispatchStep } from './steps';
import { WorkflowDeps } from './workflow';

const { logger, tracer } = observability(RECOVERY_SERVICE);

const EnvSchema = z.object({
  [RECOVERY_ENV.environmentName]: z.string().min(1),
  [RECOVERY_ENV.sourceInstance]: z.string().min(1),
  [RECOVERY_ENV.newInstancePrefix]: z.string().min(1),
  [RECOVERY_ENV.subnetGroupName]: z.string().optional(),
  [RECOVERY_ENV.tags]: z.string().default('{}'),
  [RECOVERY_ENV.opsTable]: z.string().min(3),
  [RECOVERY_ENV.databaseName]: z.string().min(1),
  [RECOVERY_ENV.productionHost]: z.string().min(1),
  [RECOVERY_ENV.productionPort]: z.coerce.number().int().positive(),
  [RECOVERY_ENV.secretArn]: z.string().min(1),
  [RECOVERY_ENV.criticalTables]: z.string(),
  [RECOVERY_ENV.criticalQueries]: z.string(),
  [RECOVERY_ENV.alembicVersionTable]: z.string().min(1),
  [RECOVERY_ENV.maxWaitSeconds]: z.coerce.number().int().positive(),
  [RECOVERY_ENV.sslMode]: z.string().optional(),
  // The environment's metrics namespace, set on every house function: RecoverySeconds is published
  // with PutMetricData, which Powertools does not configure.
  POWERTOOLS_METRICS_NAMESPACE: z.string().min(1),
});

/** The workflow's dependencies from the function's environment (validated, naming the bad variable). */
export function depsFromEnv(env: NodeJS.ProcessEnv = process.env, clients?: Partial<Pick<WorkflowDeps, 'rds' | 'secretsManager' | 'events' | 'cloudwatch'>> & { ddb?: DynamoDBDocumentClient }): WorkflowDeps {
  const e = parseEnvSettings(EnvSchema, env, { what: 'recovery function environment', fix: 'it is set by the recovery construct: redeploy the ops stack' });
  return {
    rds: clients?.rds ?? tracer.captureAWSv3Client(new RDSClient(SDK_RETRY)),
    secretsManager: clients?.secretsManager ?? tracer.captureAWSv3Client(new SecretsManagerClient(SDK_RETRY)),
    events: clients?.events ?? tracer.captureAWSv3Client(new EventBridgeClient(SDK_RETRY)),
    cloudwatch: clients?.cloudwatch ?? tracer.captureAWSv3Client(new CloudWatchClient(SDK_RETRY)),
    store: { ddb: clients?.ddb ?? DynamoDBDocumentClient.from(tracer.captureAWSv3Client(new DynamoDBClient(SDK_RETRY)), { marshallOptions: { removeUndefinedValues: true } }), tableName: e[RECOVERY_ENV.opsTable] },
    settings: {
      environmentName: e[RECOVERY_ENV.environmentName],
      sourceInstance: e[RECOVERY_ENV.sourceInstance],
      newInstancePrefix: e[RECOVERY_ENV.newInstancePrefix],
      subnetGroupName: e[RECOVERY_ENV.subnetGroupName] || undefined,
      tags: JSON.parse(e[RECOVERY_ENV.tags]) as Record<string, string>,
      databaseName: e[RECOVERY_ENV.databaseName],
      productionHost: e[RECOVERY_ENV.productionHost],
      productionPort: e[RECOVERY_ENV.productionPort],
      secretArn: e[RECOVERY_ENV.secretArn],
      sslMode: e[RECOVERY_ENV.sslMode],
      maxWaitSeconds: e[RECOVERY_ENV.maxWaitSeconds],
      metricsNamespace: e.POWERTOOLS_METRICS_NAMESPACE,
      checks: {
        criticalTables: JSON.parse(e[RECOVERY_ENV.criticalTables]) as string[],
        criticalQueries: JSON.parse(e[RECOVERY_ENV.criticalQueries]) as string[],
        alembicVersionTable: e[RECOVERY_ENV.alembicVersionTable],
      },
    },
  };
}

let cached: WorkflowDeps | undefined;

/** One step of the recovery workflow, with the deps built once per container. */
export function runStep(event: unknown, deps: WorkflowDeps = (cached ??= depsFromEnv())): Promise<unknown> {
  return dispatchStep(event, deps, (message, fields) => logger.info(message, fields));
}

export const handler = middy((event: unknown) => runStep(event))
  .use(injectLambdaContext(logger))
  .use(captureLambdaHandler(tracer));
